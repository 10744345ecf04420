/**
 * Waiting for a change under a key prefix with an etcd watch: one watch
 * stream per prefix (host) for the whole store object, however many
 * waiters it has, kept while anyone waits and {@linkcode LINGER_MS} after
 * the last one left (a waiter that wakes, looks and waits again finds it
 * still open: no watch is set up between a release and the waiter's look).
 * While nobody waits the stream is not read: its events wait in the
 * connection for the next waiter, and a woken caller's own change does not
 * come between its request and the answer.
 *
 * A waiter names the first revision that counts (the one after its last
 * look): an event from that revision on wakes it, also one the stream saw
 * before the waiter came (a short log of recent events is kept). A stream
 * that starts later than a new waiter's revision is started again from that
 * revision, so a change between a look and the wait is never missed.
 *
 * A member that fails before it accepts the watch (its connection breaks,
 * or it stays silent past the request timeout) passes the stream on to the
 * next member, from the same revision: nothing is missed. A stream that
 * breaks or is ended once set up wakes its waiters, who look again (and
 * wait on a new stream from that look); so does one whose member stops
 * answering the read it is asked every {@linkcode PROBE_MS} (a member that
 * hangs keeps the stream open and silent). A wait that no event ended
 * resolves with undefined, so the store can tell it from a change.
 *
 * @module
 */

import { StoreError } from "../../errors.ts";
import { seam } from "../../_seam.ts";
import type { HttpStream } from "../_http_client.ts";
import { EtcdGateway, oneLine, reasonOf } from "./gateway.ts";
import { keyText, probeBody, watchBody } from "./requests.ts";

type Outcome =
  /** The server ended the stream, cancelled or compacted it, or it broke once set up: wake. */
  | { kind: "done"; reason?: undefined }
  /** Every waiter left and the linger ran out, or the store closed. */
  | { kind: "ended"; reason?: undefined }
  /** A waiter needs events from before the stream's start: set it up again from there. */
  | { kind: "restart"; reason?: undefined }
  /** etcd refused the token: log in again and watch again. */
  | { kind: "refused"; reason: string }
  /** The member stopped answering once the stream was set up: wake, and prefer the next. */
  | { kind: "hung"; reason?: undefined }
  /** The member could not be reached or stayed silent before accepting: try the next. */
  | { kind: "unreachable"; reason: string }
  | { kind: "failed"; reason: string };

/** How long a watch stream stays open after its last waiter left. */
export const LINGER_MS = 1000;
/**
 * How often the member carrying a stream is asked whether it still
 * answers: a member that hangs (or loses the cluster) keeps the stream open
 * and silent, and its waiters would sleep through every change until their
 * time ran out. A wake-up comes at most this plus the request timeout late.
 */
export const PROBE_MS = 3000;
/** Events kept for waiters that come after them. */
const LOG_SIZE = 64;

const decoder = new TextDecoder();

/** A waiter on one stream. */
interface Waiter {
  /** First revision whose event wakes it. */
  readonly from: bigint;
  /**
   * Wakes it with the names removed from `from` on, as far as the log
   * tells; undefined when no event woke it (time-out, stream ended, close).
   */
  wake(removed: string[] | undefined): void;
  /** Ends its wait with an error. */
  fail(error: unknown): void;
}

/** One watch stream on a prefix and its waiters. */
class PrefixWatch {
  readonly prefix: string;
  /** First revision the stream covers; undefined: from when it was set up. */
  from: bigint | undefined;
  /** Highest revision of an event seen; -1 before the first. */
  seen = -1n;
  /** Recent events, oldest first. */
  readonly log: { revision: bigint; name: string; removed: boolean }[] = [];
  readonly waiters = new Set<Waiter>();
  /** Aborts the stream under way; `why` says what the runner does next. */
  stream = new AbortController();
  why: "ended" | "restart" | undefined;
  linger: ReturnType<typeof setTimeout> | undefined;
  ended = false;
  /** Event lines that came while nobody waited, read on the next turn or by the next waiter. */
  readonly #deferred: string[] = [];
  #deferredTimer: ReturnType<typeof setTimeout> | undefined;
  /** Ends the pause of a stream nobody waits on (see {@linkcode wanted}). */
  #resume: (() => void) | undefined;
  readonly #read: (watch: PrefixWatch, line: string) => unknown;

  /**
   * @param prefix the keys watched
   * @param from first revision the stream covers
   * @param read reads one event line into the log (and wakes whom it concerns)
   */
  constructor(
    prefix: string,
    from: bigint | undefined,
    read: (watch: PrefixWatch, line: string) => unknown,
  ) {
    this.prefix = prefix;
    this.from = from;
    this.#read = read;
  }

  /**
   * Keeps an event line for later: a stream kept after its last waiter left
   * (a woken caller's attempt under way) gets the events of that very
   * attempt, whose reading would come between the attempt's answer and the
   * caller.
   */
  defer(line: string): void {
    this.#deferred.push(line);
    this.#deferredTimer ??= setTimeout(() => this.flush(), 0);
  }

  /** Reads the deferred event lines, oldest first: before anything newer or any look at the log. */
  flush(): void {
    clearTimeout(this.#deferredTimer);
    this.#deferredTimer = undefined;
    for (const line of this.#deferred.splice(0)) {
      try {
        this.#read(this, line);
      } catch {
        // A line that does not read ends the stream, as it does when read
        // at once (its waiters look again); thrown from here it would reach
        // a timer (an uncaught error) or the next waiter, and the lines
        // after it would be lost.
        this.stream.abort();
      }
    }
  }

  /** The revision the next stream starts from. */
  get next(): bigint | undefined {
    if (this.from === undefined) return this.seen >= 0n ? this.seen + 1n : undefined;
    return this.seen >= this.from ? this.seen + 1n : this.from;
  }

  /** Names removed from revision `from` on, as the log tells. */
  removedSince(from: bigint): string[] {
    return this.log.filter((e) => e.removed && e.revision >= from).map((e) => e.name);
  }

  /** Wakes every waiter an event from its revision on concerns. */
  dispatch(): void {
    for (const waiter of [...this.waiters]) {
      if (this.seen >= waiter.from) waiter.wake(this.removedSince(waiter.from));
    }
  }

  /** Stops the stream under way, for `why`. */
  interrupt(why: "ended" | "restart"): void {
    this.why = why;
    this.stream.abort();
  }

  /**
   * Resolves once someone waits again or the stream is stopped. While
   * nobody waits (the linger after a wake-up) the stream is not read: the
   * woken caller's own change comes back on it, and reading that would come
   * before the caller's answer. The events wait in the connection, and the
   * next waiter reads them first, in order.
   */
  wanted(): Promise<void> {
    const signal = this.stream.signal;
    if (this.waiters.size > 0 || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        this.#resume = undefined;
        resolve();
      };
      this.#resume = done;
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Someone waits again, or the stream stops: reading goes on. */
  resume(): void {
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.();
  }
}

/**
 * Whether a watch answer only carries events (no set-up, cancel, compaction
 * or error, whose reading ends or changes the stream): such a line can wait.
 */
function isEventsOnly(line: string): boolean {
  return line.startsWith('{"result":') && line.includes('"events":') &&
    !/"(created|canceled|cancel_reason|compact_revision|error)"/.test(line);
}

/** Watches of one store: a stream per prefix, each wait ends at a change, its time, its signal or {@linkcode close}. */
export class EtcdWatcher {
  readonly #gateway: EtcdGateway;
  readonly #watches = new Map<string, PrefixWatch>();

  /** @param gateway the store's way to etcd */
  constructor(gateway: EtcdGateway) {
    this.#gateway = gateway;
  }

  /** Watch streams open now (their prefixes): for tests. */
  get open(): string[] {
    return [...this.#watches.keys()];
  }

  /**
   * Resolves at the first change under `prefix` from revision `start` on
   * (at once when there was one), or after `ms`, or when closed.
   * @param prefix the keys watched, `/resource-locks/dc01/`
   * @param start the first revision that counts; undefined: from now
   * @param ms how long to wait at most
   * @param signal aborts the wait
   * @param onEvent given the names an event ended the wait with, in the
   *   turn the event is read, before the wait resolves (not when it
   *   resolves at once)
   * @returns the names (under `prefix`) of the entries deleted, as far as
   *   the events seen tell: a hint, empty when unknown; undefined when no
   *   event ended the wait (its time ran out, the stream ended, was
   *   cancelled or compacted, or the store closed)
   * @throws the signal's reason when `signal` aborts
   * @throws {StoreError} when no endpoint accepts the watch
   */
  wait(
    prefix: string,
    start: bigint | undefined,
    ms: number,
    signal?: AbortSignal,
    onEvent?: (removed: string[]) => void,
  ): Promise<string[] | undefined> {
    const what = `watch "${prefix}"`;
    if (this.#gateway.closed) return Promise.reject(this.#gateway.closedError(what));
    if (signal?.aborted) return Promise.reject(signal.reason);
    let watch = this.#watches.get(prefix);
    if (watch === undefined) {
      watch = new PrefixWatch(prefix, start, (w, line) => this.#message(w, line));
      this.#watches.set(prefix, watch);
      void this.#run(watch, what);
    }
    watch.flush();
    const from = start ?? watch.seen + 1n;
    if (watch.seen >= from) return Promise.resolve(watch.removedSince(from));
    if (start !== undefined && (watch.from === undefined || start < watch.from)) {
      // the stream covers less than this waiter needs: again from its revision
      watch.from = start;
      watch.interrupt("restart");
    }
    if (watch.linger !== undefined) {
      clearTimeout(watch.linger);
      watch.linger = undefined;
    }
    const shared = watch;
    return new Promise<string[] | undefined>((resolve, reject) => {
      let over = false;
      const leave = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (shared.waiters.size === 0 && !shared.ended) {
          // Waits woken together clean up one after another, each seeing
          // nobody waiting: one linger, from the last of them.
          clearTimeout(shared.linger);
          shared.linger = setTimeout(() => this.#end(shared), LINGER_MS);
        }
      };
      const waiter: Waiter = {
        from,
        wake(removed) {
          if (over) return;
          over = true;
          shared.waiters.delete(waiter);
          if (removed !== undefined) onEvent?.(removed);
          resolve(removed);
          // The clean-up after the woken caller's next request went out: its
          // steps (timers, listeners) are slow in a process just woken from
          // idle, and the request is what the wake-up is for.
          setTimeout(leave, 0);
        },
        fail(error) {
          if (over) return;
          over = true;
          shared.waiters.delete(waiter);
          leave();
          reject(error);
        },
      };
      const onAbort = () => waiter.fail(signal!.reason);
      const timer = setTimeout(
        () => waiter.wake(undefined),
        Math.min(Math.max(0, ms), 2_147_483_647),
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      shared.waiters.add(waiter);
      shared.resume();
    });
  }

  /** Ends a stream: its waiters (if any) wake. */
  #end(watch: PrefixWatch): void {
    if (watch.ended) return;
    watch.flush();
    watch.ended = true;
    clearTimeout(watch.linger);
    if (this.#watches.get(watch.prefix) === watch) this.#watches.delete(watch.prefix);
    watch.interrupt("ended");
    for (const waiter of [...watch.waiters]) waiter.wake(undefined);
  }

  /** Keeps the stream of `watch` going on the members until it ends. */
  async #run(watch: PrefixWatch, what: string): Promise<void> {
    const failures: string[] = [];
    const rotation = this.#gateway.rotation();
    let loggedIn = false;
    try {
      for (let i = 0; i < rotation.length; i++) {
        const index = rotation[i]!;
        const endpoint = this.#gateway.endpoint(index);
        const token = await this.#gateway.token();
        if (watch.ended) return;
        const outcome = await this.#streamOnce(watch, endpoint, token);
        if (watch.ended || outcome.kind === "ended") return;
        if (outcome.kind === "restart") {
          i--;
          continue;
        }
        if (outcome.kind === "refused" && !loggedIn) {
          // the token expired or was revoked: log in again, watch again here
          loggedIn = true;
          await this.#gateway.tokenRefused(token);
          i--;
          continue;
        }
        if (outcome.kind === "done") {
          this.#gateway.prefer(index);
          return; // finally: the waiters wake and look again
        }
        if (outcome.kind === "hung") {
          // what it missed is not known: the waiters look again (elsewhere)
          this.#gateway.passOver(index);
          return;
        }
        if (outcome.kind === "unreachable") {
          failures.push(`"${endpoint}": ${outcome.reason}`);
          this.#gateway.passOver(index);
          continue;
        }
        throw new StoreError(
          endpoint,
          `Cannot ${what} in etcd at "${endpoint}": ${outcome.reason ?? "failed"}`,
        );
      }
      throw new StoreError(
        this.#gateway.location,
        rotation.length === 1
          ? `Cannot ${what} in etcd at ${failures[0]}`
          : `Cannot ${what} in etcd: no endpoint answered: ${failures.join("; ")}`,
      );
    } catch (error) {
      // the waiters there now learn why; later ones start a new stream
      if (!watch.ended) { for (const waiter of [...watch.waiters]) waiter.fail(error); }
    } finally {
      this.#end(watch);
    }
  }

  /** One stream on one member, from the revision the watch needs next. */
  async #streamOnce(watch: PrefixWatch, endpoint: string, token: string): Promise<Outcome> {
    const timeoutMs = this.#gateway.timeoutMs;
    const controller = new AbortController();
    watch.stream = controller;
    watch.why = undefined;
    // the watch must be accepted within the request timeout
    let created = false;
    let stalled = false;
    let hung = false;
    let probe: ReturnType<typeof setInterval> | undefined;
    const probing = () => {
      let asking = false;
      probe = setInterval(async () => {
        if (asking) return;
        asking = true;
        const alive = await this.#gateway.answers(endpoint, probeBody(watch.prefix), token);
        asking = false;
        if (!alive && !controller.signal.aborted) {
          hung = true;
          controller.abort();
        }
      }, PROBE_MS);
    };
    const stallTimer = setTimeout(() => {
      if (!created) {
        stalled = true;
        controller.abort();
      }
    }, timeoutMs);
    let response: HttpStream | undefined;
    try {
      const p = seam("etcd.watch.stream", watch.prefix, "");
      if (p) await p;
      if (controller.signal.aborted) throw new Error("interrupted");
      response = await this.#gateway.stream(
        endpoint,
        "/v3/watch",
        watchBody(watch.prefix, watch.next),
        controller.signal,
        token,
      );
      if (response.status < 200 || response.status >= 300) {
        const text = await response.text();
        const reason = `HTTP ${response.status}: ${oneLine(text.slice(0, 200))}`;
        // 408 and 5xx: the member is shutting down or cannot serve: the next one
        const refused = response.status !== 408 && response.status < 500;
        return refused ? { kind: "failed", reason } : { kind: "unreachable", reason };
      }
      let buffer = "";
      while (true) {
        if (created && watch.waiters.size === 0) await watch.wanted();
        const value = await response.read();
        if (value === undefined) return { kind: "done" }; // the server ended it: look again
        buffer += decoder.decode(value, { stream: true });
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (!line) continue;
          if (watch.waiters.size === 0 && isEventsOnly(line)) {
            watch.defer(line);
            continue;
          }
          watch.flush();
          const outcome = this.#message(watch, line);
          if (outcome === "created") {
            if (!created) probing();
            created = true;
          } else if (outcome !== undefined) return outcome;
        }
      }
    } catch (error) {
      if (this.#gateway.closed || watch.why === "ended") return { kind: "ended" };
      if (watch.why === "restart") return { kind: "restart" };
      if (stalled) return { kind: "unreachable", reason: `no answer within ${timeoutMs} ms` };
      if (hung) return { kind: "hung" };
      // broken after the watch was set up: the waiters look again
      if (created) return { kind: "done" };
      // broken before: on to the next member, from the same revision
      return { kind: "unreachable", reason: reasonOf(error) };
    } finally {
      clearTimeout(stallTimer);
      clearInterval(probe);
      response?.close();
      controller.abort();
    }
  }

  /** Handles one message of a stream: its events wake waiters. */
  #message(watch: PrefixWatch, line: string): Outcome | "created" | undefined {
    const message = JSON.parse(line) as {
      result?: {
        header?: { revision?: string };
        created?: boolean;
        canceled?: boolean;
        cancel_reason?: string;
        compact_revision?: string;
        events?: { type?: string; kv?: { key?: string; mod_revision?: string } }[];
      };
      error?: { message?: string };
    };
    const refusal = message.error?.message ?? message.result?.cancel_reason;
    if (refusal && EtcdGateway.refusesToken(refusal)) {
      return { kind: "refused", reason: oneLine(refusal) };
    }
    if (message.error) {
      return { kind: "failed", reason: oneLine(message.error.message ?? "watch failed") };
    }
    const result = message.result ?? {};
    const compacted = result.compact_revision && result.compact_revision !== "0";
    if (result.canceled && result.cancel_reason && !compacted) {
      // refused (permission denied): waking would only look and watch again
      return {
        kind: "failed",
        reason: oneLine(result.cancel_reason.replace(/^rpc error: code = \w+ desc = /, "")),
      };
    }
    if (result.canceled || compacted) return { kind: "done" };
    if (result.created) {
      // a stream "from now" covers from the revision after the one it was set up at
      if (watch.from === undefined && result.header?.revision) {
        watch.from = BigInt(result.header.revision) + 1n;
      }
      return "created";
    }
    for (const event of result.events ?? []) {
      const revision = BigInt(event.kv?.mod_revision ?? result.header?.revision ?? "0");
      let key = "";
      try {
        key = keyText(event.kv?.key);
      } catch {
        // a key that does not decode: still a change
      }
      const name = key.startsWith(watch.prefix) ? key.slice(watch.prefix.length) : "";
      watch.log.push({ revision, name, removed: event.type === "DELETE" });
      if (watch.log.length > LOG_SIZE) watch.log.shift();
      if (revision > watch.seen) watch.seen = revision;
    }
    if ((result.events?.length ?? 0) > 0) watch.dispatch();
    return undefined;
  }

  /** Ends every watch under way (their waits resolve). */
  close(): void {
    for (const watch of [...this.#watches.values()]) this.#end(watch);
  }
}
