import { assertEquals, assertOk, assertRejects, assertStringIncludes } from "./_assert.ts";
import {
  breakResourceLock,
  DrainTimeoutError,
  getResourceLockHistory,
  getResourceLockStatus,
  InputError,
  LockBusyError,
  LockLostError,
  LockNotOwnedError,
  lockResource,
  type LockResourceOptions,
  testHostResourceLock,
  tryLockResource,
  unlockResource,
} from "../mod.ts";
import { eventually, FakeClock, tempStore, waitFor } from "./_helpers.ts";
import { Locker } from "../src/locker.ts";
import { FileNames } from "../src/lock_ref.ts";
import type { LockStore } from "../src/store.ts";
import { openFsStore } from "../src/stores/fs.ts";

const NO_DEPS = { dependencies: {} };
const FAST = { timeout: 0, retries: 1 };

function opts(store: string, extra: LockResourceOptions = {}): LockResourceOptions {
  return { store, ...NO_DEPS, ...FAST, ...extra };
}

Deno.test("lockResource() Host lock excludes every other lock; shared locks coexist", async () => {
  await using t = await tempStore();
  const g1 = await lockResource("web01", opts(t.store));
  const g2 = await lockResource("web01", opts(t.store, { type: "File" }));
  await assertRejects(
    () => lockResource("web01", opts(t.store, { type: "Host", drainTimeout: 0 })),
    DrainTimeoutError,
  );
  assertEquals((await t.files("web01")).filter((f) => f === "Host.lock"), []);
  await g1.release();
  await g2.release();
  const host = await lockResource("web01", opts(t.store, { type: "Host" }));
  await assertRejects(() => lockResource("web01", opts(t.store)), LockBusyError);
  await assertRejects(() => lockResource("web01", opts(t.store, { type: "Host" })), LockBusyError);
  assertEquals(await t.files("web01"), ["Host.lock"]);
  await host.release();
  assertEquals(await t.files("web01"), []);
});

Deno.test("lockResource() treats host names case-insensitively: one folder, one lock", async () => {
  await using t = await tempStore();
  const lock = await lockResource("DC01", opts(t.store, { type: "Host" }));
  await assertRejects(() => lockResource("dc01", opts(t.store)), LockBusyError);
  assertEquals(await t.files("dc01"), ["Host.lock"]);
  await assertRejects(() => Deno.stat(`${t.root}/DC01`), Deno.errors.NotFound);
  await lock.release();
});

Deno.test("LockBusyError names who holds the host, with description and since when", async () => {
  await using t = await tempStore();
  const lock = await lockResource(
    "dc01",
    opts(t.store, {
      type: "Host",
      caller: "Invoke-Maintenance",
      description: "patching",
    }),
  );
  const error = await assertRejects(() => lockResource("dc01", opts(t.store)), LockBusyError);
  assertStringIncludes(
    error.message,
    'Cannot lock "dc01": Host lock held by "Invoke-Maintenance" ("patching") since 20',
  );
  assertEquals(error.code, "LOCK_BUSY");
  assertEquals(error.host, "dc01");
  assertEquals(error.holders[0]?.caller, "Invoke-Maintenance");
  await lock.release();
});

Deno.test("lockResource() makes `retries` attempts `timeout` apart, with jitter, reporting a change at once and the same state every 30 s", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const holder = await lockResource("dc01", opts(t.store, { type: "Host", clock }));
  const progress: string[] = [];
  const error = await assertRejects(
    () =>
      lockResource("dc01", {
        store: t.store,
        ...NO_DEPS,
        clock,
        timeout: 10,
        retries: 4,
        onProgress: (p) => progress.push(`${p.phase} ${p.attempt}/${p.attempts} ${p.host}`),
      }),
    LockBusyError,
  );
  assertStringIncludes(error.message, "(4 attempts)");
  // The same holder all along: one line, then one every 30 s at most.
  assertEquals(progress, ["retry 1/4 dc01"]);
  assertEquals(clock.sleeps.length, 3);
  for (const ms of clock.sleeps) assertOk(ms >= 7_500 && ms <= 12_520, `jittered sleep ${ms}`);
  assertOk(new Set(clock.sleeps).size > 1, "sleeps are jittered");
  progress.length = 0;
  const at: number[] = [];
  await assertRejects(
    () =>
      lockResource("dc01", {
        store: t.store,
        ...NO_DEPS,
        clock,
        timeout: 40,
        retries: 3,
        onProgress: (p) => {
          progress.push(`${p.phase} ${p.attempt}/${p.attempts} ${p.host}`);
          at.push(p.at.getTime());
        },
      }),
    LockBusyError,
  );
  // 30-50 s apart: the same state again 30 s after its last line, whether
  // an attempt or the wait between two tells it; attempt 2 is told too.
  assertEquals(progress[0], "retry 1/3 dc01");
  assertOk(progress.includes("retry 2/3 dc01"), progress.join());
  for (let i = 1; i < at.length; i++) {
    assertOk(at[i]! - at[i - 1]! >= 30_000, `stamped with the clock's time, 30 s apart: ${at}`);
  }
  await holder.release();
});

Deno.test("lockResource() with dependencies takes every lock or none", async () => {
  await using t = await tempStore();
  const dependencies = { hv01: ["dc01", "vmm01"], dc01: ["dc02"], dc02: ["dc01"] };
  const other = await lockResource("hv01", opts(t.store, { type: "Host", caller: "other" }));
  const error = await assertRejects(
    () => lockResource("dc01", { store: t.store, dependencies, type: "Host", ...FAST }),
    LockBusyError,
  );
  assertEquals(error.host, "hv01");
  assertEquals(await t.files("dc01"), []);
  assertEquals(await t.files("dc02"), []);
  assertEquals(await t.files("hv01"), ["Host.lock"]);
  await other.release();
  const lock = await lockResource("dc01", { store: t.store, dependencies, type: "Host", ...FAST });
  assertEquals(lock.locks.map((l) => l.host), ["dc02", "hv01", "dc01"]);
  assertEquals(new Set(lock.locks.map((l) => l.sessionId)).size, 1);
  await lock.release();
  for (const host of ["dc01", "dc02", "hv01"]) assertEquals(await t.files(host), []);
});

Deno.test("lockResource() overlapping host sets taken in opposite orders both finish", async () => {
  await using t = await tempStore();
  const a = { x: ["a"], y: ["a"] };
  const b = { y: ["b"], x: ["b"] };
  const work = async (host: string, dependencies: Record<string, string[]>) => {
    for (let i = 0; i < 10; i++) {
      const lock = await lockResource(host, {
        store: t.store,
        dependencies,
        type: "Host",
        timeout: "5ms",
        retries: 500,
      });
      await lock.release();
    }
  };
  await Promise.all([work("a", a), work("b", b)]);
  for (const host of ["a", "b", "x", "y"]) assertEquals(await t.files(host), []);
});

Deno.test("Host lock drains shared locks first and blocks new ones meanwhile (writer preference)", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const reader = await lockResource("hv01", opts(t.store, { clock }));
  let blockedReader: boolean | undefined;
  let drainEvents = 0;
  // onProgress is not awaited: the writer can get in as soon as the reader's
  // lock has moved into History, before the release has written its record
  let released: Promise<unknown> | undefined;
  const writer = await lockResource(
    "hv01",
    opts(t.store, {
      type: "Host",
      clock,
      drainTimeout: 3600,
      onProgress: (p) => {
        if (p.phase !== "drain") return;
        drainEvents++;
        if (drainEvents === 1) {
          released = (async () => {
            blockedReader = (await tryLockResource("hv01", opts(t.store))) === undefined;
            await reader.release();
          })();
        }
      },
    }),
  );
  await released;
  assertEquals(blockedReader, true);
  assertOk(drainEvents >= 1);
  assertEquals(await t.files("hv01"), ["Host.lock"]);
  await writer.release();
});

Deno.test("Host lock gives up after the drain timeout and leaves nothing behind", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const reader = await lockResource("hv01", opts(t.store, { clock, caller: "Deploy-Image" }));
  const error = await assertRejects(
    () => lockResource("hv01", opts(t.store, { type: "Host", clock, drainTimeout: "5m" })),
    DrainTimeoutError,
  );
  assertEquals(error.code, "DRAIN_TIMEOUT");
  assertStringIncludes(error.message, "did not drain in 300s");
  assertStringIncludes(error.message, '"Deploy-Image"');
  assertEquals(await t.files("hv01"), [`Generic-${reader.sessionId}.lock`]);
  await reader.release();
});

Deno.test("drain: false takes the Host lock beside shared locks, as the original", async () => {
  await using t = await tempStore();
  const reader = await lockResource("hv01", opts(t.store));
  const writer = await lockResource("hv01", opts(t.store, { type: "Host", drain: false }));
  assertEquals((await t.files("hv01")).length, 2);
  await writer.release();
  await reader.release();
});

Deno.test("unlockResource() releases only the session's own lock, and twice is fine", async () => {
  await using t = await tempStore();
  const mine = await lockResource("dc01", opts(t.store, { type: "Host" }));
  await breakResourceLock(mine.refs[0]!, { store: t.store, force: true, reason: "test" });
  const theirs = await lockResource(
    "dc01",
    opts(t.store, { type: "Host", caller: "someone-else" }),
  );
  const error = await assertRejects(
    () => unlockResource(mine.refs, { store: t.store }),
    LockNotOwnedError,
  );
  assertStringIncludes(error.message, '"someone-else"');
  assertEquals(await t.files("dc01"), ["Host.lock"]);
  await unlockResource(theirs.refs, { store: t.store });
  const again = await unlockResource(theirs.refs, { store: t.store });
  assertEquals(again.map((r) => r.status), ["already-released"]);
});

Deno.test("unlockResource() needs force for a ref without its session", async () => {
  await using t = await tempStore();
  await lockResource("dc01", opts(t.store, { type: "Host" }));
  await assertRejects(() => unlockResource("dc01/Host", { store: t.store }), InputError);
  assertEquals(await t.files("dc01"), ["Host.lock"]);
  const [result] = await unlockResource("dc01/Host", { store: t.store, force: true });
  assertEquals(result?.status, "released");
  assertEquals(await t.files("dc01"), []);
  const history = await t.history("dc01");
  assertEquals(history.length, 1);
  assertOk(history[0]!.startsWith("Host.lock-"));
});

Deno.test("an expired lease blocks nobody: the next lock breaks it into History", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const config = { clockSkew: 5 };
  const stale = await lockResource("hv01", opts(t.store, { type: "Host", clock, ttl: 60, config }));
  await assertRejects(() => lockResource("hv01", opts(t.store, { clock, config })), LockBusyError);
  clock.advance(62_000); // past the lease, within the skew
  await assertRejects(() => lockResource("hv01", opts(t.store, { clock, config })), LockBusyError);
  clock.advance(5_000); // past lease and skew
  const [info] = await getResourceLockStatus("hv01", { store: t.store, clock, config });
  assertEquals(info?.expired, true);
  assertEquals(await testHostResourceLock("hv01", { store: t.store, clock, config }), false);
  const next = await lockResource("hv01", opts(t.store, { clock, config }));
  const [broken] = await getResourceLockHistory("hv01", { store: t.store, clock, config });
  assertEquals(broken?.breakReason, "lease expired");
  assertOk(broken?.brokenBy?.includes(String(Deno.pid)));
  assertEquals(await t.files("hv01"), [`Generic-${next.sessionId}.lock`]);
  await assertRejects(() => stale.renew(), LockLostError);
  assertOk(stale.signal.aborted);
  await next.release();
});

Deno.test("breakResourceLock() refuses a live lock without force", async () => {
  await using t = await tempStore();
  const lock = await lockResource("hv01", opts(t.store, { type: "Host", ttl: 60 }));
  await assertRejects(() => breakResourceLock(lock.refs[0]!, { store: t.store }), LockBusyError);
  await breakResourceLock(lock.refs[0]!, { store: t.store, force: true, reason: "stuck" });
  const [entry] = await getResourceLockHistory("hv01", { store: t.store });
  assertEquals(entry?.breakReason, "stuck");
  await lock.release().catch(() => {});
});

Deno.test("a held lock renews its lease every third of it and aborts its signal once broken", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const lock = await lockResource("hv01", opts(t.store, { type: "Host", ttl: 60, clock }));
  const expiry = async () =>
    JSON.parse(await Deno.readTextFile(`${t.root}/hv01/Host.lock`)).ExpiresAtUtc;
  assertEquals(await expiry(), new Date(clock.now() + 60_000).toISOString());
  clock.advance(19_000);
  clock.runDue(); // not due yet
  clock.advance(1_000);
  clock.runDue(); // a third of the lease: renewal
  const renewedTo = new Date(clock.now() + 60_000).toISOString();
  await eventually(async () => (await expiry()) === renewedTo, 500, 5);
  assertEquals(await expiry(), renewedTo);
  assertEquals(lock.signal.aborted, false);
  await breakResourceLock(lock.refs[0]!, { store: t.store, force: true });
  clock.advance(20_000);
  clock.runDue(); // the next renewal finds the lock gone
  await eventually(() => lock.signal.aborted, 500, 5);
  assertOk(lock.signal.reason instanceof LockLostError, String(lock.signal.reason));
  await lock.release().catch(() => {});
});

Deno.test("a lock whose store cannot be reached is lost once its lease has run out", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const lock = await lockResource("hv01", opts(t.store, { type: "Host", ttl: 60, clock }));
  await Deno.remove(t.root, { recursive: true }); // the store's root goes away
  await Deno.writeTextFile(t.root, "not a folder any more");
  clock.advance(20_000);
  assertEquals(clock.scheduledCount, 1);
  clock.runDue(); // renewal fails, the lease still runs
  // The failed renewal is over once it has scheduled the next one.
  await waitFor(
    "the failed renewal to schedule the next",
    () => clock.scheduledCount === 1,
    5000,
    2,
  );
  assertEquals(lock.signal.aborted, false, "not lost while the lease lasts");
  clock.advance(40_000);
  clock.runDue();
  await eventually(() => lock.signal.aborted, 500, 5);
  assertOk(lock.signal.reason instanceof LockLostError, String(lock.signal.reason));
  assertStringIncludes((lock.signal.reason as Error).message, "not renewed before they expired");
  await Deno.remove(t.root);
  await Deno.mkdir(t.root);
});

Deno.test("await using releases the lock at the end of the block", async () => {
  await using t = await tempStore();
  {
    await using _lock = await lockResource("web01", opts(t.store, { type: "Host" }));
    assertEquals(await t.files("web01"), ["Host.lock"]);
  }
  assertEquals(await t.files("web01"), []);
  assertEquals((await t.history("web01")).length, 1);
});

Deno.test("lockResource() rejects bad host names before touching the store", async () => {
  await using t = await tempStore();
  for (const host of ["../x", "a/b", "a\\b", ".", "..", "", "x".repeat(300), "a b", "a..b"]) {
    await assertRejects(() => lockResource(host, opts(t.store)), InputError);
  }
  assertEquals([...Deno.readDirSync(t.root)], []);
});

Deno.test("leases are written and judged on the store's clock where the store has one", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = openFsStore(t.store, { historyFolderName: "History" });
  const hour = 3_600_000;
  // A store whose clock runs an hour ahead of this machine's (an SMB server's, say).
  const store: LockStore = { ...fs, clockOffsetMs: () => Promise.resolve(hour) };
  const locker = new Locker({
    store,
    names: new FileNames("{0}.lock"),
    clock,
    skewMs: 5_000,
    holder: { host: "test", pid: 1 },
  });
  const request = {
    hosts: ["hv01"],
    type: "Host" as const,
    sessionId: "s1",
    retryDelayMs: 0,
    attempts: 1,
    drain: true,
    drainTimeoutMs: 0,
    ttlMs: 60_000,
  };
  await locker.acquire(request);
  const written = JSON.parse(await Deno.readTextFile(`${t.root}/hv01/Host.lock`));
  assertEquals(written.ExpiresAtUtc, new Date(clock.now() + hour + 60_000).toISOString());
  clock.advance(64_000); // within lease and skew on the store's clock
  assertEquals((await locker.status("hv01"))[0]?.expired, false);
  clock.advance(2_000);
  assertEquals((await locker.status("hv01"))[0]?.expired, true);
  // Judged on this machine's clock alone, the lock would look good for another hour.
  const local = new Locker({
    store: fs,
    names: new FileNames("{0}.lock"),
    clock,
    skewMs: 5_000,
    holder: { host: "test", pid: 2 },
  });
  assertEquals((await local.status("hv01"))[0]?.expired, false);
});

Deno.test("locks taken slowly are renewed before they are handed over, never near the end of their lease", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = openFsStore(t.store, { historyFolderName: "History" });
  // A slow store: each create takes half the lease.
  const store: LockStore = {
    ...fs,
    create: async (...args) => {
      const version = await fs.create(...args);
      clock.advance(3_000);
      return version;
    },
  };
  const locker = new Locker({
    store,
    names: new FileNames("{0}.lock"),
    clock,
    skewMs: 0,
    holder: { host: "test", pid: 1 },
  });
  await locker.acquire({
    hosts: ["hv01"],
    type: "Host",
    sessionId: "s1",
    retryDelayMs: 0,
    attempts: 1,
    drain: false,
    drainTimeoutMs: 0,
    ttlMs: 6_000,
  });
  const content = JSON.parse(await Deno.readTextFile(`${t.root}/hv01/Host.lock`));
  assertEquals(Date.parse(content.ExpiresAtUtc), clock.now() + 6_000, "a full lease from now");
});
