/**
 * Instant handoff on the local store (issue 12): a waiter wakes when the way
 * may be clear (a change in the host's folder, a lease running out), not at
 * its next poll; with notifications off it still wakes by looking. Times are
 * asserted loosely: far below the 30 s between attempts the waiters are
 * given, so only a waiter that slept through the change fails.
 *
 * @module
 */

import { assertEquals, assertOk } from "./_assert.ts";
import { tempStore, waitFor, within } from "./_helpers.ts";
import { registerHandoffSuite } from "./_handoff_suite.ts";
import { runCliInProcess } from "./_cli_helpers.ts";
import { lockResource, type LockResourceOptions } from "../mod.ts";
import { openWatchers } from "../src/stores/_folder_watch.ts";
import { openFsStore } from "../src/stores/fs.ts";
import type { LockStore } from "../src/store.ts";
import { lockerOf, request } from "./_waiting.ts";

/** A retry every 30 s: a waiter that only polls would take that long. */
const SLOW = { timeout: "30s", retries: 3 };

function options(
  store: string,
  watch: "notify" | "poll",
  extra: LockResourceOptions = {},
): LockResourceOptions {
  return { store, dependencies: {}, config: { watch, clockSkew: "100ms" }, ...extra };
}

for (const watch of ["notify", "poll"] as const) {
  registerHandoffSuite(`local, ${watch}`, async () => {
    const t = await tempStore();
    return {
      store: t.store,
      config: { watch },
      [Symbol.asyncDispose]: () => t[Symbol.asyncDispose](),
    };
  });
}

Deno.test("a waiter wakes when the holder's lease runs out, with nothing changing in the folder", async () => {
  await using t = await tempStore();
  await Deno.mkdir(`${t.root}/hv01`);
  const expires = new Date(Date.now() + 1_000).toISOString();
  await Deno.writeTextFile(
    `${t.root}/hv01/Host.lock`,
    JSON.stringify({ Caller: "dead", SessionId: "gone", ExpiresAtUtc: expires, TtlSeconds: 1 }),
  );
  const lock = await lockResource("hv01", options(t.store, "notify", { wait: "forever" }));
  const afterExpiryMs = Date.now() - Date.parse(expires);
  assertOk(
    afterExpiryMs >= 100 && afterExpiryMs < 4_000,
    `taken ${afterExpiryMs} ms after the lease ran out (100 ms of skew allowed)`,
  );
  await lock.release();
});

Deno.test("waiters in one process share one watcher per folder, closed when the last is done", async () => {
  await using t = await tempStore();
  const holder = await lockResource("hv01", options(t.store, "notify", { type: "Host" }));
  let waiting = 0;
  const waiters = Array.from({ length: 5 }, () =>
    lockResource(
      "hv01",
      options(t.store, "notify", { ...SLOW, retries: 100, onProgress: () => void waiting++ }),
    ));
  await waitFor("every waiter's first attempt", () => waiting >= 5);
  const folder = `${t.root}/hv01`;
  assertEquals(openWatchers().filter((path) => path === folder), [folder]);
  await holder.release();
  for (const lock of await Promise.all(waiters)) await lock.release();
  assertEquals(openWatchers().filter((path) => path === folder), [], "closed: nothing left open");
});

Deno.test("lock --wait gives up after its time with exit 3; each progress line carries its time", async () => {
  await using t = await tempStore();
  const holder = await lockResource("hv01", options(t.store, "notify", { type: "Host" }));
  const start = Date.now();
  const result = await runCliInProcess([
    "lock",
    "hv01",
    "--wait",
    "1s",
    "--store",
    t.store,
    "--no-dependencies",
  ]);
  const tookMs = Date.now() - start;
  assertEquals(result.code, 3, result.stderr);
  assertOk(tookMs >= 1_000, `waited ${tookMs} ms`);
  const lines = result.stderr.trim().split("\n");
  assertEquals(lines.length, 2, "one progress line for one unchanged state, then the error");
  assertOk(
    /^\d{4}-\d\d-\d\dT\S+Z Waiting for "hv01": .*\(attempt 1, giving up in \d+(ms|s)\)$/.test(
      lines[0]!,
    ),
    lines[0],
  );
  await holder.release();
});

Deno.test("a release between the waiter's look and the arming of its wake-up is not missed", async () => {
  await using t = await tempStore();
  const fs = openFsStore(t.store, { historyFolderName: "History", watch: "notify" });
  const holder = lockerOf(fs, 1);
  const [held] = await holder.acquire(request("holder"));
  // The waiter's first look at Host.lock sees the holder; the holder lets go
  // before that look returns, so before the waiter arms its wake-up: no
  // change comes after the arming, only the look after it can find the host
  // free (else the next attempt, 30 s later).
  let released = false;
  const store: LockStore = {
    ...fs,
    read: async (host, name) => {
      const entry = await fs.read(host, name);
      if (!released && name === "Host.lock" && entry) {
        released = true;
        await holder.release(held!);
      }
      return entry;
    },
  };
  const start = Date.now();
  await lockerOf(store, 2).acquire(request("waiter"));
  const tookMs = Date.now() - start;
  assertOk(released, "the holder let go after the waiter's look");
  assertOk(
    tookMs < 5_000,
    `taken ${tookMs} ms after the first attempt, not at the next one (30 s)`,
  );
});

Deno.test("a wake-up's hint is never the truth: a false 'removed' makes the waiter attempt, the holder keeps the host", async () => {
  await using t = await tempStore();
  const fs = openFsStore(t.store, { historyFolderName: "History", watch: "notify" });
  const holder = lockerOf(fs, 1);
  const [held] = await holder.acquire(request("holder"));
  const calls: string[] = [];
  let lied = false;
  const store: LockStore = {
    ...fs,
    create: (host, name, data, opts) => {
      calls.push("create");
      return fs.create(host, name, data, opts);
    },
    read: (host, name) => {
      calls.push("read");
      return fs.read(host, name);
    },
    waitForChange: (host, ms, signal) => {
      if (lied) return fs.waitForChange!(host, ms, signal);
      // the first wake-up says the holder's entry went, and it did not
      lied = true;
      return Promise.resolve({ removed: ["Host.lock"] });
    },
  };
  const waiter = lockerOf(store, 2).acquire(request("waiter"));
  let settled = false;
  waiter.then(() => (settled = true), () => (settled = true));
  await waitFor("the hinted attempt", () => calls.filter((c) => c === "create").length >= 2);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assertOk(!settled, "the waiter took the host on a false hint");
  const entry = await fs.read("hv01", "Host.lock");
  assertOk(new TextDecoder().decode(entry!.data).includes('"holder"'), "the holder lost the host");
  // the hinted attempt ran the checks: a create, then a read that found the holder
  const second = calls.indexOf("create", calls.indexOf("create") + 1);
  assertEquals(calls.slice(second - 1, second + 2), ["read", "create", "read"]);
  // the real release then hands it over
  const start = Date.now();
  await holder.release(held!);
  const [lock] = await waiter;
  assertEquals(lock!.sessionId, "waiter");
  assertOk(Date.now() - start < 5_000, "the waiter slept through the release");
  await lockerOf(fs, 2).release(lock!);
});

/**
 * The fs store behind a wait the test drives: `hint()` hands the waiter's
 * onHint a removal of Host.lock (as a store does the moment it reads the
 * notification), and the wait itself resolves only on `resolveWait()` or its
 * abort; calls are logged in order.
 */
function drivenWait(fs: LockStore) {
  const log: string[] = [];
  let onHint: ((hint: { removed: readonly string[] }) => void) | undefined;
  let resolveWait: (() => void) | undefined;
  let armed = 0;
  const store: LockStore = {
    ...fs,
    create: async (host, name, data, opts) => {
      log.push(`create ${name}`);
      return await fs.create(host, name, data, opts);
    },
    read: async (host, name) => {
      log.push(`read ${name}`);
      return await fs.read(host, name);
    },
    waitForChange: (_host, _ms, signal, hinted) => {
      armed++;
      onHint = hinted;
      return new Promise((resolve) => {
        const done = () => {
          log.push("wait resolved");
          resolve({ removed: ["Host.lock"] });
        };
        resolveWait = done;
        signal?.addEventListener("abort", done, { once: true });
      });
    },
  };
  return {
    store,
    log,
    get armed() {
      return armed;
    },
    hint() {
      log.push("hint");
      onHint?.({ removed: ["Host.lock"] });
    },
    resolveWait: () => resolveWait?.(),
  };
}

/** A holder's Host lock on hv01 in a temporary local store, and the store for a waiter whose wait the test drives. */
async function heldAndDriven() {
  const t = await tempStore();
  const fs = openFsStore(t.store, { historyFolderName: "History", watch: "notify" });
  const holder = lockerOf(fs, 1);
  const [lock] = await holder.acquire(request("holder"));
  return {
    fs,
    holder,
    lock: lock!,
    driven: drivenWait(fs),
    [Symbol.asyncDispose]: () => t[Symbol.asyncDispose](),
  };
}

Deno.test("a removal hint starts the next attempt as the store reads it, whenever the store resolves its wait", async () => {
  await using held = await heldAndDriven();
  const { fs, holder, driven } = held;
  const waiter = lockerOf(driven.store, 2).acquire(request("waiter"));
  await waitFor("the waiter's wait", () => driven.armed === 1);
  await holder.release(held.lock);
  // the driven wait never resolves by itself: the hint alone brings the lock
  driven.hint();
  const [lock] = await within(5_000, waiter);
  assertEquals(lock!.sessionId, "waiter");
  // the hint's attempt went straight to its create (no look first), and it
  // is the only one
  const hinted = driven.log.slice(driven.log.indexOf("hint"));
  assertEquals(hinted.filter((l) => l.startsWith("create") || l.startsWith("read")).slice(0, 1), [
    "create Host.lock",
  ]);
  assertEquals(hinted.filter((l) => l === "create Host.lock").length, 1, driven.log.join(", "));
  await lockerOf(fs, 2).release(lock!);
});

Deno.test("an abort after a hinted attempt took the host rolls that attempt back: nothing stays locked", async () => {
  await using held = await heldAndDriven();
  const { fs, holder, driven } = held;
  const stop = new AbortController();
  // the signal comes right after the hinted attempt's create went in, before
  // the caller has what it took
  let hinted = false;
  const store: LockStore = {
    ...driven.store,
    create: async (host, name, data, opts) => {
      const made = await driven.store.create(host, name, data, opts);
      if (hinted && made !== undefined) stop.abort(new Error("interrupted"));
      return made;
    },
  };
  const waiter = lockerOf(store, 2).acquire({ ...request("waiter"), signal: stop.signal });
  await waitFor("the waiter's wait", () => driven.armed === 1);
  await holder.release(held.lock);
  hinted = true;
  driven.hint();
  let error: unknown;
  await within(5_000, waiter.catch((e) => (error = e)));
  assertOk(error instanceof Error && /interrupted/.test(error.message), String(error));
  assertEquals(driven.log.filter((l) => l === "create Host.lock").length, 2, driven.log.join(", "));
  assertEquals(await fs.read("hv01", "Host.lock"), undefined, "the hinted attempt's lock was left");
});

Deno.test("an abort in the very turn of the hint still awaits the attempt it started, and rolls it back", async () => {
  await using held = await heldAndDriven();
  const { fs, holder, driven } = held;
  const stop = new AbortController();
  const waiter = lockerOf(driven.store, 2).acquire({ ...request("waiter"), signal: stop.signal });
  await waitFor("the waiter's wait", () => driven.armed === 1);
  await holder.release(held.lock);
  driven.hint();
  stop.abort(new Error("interrupted"));
  let error: unknown;
  await within(5_000, waiter.catch((e) => (error = e)));
  assertOk(error instanceof Error && /interrupted/.test(error.message), String(error));
  // the attempt went on: it made the waiter's lock, which the caller never
  // got, and took it back
  assertEquals(driven.log.filter((l) => l === "create Host.lock").length, 2, driven.log.join(", "));
  await new Promise((resolve) => setTimeout(resolve, 100));
  assertEquals(await fs.read("hv01", "Host.lock"), undefined, "the hinted attempt's lock was left");
});

Deno.test("a look that fails after a hint started the attempt does not hide what the attempt took", async () => {
  await using held = await heldAndDriven();
  const { fs, holder, driven } = held;
  // The look after arming the wait: the holder lets go, the hint comes
  // while the look is under way, and the look then fails.
  let looks = 0;
  const store: LockStore = {
    ...driven.store,
    read: async (host, name) => {
      if (name === "Host.lock" && driven.armed === 1 && looks++ === 0) {
        await holder.release(held.lock);
        driven.hint();
        throw new Error("the look failed");
      }
      return await driven.store.read(host, name);
    },
  };
  const [lock] = await lockerOf(store, 2).acquire(request("waiter"));
  assertEquals(lock!.sessionId, "waiter");
  const entry = await fs.read("hv01", "Host.lock");
  assertOk(new TextDecoder().decode(entry!.data).includes('"waiter"'));
  await lockerOf(fs, 2).release(lock!);
});

Deno.test("a store that throws from its wait after its hint does not orphan the attempt the hint started", async () => {
  await using held = await heldAndDriven();
  const { fs, holder } = held;
  let first = true;
  const store: LockStore = {
    ...fs,
    // the waiter's first attempt sees the holder, who then lets go
    read: async (host, name) => {
      const entry = await fs.read(host, name);
      if (first && name === "Host.lock" && entry) {
        first = false;
        await holder.release(held.lock);
      }
      return entry;
    },
    waitForChange: (_host, _ms, _signal, onHint) => {
      onHint?.({ removed: ["Host.lock"] });
      throw new Error("the store broke after its hint");
    },
  };
  const [lock] = await within(5_000, lockerOf(store, 2).acquire(request("waiter")));
  assertEquals(lock!.sessionId, "waiter");
  await lockerOf(fs, 2).release(lock!);
});
