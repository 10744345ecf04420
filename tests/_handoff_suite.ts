/**
 * The handoff suite (issue 12), registered for every store: a waiter wakes
 * when the way may be clear, not at its next attempt; a drain ends when the
 * last shared lock goes; `wait` gives up after its time and `forever` waits
 * on. Times are asserted loosely: far below the 30 s between attempts the
 * waiters are given, so only a waiter that slept through the change fails.
 *
 * @module
 */

import { assertEquals, assertOk, assertRejects } from "./_assert.ts";
import { waitFor } from "./_helpers.ts";
import { closeStores, LockBusyError, lockResource, type LockResourceOptions } from "../mod.ts";

/** A store for one test. */
export interface HandoffStore extends AsyncDisposable {
  /** Folder template. */
  store: string;
  /** Settings the store needs (credentials, watch mode). */
  config?: Record<string, unknown>;
}

/**
 * Registers the suite.
 * @param name store name shown in the tests' names
 * @param open a fresh store per test
 * @param options `ignore` when the store's server is missing (not under CI)
 */
export function registerHandoffSuite(
  name: string,
  open: () => Promise<HandoffStore>,
  options: { ignore?: boolean } = {},
): void {
  const ignore = options.ignore ?? false;
  const opts = (s: HandoffStore, extra: LockResourceOptions = {}): LockResourceOptions => ({
    store: s.store,
    dependencies: {},
    config: { clockSkew: "100ms", ...s.config },
    ...extra,
  });
  const SLOW = { timeout: "30s", retries: 3 };

  Deno.test({
    name:
      `[${name}] a waiter holds the host soon after the holder lets go, not at its next attempt`,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      await using s = await open();
      const holder = await lockResource("hv01", opts(s, { type: "Host" }));
      let waiting = false;
      const waiter = lockResource(
        "hv01",
        opts(s, { type: "Host", ...SLOW, onProgress: () => (waiting = true) }),
      );
      await waitFor("the waiter's first attempt", () => waiting);
      const releasedAt = Date.now();
      await holder.release();
      const lock = await waiter;
      const tookMs = Date.now() - releasedAt;
      assertOk(tookMs < 5_000, `handed over in ${tookMs} ms`);
      await lock.release();
      await closeStores();
    },
  });

  Deno.test({
    name: `[${name}] a drain ends soon after the last shared lock goes`,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      await using s = await open();
      const reader = await lockResource("hv01", opts(s));
      let draining = false;
      const writer = lockResource(
        "hv01",
        opts(s, {
          type: "Host",
          drainTimeout: "60s",
          onProgress: (p) => (draining = p.phase === "drain"),
        }),
      );
      await waitFor("the drain", () => draining);
      const releasedAt = Date.now();
      await reader.release();
      const lock = await writer;
      const tookMs = Date.now() - releasedAt;
      assertOk(tookMs < 5_000, `drained in ${tookMs} ms`);
      await lock.release();
      await closeStores();
    },
  });

  Deno.test({
    name:
      `[${name}] wait gives up after its time, however many attempts that was; forever waits on`,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      await using s = await open();
      const holder = await lockResource("hv01", opts(s, { type: "Host" }));
      const start = Date.now();
      await assertRejects(
        () => lockResource("hv01", opts(s, { wait: "1s", retries: 1 })),
        LockBusyError,
      );
      const tookMs = Date.now() - start;
      assertOk(tookMs >= 1_000 && tookMs < 10_000, `gave up after ${tookMs} ms`);
      const forever = lockResource("hv01", opts(s, { wait: "forever" }));
      let settled = false;
      forever.finally(() => (settled = true)).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assertEquals(settled, false, "still waiting after more than the retries would take");
      await holder.release();
      await (await forever).release();
      await closeStores();
    },
  });
}
