/**
 * The locking rules, written once above the {@linkcode LockStore} interface:
 * exclusion by type, exclusive create then check, retries with jitter,
 * all-or-nothing with rollback, drain for Host locks, leases, release with
 * the session check, breaking of stale locks.
 *
 * @module
 */

import type { Clock } from "./clock.ts";
import { seam } from "./_seam.ts";
import { describeHolders } from "./_text.ts";
import {
  DrainTimeoutError,
  type HolderInfo,
  InputError,
  LockBusyError,
  LockLostError,
  LockNotOwnedError,
  ResourceLockerError,
  StoreError,
} from "./errors.ts";
import {
  type ContentState,
  decodeLockContent,
  encodeLockContent,
  type LockContent,
  type LockType,
  toLocalTicks,
} from "./lock_file.ts";
import { type FileNames, formatLockRef, type LockRef, parseLockId } from "./lock_ref.ts";
import type { LockStore } from "./store.ts";

/** A lock as read from a store. */
export interface LockInfo {
  /** Host, lower-cased. */
  host: string;
  /** Lock id: `Host`, `Generic-<session>`, `File-<session>`. */
  lockId: string;
  /** Lock type. */
  type: LockType;
  /** Lock ref, with the session when known. */
  ref: string;
  /** Session that took it, when known. */
  sessionId?: string;
  /** Caller name, when known. */
  caller?: string;
  /** Description, when known. */
  description?: string;
  /** When it was taken, when known. */
  lockedAt?: Date;
  /** Lease expiry; absent for locks that never expire. */
  expiresAt?: Date;
  /** True when the lease ran out (clock skew allowed for): it blocks nobody. */
  expired: boolean;
  /** How much of the file could be read: `ok`, `empty`, `partial`, `unreadable`. */
  state: ContentState;
  /** Host and process that hold it, when written by us. */
  holder?: { host?: string; pid?: number };
}

/** A released lock from a host's history. */
export interface HistoryEntry extends LockInfo {
  /** Name of the entry in the history folder. */
  name: string;
  /** When it was released, when known. */
  unlockedAt?: Date;
  /** Who broke it, when it was broken rather than released. */
  brokenBy?: string;
  /** Why it was broken. */
  breakReason?: string;
}

/** A lock this process took. */
export interface HeldLock {
  /** Host, lower-cased. */
  host: string;
  /** Lock id. */
  lockId: string;
  /** Lock type. */
  type: LockType;
  /** Session. */
  sessionId: string;
  /** Full ref, with the session. */
  ref: string;
}

/**
 * Progress while waiting for a lock. It comes when the state changes (another
 * host or other locks in the way) and otherwise at most every 30 s, so a
 * long wait stays readable in a log.
 */
export interface LockProgress {
  /** `retry`: an attempt failed and another follows; `drain`: waiting for shared locks to go. */
  phase: "retry" | "drain";
  /** The host in the way. */
  host: string;
  /** Attempt just made (retry). */
  attempt?: number;
  /** Attempts in all; absent when waiting for a time (`wait`) instead. */
  attempts?: number;
  /**
   * Milliseconds until the next attempt at the latest (retry; it comes at
   * once when the way clears), or until the wait or the drain gives up.
   * `Infinity` when waiting for as long as it takes.
   */
  waitMs: number;
  /** When this was reported. */
  at: Date;
  /** The locks in the way. */
  holders: HolderInfo[];
}

/** What to acquire. */
export interface AcquireRequest {
  /** Hosts, lower-cased, each once: dependencies first, the main host last. */
  hosts: string[];
  /** Lock type for every host. */
  type: LockType;
  /** Session id for every lock. */
  sessionId: string;
  /** Caller name to write. */
  caller?: string;
  /** Description to write. */
  description?: string;
  /** Milliseconds between attempts at the latest: a change of the way in wakes a waiter at once. */
  retryDelayMs: number;
  /** Attempts in all (at least 1); ignored when `waitMs` is given. */
  attempts: number;
  /**
   * Waits up to this long in all (`Infinity`: as long as it takes) instead
   * of counting attempts; woken by changes, not by a timer.
   */
  waitMs?: number;
  /** Host locks wait for shared locks to drain. */
  drain: boolean;
  /** How long a Host lock waits for shared locks. */
  drainTimeoutMs: number;
  /** Lease; absent for locks that never expire. */
  ttlMs?: number;
  /** Aborts the wait. */
  signal?: AbortSignal;
  /** Called while waiting. */
  onProgress?: (progress: LockProgress) => void;
}

/** Result of releasing one lock. */
export interface ReleaseResult {
  /** The ref released. */
  ref: string;
  /**
   * `released`; `already-released` when nothing was there (safe in
   * `finally`); `lost` when the lock was broken by someone else before this
   * release (History says so): the session did not hold it to the end.
   */
  status: "released" | "already-released" | "lost";
  /** For `lost`: who broke it, when and why, as History records it. */
  brokenBy?: string;
  /** For `lost`: when it was broken. */
  brokenAt?: Date;
  /** For `lost`: why it was broken. */
  breakReason?: string;
}

/** How the engine reaches its store. */
export interface LockerOptions {
  /** The store. */
  store: LockStore;
  /** File names from the file-name template. */
  names: FileNames;
  /** Source of time. */
  clock: Clock;
  /** Clock skew allowed between machines when judging expiry, in milliseconds. */
  skewMs: number;
  /** Hosts handled in parallel at most. @default 64 */
  concurrency?: number;
  /** Who we are, written into locks (`Holder`) and breaks (`BrokenBy`). */
  holder: { host: string; pid: number; user?: string };
}

interface CurrentLock {
  info: LockInfo;
  content: LockContent;
  /** The store's version of what was read: every change names it. */
  version: string;
}

type TakeResult =
  | { ok: true; lock: HeldLock; owned: boolean }
  | { ok: false; host: string; holders: HolderInfo[] };

/** Without change notifications from the store, a waiter looks at the locks in its way this often. */
const POLL_MS = 500;
/** With them (a hint, never the truth), it still looks this often. */
const RECHECK_MS = 30_000;
/** Progress repeats an unchanged state at most this often. */
const PROGRESS_EVERY_MS = 30_000;

/** Passes progress on when the state changed or a while has passed. */
class ProgressGate {
  readonly #clock: Clock;
  readonly #onProgress: ((progress: LockProgress) => void) | undefined;
  #state = "";
  #at = -Infinity;
  constructor(clock: Clock, onProgress: ((progress: LockProgress) => void) | undefined) {
    this.#clock = clock;
    this.#onProgress = onProgress;
  }
  report(progress: Omit<LockProgress, "at">): void {
    if (!this.#onProgress) return;
    const now = this.#clock.now();
    const state = [progress.phase, progress.host, ...progress.holders.map(holderKey).sort()]
      .join("\n");
    if (state === this.#state && now - this.#at < PROGRESS_EVERY_MS) return;
    this.#state = state;
    this.#at = now;
    this.#onProgress({ ...progress, at: new Date(now) });
  }
}

function holderKey(holder: HolderInfo): string {
  return `${holder.lockId}@${holder.sessionId ?? ""}`;
}
/** History entries of one session's Host lock read, at most, to learn whether it was broken. */
const FATE_SCAN_LIMIT = 256;

/** Runs `fn` over `items` with at most `limit` at once; settles all before rejecting. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      try {
        results[index] = {
          status: "fulfilled",
          value: await fn(items[index]!),
        };
      } catch (reason) {
        results[index] = { status: "rejected", reason };
      }
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, worker),
  );
  return results;
}

/** The locking rules over one store. */
export class Locker {
  readonly #store: LockStore;
  readonly #names: FileNames;
  readonly #clock: Clock;
  readonly #skewMs: number;
  readonly #concurrency: number;
  readonly #holder: { host: string; pid: number; user?: string };

  /** @param options store, names, clock and skew */
  constructor(options: LockerOptions) {
    this.#store = options.store;
    this.#names = options.names;
    this.#clock = options.clock;
    this.#skewMs = options.skewMs;
    this.#concurrency = options.concurrency ?? 64;
    this.#holder = options.holder;
  }

  /** The store below. */
  get store(): LockStore {
    return this.#store;
  }

  /** .NET ticks of the local clock at `wall` (a reading of this machine's clock). */
  #ticks(wall: number): bigint {
    return toLocalTicks(wall, this.#clock.utcOffsetMinutes(wall));
  }

  /** Milliseconds to add to this machine's clock to get the store's. */
  async #offset(host: string): Promise<number> {
    return this.#store.clockOffsetMs ? await this.#store.clockOffsetMs(host).catch(() => 0) : 0;
  }

  /**
   * Now on the store's clock where it has one (an SMB server's), so that
   * leases written and judged there agree across machines whose clocks differ.
   */
  async #now(host: string): Promise<number> {
    return this.#clock.now() + await this.#offset(host);
  }

  /**
   * One reading of the clock for everything a change writes: local ticks
   * (`LockedAt`, `UnlockedAt`) and the store-clock time of the same instant.
   */
  async #instant(host: string): Promise<{ ticks: bigint; at: number }> {
    const offset = await this.#offset(host);
    const wall = this.#clock.now();
    return { ticks: this.#ticks(wall), at: wall + offset };
  }

  #info(host: string, lockId: string, content: LockContent, now: number): LockInfo {
    const parsed = parseLockId(lockId)!;
    const sessionId = content.sessionId ?? parsed.sessionId;
    const info: LockInfo = {
      host,
      lockId,
      type: parsed.type,
      ref: formatLockRef(host, lockId, sessionId),
      expired: content.expiresAt !== undefined &&
        content.expiresAt.getTime() + this.#skewMs < now,
      state: content.state,
    };
    if (sessionId !== undefined) info.sessionId = sessionId;
    if (content.caller !== undefined) info.caller = content.caller;
    if (content.description !== undefined) {
      info.description = content.description;
    }
    if (content.lockedAt) info.lockedAt = content.lockedAt;
    if (content.expiresAt) info.expiresAt = content.expiresAt;
    const holder = content.fields.Holder as
      | { Host?: unknown; Pid?: unknown }
      | undefined;
    if (holder && typeof holder === "object") {
      info.holder = {};
      if (typeof holder.Host === "string") info.holder.host = holder.Host;
      if (typeof holder.Pid === "number") info.holder.pid = holder.Pid;
    }
    return info;
  }

  async #read(host: string, lockId: string): Promise<CurrentLock | undefined> {
    const entry = await this.#store.read(host, this.#names.fileName(lockId));
    if (entry === undefined) return undefined;
    const content = decodeLockContent(entry.data, this.#clock.utcOffsetMinutes(this.#clock.now()));
    return {
      info: this.#info(host, lockId, content, await this.#now(host)),
      content,
      version: entry.version,
    };
  }

  /**
   * Current locks of a host, expired ones included (marked `expired`).
   *
   * @param host host, lower-cased
   * @returns its locks, Host lock first
   */
  async status(host: string): Promise<LockInfo[]> {
    const ids = (await this.#store.list(host))
      .map((name) => this.#names.lockId(name))
      .filter((id): id is string => id !== undefined)
      .sort((
        a,
        b,
      ) => (a === "Host" ? -1 : b === "Host" ? 1 : a.localeCompare(b)));
    // A read that fails (a folder where a lock file should be) fails status:
    // a fault is never "no lock".
    const read = await Promise.all(ids.map(async (id) => (await this.#read(host, id))?.info));
    return read.filter((info): info is LockInfo => info !== undefined);
  }

  /**
   * Tells whether a host has a live lock of one of `types`.
   *
   * @param host host, lower-cased
   * @param types lock types that count
   * @returns true when locked
   */
  async test(host: string, types: readonly LockType[]): Promise<boolean> {
    const ids = (await this.#store.list(host))
      .map((name) => this.#names.lockId(name))
      .filter((id): id is string => id !== undefined && types.includes(parseLockId(id)!.type));
    for (const id of ids) {
      const current = await this.#read(host, id);
      if (current && !current.info.expired) return true;
    }
    return false;
  }

  /**
   * Released and broken locks of a host, newest first.
   *
   * @param host host, lower-cased
   * @param limit at most this many
   * @returns history entries
   */
  async history(host: string, limit = Infinity): Promise<HistoryEntry[]> {
    const names = await this.#store.listHistory(host);
    const entries = await mapLimit(names, this.#concurrency, async (name) => {
      const lockId = this.#names.historyLockId(name);
      if (!lockId) return undefined;
      const bytes = await this.#store.readHistory(host, name);
      if (!bytes) return undefined;
      const offset = this.#clock.utcOffsetMinutes(this.#clock.now());
      const content = decodeLockContent(bytes, offset);
      const entry: HistoryEntry = {
        ...this.#info(host, lockId, content, 0),
        name,
        expired: false,
      };
      const f = content.fields;
      const unlockedUtc = typeof f.UnlockedAtUtc === "string"
        ? new Date(f.UnlockedAtUtc)
        : undefined;
      if (unlockedUtc && !Number.isNaN(unlockedUtc.getTime())) {
        entry.unlockedAt = unlockedUtc;
      } else if (
        typeof f.UnlockedAt === "bigint" || typeof f.UnlockedAt === "number"
      ) {
        const ticks = BigInt(f.UnlockedAt);
        entry.unlockedAt = new Date(
          Number((ticks - 621_355_968_000_000_000n) / 10_000n) -
            offset * 60_000,
        );
      }
      if (typeof f.BrokenBy === "string") entry.brokenBy = f.BrokenBy;
      if (typeof f.BreakReason === "string") entry.breakReason = f.BreakReason;
      return entry;
    });
    const list: HistoryEntry[] = [];
    for (const result of entries) {
      if (result.status === "rejected") throw result.reason;
      if (result.value) list.push(result.value);
    }
    const time = (e: HistoryEntry) => (e.unlockedAt ?? e.lockedAt)?.getTime() ?? 0;
    return list.sort((a, b) => time(b) - time(a)).slice(0, limit);
  }

  #newContent(request: AcquireRequest, instant: { ticks: bigint; at: number }): Uint8Array {
    const now = instant.at;
    const fields: Record<string, unknown> = {};
    if (request.caller) fields.Caller = request.caller;
    if (request.description) fields.Description = request.description;
    fields.LockedAt = instant.ticks;
    fields.LockedAtUtc = new Date(now).toISOString();
    fields.Type = request.type;
    fields.SessionId = request.sessionId;
    fields.Holder = { Host: this.#holder.host, Pid: this.#holder.pid };
    if (request.ttlMs !== undefined) {
      fields.ExpiresAtUtc = new Date(now + request.ttlMs).toISOString();
      fields.TtlSeconds = request.ttlMs / 1000;
    }
    return encodeLockContent(fields);
  }

  async #breakEntry(
    host: string,
    current: CurrentLock,
    reason: string,
  ): Promise<boolean> {
    const name = this.#names.fileName(current.info.lockId);
    const historyName = this.#historyName(name, current.info.lockId, current.info.sessionId);
    const instant = await this.#instant(host);
    const at = new Date(instant.at).toISOString();
    const fields = {
      ...current.content.fields,
      UnlockedAt: instant.ticks,
      UnlockedAtUtc: at,
      BrokenAtUtc: at,
      BrokenBy: `${
        this.#holder.user ? this.#holder.user + "@" : ""
      }${this.#holder.host}:${this.#holder.pid}`,
      BreakReason: reason,
    };
    // Only the very lock that was judged: if it changed meanwhile (another
    // caller broke it and took the host), this does nothing.
    const p = seam("locker.break.judged", host, name);
    if (p) await p;
    return await this.#store.archive(
      host,
      name,
      current.version,
      historyName,
      encodeLockContent(fields),
    );
  }

  async #take(
    host: string,
    request: AcquireRequest,
  ): Promise<TakeResult> {
    const data = this.#newContent(request, await this.#instant(host));
    const lockId = request.type === "Host" ? "Host" : `${request.type}-${request.sessionId}`;
    const name = this.#names.fileName(lockId);
    const lock: HeldLock = {
      host,
      lockId,
      type: request.type,
      sessionId: request.sessionId,
      ref: formatLockRef(host, lockId, request.sessionId),
    };
    const createOptions = request.ttlMs !== undefined ? { ttlMs: request.ttlMs } : {};
    for (let round = 0; round < 3; round++) {
      let version: string | undefined;
      try {
        version = await this.#store.create(host, name, data, createOptions);
      } catch (error) {
        // Sure that nothing was made (refused, or never sent): nothing to undo.
        if (error instanceof StoreError && error.unchanged) throw error;
        // The create may have made our entry before failing (a reply lost
        // on the way back): remove it when it is ours, else name it.
        const clean = await this.#removeIfOurs(host, lockId, request.sessionId);
        throw withLeftBehind(error, clean ? [] : [lock.ref]);
      }
      const created = version !== undefined;
      if (request.type === "Host") {
        if (created) return { ok: true, lock, owned: true };
        const current = await this.#read(host, "Host");
        if (!current) continue; // released meanwhile: create again
        if (current.info.sessionId === request.sessionId) {
          return { ok: true, lock, owned: false };
        }
        if (current.info.expired) {
          await this.#breakEntry(host, current, "lease expired");
          continue;
        }
        return { ok: false, host, holders: [current.info] };
      }
      // Shared lock: ours is in place, now look for a Host lock (create, then check).
      const taken: TakeResult = { ok: true, lock, owned: created };
      try {
        const current = await this.#inTheWay(host, "Host", request.sessionId);
        if (!current || current.info.sessionId === request.sessionId) return taken;
        if (created) await this.#store.remove(host, name, version!);
        return { ok: false, host, holders: [current.info] };
      } catch (error) {
        // The check failed after our file was made: take it back, or say it is left.
        if (!created) throw error;
        const removed = await this.#store.remove(host, name, version!).then(
          () => true,
          () => false,
        );
        throw withLeftBehind(error, removed ? [] : [lock.ref]);
      }
    }
    return { ok: false, host, holders: [] };
  }

  /**
   * The lock `lockId` on `host` as it stands in the way: breaks it when its
   * lease ran out (unless it is the session's own), and judges again when
   * the break finds it changed meanwhile (renewed, released or retaken by
   * then): a lost break never counts as a free host.
   * @returns the lock in the way, or undefined when there is none (any more)
   */
  async #inTheWay(
    host: string,
    lockId: string,
    sessionId: string,
  ): Promise<CurrentLock | undefined> {
    let current = await this.#read(host, lockId);
    for (let round = 0; round < 3; round++) {
      if (!current || !current.info.expired || current.info.sessionId === sessionId) {
        return current;
      }
      if (await this.#breakEntry(host, current, "lease expired")) return undefined;
      current = await this.#read(host, lockId);
    }
    return current; // kept changing while expired: still in the way
  }

  /** Removes a lock entry if it carries our session; true when none of ours is left. */
  async #removeIfOurs(host: string, lockId: string, sessionId: string): Promise<boolean> {
    try {
      const current = await this.#read(host, lockId);
      if (!current) return true;
      const owner = current.info.sessionId ?? parseLockId(lockId)?.sessionId;
      if (owner !== sessionId && current.content.state === "ok") return true;
      // Ours, or an empty/half-written file we may have made: a shared lock's
      // name is ours alone; a Host lock we only remove when it names us.
      if (owner !== sessionId && lockId === "Host") return false;
      await this.#store.remove(host, this.#names.fileName(lockId), current.version);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Takes back the locks this attempt created (never ones the session held
   * before it), each only while it is still the entry created or renewed.
   * @returns refs that could not be removed
   */
  async #rollback(owned: readonly HeldLock[]): Promise<string[]> {
    const results = await mapLimit(owned, this.#concurrency, async (lock) => {
      const current = await this.#read(lock.host, lock.lockId);
      if (!current || current.info.sessionId !== lock.sessionId) return;
      await this.#store.remove(lock.host, this.#names.fileName(lock.lockId), current.version);
    });
    return owned.filter((_, i) => results[i]!.status === "rejected").map((l) => l.ref);
  }

  async #attempt(
    request: AcquireRequest,
  ): Promise<
    { ok: true; taken: HeldLock[]; owned: HeldLock[] } | {
      ok: false;
      host: string;
      holders: HolderInfo[];
    }
  > {
    const results = await mapLimit(
      request.hosts,
      this.#concurrency,
      (host) => this.#take(host, request),
    );
    const taken: HeldLock[] = [];
    const owned: HeldLock[] = [];
    let failure: { host: string; holders: HolderInfo[] } | undefined;
    let fault: unknown;
    results.forEach((result) => {
      if (result.status === "rejected") fault ??= result.reason;
      else if (result.value.ok) {
        taken.push(result.value.lock);
        if (result.value.owned) owned.push(result.value.lock);
      } else {failure ??= {
          host: result.value.host,
          holders: result.value.holders,
        };}
    });
    if (fault === undefined && failure === undefined) {
      return { ok: true, taken, owned };
    }
    const left = await this.#rollback(owned);
    if (fault !== undefined) throw withLeftBehind(fault, left);
    return { ok: false, ...failure! };
  }

  async #drain(
    request: AcquireRequest,
    taken: HeldLock[],
    renew: () => Promise<void>,
  ): Promise<void> {
    // Called with the locks taken; whoever calls it rolls back on any throw.
    const start = this.#clock.now();
    const deadline = start + request.drainTimeoutMs;
    const progress = new ProgressGate(this.#clock, request.onProgress);
    let renewedAt = start;
    while (true) {
      const pending: LockInfo[] = [];
      let pendingHost = "";
      const checks = await mapLimit(taken, this.#concurrency, async (lock) => {
        const shared = (await this.#store.list(lock.host))
          .map((name) => this.#names.lockId(name))
          .filter((id): id is string => {
            if (id === undefined || id === "Host") return false;
            return parseLockId(id)!.sessionId !== request.sessionId;
          });
        const found: LockInfo[] = [];
        for (const id of shared) {
          const current = await this.#inTheWay(lock.host, id, request.sessionId);
          if (current) found.push(current.info);
        }
        return found;
      });
      for (const check of checks) {
        if (check.status === "rejected") throw check.reason;
        pending.push(...check.value);
      }
      pendingHost = pending[0]?.host ?? "";
      if (pending.length === 0) return;
      const now = this.#clock.now();
      if (now >= deadline) {
        throw new DrainTimeoutError(
          pendingHost,
          `Cannot lock "${pendingHost}": shared locks did not drain in ${
            Math.round(request.drainTimeoutMs / 100) / 10
          }s: ${describeHolders(pending)}`,
          pending,
        );
      }
      progress.report({
        phase: "drain",
        host: pendingHost,
        waitMs: deadline - now,
        holders: pending,
      });
      const renewEvery = request.ttlMs !== undefined ? request.ttlMs / 3 : Infinity;
      if (now - renewedAt >= renewEvery) {
        await renew();
        renewedAt = now;
      }
      await this.#waitWhileBlocked(
        pendingHost,
        pending.filter((lock) => lock.host === pendingHost),
        Math.min(deadline, renewedAt + renewEvery),
        request.signal,
      );
    }
  }

  /**
   * Waits while the locks in the way stay as they are: until one of them is
   * gone, changed hands or ran out, until `untilMs` (on this clock), or until
   * aborted. The store's change notifications wake it early; they are a
   * hint, so it looks again and waits on when nothing that matters changed.
   * Without them it looks every {@linkcode POLL_MS}. Each look comes after
   * the wait is armed, so a change between the caller's look and the wait
   * is never missed.
   */
  async #waitWhileBlocked(
    host: string,
    blockers: readonly HolderInfo[],
    untilMs: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const notified = this.#store.waitForChange !== undefined;
    while (true) {
      signal?.throwIfAborted();
      const now = this.#clock.now();
      if (now >= untilMs) return;
      const stop = new AbortController();
      const abort = () => stop.abort();
      signal?.addEventListener("abort", abort, { once: true });
      const change = notified
        ? this.#store.waitForChange!(host, Math.min(untilMs - now, RECHECK_MS), stop.signal)
          .catch(() => {})
        : undefined;
      try {
        const blockedMs = await this.#blockedFor(host, blockers);
        if (blockedMs === 0) return;
        const ms = Math.min(untilMs - now, blockedMs, notified ? RECHECK_MS : POLL_MS);
        const timer = this.#clock.sleep(ms, stop.signal).catch(() => {});
        await (change ? Promise.race([change, timer]) : timer);
      } finally {
        // Stopped, not awaited: taking down a watch (a connection closing)
        // must not delay the attempt the wake-up was for.
        stop.abort();
        signal?.removeEventListener("abort", abort);
      }
    }
  }

  /**
   * How long the locks in the way keep blocking as they stand now: 0 when
   * one of them is gone, belongs to another session now or ran out (worth
   * another attempt), else the milliseconds until the first lease runs out.
   */
  async #blockedFor(host: string, blockers: readonly HolderInfo[]): Promise<number> {
    if (blockers.length === 0) return POLL_MS; // nobody named: look again soon
    let ms = Infinity;
    for (const blocker of blockers) {
      const current = await this.#read(host, blocker.lockId);
      if (!current || current.info.expired || current.info.sessionId !== blocker.sessionId) {
        return 0;
      }
      const expiresAt = current.info.expiresAt?.getTime();
      if (expiresAt !== undefined) {
        ms = Math.min(ms, expiresAt + this.#skewMs + 1 - (await this.#now(host)));
      }
    }
    return Math.max(1, ms);
  }

  /**
   * Takes every lock of a request or none. Retries with jitter; Host locks
   * drain shared locks when asked to.
   *
   * @param request what to lock
   * @returns the locks taken, in the order of `request.hosts`
   * @throws {LockBusyError} after the last attempt, naming the host and its holder
   * @throws {DrainTimeoutError} when shared locks did not drain in time
   * @throws {StoreError} when the store fails; locks taken so far are released
   */
  async acquire(request: AcquireRequest): Promise<HeldLock[]> {
    const waitUntil = request.waitMs !== undefined ? this.#clock.now() + request.waitMs : undefined;
    const attempts = waitUntil !== undefined ? Infinity : Math.max(1, request.attempts);
    const progress = new ProgressGate(this.#clock, request.onProgress);
    for (let attempt = 1;; attempt++) {
      request.signal?.throwIfAborted();
      const attemptStart = this.#clock.now();
      const result = await this.#attempt(request);
      if (result.ok) {
        try {
          request.signal?.throwIfAborted();
          if (request.type === "Host" && request.drain) {
            await this.#drain(
              request,
              result.taken,
              () => this.renewAll(result.taken, request.ttlMs!),
            );
          }
          // The holder renews a third of the lease after this returns: when
          // taking the locks took that long already (a slow store, many
          // hosts), renew now, so no lock is handed over near its end.
          const ttlMs = request.ttlMs;
          if (ttlMs !== undefined && this.#clock.now() - attemptStart >= ttlMs / 3) {
            await this.renewAll(result.taken, ttlMs);
          }
        } catch (error) {
          // Interrupted (signal, a throwing onProgress) or failed while
          // draining: nothing this attempt took stays behind.
          const left = await this.#rollback(result.owned);
          throw withLeftBehind(error, left);
        }
        return result.taken;
      }
      const now = this.#clock.now();
      if (attempt >= attempts || (waitUntil !== undefined && now >= waitUntil)) {
        throw new LockBusyError(
          result.host,
          `Cannot lock "${result.host}": ${describeHolders(result.holders)} (${attempt} attempt${
            attempt === 1 ? "" : "s"
          })`,
          result.holders,
        );
      }
      const waitMs = waitUntil !== undefined ? waitUntil - now : Math.round(
        request.retryDelayMs * (0.75 + Math.random() / 2) + Math.random() * 20,
      );
      progress.report({
        phase: "retry",
        host: result.host,
        attempt,
        ...waitUntil === undefined ? { attempts } : {},
        waitMs,
        holders: result.holders,
      });
      // The next attempt comes when the way may be clear, at the latest after waitMs.
      await this.#waitWhileBlocked(result.host, result.holders, now + waitMs, request.signal);
    }
  }

  /**
   * Renews the leases of held locks.
   *
   * @param locks locks of one session
   * @param ttlMs new time to live from now
   * @throws {LockLostError} when a lock is gone or belongs to someone else now
   */
  async renewAll(locks: readonly HeldLock[], ttlMs: number): Promise<void> {
    const results = await mapLimit(locks, this.#concurrency, async (lock) => {
      const current = await this.#read(lock.host, lock.lockId);
      // Ours only when the file itself names our session: a file that
      // names none (PowerShell's, or an empty one) replaced ours.
      if (!current || current.content.sessionId !== lock.sessionId) {
        throw new LockLostError(
          lock.ref,
          `Lock "${lock.ref}" was lost: ${
            current ? describeHolders([current.info]) : "it was broken or released by someone else"
          }`,
        );
      }
      const now = await this.#now(lock.host);
      const fields = {
        ...current.content.fields,
        ExpiresAtUtc: new Date(now + ttlMs).toISOString(),
        RenewedAtUtc: new Date(now).toISOString(),
      };
      // Only the lock just checked: broken and retaken meanwhile, it is lost.
      const p = seam("locker.renew.checked", lock.host, lock.lockId);
      if (p) await p;
      const renewed = await this.#store.replace(
        lock.host,
        this.#names.fileName(lock.lockId),
        current.version,
        encodeLockContent(fields),
      );
      if (renewed === undefined) {
        throw new LockLostError(
          lock.ref,
          `Lock "${lock.ref}" was lost: it was broken or released`,
        );
      }
    });
    for (const result of results) {
      if (result.status === "rejected") throw result.reason;
    }
  }

  /**
   * Releases one lock into history, only if it still belongs to the session
   * the ref names.
   *
   * @param ref the lock
   * @param force release whatever is there, whoever holds it
   * @returns released, or already-released when nothing was there
   * @throws {LockNotOwnedError} when another session's lock is in its place
   * @throws {InputError} when the owner cannot be verified and `force` is not set
   */
  async release(ref: LockRef, force = false): Promise<ReleaseResult> {
    const refText = formatLockRef(ref.host, ref.lockId, ref.sessionId);
    // A lock renewed by its own session between our read and our move has a
    // new version: read again. Anything else that changed it ends the loop.
    for (let round = 0;; round++) {
      const current = await this.#read(ref.host, ref.lockId);
      if (!current) return await this.#fate(ref, refText);
      if (!force) {
        if (ref.sessionId === undefined) {
          throw new InputError(
            `Cannot unlock "${refText}": the ref does not name its session; the force option releases it anyway`,
            { remedies: ["force"] },
          );
        }
        const owner = current.info.sessionId;
        if (owner === undefined) {
          throw new InputError(
            `Cannot unlock "${refText}": the lock file names no session (written by PowerShell?); the force option releases it`,
            { remedies: ["force"] },
          );
        }
        if (owner !== ref.sessionId) {
          throw new LockNotOwnedError(
            refText,
            `Cannot unlock "${refText}": it now belongs to another session: ${
              describeHolders([current.info])
            }`,
            current.info,
          );
        }
      }
      const name = this.#names.fileName(ref.lockId);
      const historyName = this.#historyName(name, ref.lockId, current.info.sessionId);
      const fields: Record<string, unknown> = { ...current.content.fields };
      if (
        current.content.state === "partial" &&
        current.content.caller !== undefined
      ) {
        fields.Caller = current.content.caller;
      }
      const instant = await this.#instant(ref.host);
      fields.UnlockedAt = instant.ticks;
      fields.UnlockedAtUtc = new Date(instant.at).toISOString();
      // Moves only the lock just checked, never one that replaced it.
      const p = seam("locker.release.checked", ref.host, name);
      if (p) await p;
      const archived = await this.#store.archive(
        ref.host,
        name,
        current.version,
        historyName,
        encodeLockContent(fields),
      );
      if (archived) return { ref: refText, status: "released" };
      if (round >= 5) {
        throw new StoreError(
          this.#store.describe(ref.host),
          `Cannot unlock "${refText}": it kept changing while being released`,
        );
      }
    }
  }

  /**
   * The History name of a lock: shared locks keep theirs; Host locks get the
   * session that held them (when known) and a unique suffix,
   * `Host.lock-<session>.<uuid>`, so the fate of a session's Host lock is
   * found by name, however long History grows.
   */
  #historyName(name: string, lockId: string, sessionId: string | undefined): string {
    if (lockId !== "Host") return name;
    return `${name}-${sessionId !== undefined ? `${sessionId}.` : ""}${crypto.randomUUID()}`;
  }

  /**
   * What became of a lock that is gone: broken by someone (History holds it
   * with `BrokenBy` and our session) or released.
   */
  async #fate(ref: LockRef, refText: string): Promise<ReleaseResult> {
    const released: ReleaseResult = { ref: refText, status: "already-released" };
    if (ref.sessionId === undefined) return released;
    const name = this.#names.fileName(ref.lockId);
    // Shared locks keep their name in History; a Host lock's name starts
    // with its session (a prefix only: the content says whose it is).
    const names = ref.lockId === "Host"
      ? (await this.#store.listHistory(ref.host))
        .filter((n) => n.startsWith(`${name}-${ref.sessionId}.`))
        .slice(-FATE_SCAN_LIMIT)
      : [name];
    const found = await mapLimit(names, this.#concurrency, async (historyName) => {
      const bytes = await this.#store.readHistory(ref.host, historyName);
      if (!bytes) return undefined;
      const content = decodeLockContent(bytes, 0);
      const f = content.fields;
      if (content.sessionId !== ref.sessionId || typeof f.BrokenBy !== "string") return undefined;
      const broken: ReleaseResult = { ref: refText, status: "lost", brokenBy: f.BrokenBy };
      if (typeof f.BrokenAtUtc === "string") broken.brokenAt = new Date(f.BrokenAtUtc);
      if (typeof f.BreakReason === "string") broken.breakReason = f.BreakReason;
      return broken;
    });
    let newest: ReleaseResult | undefined;
    for (const result of found) {
      if (result.status !== "fulfilled" || !result.value) continue;
      const at = result.value.brokenAt?.getTime() ?? 0;
      if (!newest || at > (newest.brokenAt?.getTime() ?? 0)) newest = result.value;
    }
    return newest ?? released;
  }

  /**
   * Releases a session's locks in parallel (bounded), each with the session check.
   *
   * @param locks locks this process took
   * @returns one settled result per lock, in order
   */
  releaseAll(locks: readonly HeldLock[]): Promise<PromiseSettledResult<ReleaseResult>[]> {
    return mapLimit(locks, this.#concurrency, (lock) => this.release(lock));
  }

  /**
   * Breaks a lock: moves it into history with who broke it and why.
   *
   * @param ref the lock
   * @param reason why, recorded in history
   * @param force break a lock that has not expired
   * @returns the lock that was broken
   * @throws {LockBusyError} when the lock has not expired and `force` is not set
   * @throws {InputError} when there is no such lock
   */
  async breakLock(
    ref: LockRef,
    reason: string,
    force = false,
  ): Promise<LockInfo> {
    const refText = formatLockRef(ref.host, ref.lockId, ref.sessionId);
    // A lock renewed between our judgement and our break is judged again.
    for (let round = 0;; round++) {
      const current = await this.#read(ref.host, ref.lockId);
      if (!current) {
        throw new InputError(
          `Cannot break "${refText}": ${
            round === 0 ? "there is no such lock" : "it was released meanwhile"
          }`,
        );
      }
      // A ref that names a session breaks only that session's lock.
      if (ref.sessionId !== undefined && ref.sessionId !== current.info.sessionId) {
        throw new LockNotOwnedError(
          refText,
          `Cannot break "${refText}": the lock there now belongs to another session: ${
            describeHolders([current.info])
          }`,
          current.info,
        );
      }
      if (!current.info.expired && !force) {
        throw new LockBusyError(
          ref.host,
          `Cannot break "${refText}": it has not expired (${
            describeHolders([current.info])
          }); the force option breaks it anyway`,
          [current.info],
          { remedies: ["force"] },
        );
      }
      if (await this.#breakEntry(ref.host, current, reason)) return current.info;
      if (round >= 5) {
        throw new StoreError(
          this.#store.describe(ref.host),
          `Cannot break "${refText}": it kept changing while being broken`,
        );
      }
    }
  }
}

function withLeftBehind(error: unknown, left: readonly string[]): unknown {
  if (left.length === 0) return error;
  const suffix = `; could not release ${left.join(", ")}: unlock them with the force option`;
  if (error instanceof StoreError) {
    return new StoreError(error.location, error.message + suffix, {
      cause: error.cause,
      remedies: [...error.remedies, "force"],
    });
  }
  if (error instanceof ResourceLockerError) {
    error.message += suffix;
    error.remedies = [...error.remedies, "force"];
    return error;
  }
  return error;
}
