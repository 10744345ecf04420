/**
 * Time behind a small interface, so retries, drains and leases are tested
 * with an injected clock instead of sleeps.
 *
 * @module
 */

import { InputError } from "./errors.ts";

/** The source of time the locking rules use. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Resolves after `ms` milliseconds, or rejects with the signal's reason when aborted. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Minutes to add to UTC for local time at `epochMs` (negated `Date#getTimezoneOffset`). */
  utcOffsetMinutes(epochMs: number): number;
  /**
   * Calls `fn` after `ms` milliseconds without keeping the process alive for
   * it (lease renewal). @returns a function that cancels the call
   */
  schedule(fn: () => void, ms: number): () => void;
}

/** The longest delay one timer holds (2^31 - 1 ms, about 24.8 days); longer waits are chained. */
export const MAX_TIMER_MS = 2_147_483_647;

/** One timer: calls `fn` after `ms` (at most {@linkcode MAX_TIMER_MS}); returns a cancel function. */
type Timer = (ms: number, fn: () => void, keepAlive: boolean) => () => void;

/** Calls `fn` after `ms`, however long, by chaining timers. */
function after(timer: Timer, ms: number, fn: () => void, keepAlive: boolean): () => void {
  let cancel = () => {};
  const step = (left: number) => {
    const chunk = Math.min(left, MAX_TIMER_MS);
    cancel = timer(chunk, () => (left > chunk ? step(left - chunk) : fn()), keepAlive);
  };
  step(Math.max(0, Number.isFinite(ms) ? ms : MAX_TIMER_MS));
  return () => cancel();
}

function clockOver(timer: Timer): Clock {
  return {
    now: () => Date.now(),
    utcOffsetMinutes: (epochMs) => -new Date(epochMs).getTimezoneOffset(),
    sleep: (ms, signal) =>
      new Promise<void>((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        const onAbort = () => {
          cancel();
          reject(signal?.reason);
        };
        const cancel = after(timer, ms, () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        }, true);
        signal?.addEventListener("abort", onAbort, { once: true });
      }),
    schedule: (fn, ms) => after(timer, ms, fn, false),
  };
}

/** The real clock, on `setTimeout`. */
export const SYSTEM_CLOCK: Clock = clockOver((ms, fn, keepAlive) => {
  const id = setTimeout(fn, ms);
  if (!keepAlive) Deno.unrefTimer(id);
  return () => clearTimeout(id);
});

/**
 * The real clock on `AbortSignal.timeout`, for short-lived processes (the
 * command line): the first `setTimeout` of a process loads Node's timers
 * (the benchmark's `startup-set-timeout` and `startup-abort-timeout`
 * figures). Its timers are never cancelled, only ignored once cancelled, so
 * the process should end with `Deno.exit`.
 */
export const LIGHT_CLOCK: Clock = clockOver((ms, fn) => {
  let cancelled = false;
  AbortSignal.timeout(ms).addEventListener("abort", () => cancelled || fn(), { once: true });
  return () => {
    cancelled = true;
  };
});

/** Farthest a Date reaches from the epoch, in milliseconds. */
const MAX_DATE_MS = 8.64e15;

/**
 * A clock a caller gave, checked at each reading: a time that is no date
 * (NaN, beyond a Date's range, no number) or an offset that is no whole
 * number of minutes within a day is an {@linkcode InputError} naming the
 * clock, not a RangeError from deep inside a lock's making.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkedClock, SYSTEM_CLOCK } from "./clock.ts";
 * const broken = checkedClock({ ...SYSTEM_CLOCK, now: () => NaN });
 * assert.throws(() => broken.now(), /The clock's now\(\) gave NaN/);
 * assert.ok(checkedClock(SYSTEM_CLOCK).now() > 0);
 * ```
 */
export function checkedClock(clock: Clock): Clock {
  const shown = (value: unknown) => typeof value === "number" ? String(value) : typeof value;
  return {
    now() {
      const now: unknown = clock.now();
      if (typeof now !== "number" || !(Math.abs(now) <= MAX_DATE_MS)) {
        throw new InputError(
          `The clock's now() gave ${
            shown(now)
          }: expected milliseconds since 1970 that a Date can hold`,
        );
      }
      return now;
    },
    sleep: (ms, signal) => clock.sleep(ms, signal),
    utcOffsetMinutes(epochMs) {
      const minutes: unknown = clock.utcOffsetMinutes(epochMs);
      if (!Number.isInteger(minutes) || Math.abs(minutes as number) > 24 * 60) {
        throw new InputError(
          `The clock's utcOffsetMinutes() gave ${
            shown(minutes)
          }: expected whole minutes within a day`,
        );
      }
      return minutes as number;
    },
    schedule: (fn, ms) => clock.schedule(fn, ms),
  };
}
