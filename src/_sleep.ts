/**
 * A pause that an abort cuts short, for the stores' waits.
 *
 * @module
 */

/**
 * Waits `ms` (nothing when ≤ 0), or until `signal` aborts. Never rejects:
 * the caller checks the signal when it matters.
 *
 * @param ms how long
 * @param signal ends the pause early
 */
export function sleepUnless(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
