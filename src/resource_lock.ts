/**
 * The lock object a caller holds: `AsyncDisposable`, renews its lease while
 * held, and tells its holder at once when the lock is lost.
 *
 * @module
 */

import type { Clock } from "./clock.ts";
import { LockLostError, LockNotOwnedError } from "./errors.ts";
import type { LockType } from "./lock_file.ts";
import type { HeldLock, HeldSlot, Locker, ReleaseResult } from "./locker.ts";

let made: (value: unknown) => boolean;

/**
 * Whether `value` is a lock object this library made: not merely one whose
 * prototype is `ResourceLock.prototype` (`Object.create`), which has none of
 * its state and could release nothing.
 *
 * @param value anything
 * @returns true for a lock object made by a lock call
 */
export function isResourceLock(value: unknown): value is ResourceLock {
  return made(value);
}

/**
 * Locks taken by one lock call: a host and its dependencies, one session.
 *
 * @example Release with `await using`
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockHostResource } from "@resource-locker/resource-locker";
 * const root = await Deno.makeTempDir();
 * {
 *   await using lock = await lockHostResource("dc01", { hard: true, ttl: "5m", store: `${root}/{0}`, dependencies: {} });
 *   // work on dc01; pass lock.signal on: it aborts if the lock is lost
 *   assert.ok(!lock.signal.aborted && lock.refs[0] === `dc01/Host@${lock.sessionId}`);
 * } // released here
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class ResourceLock implements AsyncDisposable {
  /** The host asked for (lower-cased). */
  readonly host: string;
  /** Lock type of every lock. */
  readonly type: LockType;
  /** Session id of every lock. */
  readonly sessionId: string;
  /** The locks: dependencies first, the host last. */
  readonly locks: readonly HeldLock[];
  /**
   * Slots of maintenance groups taken with the Host locks (one per group
   * of each member locked); renewed and released with the locks.
   */
  readonly slots: readonly HeldSlot[];
  /** Lease in milliseconds, or undefined when the locks never expire. */
  readonly ttlMs: number | undefined;
  readonly #locker: Locker;
  readonly #lost = new AbortController();
  static {
    made = (value) => value !== null && typeof value === "object" && #locker in value;
  }
  #cancelTimer: (() => void) | undefined;
  #released = false;
  /**
   * Set when release() starts: a renewal failing after that is the release's
   * doing, and a renewal ending after that schedules no other.
   */
  #releasing = false;
  /** Locks this object released (or found lost) already, for a release retried after a fault. */
  readonly #releasedRefs = new Set<string>();
  /** Slots this object freed already, for a release retried after a fault. */
  readonly #releasedSlots = new Set<HeldSlot>();
  /** Losses found by release attempts, kept until a retry after a fault ends the release. */
  readonly #lostAtRelease: string[] = [];
  #renewedAt: number;
  readonly #clock: Clock;

  /**
   * Made by the lock functions; not constructed by users.
   *
   * @param locker the engine that took the locks
   * @param init what was taken
   */
  constructor(
    locker: Locker,
    init: {
      host: string;
      type: LockType;
      sessionId: string;
      locks: HeldLock[];
      slots?: HeldSlot[];
      ttlMs: number | undefined;
      clock: Clock;
    },
  ) {
    this.#locker = locker;
    this.host = init.host;
    this.type = init.type;
    this.sessionId = init.sessionId;
    this.locks = init.locks;
    this.slots = init.slots ?? [];
    this.ttlMs = init.ttlMs;
    this.#clock = init.clock;
    this.#renewedAt = init.clock.now();
    if (this.ttlMs !== undefined) this.#schedule();
  }

  /** Lock refs, dependencies first: what `unlock` takes. */
  get refs(): string[] {
    return this.locks.map((lock) => lock.ref);
  }

  /** True once released. */
  get released(): boolean {
    return this.#released;
  }

  /**
   * Aborted with a {@linkcode LockLostError} when a lock is broken by someone
   * else or cannot be renewed before it expires. Pass it on to the work.
   */
  get signal(): AbortSignal {
    return this.#lost.signal;
  }

  #schedule(): void {
    const period = Math.max(50, Math.floor(this.ttlMs! / 3));
    this.#cancelTimer = this.#clock.schedule(() => this.#tick(), period);
  }

  async #tick(): Promise<void> {
    this.#cancelTimer = undefined;
    if (this.#released || this.#lost.signal.aborted) return;
    try {
      await this.renew();
    } catch (error) {
      if (error instanceof LockLostError) return; // renew() aborted the signal
      if (this.#clock.now() >= this.#renewedAt + this.ttlMs!) {
        this.#lose(
          new LockLostError(
            this.locks[this.locks.length - 1]!.ref,
            `Locks of session "${this.sessionId}" were lost: not renewed before they expired: ${
              (error as Error).message
            }`,
            { cause: error },
          ),
        );
        return;
      }
    }
    // A renewal that ended while a release was under way schedules none:
    // release() cancelled the timer before this renewal was over.
    if (!this.#releasing && !this.#lost.signal.aborted) this.#schedule();
  }

  #lose(error: LockLostError): void {
    if (!this.#lost.signal.aborted) this.#lost.abort(error);
  }

  /**
   * Renews the lease of every lock now. Called by itself every third of the
   * lease while held.
   *
   * @throws {LockLostError} when a lock was broken or taken over (the signal aborts too)
   * @throws {StoreError} when the store cannot be reached (the lock is lost only
   * once its lease runs out)
   */
  async renew(): Promise<void> {
    if (this.ttlMs === undefined || this.#released) return;
    if (this.#lost.signal.aborted) throw this.#lost.signal.reason;
    try {
      await this.#locker.renewAll(this.locks, this.ttlMs);
      await this.#locker.renewSlots(this.slots, this.ttlMs);
      this.#renewedAt = this.#clock.now();
    } catch (error) {
      // A renewal still under way when the release went through finds the
      // locks gone: that is the release, not a loss.
      if (error instanceof LockLostError && !this.#releasing) this.#lose(error);
      throw error;
    }
  }

  /**
   * Releases every lock into history. Safe to call twice.
   *
   * A lock that was broken by someone (History says so) or taken over by
   * another session, or a lock object whose signal already aborted, was
   * lost: the others are still released, then the signal aborts and this
   * throws {@linkcode LockLostError}, so the script learns that its work was
   * not covered to the end. A lock simply gone (released by its own session
   * through another object) is `already-released`.
   *
   * @returns one result per lock
   * @throws {LockLostError} when a lock was lost before this release
   * @throws {StoreError} when the store cannot be reached (call again to retry)
   */
  async release(): Promise<ReleaseResult[]> {
    this.#releasing = true;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    if (this.#released) {
      return this.refs.map((ref) => ({ ref, status: "already-released" }));
    }
    // Every lock at once, within the engine's bound; order does not matter
    // for safety, and a failure leaves the others released.
    const pending = this.locks.filter((lock) => !this.#releasedRefs.has(lock.ref));
    const settled = await this.#locker.releaseAll(pending);
    let fault: unknown;
    // A retry after a fault must still report what an earlier attempt found lost.
    const lost = this.#lostAtRelease;
    settled.forEach((result, i) => {
      const ref = pending[i]!.ref;
      if (result.status === "rejected") {
        if (result.reason instanceof LockNotOwnedError) {
          lost.push(result.reason.message.replace(/^Cannot unlock /, "Lock "));
          this.#releasedRefs.add(ref);
        } else fault ??= result.reason;
        return;
      }
      this.#releasedRefs.add(ref);
      if (result.value.status === "lost") {
        const r = result.value;
        lost.push(
          `Lock "${ref}" was broken by ${r.brokenBy}${
            r.brokenAt ? ` at ${r.brokenAt.toISOString()}` : ""
          }${r.breakReason ? ` (${r.breakReason})` : ""}`,
        );
      }
    });
    if (fault !== undefined) throw fault;
    // The slots after the Host locks they go with (a slot never stands for a
    // member in maintenance without one); one gone already is nothing to free.
    const slots = this.slots.filter((slot) => !this.#releasedSlots.has(slot));
    const freed = await this.#locker.releaseSlots(slots);
    freed.forEach((result, i) => {
      if (result.status === "rejected") fault ??= result.reason;
      else this.#releasedSlots.add(slots[i]!);
    });
    if (fault !== undefined) throw fault;
    this.#released = true;
    if (lost.length === 0 && this.#lost.signal.aborted) throw this.#lost.signal.reason;
    if (lost.length > 0) {
      const error = new LockLostError(
        this.locks[this.locks.length - 1]!.ref,
        `Locks of session "${this.sessionId}" were lost before their release: ${lost.join("; ")}`,
      );
      this.#lose(error);
      throw error;
    }
    return this.refs.map((ref) => ({ ref, status: "released" }));
  }

  /** Releases the locks; what `await using` calls. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
