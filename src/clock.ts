/**
 * Time behind a small interface, so retries, drains and leases are tested
 * with an injected clock instead of sleeps.
 *
 * @module
 */

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

/** The real clock. */
export const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, Math.max(0, ms));
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
  utcOffsetMinutes: (epochMs) => -new Date(epochMs).getTimezoneOffset(),
  schedule: (fn, ms) => {
    const timer = setTimeout(fn, Math.max(0, ms));
    Deno.unrefTimer(timer);
    return () => clearTimeout(timer);
  },
};
