/**
 * Tests that kill the mutants `deno task mutate` found alive (issue 18):
 * each pins a rule of the locking core that the rest of the suite did not,
 * and fails with the mutant named above it.
 *
 * @module
 */

import { assertEquals, assertOk, assertRejects, assertStringIncludes } from "./_assert.ts";
import {
  breakResourceLock,
  DrainTimeoutError,
  InputError,
  LockBusyError,
  LockLostError,
  LockNotOwnedError,
  lockResource,
  type LockResourceOptions,
  ResourceLockerError,
  StoreError,
} from "../mod.ts";
import { FakeClock, tempStore, within } from "./_helpers.ts";
import { ResourceLock } from "../src/resource_lock.ts";
import {
  readDependencyMap,
  resolveDependencies,
  validateDependencyMap,
} from "../src/dependencies.ts";
import { type AcquireRequest, Locker, mapLimit, type SlotClaim } from "../src/locker.ts";
import { describeHolders } from "../src/_text.ts";
import { holdAt, pausedAt } from "./_seams.ts";
import { setSeamHook } from "../src/_seam.ts";
import {
  FileNames,
  formatLockRef,
  lockIdOf,
  parseLockId,
  parseLockRef,
  toLockRef,
  validateSessionId,
} from "../src/lock_ref.ts";
import type { LockStore } from "../src/store.ts";
import { openFsStore } from "../src/stores/fs.ts";
import { EXIT, exitCodeOf } from "../cli.ts";

const FAST = { dependencies: {}, timeout: 0, retries: 1, config: { clockSkew: 0 } };

function opts(store: string, extra: LockResourceOptions = {}): LockResourceOptions {
  return { store, ...FAST, ...extra };
}

/** `fn` throws an InputError; `what` names the case in the failure. */
function refuses(what: string, fn: () => unknown): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  assertOk(thrown instanceof InputError, `${what}: expected an InputError, got ${thrown}`);
}

async function readLock(root: string, host: string, name = "Host.lock") {
  return JSON.parse(await Deno.readTextFile(`${root}/${host}/${name}`));
}

// --- cli.ts: exitCodeOf ---------------------------------------------------

Deno.test("exitCodeOf() maps every error code to its exit code", () => {
  const cases: [unknown, number][] = [
    [new InputError("bad"), EXIT.USAGE],
    [new LockBusyError("h", "busy", []), EXIT.NOT_ACQUIRED],
    [new DrainTimeoutError("h", "drain", []), EXIT.NOT_ACQUIRED],
    [
      new LockNotOwnedError("h/Host", "not owned", { lockId: "Host", sessionId: "s2" }),
      EXIT.NOT_ACQUIRED,
    ],
    [new LockLostError("h/Host", "lost"), EXIT.LOST],
    [new StoreError("/x", "unreachable"), EXIT.STORE],
    [new Error("anything else"), EXIT.STORE],
    ["not even an error", EXIT.STORE],
    [null, EXIT.STORE],
    [undefined, EXIT.STORE],
    // Only our own errors carry meaning: a foreign error with a look-alike code is a fault.
    [Object.assign(new Error("foreign"), { code: "LOCK_LOST" }), EXIT.STORE],
    [Object.assign(new Error("foreign"), { code: "BAD_INPUT" }), EXIT.STORE],
  ];
  for (const [error, code] of cases) {
    const name = error instanceof ResourceLockerError ? error.code : String(error);
    assertEquals(exitCodeOf(error), code, name);
  }
  assertEquals(
    [EXIT.OK, EXIT.NOT_LOCKED, EXIT.USAGE, EXIT.NOT_ACQUIRED, EXIT.STORE, EXIT.LOST],
    [0, 1, 2, 3, 4, 5],
  );
});

// --- src/dependencies.ts ----------------------------------------------------

// Mutant: the map's names not sorted (the hosts one host led to in the map's order).
Deno.test("resolveDependencies() lists the hosts one host led to by name, whatever the map's order", () => {
  const map = { p: ["a"], y: ["p"], c: ["p"] };
  assertEquals(resolveDependencies("a", map), ["p", "c", "y"]);
});

// Mutant: `seen.add(name)` removed (a host reached again on a later level is listed twice).
Deno.test("resolveDependencies() lists a host reached on two levels once, on the first", () => {
  const map = { p: ["a"], q: ["a", "p"] };
  assertEquals(resolveDependencies("a", map), ["p", "q"]);
});

// --- src/locker.ts: the session checks ----------------------------------------

// Mutant: renewAll() without the session check.
Deno.test("renew() of a lock broken and retaken by another session is lost and leaves the new lock alone", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const old = await lockResource("hv01", opts(t.store, { type: "Host", ttl: 60, clock }));
  await breakResourceLock(old.refs[0]!, { store: t.store, force: true, clock });
  const next = await lockResource(
    "hv01",
    opts(t.store, { type: "Host", ttl: 60, clock, caller: "next" }),
  );
  const before = await Deno.readTextFile(`${t.root}/hv01/Host.lock`);
  clock.advance(10_000);
  await assertRejects(() => old.renew(), LockLostError);
  assertOk(old.signal.aborted);
  assertEquals(await Deno.readTextFile(`${t.root}/hv01/Host.lock`), before, "untouched");
  assertEquals((await readLock(t.root, "hv01")).SessionId, next.sessionId);
  await next.release();
});

// Mutant: breakLock() without the session check.
Deno.test("breaking with a stale ref refuses the live lock another session took since", async () => {
  await using t = await tempStore();
  const old = await lockResource("hv01", opts(t.store, { type: "Host" }));
  await breakResourceLock(old.refs[0]!, { store: t.store, force: true });
  const next = await lockResource("hv01", opts(t.store, { type: "Host", caller: "next" }));
  await assertRejects(
    () => breakResourceLock(old.refs[0]!, { store: t.store, force: true }),
    LockNotOwnedError,
  );
  assertEquals((await readLock(t.root, "hv01")).SessionId, next.sessionId);
  await next.release();
});

// --- src/locker.ts: reading locks -------------------------------------------

/** A locker on a local store under `root`, with `clock`, as "test:1". */
/** A fake clock that runs a hook after every sleep: things that happen while a waiter waits. */
class HookedClock extends FakeClock {
  afterSleep: (() => Promise<void>) | undefined;
  override async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    await super.sleep(ms, signal);
    await this.afterSleep?.();
  }
}

/** The folder store under `root`, opened as the lockers of these tests open it. */
function folderStore(root: string) {
  return openFsStore(`${root}/{0}`, { historyFolderName: "History" });
}

/** A wait for a change that never comes: it ends only when its waiter stops it. */
function untilStopped(signal: AbortSignal | undefined): Promise<undefined> {
  return new Promise((resolve) => signal?.addEventListener("abort", () => resolve(undefined)));
}

function locker(root: string, clock: FakeClock, store?: LockStore, skewMs = 0): Locker {
  return new Locker({
    store: store ?? folderStore(root),
    names: new FileNames("{0}.lock"),
    clock,
    skewMs,
    holder: { host: "test", pid: 1, user: "tester" },
  });
}

function request(sessionId: string, extra: Partial<AcquireRequest> = {}): AcquireRequest {
  return {
    hosts: ["hv01"],
    type: "Generic",
    sessionId,
    retryDelayMs: 0,
    attempts: 1,
    drain: true,
    drainTimeoutMs: 0,
    ...extra,
  };
}

Deno.test("status() lists the Host lock first, then shared locks by id, with what each file tells", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  await l.acquire(request("zz", { caller: "Z", description: "zed" }));
  await l.acquire(request("aa"));
  await l.acquire(request("hh", { type: "Host", drain: false, ttlMs: 60_000 }));
  const status = await l.status("hv01");
  assertEquals(status.map((i) => i.lockId), ["Host", "Generic-aa", "Generic-zz"]);
  const [host, , z] = status;
  assertEquals(host!.ref, "hv01/Host@hh");
  assertEquals(host!.sessionId, "hh");
  assertEquals(host!.type, "Host");
  assertEquals(host!.holder, { host: "test", pid: 1 });
  assertEquals(host!.lockedAt?.getTime(), clock.now());
  assertEquals(host!.expiresAt?.getTime(), clock.now() + 60_000);
  assertEquals(host!.expired, false);
  assertEquals(host!.state, "ok");
  assertEquals(host!.caller, undefined);
  assertEquals([z!.caller, z!.description, z!.expiresAt], ["Z", "zed", undefined]);
});

Deno.test("a lease is expired only once its end plus the skew has passed, to the millisecond", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock, undefined, 5_000);
  await l.acquire(request("s1", { type: "Host", ttlMs: 60_000 }));
  clock.advance(65_000); // exactly the end of the lease plus the skew
  assertEquals((await l.status("hv01"))[0]?.expired, false);
  assertEquals(await l.test("hv01", ["Host"]), true);
  clock.advance(1);
  assertEquals((await l.status("hv01"))[0]?.expired, true);
  assertEquals(await l.test("hv01", ["Host"]), false);
});

/** A clock two hours east of UTC, as PowerShell's ticks on such a machine. */
class EastClock extends FakeClock {
  override utcOffsetMinutes(): number {
    return 120;
  }
}

Deno.test("history() reads our entries, PowerShell's ticks and breaks, newest first, at most `limit`", async () => {
  await using t = await tempStore();
  const clock = new EastClock();
  const l = locker(t.root, clock);
  const start = clock.now();
  const [shared] = await l.acquire(request("s1", { caller: "ours" }));
  clock.advance(60_000);
  await l.release(shared!); // released at start + 1 min
  const [host] = await l.acquire(request("s2", { type: "Host", caller: "broken" }));
  clock.advance(60_000);
  await l.breakLock(host!, "stuck", true); // broken at start + 2 min
  // PowerShell released a Host lock at start + 45 s: local ticks, no UnlockedAtUtc.
  // (Newest first is then not the order of the names.)
  const ticks = (ms: number) => 621_355_968_000_000_000n + BigInt(ms + 120 * 60_000) * 10_000n;
  await Deno.writeTextFile(
    `${t.root}/hv01/History/Host.lock-0f0e`,
    `{"Caller":"powershell","LockedAt":${ticks(start)},"UnlockedAt":${ticks(start + 45_000)}}`,
  );
  // Never unlocked: sorted by when it was taken (start + 30 s).
  await Deno.writeTextFile(
    `${t.root}/hv01/History/Generic-s9.lock`,
    `{"Caller":"taken only","LockedAtUtc":"${new Date(start + 30_000).toISOString()}"}`,
  );
  await Deno.writeTextFile(`${t.root}/hv01/History/notes.txt`, "not a lock");
  const history = await l.history("hv01");
  assertEquals(history.map((e) => e.caller), ["broken", "ours", "powershell", "taken only"]);
  const [broken, ours, ps] = history;
  assertEquals(ps!.unlockedAt?.getTime(), start + 45_000);
  assertEquals(ps!.lockedAt?.getTime(), start);
  assertEquals(ps!.lockId, "Host");
  assertEquals(ps!.name, "Host.lock-0f0e");
  assertEquals([broken!.brokenBy, broken!.breakReason], ["tester@test:1", "stuck"]);
  assertEquals(broken!.unlockedAt?.getTime(), start + 120_000);
  assertEquals([ours!.brokenBy, ours!.breakReason], [undefined, undefined]);
  assertEquals(ours!.unlockedAt?.getTime(), start + 60_000);
  assertOk(history.every((e) => e.expired === false));
  assertEquals((await l.history("hv01", 2)).map((e) => e.caller), ["broken", "ours"]);
});

// --- src/locker.ts: drain ----------------------------------------------------

Deno.test("a draining Host lock renews its own lease every third of it while it waits", async () => {
  await using t = await tempStore();
  const clock = new HookedClock();
  const l = locker(t.root, clock);
  const [reader] = await l.acquire(request("reader"));
  const start = clock.now();
  let released: Promise<unknown> | undefined;
  // The reader leaves half the lease into the drain.
  clock.afterSleep = async () => {
    if (!released && clock.now() - start >= 3_000) released = l.release(reader!);
    await released;
  };
  // Bounded: a drain that stops sleeping would spin in fake time for ever.
  await within(
    10_000,
    l.acquire(request("writer", {
      type: "Host",
      ttlMs: 6_000,
      drainTimeoutMs: 300_000,
    })),
  );
  await released;
  const content = await readLock(t.root, "hv01");
  const renewedAt = Date.parse(content.RenewedAtUtc);
  // Renewed when a third of the lease had passed (again at two thirds when
  // the reader's leaving wakes the drain before it is done): never between.
  assertOk(
    renewedAt === start + 2_000 || renewedAt === start + 4_000,
    `renewed every third of the lease, not at every look: ${content.RenewedAtUtc}`,
  );
  assertEquals(Date.parse(content.ExpiresAtUtc), renewedAt + 6_000);
});

// --- src/locker.ts: store faults ---------------------------------------------

type StoreMethod = "create" | "list" | "read" | "replace" | "archive" | "remove";

/**
 * The local store under `root`, where `faults[method]` (when set) decides
 * per call: "before" fails without doing anything, "after" does the
 * operation then fails (an answer lost on the way back).
 */
function faultyStore(
  root: string,
  faults: Partial<
    Record<StoreMethod, (host: string, name: string) => "before" | "after" | undefined>
  >,
): LockStore {
  const fs = folderStore(root);
  const wrap = <A extends [string, ...unknown[]], R>(
    method: StoreMethod,
    fn: (...args: A) => Promise<R>,
  ) =>
  async (...args: A): Promise<R> => {
    const when = faults[method]?.(args[0], String(args[1] ?? ""));
    if (when === "before") throw new StoreError(root, `${method} failed`);
    const result = await fn(...args);
    if (when === "after") throw new StoreError(root, `${method} answer lost`);
    return result;
  };
  return {
    ...fs,
    create: wrap("create", fs.create.bind(fs)),
    list: wrap("list", fs.list.bind(fs)),
    read: wrap("read", fs.read.bind(fs)),
    replace: wrap("replace", fs.replace.bind(fs)),
    archive: wrap("archive", fs.archive.bind(fs)),
    remove: wrap("remove", fs.remove.bind(fs)),
  };
}

Deno.test("a create whose answer was lost leaves no lock of ours, and never touches another session's", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  let lose = true;
  const once = () => lose ? (lose = false, "after" as const) : undefined;
  const l = locker(t.root, clock, faultyStore(t.root, { create: once }));
  for (const type of ["Host", "Generic"] as const) {
    lose = true;
    const error = await assertRejects(() => l.acquire(request("s1", { type })), StoreError);
    assertEquals(error.message.includes("could not release"), false, error.message);
    assertEquals(await t.files("hv01"), [], type);
  }
  const other = locker(t.root, clock);
  await other.acquire(request("other", { type: "Host" }));
  lose = true;
  const theirs = await assertRejects(() => l.acquire(request("s1", { type: "Host" })), StoreError);
  assertEquals(theirs.message.includes("could not release"), false, theirs.message);
  assertEquals((await readLock(t.root, "hv01")).SessionId, "other");
});

Deno.test("a create whose answer was lost and whose cleanup fails names the lock left behind", async () => {
  await using t = await tempStore();
  const l = locker(
    t.root,
    new FakeClock(),
    faultyStore(t.root, { create: () => "after", remove: () => "before" }),
  );
  const error = await assertRejects(() => l.acquire(request("s1", { type: "Host" })), StoreError);
  assertOk(error.message.includes("could not release hv01/Host@s1"), error.message);
  assertEquals(await t.files("hv01"), ["Host.lock"]);
});

Deno.test("a shared lock whose check for a Host lock fails takes its own lock back, or names it", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const hostRead = (_host: string, name: string) =>
    name === "Host.lock" ? "before" as const : undefined;
  const l = locker(t.root, clock, faultyStore(t.root, { read: hostRead }));
  const error = await assertRejects(() => l.acquire(request("s1")), StoreError);
  assertEquals(error.message.includes("could not release"), false, error.message);
  assertEquals(await t.files("hv01"), []);
  const stuck = locker(
    t.root,
    clock,
    faultyStore(t.root, { read: hostRead, remove: () => "before" }),
  );
  const left = await assertRejects(() => stuck.acquire(request("s1")), StoreError);
  assertOk(left.message.includes("could not release hv01/Generic-s1"), left.message);
  assertEquals(await t.files("hv01"), ["Generic-s1.lock"]);
});

Deno.test("a busy host whose attempt cannot take back a lock it made reports the fault and names the lock left behind", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  // db01 is busy: another session's Host lock
  await locker(t.root, clock).acquire(request("other", { type: "Host", hosts: ["db01"] }));
  const l = locker(
    t.root,
    clock,
    faultyStore(t.root, { remove: (host) => host === "app01" ? "before" : undefined }),
  );
  for (const type of ["Host", "Generic"] as const) {
    const error = await assertRejects(
      () => l.acquire(request(`s-${type}`, { type, hosts: ["app01", "db01"] })),
      StoreError,
    );
    const name = type === "Host" ? "Host@s-Host" : "Generic-s-Generic";
    assertStringIncludes(error.message, `could not release app01/${name}`);
    assertStringIncludes(error.message, "remove failed");
    await locker(t.root, clock).release(parseLockRef(`app01/${name}`), true);
  }
  // the one that failed is not the first taken back: its fault is still the one thrown
  const second = locker(
    t.root,
    clock,
    faultyStore(t.root, { remove: (host) => host === "app02" ? "before" : undefined }),
  );
  const error = await assertRejects(
    () => second.acquire(request("s3", { type: "Host", hosts: ["app01", "app02", "db01"] })),
    StoreError,
  );
  assertStringIncludes(error.message, "remove failed; could not release app02/Host@s3");
  assertEquals(await t.files("app01"), []);
  await locker(t.root, clock).release(parseLockRef("app02/Host@s3"), true);
  // a slot of a full group the same: its member's Host lock named
  const member = locker(
    t.root,
    clock,
    faultyStore(t.root, { remove: (host) => host === "web01" ? "before" : undefined }),
  );
  const group = { group: "g", home: "grouphome", max: 1 };
  await locker(t.root, clock).acquireAll(
    request("first", { type: "Host", hosts: ["web02"], slots: [{ ...group, member: "web02" }] }),
  );
  const full = await assertRejects(
    () =>
      member.acquireAll(
        request("second", {
          type: "Host",
          hosts: ["web01"],
          slots: [{ ...group, member: "web01" }],
        }),
      ),
    StoreError,
  );
  assertStringIncludes(full.message, "could not release web01/Host@second");
});

Deno.test("a store fault on one host of an attempt takes back the locks the attempt made on the others", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(
    t.root,
    clock,
    faultyStore(t.root, { create: (host) => host === "db01" ? "before" : undefined }),
  );
  for (const type of ["Host", "Generic"] as const) {
    await assertRejects(
      () => l.acquire(request("s1", { type, hosts: ["app01", "db01", "web01"] })),
      StoreError,
    );
    for (const host of ["app01", "db01", "web01"]) assertEquals(await t.files(host), [], host);
  }
});

Deno.test("a drain that meets a store fault releases the Host lock it took", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  let failList = false;
  const l = locker(
    t.root,
    clock,
    faultyStore(t.root, { list: () => failList ? "before" : undefined }),
  );
  await l.acquire(request("reader"));
  const error = await assertRejects(
    () =>
      l.acquire(request("writer", {
        type: "Host",
        drainTimeoutMs: 60_000,
        onProgress: () => failList = true,
      })),
    StoreError,
  );
  assertEquals(error.message, "list failed");
  assertEquals(await t.files("hv01"), ["Generic-reader.lock"]);
});

// --- src/lock_ref.ts ----------------------------------------------------------

Deno.test("validateSessionId() takes up to 128 letters, digits, '.', '_', '-' starting with a letter or digit", () => {
  for (const id of ["a", "0", "A.b_c-1", "x".repeat(128)]) assertEquals(validateSessionId(id), id);
  for (const id of ["", ".a", "-a", "a/b", "a b", "x".repeat(129), 7 as unknown as string]) {
    refuses(String(id), () => validateSessionId(id));
  }
});

Deno.test("lock ids: Host alone, shared ones with their session; anything else is no lock id", () => {
  assertEquals(lockIdOf("Host", "s1"), "Host");
  assertEquals(lockIdOf("Generic", "s1"), "Generic-s1");
  assertEquals(lockIdOf("File", "s1"), "File-s1");
  assertEquals(parseLockId("Host"), { type: "Host" });
  assertEquals("sessionId" in parseLockId("Host")!, false);
  assertEquals(parseLockId("Generic-s1"), { type: "Generic", sessionId: "s1" });
  assertEquals(parseLockId("File-a-b"), { type: "File", sessionId: "a-b" });
  for (const id of ["host", "Generic-", "Generic", "Other-s1", "xGeneric-s1", "Host-s1"]) {
    assertEquals(parseLockId(id), undefined, id);
  }
});

Deno.test("FileNames turns lock ids into file names and back, for any prefix and suffix", () => {
  const names = new FileNames("rl-{0}.lock");
  assertEquals(names.fileName("Host"), "rl-Host.lock");
  assertEquals(names.lockId("rl-Host.lock"), "Host");
  assertEquals(names.lockId("rl-Generic-s1.lock"), "Generic-s1");
  for (const name of ["Host.lock", "rl-Host.lck", "rl-Other.lock", "rl-.lock", "x-Host.lock"]) {
    assertEquals(names.lockId(name), undefined, name);
  }
  assertEquals(names.historyLockId("rl-Host.lock-0f0e"), "Host");
  assertEquals(names.historyLockId("rl-Generic-s1.lock"), "Generic-s1");
  for (const name of ["rl-Host.lockx", "Host.lock-0f0e", "rl-Generic-s1.lock-0f0e"]) {
    assertEquals(names.historyLockId(name), undefined, name);
  }
  const bare = new FileNames("{0}");
  assertEquals(bare.lockId("Host"), "Host");
  assertEquals(bare.fileName("File-s1"), "File-s1");
  for (const template of ["lock", "{0}{0}", "a{0}b{0}", "dir/{0}", "dir\\{0}"]) {
    refuses(template, () => new FileNames(template));
  }
});

Deno.test("lock refs: a Host ref names its session after '@', a shared one in its id", () => {
  assertEquals(formatLockRef("dc01", "Host", "s1"), "dc01/Host@s1");
  assertEquals(formatLockRef("dc01", "Host"), "dc01/Host");
  assertEquals(formatLockRef("dc01", "Host", ""), "dc01/Host");
  assertEquals(formatLockRef("dc01", "Generic-s1", "s1"), "dc01/Generic-s1");
  assertEquals(parseLockRef(" DC01/Host@s1 "), {
    host: "dc01",
    lockId: "Host",
    type: "Host",
    sessionId: "s1",
  });
  assertEquals(parseLockRef("dc01/Host"), { host: "dc01", lockId: "Host", type: "Host" });
  assertEquals(parseLockRef("dc01/File-s1"), {
    host: "dc01",
    lockId: "File-s1",
    type: "File",
    sessionId: "s1",
  });
  assertEquals(parseLockRef("dc01/Generic-s1@s1").sessionId, "s1");
  for (
    const ref of [
      "dc01/Generic-s1@s2",
      "dc01/Other",
      "dc01",
      "dc01/Host@",
      "dc01/Host@s1/x",
      "a/b/Host",
      "dc01/Host@%zz",
      "../x/Host",
      42 as unknown as string,
    ]
  ) {
    refuses(String(ref), () => parseLockRef(ref));
  }
});

Deno.test("toLockRef() takes a lock object whose session is in its id, after '@' or nowhere", () => {
  assertEquals(toLockRef({ host: "DC01", lockId: "Host" }), {
    host: "dc01",
    lockId: "Host",
    type: "Host",
  });
  assertEquals(toLockRef({ host: "dc01", lockId: "Host", type: "Host", sessionId: "s1" }), {
    host: "dc01",
    lockId: "Host",
    type: "Host",
    sessionId: "s1",
  });
  const generic = { host: "dc01", lockId: "Generic-s1", type: "Generic" as const };
  for (const object of [generic, { ...generic, sessionId: "s1" }]) {
    assertEquals(toLockRef(object), { ...generic, sessionId: "s1" }, JSON.stringify(object));
  }
  assertEquals(toLockRef({ host: "dc01", lockId: "File-s2" }).sessionId, "s2");
});

Deno.test("toLockRef() refuses a lock object whose lockId is no string or no lock id, quoting at most 80 characters", () => {
  const refusal = (value: unknown) => {
    try {
      toLockRef(value);
    } catch (error) {
      assertOk(error instanceof InputError, `${JSON.stringify(value)}: ${error}`);
      return error.message;
    }
    throw new Error(`${JSON.stringify(value)} was taken`);
  };
  assertEquals(
    refusal({ host: "dc01", lockId: 42 }),
    "Invalid lock object: lockId: expected a string, got a number",
  );
  assertEquals(
    refusal({ host: "dc01" }),
    "Invalid lock object: lockId: expected a string, got undefined",
  );
  assertEquals(
    refusal({ host: "dc01", lockId: "Other" }),
    'Invalid lock object: lockId "Other" is not Host, Generic-<session> or File-<session>',
  );
  assertEquals(
    refusal({ host: "dc01", lockId: "x".repeat(500) }),
    `Invalid lock object: lockId "${
      "x".repeat(80)
    }" is not Host, Generic-<session> or File-<session>`,
  );
  const long = "Generic-" + "s".repeat(120);
  assertEquals(
    refusal({ host: "dc01", lockId: long, type: "Host" }),
    `Invalid lock object: type "Host" does not match lockId "${long.slice(0, 80)}"`,
  );
});

// --- src/dependencies.ts: reading and checking maps ----------------------------

Deno.test("validateDependencyMap() refuses what is no object of host lists, saying so", () => {
  for (const value of [null, 5, "hv01", true, ["hv01"]]) {
    let thrown: unknown;
    try {
      validateDependencyMap(value, "m.json");
    } catch (error) {
      thrown = error;
    }
    assertOk(thrown instanceof InputError, `${value}: ${thrown}`);
    assertStringIncludes(thrown.message, "expected an object of host name arrays");
  }
  // An object whose entries cannot be read (a getter that throws) is refused, not a crash.
  const hostile = Object.defineProperty({}, "hv01", {
    enumerable: true,
    get() {
      throw new Error("boom\nsecond line");
    },
  });
  let thrown: unknown;
  try {
    validateDependencyMap(hostile, "m.json");
  } catch (error) {
    thrown = error;
  }
  assertOk(thrown instanceof InputError, String(thrown));
  assertStringIncludes(thrown.message, "cannot be read: boom");
  assertEquals(thrown.message.includes("second line"), false);
});

function utf32(text: string, bigEndian: boolean): Uint8Array {
  const points = [0xfeff, ...Array.from(text, (c) => c.codePointAt(0)!)];
  const bytes = new Uint8Array(points.length * 4);
  const view = new DataView(bytes.buffer);
  points.forEach((point, i) => view.setUint32(i * 4, point, !bigEndian));
  return bytes;
}

Deno.test("readDependencyMap() reads UTF-32 either way round and UTF-16 BE without a BOM, to the last character", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rl-map-" });
  try {
    const text = '{"hv01":["dc01"]}'; // no line end: the last character counts
    const be16 = new Uint8Array(text.length * 2);
    for (let i = 0; i < text.length; i++) be16[i * 2 + 1] = text.charCodeAt(i);
    const cases: [string, Uint8Array][] = [
      ["UTF-32 BE", utf32(text, true)],
      ["UTF-32 LE", utf32(text, false)],
      ["UTF-16 BE without BOM", be16],
    ];
    for (const [name, bytes] of cases) {
      await Deno.writeFile(`${dir}/map.json`, bytes);
      assertEquals({ ...await readDependencyMap(`${dir}/map.json`) }, { hv01: ["dc01"] }, name);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readDependencyMap() decodes UTF-32 up to U+10FFFF and replaces what lies beyond, naming the entry", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rl-map-" });
  try {
    const file = `${dir}/map.json`;
    const points = (text: string) => Array.from(text, (c) => c.codePointAt(0)!);
    for (const [point, shown] of [[0x10ffff, "\u{10FFFF}"], [0x110000, "\uFFFD"]] as const) {
      const all = [0xfeff, ...points('{"hv'), point, ...points('": []}')];
      const bytes = new Uint8Array(all.length * 4);
      all.forEach((p, i) => new DataView(bytes.buffer).setUint32(i * 4, p, true));
      await Deno.writeFile(file, bytes);
      const error = await assertRejects(() => readDependencyMap(file), InputError);
      assertStringIncludes(error.message, `"hv${shown}"`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readDependencyMap(): a missing map says how to name one, a path it cannot reach is a store error, bad JSON says why", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rl-map-" });
  try {
    const missing = await assertRejects(() => readDependencyMap(`${dir}/none.json`), InputError);
    assertStringIncludes(missing.message, "does not exist: create it");
    await Deno.writeTextFile(`${dir}/file`, "{}");
    await assertRejects(() => readDependencyMap(`${dir}/file/map.json`), StoreError);
    await Deno.writeTextFile(`${dir}/bad.json`, "{");
    const bad = await assertRejects(() => readDependencyMap(`${dir}/bad.json`), InputError);
    assertStringIncludes(bad.message, "not JSON: ");
    assertEquals(bad.message.includes("undefined"), false, bad.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// --- src/resource_lock.ts -------------------------------------------------------

/** A ResourceLock over `l` for what `req` asks, as lockResource makes it. */
async function held(l: Locker, clock: FakeClock, req: AcquireRequest): Promise<ResourceLock> {
  return new ResourceLock(l, {
    host: req.hosts[req.hosts.length - 1]!,
    type: req.type,
    sessionId: req.sessionId,
    locks: await l.acquire(req),
    ttlMs: req.ttlMs,
    clock,
  });
}

Deno.test("renew() without a lease, or after release, does nothing and writes nothing", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  const plain = await held(l, clock, request("s1", { type: "Host" }));
  assertEquals(clock.scheduledCount, 0, "no renewal scheduled without a lease");
  const before = await Deno.readTextFile(`${t.root}/hv01/Host.lock`);
  await plain.renew();
  assertEquals(await Deno.readTextFile(`${t.root}/hv01/Host.lock`), before);
  await plain.release();
  const leased = await held(l, clock, request("s2", { type: "Host", ttlMs: 60_000 }));
  assertEquals(clock.scheduledCount, 1);
  await leased.release();
  assertEquals(clock.scheduledCount, 0, "the renewal is cancelled by the release");
  await leased.renew(); // released: nothing to renew, nothing lost
  assertEquals(leased.signal.aborted, false);
  assertEquals(await t.files("hv01"), []);
});

Deno.test("release() twice answers already-released the second time and touches nothing", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  const lock = await held(l, clock, request("s1", { hosts: ["a01", "b01"] }));
  assertEquals((await lock.release()).map((r) => r.status), ["released", "released"]);
  assertEquals(lock.released, true);
  // Another session takes a01 meanwhile: a second release must not even look.
  await l.acquire(request("s2", { hosts: ["a01"], type: "Host" }));
  assertEquals(
    await lock.release(),
    lock.refs.map((ref) => ({ ref, status: "already-released" as const })),
  );
  assertEquals(await t.files("a01"), ["Host.lock"]);
  assertEquals((await t.history("a01")).length, 1);
});

Deno.test("a release that meets a store fault can be called again and releases only what is left", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  let failB = true;
  const store = faultyStore(t.root, {
    archive: (host) => host === "b01" && failB ? "before" : undefined,
  });
  const l = locker(t.root, clock, store);
  const lock = await held(l, clock, request("s1", { hosts: ["a01", "b01"], type: "Host" }));
  await assertRejects(() => lock.release(), StoreError);
  assertEquals(lock.released, false);
  assertEquals(await t.files("a01"), []);
  assertEquals(await t.files("b01"), ["Host.lock"]);
  // a01 is free again; someone else takes it before the retry.
  await l.acquire(request("s2", { hosts: ["a01"], type: "Host" }));
  failB = false;
  assertEquals((await lock.release()).map((r) => r.status), ["released", "released"]);
  assertEquals(lock.released, true);
  assertEquals(lock.signal.aborted, false);
  assertEquals(await t.files("a01"), ["Host.lock"], "the new holder's lock is left alone");
  assertEquals(await t.files("b01"), []);
});

Deno.test("a release retried after a store fault still reports a lock lost on the first try", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  let failB = true;
  const store = faultyStore(t.root, {
    archive: (host) => host === "b01" && failB ? "before" : undefined,
  });
  const l = locker(t.root, clock, store);
  const lock = await held(l, clock, request("s1", { hosts: ["a01", "b01"], type: "Host" }));
  await l.breakLock(lock.locks[0]!, "taken over", true);
  await assertRejects(() => lock.release(), StoreError, "archive failed");
  assertEquals(lock.released, false);
  failB = false;
  const error = await assertRejects(() => lock.release(), LockLostError);
  assertStringIncludes(error.message, `Lock "${lock.refs[0]}" was broken by`);
  assertStringIncludes(error.message, "(taken over)");
  assertEquals(lock.released, true);
  assertEquals(lock.signal.aborted, true, "the holder learns it through the signal too");
  assertEquals(await t.files("b01"), [], "what was left is released");
});

/** A fake clock that tells when the next call is scheduled (a renewal that ended schedules the next). */
class WatchedClock extends FakeClock {
  #waiters: (() => void)[] = [];
  override schedule(fn: () => void, ms: number): () => void {
    const cancel = super.schedule(fn, ms);
    this.#waiters.splice(0).forEach((resolve) => resolve());
    return cancel;
  }
  /** Resolves at the next call of schedule(). */
  nextSchedule(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

Deno.test("a release retried after a store fault reports a lock taken over on the first try once, without reading it again", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  let failB = true;
  const reads: string[] = [];
  const store = faultyStore(t.root, {
    archive: (host) => host === "b01" && failB ? "before" : undefined,
    read: (host) => (reads.push(host), undefined),
  });
  const l = locker(t.root, clock, store);
  const lock = await held(l, clock, request("s1", { hosts: ["a01", "b01"], type: "Host" }));
  await l.breakLock(lock.locks[0]!, "taken over", true);
  await l.acquire(request("s2", { hosts: ["a01"], type: "Host" }));
  await assertRejects(() => lock.release(), StoreError, "archive failed");
  failB = false;
  reads.length = 0;
  const error = await assertRejects(() => lock.release(), LockLostError);
  assertEquals(reads.includes("a01"), false, "a01 was settled by the first try");
  assertEquals(
    error.message.split(`Lock "${lock.refs[0]}": it now belongs to another session`).length,
    2,
    error.message,
  );
  assertEquals(await t.files("a01"), ["Host.lock"], "the new holder's lock is left alone");
  assertEquals((await readLock(t.root, "a01")).SessionId, "s2");
  assertEquals(await t.files("b01"), []);
});

Deno.test("a renewal that ends while the release is under way schedules no further renewal", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  const renewed = Promise.withResolvers<void>();
  const store: LockStore = {
    ...fs,
    replace: async (...args) => {
      const version = await fs.replace(...args);
      renewed.resolve();
      return version;
    },
  };
  const l = locker(t.root, clock, store);
  const lock = await held(l, clock, request("s1", { type: "Host", ttlMs: 60_000 }));
  using points = holdAt("locker.renew.checked", "locker.release.checked");
  clock.advance(20_000);
  clock.runDue(); // the renewal reads the lock and waits before writing
  await points.reached("locker.renew.checked");
  const releasing = lock.release(); // reads the same lock and waits before moving it
  await points.reached("locker.release.checked");
  points.letGo("locker.renew.checked");
  await renewed.promise; // renewed: the release must read the lock again
  points.letGo("locker.release.checked");
  assertEquals(await releasing, [{ ref: lock.refs[0]!, status: "released" }]);
  assertEquals(lock.signal.aborted, false, "a renewal that won its race is no loss");
  assertEquals(await t.files("hv01"), []);
  assertEquals(clock.scheduledCount, 0, "no renewal is scheduled after the release");
});

Deno.test("a renewal overtaken by the release at the end of its lease loses nothing", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  const refused = Promise.withResolvers<void>();
  const store: LockStore = {
    ...fs,
    replace: async (...args) => {
      const version = await fs.replace(...args);
      if (version === undefined) refused.resolve();
      return version;
    },
  };
  const l = locker(t.root, clock, store);
  const lock = await held(l, clock, request("s1", { type: "Host", ttlMs: 60_000 }));
  using points = holdAt("locker.renew.checked");
  clock.advance(20_000);
  clock.runDue(); // the renewal reads the lock and waits before writing
  await points.reached("locker.renew.checked");
  clock.advance(40_000); // the lease ends while it waits
  assertEquals(await lock.release(), [{ ref: lock.refs[0]!, status: "released" }]);
  points.letGo("locker.renew.checked");
  await refused.promise; // the lock is gone: the renewal finds it so
  // What the renewal does next runs in promise callbacks, all before a timer.
  await new Promise((resolve) => setTimeout(resolve, 0));
  assertEquals(lock.signal.aborted, false, "a lock released by its holder is not lost");
  assertEquals(clock.scheduledCount, 0);
});

Deno.test("a short lease is renewed every 50 ms at the most often", async () => {
  await using t = await tempStore();
  const clock = new WatchedClock();
  const l = locker(t.root, clock);
  const lock = await held(l, clock, request("s1", { type: "Host", ttlMs: 90 }));
  clock.advance(49);
  clock.runDue();
  assertEquals(clock.scheduledCount, 1, "not due before 50 ms");
  clock.advance(1);
  const rescheduled = clock.nextSchedule();
  clock.runDue();
  await rescheduled; // the renewal is over
  assertEquals((await readLock(t.root, "hv01")).RenewedAtUtc, new Date(clock.now()).toISOString());
  await lock.release();
});

// --- src/locker.ts: messages, more session rules, races -------------------------

Deno.test("describeHolders() names kind, caller, description and time of at most three holders", () => {
  assertEquals(describeHolders([]), "no lock in the way any more");
  const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
  assertEquals(
    describeHolders([{
      lockId: "Host",
      caller: "Invoke-Maintenance",
      description: "patch",
      lockedAt: at,
    }]),
    'Host lock held by "Invoke-Maintenance" ("patch") since 2026-01-02T03:04:05.000Z',
  );
  assertEquals(describeHolders([{ lockId: "File-s1" }]), "File lock held by an unknown caller");
  const three = [{ lockId: "Generic-a" }, { lockId: "Generic-b" }, { lockId: "Generic-c" }];
  assertEquals(describeHolders(three).split("; ").length, 3);
  assertEquals(describeHolders(three).includes("more"), false);
  const five = describeHolders([...three, { lockId: "Generic-d" }, { lockId: "Generic-e" }]);
  assertEquals(five.split("; ").length, 3, five);
  assertEquals(five.endsWith("Generic lock held by an unknown caller and 2 more"), true, five);
});

Deno.test("retries wait the delay times 0.75 to 1.25 plus up to 20 ms", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  await l.acquire(request("holder", { type: "Host" }));
  const random = Math.random;
  try {
    for (const [r, expected] of [[0, 7_500], [0.5, 10_010], [0.999, 12_515]] as const) {
      Math.random = () => r;
      clock.sleeps.length = 0;
      await assertRejects(
        () => l.acquire(request("s1", { retryDelayMs: 10_000, attempts: 2 })),
        LockBusyError,
      );
      assertEquals(clock.sleeps, [expected], `random ${r}`);
    }
  } finally {
    Math.random = random;
  }
});

Deno.test("a session's own Host lock lets its shared locks in; its earlier shared lock survives a refusal", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  await l.acquire(request("s1", { type: "Host" }));
  const [shared] = await l.acquire(request("s1"));
  assertEquals(shared!.lockId, "Generic-s1");
  // s2 holds a shared lock, then a Host lock of s3 is put beside it (no drain).
  await l.acquire(request("s2", { hosts: ["db01"] }));
  await l.acquire(request("s3", { hosts: ["db01"], type: "Host", drain: false }));
  await assertRejects(() => l.acquire(request("s2", { hosts: ["db01"] })), LockBusyError);
  assertEquals(await t.files("db01"), ["Generic-s2.lock", "Host.lock"], "s2's lock stays");
});

Deno.test("a broken shared lock goes to History under its own name and its holder learns it was lost", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  const [mine] = await l.acquire(request("s1", { ttlMs: 1_000 }));
  clock.advance(5_000);
  await l.breakLock(mine!, "old", false);
  assertEquals(await t.history("hv01"), ["Generic-s1.lock"]);
  const [entry] = await l.history("hv01");
  assertEquals([entry!.lockId, entry!.breakReason], ["Generic-s1", "old"]);
  const result = await l.release(mine!);
  assertEquals([result.status, result.breakReason], ["lost", "old"]);
});

Deno.test("the newest break of a session's Host lock is the one reported, never another session's", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  for (
    const [session, reason] of [["s1", "first"], ["s2", "other"], ["s1", "second"], [
      "s2",
      "later other",
    ]]
  ) {
    const [lock] = await l.acquire(request(session!, { type: "Host" }));
    clock.advance(1_000);
    await l.breakLock(lock!, reason!, true);
  }
  assertEquals((await t.history("hv01")).length, 4, "each break keeps its own History entry");
  const result = await l.release({ host: "hv01", lockId: "Host", type: "Host", sessionId: "s1" });
  assertEquals([result.status, result.breakReason], ["lost", "second"]);
  assertEquals(result.brokenAt?.getTime(), clock.now() - 1_000);
  const unknown = await l.release({ host: "hv01", lockId: "Host", type: "Host", sessionId: "s9" });
  assertEquals(unknown.status, "already-released");
});

Deno.test("BrokenBy is host:pid when no user is known", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = new Locker({
    store: folderStore(t.root),
    names: new FileNames("{0}.lock"),
    clock,
    skewMs: 0,
    holder: { host: "box", pid: 7 },
  });
  const [lock] = await l.acquire(request("s1", { type: "Host" }));
  await l.breakLock(lock!, "why", true);
  assertEquals((await l.history("hv01"))[0]?.brokenBy, "box:7");
});

Deno.test("release() of a lock whose file names no session needs force; break of a missing lock says so", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  await Deno.mkdir(`${t.root}/hv01`);
  await Deno.writeTextFile(`${t.root}/hv01/Host.lock`, '{"Caller":"powershell"}');
  const ref = { host: "hv01", lockId: "Host", type: "Host" as const, sessionId: "s1" };
  await assertRejects(() => l.release(ref), InputError, "names no session");
  assertEquals(await t.files("hv01"), ["Host.lock"]);
  assertEquals((await l.release(ref, true)).status, "released");
  await assertRejects(() => l.breakLock(ref, "gone", true), InputError, "no such lock");
});

Deno.test("a release whose lock keeps changing gives up after six rounds", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  let archives = 0;
  const store: LockStore = { ...fs, archive: () => (archives++, Promise.resolve(false)) };
  const l = locker(t.root, clock, store);
  const [lock] = await l.acquire(request("s1", { type: "Host" }));
  await assertRejects(() => l.release(lock!), StoreError, "kept changing");
  assertEquals(archives, 6);
});

Deno.test("a break that finds the lock released meanwhile says so", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  const [lock] = await l.acquire(request("s1", { type: "Host" }));
  const { result } = await pausedAt(
    "locker.break.judged",
    () => l.breakLock(lock!, "stuck", true).then(() => "broken", (error) => error),
    () => l.release(lock!),
  );
  assertOk(result instanceof InputError, String(result));
  assertStringIncludes(result.message, "released meanwhile");
});

Deno.test("a drain that times out while its Host lock cannot be taken back names it", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock, faultyStore(t.root, { remove: () => "before" }));
  await l.acquire(request("reader"));
  const error = await assertRejects(
    () => l.acquire(request("writer", { type: "Host" })),
    DrainTimeoutError,
  );
  assertStringIncludes(error.message, "could not release hv01/Host@writer");
  assertEquals(error.host, "hv01");
});

Deno.test("after a lost create, a Host.lock naming no session is left alone and named, and so is one that cannot be read", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  await Deno.mkdir(`${t.root}/hv01`);
  await Deno.writeTextFile(`${t.root}/hv01/Host.lock`, ""); // PowerShell's first write step, or ours
  const l = locker(t.root, clock, faultyStore(t.root, { create: () => "after" }));
  const error = await assertRejects(() => l.acquire(request("s1", { type: "Host" })), StoreError);
  assertStringIncludes(error.message, "could not release hv01/Host@s1");
  assertEquals(await Deno.readTextFile(`${t.root}/hv01/Host.lock`), "", "left as it was");
  // An empty shared lock file of ours is ours by its name: removed.
  await Deno.writeTextFile(`${t.root}/hv01/Generic-s1.lock`, "");
  await Deno.remove(`${t.root}/hv01/Host.lock`);
  const shared = await assertRejects(() => l.acquire(request("s1")), StoreError);
  assertEquals(shared.message.includes("could not release"), false, shared.message);
  assertEquals(await t.files("hv01"), []);
  const blind = locker(
    t.root,
    clock,
    faultyStore(t.root, { create: () => "after", read: () => "before" }),
  );
  const unread = await assertRejects(() => blind.acquire(request("s2")), StoreError);
  assertStringIncludes(unread.message, "could not release hv01/Generic-s2");
});

Deno.test("a rollback leaves alone a lock that another session took in its place meanwhile", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  const other = locker(t.root, clock);
  let swapped = false;
  // Hosts are taken one after the other (concurrency 1): when b01 is
  // checked, a01 (ours by then) is broken and retaken by s2.
  const store: LockStore = {
    ...fs,
    read: async (host, name) => {
      if (host === "b01" && !swapped) {
        swapped = true;
        const [ours] = await other.status("a01");
        await other.breakLock(parseLockRef(ours!.ref), "taken over", true);
        await other.acquire(request("s2", { hosts: ["a01"], type: "Host" }));
      }
      return await fs.read(host, name);
    },
  };
  await other.acquire(request("holder", { hosts: ["b01"], type: "Host" }));
  const l = new Locker({
    store,
    names: new FileNames("{0}.lock"),
    clock,
    skewMs: 0,
    concurrency: 1,
    holder: { host: "test", pid: 1 },
  });
  await assertRejects(
    () => l.acquire(request("s1", { hosts: ["a01", "b01"], type: "Host" })),
    LockBusyError,
  );
  assertEquals((await readLock(t.root, "a01")).SessionId, "s2");
});

Deno.test("test() counts only the types asked for; status() gives no holder for a file without one", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  await l.acquire(request("s1"));
  assertEquals(await l.test("hv01", ["Host", "File"]), false);
  assertEquals(await l.test("hv01", ["Generic"]), true);
  await Deno.writeTextFile(`${t.root}/hv01/File-ps.lock`, '{"Caller":"ps","Holder":"pc01"}');
  const ps = (await l.status("hv01")).find((i) => i.lockId === "File-ps");
  assertEquals(ps?.holder, undefined);
  assertEquals(ps?.sessionId, "ps");
  assertEquals(await l.test("hv01", ["File"]), true);
});

Deno.test("history() skips an entry that vanished between listing and reading", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  const store: LockStore = {
    ...fs,
    listHistory: async (host) => [...await fs.listHistory(host), "Host.lock-gone"],
  };
  const l = locker(t.root, clock, store);
  const [lock] = await l.acquire(request("s1", { type: "Host" }));
  await l.release(lock!);
  assertEquals((await l.history("hv01")).map((e) => e.sessionId), ["s1"]);
});

Deno.test("an aborted signal takes nothing; a caller's own error from onProgress comes back untouched", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock, faultyStore(t.root, { remove: () => "before" }));
  const abort = new AbortController();
  abort.abort(new Error("stop"));
  await assertRejects(() => l.acquire(request("s1", { signal: abort.signal })), Error, "stop");
  assertEquals(await t.files("hv01"), []);
  await l.acquire(request("reader"));
  const mine = new Error("progress handler failed");
  const thrown = await assertRejects(
    () =>
      l.acquire(request("writer", {
        type: "Host",
        drainTimeoutMs: 60_000,
        onProgress: () => {
          throw mine;
        },
      })),
    Error,
  );
  assertOk(thrown === mine);
  assertEquals(mine.message, "progress handler failed");
});

Deno.test("a lock lost for want of renewal stays lost: renew() and release() say so once the store is back", async () => {
  await using t = await tempStore();
  const clock = new WatchedClock();
  let down = true;
  const l = locker(
    t.root,
    clock,
    faultyStore(t.root, { replace: () => down ? "before" : undefined }),
  );
  const lock = await held(l, clock, request("s1", { type: "Host", ttlMs: 60_000 }));
  clock.advance(20_000);
  const retried = clock.nextSchedule();
  clock.runDue(); // fails; the lease still runs: tried again later
  await retried;
  assertEquals(lock.signal.aborted, false);
  const lost = new Promise((resolve) => lock.signal.addEventListener("abort", resolve));
  clock.advance(40_000);
  clock.runDue(); // fails at the end of the lease: lost
  await lost;
  down = false;
  await assertRejects(() => lock.renew(), LockLostError, "not renewed before they expired");
  await assertRejects(() => lock.release(), LockLostError, "not renewed before they expired");
  assertEquals(await t.files("hv01"), [], "released all the same");
  assertEquals(clock.scheduledCount, 0, "no renewal scheduled after the loss");
});

Deno.test("a release that finds a lock broken reports that break, even after an earlier loss", async () => {
  await using t = await tempStore();
  const clock = new WatchedClock();
  let down = true;
  const l = locker(
    t.root,
    clock,
    faultyStore(t.root, { replace: () => down ? "before" : undefined }),
  );
  const lock = await held(l, clock, request("s1", { type: "Host", ttlMs: 60_000 }));
  const lost = new Promise((resolve) => lock.signal.addEventListener("abort", resolve));
  clock.advance(60_000);
  clock.runDue(); // not renewed before the end of the lease: lost
  await lost;
  down = false;
  await l.breakLock(lock.locks[0]!, "taken over", true);
  await assertRejects(() => lock.release(), LockLostError, "was broken by");
});

Deno.test("a store clock that cannot be read counts as no offset; leases reach the store's create", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  const options: unknown[] = [];
  const store: LockStore = {
    ...fs,
    clockOffsetMs: () => Promise.reject(new Error("no server time")),
    create: (host, name, data, createOptions) => {
      options.push(createOptions);
      return fs.create(host, name, data, createOptions);
    },
  };
  const l = locker(t.root, clock, store);
  await l.acquire(request("s1", { type: "Host", ttlMs: 60_000 }));
  await l.acquire(request("s2", { hosts: ["db01"] }));
  assertEquals(options, [{ ttlMs: 60_000 }, {}]);
  const content = await readLock(t.root, "hv01");
  assertEquals(content.ExpiresAtUtc, new Date(clock.now() + 60_000).toISOString());
  assertEquals(content.TtlSeconds, 60);
  assertEquals("TtlSeconds" in await readLock(t.root, "db01", "Generic-s2.lock"), false);
});

Deno.test("a Host lock that vanishes at every look is tried three times, then reported busy with nobody in the way", async () => {
  await using t = await tempStore();
  const fs = folderStore(t.root);
  let creates = 0;
  const store: LockStore = {
    ...fs,
    create: () => (creates++, Promise.resolve(undefined)), // "exists"…
    read: () => Promise.resolve(undefined), // …and gone when looked at
  };
  const l = locker(t.root, new FakeClock(), store);
  const error = await assertRejects(
    () => l.acquire(request("s1", { type: "Host" })),
    LockBusyError,
    "no lock in the way any more",
  );
  assertEquals(error.holders, []);
  assertEquals(creates, 3);
});

Deno.test("progress tells how long the retry waits and how long the drain may still take", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  await l.acquire(request("holder", { type: "Host" }));
  const retries: number[] = [];
  await assertRejects(
    () =>
      l.acquire(request("s1", {
        retryDelayMs: 1_000,
        attempts: 2,
        onProgress: (p) => retries.push(p.waitMs),
      })),
    LockBusyError,
  );
  assertEquals(retries, clock.sleeps);
  const drains: number[] = [];
  await l.acquire(request("reader", { hosts: ["db01"] }));
  await within(
    10_000,
    assertRejects(
      () =>
        l.acquire(request("writer", {
          hosts: ["db01"],
          type: "Host",
          drainTimeoutMs: 1_000,
          onProgress: (p) => drains.push(p.waitMs),
        })),
      DrainTimeoutError,
    ),
  );
  // The same reader all along: one line, and one wait to the end (no poll).
  assertEquals(drains, [1_000]);
});

Deno.test("a released shared lock keeps its name in History; a ref without a session is never told 'lost'", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  const [shared] = await l.acquire(request("s1"));
  await l.release(shared!);
  assertEquals(await t.history("hv01"), ["Generic-s1.lock"]);
  // A broken Host lock in History that names no session (PowerShell's).
  await Deno.writeTextFile(
    `${t.root}/hv01/History/Host.lock-0f0e`,
    '{"Caller":"ps","BrokenBy":"someone","BreakReason":"stuck"}',
  );
  const bare = { host: "hv01", lockId: "Host", type: "Host" as const };
  assertEquals((await l.release(bare, true)).status, "already-released");
});

// --- src/locker.ts: what a folder or History holds besides our locks ----------

Deno.test("status() and test() pass over files that are no locks, locks that vanish, and fields a file lacks", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  // The folder lists a lock that is gone by the time it is read.
  const store: LockStore = {
    ...fs,
    list: async (host) => [...await fs.list(host), "Generic-gone.lock"],
  };
  const l = locker(t.root, clock, store);
  assertOk(l.store === store);
  await Deno.mkdir(`${t.root}/hv01`);
  await Deno.writeTextFile(`${t.root}/hv01/notes.txt`, "not a lock");
  await Deno.writeTextFile(`${t.root}/hv01/undefined.lock`, "{}");
  await Deno.writeTextFile(`${t.root}/hv01/Host.lock`, '{"Holder":{"Host":5,"Pid":"x"}}');
  const [info, ...rest] = await l.status("hv01");
  assertEquals(rest, []);
  const { writtenAt, ...shape } = info!;
  assertOk(writtenAt instanceof Date, "the folder store tells when the file was written");
  assertEquals(shape, {
    host: "hv01",
    lockId: "Host",
    type: "Host",
    ref: "hv01/Host",
    expired: false,
    state: "ok",
    holder: {},
    origin: "resource-locker",
  });
  assertEquals(await l.test("hv01", ["Generic", "File"]), false);
  assertEquals(await l.test("hv01", ["Host"]), true);
  // A Host lock drains past the vanished shared lock.
  await Deno.remove(`${t.root}/hv01/Host.lock`);
  await l.acquire(request("s1", { type: "Host", drainTimeoutMs: 1_000 }));
});

Deno.test("history() fails when an entry cannot be read, and gives released entries no break fields", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  let fail = false;
  const store: LockStore = {
    ...fs,
    readHistory: (host, name) =>
      fail ? Promise.reject(new StoreError(t.root, "cannot read")) : fs.readHistory(host, name),
  };
  const l = locker(t.root, clock, store);
  const [lock] = await l.acquire(request("s1"));
  await l.release(lock!);
  await Deno.writeTextFile(`${t.root}/hv01/History/Generic-x.lock`, "{}"); // no time at all
  const [released, timeless] = await l.history("hv01");
  assertEquals("brokenBy" in released!, false);
  assertEquals("breakReason" in released!, false);
  assertEquals(timeless?.lockId, "Generic-x", "an entry without any time sorts last");
  fail = true;
  await assertRejects(() => l.history("hv01"), StoreError, "cannot read");
});

Deno.test("an empty caller or description is not written", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock());
  await l.acquire(request("s1", { type: "Host", caller: "", description: "" }));
  const content = await readLock(t.root, "hv01");
  assertEquals(["Caller" in content, "Description" in content], [false, false]);
});

Deno.test("stores that can watch are waited on instead of the clock, for retries and drains", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  const waits: [string, number][] = [];
  const store: LockStore = {
    ...fs,
    waitForChange: (host, ms) => {
      waits.push([host, ms]);
      clock.advance(ms);
      return Promise.resolve();
    },
  };
  const l = locker(t.root, clock, store);
  await l.acquire(request("holder", { type: "Host" }));
  const random = Math.random;
  Math.random = () => 0.5;
  try {
    await assertRejects(
      () => l.acquire(request("s1", { retryDelayMs: 1_000, attempts: 2 })),
      LockBusyError,
    );
  } finally {
    Math.random = random;
  }
  await l.acquire(request("reader", { hosts: ["db01"] }));
  await assertRejects(
    () => l.acquire(request("writer", { hosts: ["db01"], type: "Host", drainTimeoutMs: 300 })),
    DrainTimeoutError,
  );
  assertEquals(waits, [["hv01", 1_010], ["db01", 300]]);
  assertEquals(clock.sleeps, [], "the clock was not slept on");
});

Deno.test("a drain waits out only what is left of its timeout", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  await l.acquire(request("reader"));
  // Renewals every 200 ms cut the wait; the last piece is what is left.
  await within(
    10_000,
    assertRejects(
      () => l.acquire(request("writer", { type: "Host", drainTimeoutMs: 300, ttlMs: 600 })),
      DrainTimeoutError,
    ),
  );
  assertEquals(clock.sleeps, [200, 100]);
});

Deno.test("the newest break of a session is found whatever the order of History's names", async () => {
  // Host entries are named `Host.lock-<session>.<unique>` (older ones `Host.lock-<unique>`).
  for (
    const [older, newer] of [["Host.lock-s1.a", "Host.lock-s1.b"], [
      "Host.lock-s1.b",
      "Host.lock-s1.a",
    ]]
  ) {
    await using t = await tempStore();
    const l = locker(t.root, new FakeClock());
    await Deno.mkdir(`${t.root}/hv01/History`, { recursive: true });
    const entry = (reason: string, at?: string) =>
      JSON.stringify({
        SessionId: "s1",
        BrokenBy: "x",
        BreakReason: reason,
        ...(at ? { BrokenAtUtc: at } : {}),
      });
    await Deno.writeTextFile(`${t.root}/hv01/History/Host.lock-s1.0`, entry("no time"));
    await Deno.writeTextFile(
      `${t.root}/hv01/History/${older}`,
      entry("older", "2026-01-01T00:00:00.000Z"),
    );
    await Deno.writeTextFile(
      `${t.root}/hv01/History/${newer}`,
      entry("newer", "2026-01-02T00:00:00.000Z"),
    );
    const ref = { host: "hv01", lockId: "Host", type: "Host" as const, sessionId: "s1" };
    const result = await l.release(ref);
    assertEquals([result.status, result.breakReason], ["lost", "newer"], older);
  }
  // A break without time or reason reports neither.
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock());
  await Deno.mkdir(`${t.root}/hv01/History`, { recursive: true });
  await Deno.writeTextFile(
    `${t.root}/hv01/History/Generic-s1.lock`,
    '{"SessionId":"s1","BrokenBy":"x"}',
  );
  const result = await l.release({
    host: "hv01",
    lockId: "Generic-s1",
    type: "Generic",
    sessionId: "s1",
  });
  assertEquals(result, { ref: "hv01/Generic-s1", status: "lost", brokenBy: "x" });
});

Deno.test("a Host ref's fate is looked for among Host entries only", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  const [shared] = await l.acquire(request("s1", { ttlMs: 1_000 }));
  clock.advance(5_000);
  await l.breakLock(shared!, "shared lock broken", false);
  const [host] = await l.acquire(request("s1", { type: "Host" }));
  await l.release(host!);
  assertEquals((await l.release(host!)).status, "already-released");
});

Deno.test("breakLock(): a live lock needs force by default; a ref without a session breaks whoever holds it", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock());
  const [lock] = await l.acquire(request("s1", { type: "Host" }));
  await assertRejects(() => l.breakLock(lock!, "why"), LockBusyError);
  const bare = { host: "hv01", lockId: "Host", type: "Host" as const };
  assertEquals((await l.breakLock(bare, "bare", true)).sessionId, "s1");
  await Deno.writeTextFile(`${t.root}/hv01/Host.lock`, '{"Caller":"powershell"}');
  assertEquals((await l.breakLock(bare, "ps", true)).caller, "powershell");
  assertEquals(await t.files("hv01"), []);
});

Deno.test("status() puts the Host lock first and orders the rest whatever order the store lists them in", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  const store: LockStore = { ...fs, list: async (host) => (await fs.list(host)).reverse() };
  const l = locker(t.root, clock, store);
  await l.acquire(request("zz"));
  await l.acquire(request("aa"));
  await l.acquire(request("hh", { type: "Host", drain: false }));
  assertEquals((await l.status("hv01")).map((i) => i.lockId), ["Host", "Generic-aa", "Generic-zz"]);
});

Deno.test("history() trusts UnlockedAtUtc over the writer's local ticks", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock()); // reads at UTC
  await Deno.mkdir(`${t.root}/hv01/History`, { recursive: true });
  // Written at UTC+2: ticks of 12:00 local, the same instant as 10:00Z.
  const ticks = 621_355_968_000_000_000n +
    BigInt(Date.UTC(2026, 0, 1, 12)) * 10_000n;
  await Deno.writeTextFile(
    `${t.root}/hv01/History/Generic-s1.lock`,
    `{"UnlockedAt":${ticks},"UnlockedAtUtc":"2026-01-01T10:00:00.000Z"}`,
  );
  assertEquals((await l.history("hv01"))[0]?.unlockedAt?.toISOString(), "2026-01-01T10:00:00.000Z");
});

/** The local store under `root`, recording every remove it is asked for. */
function recordingRemoves(root: string, read?: LockStore["read"]) {
  const fs = folderStore(root);
  const removes: string[] = [];
  const store: LockStore = {
    ...fs,
    read: read ?? fs.read.bind(fs),
    remove: (host, name, version) => {
      removes.push(`${host}/${name}`);
      return fs.remove(host, name, version);
    },
  };
  return { store, removes };
}

Deno.test("a shared lock the session held already is never removed, refused or failing", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  let failHost = false;
  const fs = folderStore(t.root);
  const { store, removes } = recordingRemoves(
    t.root,
    (host, name) =>
      failHost && name === "Host.lock"
        ? Promise.reject(new StoreError(t.root, "read failed"))
        : fs.read(host, name),
  );
  const l = locker(t.root, clock, store);
  await l.acquire(request("s1"));
  await l.acquire(request("s2", { type: "Host", drain: false }));
  await assertRejects(() => l.acquire(request("s1")), LockBusyError);
  failHost = true;
  const error = await assertRejects(() => l.acquire(request("s1")), StoreError, "read failed");
  assertEquals(error.message.includes("could not release"), false, error.message);
  assertEquals(removes, [], "nothing removed");
  assertEquals(await t.files("hv01"), ["Generic-s1.lock", "Host.lock"]);
});

Deno.test("a create that failed before making anything leaves nothing to name", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock(), faultyStore(t.root, { create: () => "before" }));
  for (const type of ["Host", "Generic"] as const) {
    const error = await assertRejects(() => l.acquire(request("s1", { type })), StoreError);
    assertEquals(error.message, "create failed", type);
  }
});

Deno.test("each race seam holds its change until it is let go", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  const changes: string[] = [];
  const store: LockStore = {
    ...fs,
    replace: (...args) => (changes.push("replace"), fs.replace(...args)),
    archive: (...args) => (changes.push("archive"), fs.archive(...args)),
  };
  const l = locker(t.root, clock, store);
  for (const point of ["locker.renew.checked", "locker.release.checked", "locker.break.judged"]) {
    const [lock] = await l.acquire(request("s1", { type: "Host", ttlMs: 60_000 }));
    changes.length = 0;
    let reached!: () => void;
    const atSeam = new Promise<void>((resolve) => reached = resolve);
    let letGo!: () => void;
    const gate = new Promise<void>((resolve) => letGo = resolve);
    const previous = setSeamHook((event) => {
      if (event.point !== point) return undefined;
      reached();
      return gate;
    });
    try {
      const change = point === "locker.renew.checked"
        ? l.renewAll([lock!], 60_000)
        : point === "locker.release.checked"
        ? l.release(lock!)
        : l.breakLock(lock!, "test", true);
      await atSeam;
      // A change that did not wait at the seam has called the store by now.
      assertEquals(changes, [], `${point}: the store is not changed while held`);
      letGo();
      await change;
      assertEquals(changes.length, 1, point);
    } finally {
      setSeamHook(previous);
    }
    if (point === "locker.renew.checked") await l.release(lock!);
  }
});

// --- src/locker.ts: the survivors of the run at 32d0363 ---------------------

// Mutant: mapLimit() starts max(limit, items) workers instead of min(limit, items).
Deno.test("mapLimit() runs at most `limit` at once, and every item once, in order", async () => {
  for (const [limit, count] of [[2, 7], [8, 3]] as const) {
    let running = 0;
    let most = 0;
    const gates = Array.from({ length: count }, () => Promise.withResolvers<void>());
    const done = mapLimit([...Array(count).keys()], limit, async (i) => {
      running++;
      most = Math.max(most, running);
      await gates[i]!.promise;
      running--;
      return i * 10;
    });
    // Let every worker that may start reach its gate before opening any.
    await new Promise((resolve) => setTimeout(resolve, 0));
    assertEquals(running, Math.min(limit, count), `${count} items, limit ${limit}: started`);
    for (const gate of gates) {
      gate.resolve();
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    const results = await done;
    assertEquals(most, Math.min(limit, count), `${count} items, limit ${limit}: at most`);
    assertEquals(
      results.map((r) => r.status === "fulfilled" ? r.value : undefined),
      [...Array(count).keys()].map((i) => i * 10),
    );
  }
});

/**
 * A local store whose breaks always lose (the lock changed between the look
 * and the move, as when another caller renews it each time): each attempt
 * counted, and refused for good after `cap` (so a loop that never ends fails).
 */
function losingBreaks(root: string, cap = 20) {
  const fs = folderStore(root);
  const counter = { archives: 0 };
  const store: LockStore = {
    ...fs,
    archive: () => {
      counter.archives++;
      if (counter.archives > cap) throw new Error(`archive called more than ${cap} times`);
      return Promise.resolve(false);
    },
  };
  return { store, counter };
}

// Mutants: #inTheWay() tries `round <= 3` or `round--` times.
Deno.test("an expired Host lock that keeps changing under every break is tried three times, then stays in the way", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  await locker(t.root, clock).acquire(request("old", { type: "Host", ttlMs: 1_000 }));
  clock.advance(5_000);
  const { store, counter } = losingBreaks(t.root);
  const error = await assertRejects(
    () => locker(t.root, clock, store).acquire(request("s1")),
    LockBusyError,
  );
  assertEquals(counter.archives, 3, "three breaks");
  assertEquals(error.holders.map((h) => h.sessionId), ["old"]);
  assertEquals(await t.files("hv01"), ["Host.lock"], "the shared lock made is taken back");
});

// Mutant: #inTheWay() breaks the session's own expired Host lock (its session check → false).
Deno.test("a session's own expired Host lock lets its shared lock in and is not broken", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  await l.acquire(request("s1", { type: "Host", ttlMs: 1_000 }));
  clock.advance(5_000);
  const [shared] = await l.acquire(request("s1"));
  assertEquals(shared?.lockId, "Generic-s1");
  assertEquals(await t.files("hv01"), ["Generic-s1.lock", "Host.lock"]);
  assertEquals((await readLock(t.root, "hv01")).SessionId, "s1");
  assertEquals(await t.history("hv01"), [], "nothing broken");
});

// Mutants: breakLock() goes round forever (`round--`, `round >= 5` → false, its
// StoreError dropped) or seven times (`round > 5`).
Deno.test("a break whose lock keeps changing gives up after six rounds with a store error", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const [lock] = await locker(t.root, clock).acquire(request("s1", { type: "Host" }));
  const { store, counter } = losingBreaks(t.root);
  await assertRejects(
    () => locker(t.root, clock, store).breakLock(lock!, "stuck", true),
    StoreError,
    "kept changing while being broken",
  );
  assertEquals(counter.archives, 6);
  assertEquals((await readLock(t.root, "hv01")).SessionId, "s1", "still there");
});

// Mutant: #fate() without its `ref.sessionId === undefined` check: a bare
// Host ref looks for History entries named `Host.lock-undefined.…`.
Deno.test("a Host ref without a session is not told 'lost' by a History entry named for a session 'undefined'", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock());
  await Deno.mkdir(`${t.root}/hv01/History`, { recursive: true });
  await Deno.writeTextFile(
    `${t.root}/hv01/History/Host.lock-undefined.0f0e`,
    '{"Caller":"ps","BrokenBy":"someone","BreakReason":"stuck"}',
  );
  const bare = { host: "hv01", lockId: "Host", type: "Host" as const };
  assertEquals(await l.release(bare, true), { ref: "hv01/Host", status: "already-released" });
});

// Mutant: #fate() without the content's session check: History names start
// with the session, and session "s1.x"'s names start with "s1." too.
Deno.test("a Host lock's fate is its own session's break, not one of a session whose name starts the same", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  const [other] = await l.acquire(request("s1.x", { type: "Host" }));
  await l.breakLock(other!, "other session", true);
  assertOk((await t.history("hv01"))[0]!.startsWith("Host.lock-s1.x."));
  const ref = { host: "hv01", lockId: "Host", type: "Host" as const, sessionId: "s1" };
  assertEquals(await l.release(ref), { ref: "hv01/Host@s1", status: "already-released" });
});

// Mutant: #fate() reads every History entry of the session, not the newest FATE_SCAN_LIMIT.
Deno.test("a lock's fate reads at most 256 History entries of its session", async () => {
  await using t = await tempStore();
  const fs = folderStore(t.root);
  let reads = 0;
  const store: LockStore = {
    ...fs,
    readHistory: (...args) => (reads++, fs.readHistory(...args)),
  };
  const l = locker(t.root, new FakeClock(), store);
  await Deno.mkdir(`${t.root}/hv01/History`, { recursive: true });
  for (let i = 0; i < 300; i++) {
    await Deno.writeTextFile(
      `${t.root}/hv01/History/Host.lock-s1.${String(i).padStart(3, "0")}`,
      '{"SessionId":"s1"}',
    );
  }
  const ref = { host: "hv01", lockId: "Host", type: "Host" as const, sessionId: "s1" };
  assertEquals((await l.release(ref)).status, "already-released");
  assertEquals(reads, 256);
});

// --- a holder's release without a read ----------------------------------------------

/** The folder store, counting reads of lock entries. */
function countingReads(root: string): { store: LockStore; reads: () => number } {
  const fs = folderStore(root);
  let reads = 0;
  return {
    store: { ...fs, read: (host, name) => (reads++, fs.read(host, name)) },
    reads: () => reads,
  };
}

Deno.test("a holder releases what it wrote, taken or renewed, without reading it first", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const { store, reads } = countingReads(t.root);
  const l = locker(t.root, clock, store);
  for (const type of ["Host", "Generic"] as const) {
    const [lock] = await l.acquire(request("s1", { type, ttlMs: 60_000 }));
    clock.advance(20_000);
    await l.renewAll([lock!], 60_000); // reads once, to check it is still ours
    const before = reads();
    assertEquals((await l.release(lock!)).status, "released");
    assertEquals(reads() - before, 0, `${type}: released as renewed, unread`);
    const [record] = await l.history("hv01", 1);
    assertEquals(record!.sessionId, "s1");
    assertOk(record!.unlockedAt, "the record says when");
  }
  assertEquals(await t.files("hv01"), []);
});

Deno.test("a holder whose lock changed since it wrote it reads it: renewed elsewhere it is released, retaken it is not moved", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const { store, reads } = countingReads(t.root);
  const l = locker(t.root, clock, store);
  // renewed by another object of the session: a new version, still ours
  const [mine] = await l.acquire(request("s1", { type: "Host", ttlMs: 60_000 }));
  await l.renewAll([{ ...mine! }], 60_000);
  let before = reads();
  assertEquals((await l.release(mine!)).status, "released");
  assertEquals(reads() - before, 1, "the move as written failed: read, judged, moved");
  // broken and retaken by another session: never moved
  const [old] = await l.acquire(request("s1", { type: "Host" }));
  await l.breakLock(old!, "taken over", true);
  const [other] = await l.acquire(request("s2", { type: "Host" }));
  before = reads();
  await assertRejects(() => l.release(old!), LockNotOwnedError);
  assertOk(reads() > before);
  assertEquals((await l.status("hv01"))[0]!.sessionId, "s2");
  await l.release(other!);
});

Deno.test("a lock just taken is released as written, unread", async () => {
  await using t = await tempStore();
  const { store, reads } = countingReads(t.root);
  const l = locker(t.root, new FakeClock(), store);
  for (const type of ["Host", "Generic"] as const) {
    const [lock] = await l.acquire(request("s1", { type, caller: "me", ttlMs: 60_000 }));
    const name = type === "Host" ? "Host.lock" : "Generic-s1.lock";
    const wrote = await readLock(t.root, "hv01", name);
    const before = reads();
    assertEquals((await l.release(lock!)).status, "released");
    assertEquals(reads() - before, 0, type);
    // the record is the lock as written, with when it was let go
    const [record] = (await t.history("hv01")).filter((n) => n.startsWith(name));
    const { UnlockedAt, UnlockedAtUtc, ...rest } = await readLock(t.root, "hv01/History", record!);
    assertEquals(rest, wrote);
    assertOk(UnlockedAt !== undefined && UnlockedAtUtc !== undefined, "when it was let go");
    for (const file of await t.history("hv01")) await Deno.remove(`${t.root}/hv01/History/${file}`);
  }
  assertEquals(await t.files("hv01"), []);
});

Deno.test("a create refused untouched is passed on without touching the session's lock already there", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  for (const type of ["Host", "Generic"] as const) {
    // the session holds the lock already; its next create is refused before anything was done
    const [held] = await l.acquire(request("s1", { type }));
    const fs = folderStore(t.root);
    const refusing: LockStore = {
      ...fs,
      create: () => Promise.reject(new StoreError(t.root, "create refused", { unchanged: true })),
    };
    const error = await assertRejects(
      () => locker(t.root, clock, refusing).acquire(request("s1", { type })),
      StoreError,
    );
    assertEquals(error.message.includes("could not release"), false, error.message);
    const file = type === "Host" ? "Host.lock" : "Generic-s1.lock";
    assertEquals(await t.files("hv01"), [file], `${type}: the lock held before stays`);
    await l.release(held!);
  }
});

Deno.test("a drain lists the host anew after its first look: a shared lock made after the create's listing is waited on", async () => {
  await using t = await tempStore();
  const clock = new StuckClock(); // time moves only in the wait below
  const fs = folderStore(t.root);
  const l = locker(t.root, clock);
  const [early] = await l.acquire(request("s2"));
  // a shared locker that looked for a Host lock before ours was there (as a
  // check-then-create locker does), and made its lock after the listing
  const late = locker(t.root, clock, {
    ...fs,
    read: (host, name) => name === "Host.lock" ? Promise.resolve(undefined) : fs.read(host, name),
  });
  let woken = 0;
  const store: LockStore = {
    ...fs,
    createAndList: async (host, name, data) => {
      const version = await fs.create(host, name, data);
      return { version, names: await fs.list(host) };
    },
    waitForChange: async (_host, ms) => {
      if (woken++ === 0) {
        // s3 first: the drain's look that runs beside this wait sees s2 go only after
        await late.acquire(request("s3"));
        await l.release(early!);
      }
      clock.advance(ms);
    },
  };
  const error = await within(
    10_000,
    assertRejects(
      () =>
        locker(t.root, clock, store).acquire(
          request("s1", { type: "Host", drainTimeoutMs: 1_000 }),
        ),
      DrainTimeoutError,
    ),
  );
  assertEquals(error.holders.map((lock) => lock.sessionId), ["s3"]);
  assertEquals(await t.files("hv01"), ["Generic-s3.lock"]);
  await l.release(parseLockRef("hv01/Generic-s3"), true);
});

// --- a Host lock's drain starts from the listing made with its create ----------------

Deno.test("a Host lock's drain starts from the listing its store made with the create, and lists itself when there is none", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  let lists = 0;
  let tell = true;
  const store: LockStore = {
    ...fs,
    list: (host) => (lists++, fs.list(host)),
    createAndList: async (host, name, data) => {
      const version = await fs.create(host, name, data);
      return tell ? { version, names: await fs.list(host) } : { version };
    },
  };
  const l = locker(t.root, clock, store);
  // a free host: no list besides the create's
  const [host] = await l.acquire(request("s1", { type: "Host" }));
  assertEquals(lists, 0);
  await l.release(host!);
  // a shared lock of another session in the listing is drained (here: timed out on)
  const [shared] = await l.acquire(request("s2"));
  lists = 0;
  const error = await assertRejects(
    () => l.acquire(request("s1", { type: "Host" })),
    DrainTimeoutError,
  );
  assertEquals(error.holders.map((lock) => lock.sessionId), ["s2"]);
  assertEquals(lists, 0, "the listing named it");
  await l.release(shared!);
  // no listing from the store: the drain lists
  tell = false;
  const [again] = await l.acquire(request("s1", { type: "Host" }));
  assertEquals(lists, 1);
  await l.release(again!);
  // shared locks and Host locks that do not drain never ask for it
  let asked = 0;
  const counting: LockStore = {
    ...store,
    createAndList: (...args) => (asked++, store.createAndList!(...args)),
  };
  const m = locker(t.root, clock, counting);
  await m.release((await m.acquire(request("s3")))[0]!);
  await m.release((await m.acquire(request("s3", { type: "Host", drain: false })))[0]!);
  assertEquals(asked, 0);
  assertEquals(await t.files("hv01"), []);
});
// --- src/locker.ts: waiting (ProgressGate, #waitWhileBlocked, #blockedFor) --

/** `fn` with Math.random fixed at 0.5: a retry then waits the delay plus 10 ms. */
async function withoutJitter<T>(fn: () => Promise<T>): Promise<T> {
  const random = Math.random;
  Math.random = () => 0.5;
  try {
    return await fn();
  } finally {
    Math.random = random;
  }
}

/** A local store without change notifications (no `waitForChange`): waiters look every 500 ms. */
function pollingStore(root: string): LockStore {
  const { waitForChange: _, ...store } = folderStore(root);
  return store;
}

// Mutants: `now - this.#at < PROGRESS_EVERY_MS` as `<=`, `>=`, `now + this.#at`.
Deno.test("an unchanged wait is reported again once 30 s have passed, to the millisecond", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  await l.acquire(request("holder", { type: "Host" }));
  const reported: [number | undefined, number][] = [];
  const start = clock.now();
  await assertRejects(
    () =>
      withoutJitter(() =>
        l.acquire(request("waiter", {
          retryDelayMs: 990, // 1 s between attempts
          attempts: 32,
          onProgress: (p) => reported.push([p.attempt, p.at.getTime() - start]),
        }))
      ),
    LockBusyError,
  );
  assertEquals(reported, [[1, 0], [31, 30_000]]);
});

// A total wait (`--wait 2h`), and a drain without a lease, used to sleep to
// their end in one wait: one line for hours.
for (
  const [what, first, second, error] of [
    ["a total wait with the same holder", "Host", { waitMs: 100_000 }, LockBusyError],
    ["a drain with the same readers", "Generic", {
      type: "Host",
      drainTimeoutMs: 100_000,
    }, DrainTimeoutError],
  ] as const
) {
  Deno.test(`${what} reports again every 30 s, not once for all of it`, async () => {
    await using t = await tempStore();
    const clock = new FakeClock();
    const l = locker(t.root, clock, pollingStore(t.root));
    await l.acquire(request("first", { type: first }));
    const reported: number[] = [];
    const start = clock.now();
    await assertRejects(
      () =>
        l.acquire(request("second", {
          ...second,
          onProgress: (p) => reported.push(p.at.getTime() - start),
        })),
      error,
    );
    assertEquals(reported, [0, 30_000, 60_000, 90_000]);
  });
}

// Mutant: the holders of a progress state not sorted (`.sort()` removed).
Deno.test("the same locks in the way listed in another order are no new progress", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  let flip = false;
  const store: LockStore = {
    ...fs,
    list: async (host) => {
      const names = (await fs.list(host)).sort();
      flip = !flip;
      return flip ? names.reverse() : names;
    },
  };
  const l = locker(t.root, clock, store);
  await l.acquire(request("reader-a"));
  await l.acquire(request("reader-b"));
  const reported: string[][] = [];
  await assertRejects(
    () =>
      l.acquire(request("writer", {
        type: "Host",
        ttlMs: 3_000, // renewed every second: a fresh look at the readers each time
        drainTimeoutMs: 10_000,
        onProgress: (p) => reported.push(p.holders.map((h) => h.sessionId!)),
      })),
    DrainTimeoutError,
  );
  assertEquals(reported.length, 1, `one line for one state: ${JSON.stringify(reported)}`);
});

// Mutant: a holder's key without its session (`sessionId ?? ""` as `&&`).
Deno.test("a host handed to another session while waiting is new progress", async () => {
  await using t = await tempStore();
  const clock = new HookedClock();
  // No notifications: the hand-over happens while the waiter sleeps, not beside it.
  const l = locker(t.root, clock, pollingStore(t.root));
  const [first] = await l.acquire(request("first", { type: "Host" }));
  let handed: Promise<unknown> | undefined;
  clock.afterSleep = async () => {
    handed ??= l.release(first!).then(() => l.acquire(request("second", { type: "Host" })));
    await handed;
  };
  const reported: string[] = [];
  await assertRejects(
    () =>
      l.acquire(request("waiter", {
        retryDelayMs: 1_000,
        attempts: 3,
        onProgress: (p) => reported.push(p.holders.map((h) => h.sessionId).join()),
      })),
    LockBusyError,
  );
  assertEquals(reported, ["first", "second"]);
});

// Mutants of originOf(): each state and each field of ours tested on its own.
Deno.test("status() tells who wrote a lock: us by any field of ours, PowerShell by LockedAt or its first step", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock());
  const cases: [string, string][] = [
    ["", "unknown"],
    ["{not json", "unknown"],
    ["Invoke-Maintenance", "powershell"],
    ['{"SessionId":"s1"}', "resource-locker"],
    ['{"LockedAtUtc":"2026-12-01T10:00:00.000Z"}', "resource-locker"],
    ['{"Holder":{"Host":"h","Pid":1}}', "resource-locker"],
    ['{"Type":"Host"}', "resource-locker"],
    ['{"ExpiresAtUtc":"2026-12-01T10:00:00.000Z"}', "resource-locker"],
    ['{"LockedAt":639000000000000000,"Caller":"ps"}', "powershell"],
    ['{"Caller":"someone"}', "unknown"],
  ];
  const origins: string[] = [];
  for (const [i, [text]] of cases.entries()) {
    await Deno.mkdir(`${t.root}/h${i}`);
    await Deno.writeTextFile(`${t.root}/h${i}/Host.lock`, text);
    origins.push((await l.status(`h${i}`))[0]!.origin!);
  }
  assertEquals(origins, cases.map(([, origin]) => origin));
});

// --- src/locker.ts: slots of maintenance groups --------------------------------

/** A claim on a slot of `group` (max `max`, in its own folder `_group-<group>`) for `member`. */
function claim(group: string, member: string, max = 1): SlotClaim {
  return { group, max, home: `_group-${group}`, member };
}

/** A Host lock request on `member` with slots of `groups`. */
function hostWithSlots(
  sessionId: string,
  member: string,
  groups: string[],
  extra: Partial<AcquireRequest> = {},
): AcquireRequest {
  return request(sessionId, {
    hosts: [member],
    type: "Host",
    drain: false,
    slots: groups.map((g) => claim(g, member)),
    ...extra,
  });
}

// Mutants of #takeSlot(): a slot of another session for the same member taken
// as the session's own (its session check as true), or a slot taken over
// from a left-over one not counted as made (`made` false, `owned` false):
// rewritten in place, it would stay behind when the attempt fails.
Deno.test("a slot left over for the same member is taken over in one look, and taken back when the attempt fails", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  // "old" held hv01 with slot a, and lost its Host lock: the slot is left over
  const old = await l.acquireAll(hostWithSlots("old", "hv01", ["a"]));
  await l.release(old.locks[0]!);
  // group b is full
  await l.acquireAll(hostWithSlots("busy", "hv02", ["b"]));
  await assertRejects(
    () => l.acquireAll(hostWithSlots("s1", "hv01", ["a", "b"])),
    LockBusyError,
  );
  assertEquals(await t.files("_group-a"), [], "the left-over slot replaced, then taken back");
  assertEquals(await t.files("hv01"), []);
  // taken over without a second look
  await l.acquireAll(hostWithSlots("old", "hv01", ["a"])).then((a) => l.release(a.locks[0]!));
  const fs = folderStore(t.root);
  let looks = 0;
  const counting = locker(t.root, clock, {
    ...fs,
    list: (host) => (host === "_group-a" && looks++, fs.list(host)),
  });
  const taken = await counting.acquireAll(hostWithSlots("s2", "hv01", ["a"]));
  assertEquals(looks, 1);
  assertEquals((await l.groupSlots("a", "_group-a")).map((slot) => slot.sessionId), ["s2"]);
  await l.releaseSlots(taken.slots);
  await l.release(taken.locks[0]!);
});

// Mutants: #rollback() names every slot of the attempt (`.filter` removed),
// or none (its filter always false), as left behind.
Deno.test("a store fault on one group names a slot taken in another that could not be freed, and only then", async () => {
  await using t = await tempStore();
  let removes = false;
  const store = faultyStore(t.root, {
    list: (host) => host === "_group-b" ? "before" : undefined,
    remove: (_, name) => removes && name.startsWith("Group-") ? "before" : undefined,
  });
  const l = locker(t.root, new FakeClock(), store);
  const freed = await assertRejects(
    () => l.acquireAll(hostWithSlots("s1", "hv01", ["a", "b"])),
    StoreError,
  );
  assertEquals(freed.message, "list failed");
  assertEquals(await t.files("_group-a"), [], "slot a was taken back");
  removes = true;
  const left = await assertRejects(
    () => l.acquireAll(hostWithSlots("s2", "hv02", ["a", "b"])),
    StoreError,
  );
  assertEquals(
    left.message,
    "list failed; could not release _group-a/Group-a.slot-1: unlock them with the force option",
  );
  assertEquals(left.remedies, ["force"]);
  assertEquals(await t.files("hv02"), [], "the Host lock was taken back");
});

// Mutants: the members a full group is asked for by one request (`needs`)
// not set, or counting claims of other groups (`c.group === name` as true).
Deno.test("a group too full for the members of one request says how many slots they need", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock());
  await l.acquireAll(request("other", {
    hosts: ["hv09"],
    type: "Host",
    drain: false,
    caller: "x",
    slots: [claim("g", "hv09", 2)],
  }));
  const busy = await assertRejects(
    () =>
      l.acquireAll(request("s1", {
        hosts: ["hv01", "hv02"],
        type: "Host",
        drain: false,
        slots: [claim("g", "hv01", 2), claim("g", "hv02", 2), claim("h", "hv01")],
      })),
    LockBusyError,
  );
  assertOk(
    /^Cannot lock "hv0[12]": group "g": 1 of 2 in maintenance: hv09 by "x" since \S+; locking hv01, hv02 needs 2 slots \(1 attempt\)$/
      .test(busy.message),
    busy.message,
  );
  for (const folder of ["hv01", "hv02", "_group-g", "_group-h"]) {
    assertEquals(
      (await t.files(folder)).filter((f) => !f.startsWith("Group-g.slot-1")),
      [],
      `${folder}: all taken back`,
    );
  }
});

// Mutants: slots above the group's max (left from a larger max) counted in
// the way (`s.info.slot <= claim.max` as true or `<`), or freed and taken.
Deno.test("a slot above the group's max is neither in the way nor free: an expired one is left alone", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  for (const [session, member] of [["a", "hv05"], ["b", "hv06"]] as const) {
    await l.acquireAll(request(session, {
      hosts: [member],
      type: "Host",
      drain: false,
      caller: session,
      slots: [claim("g", member, 2)],
    }));
  }
  const above = JSON.stringify({
    Type: "GroupSlot",
    Group: "g",
    Member: "hv07",
    SessionId: "old",
    ExpiresAtUtc: new Date(clock.now() - 60_000).toISOString(),
  });
  await Deno.writeTextFile(`${t.root}/_group-g/Group-g.slot-3`, above);
  const busy = await assertRejects(
    () => l.acquireAll(hostWithSlots("s1", "hv01", [], { slots: [claim("g", "hv01", 2)] })),
    LockBusyError,
  );
  assertOk(
    /^Cannot lock "hv01": group "g": 2 of 2 in maintenance: hv05 by "a" since \S+; hv06 by "b" since \S+ \(1 attempt\)$/
      .test(busy.message),
    busy.message,
  );
  assertEquals(await Deno.readTextFile(`${t.root}/_group-g/Group-g.slot-3`), above);
  assertEquals(await t.files("hv01"), []);
});

// Mutant: the session's own slot found for any member (`&&` as `||`).
Deno.test("a session locking a second member of a group takes a second slot, not its first one", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock());
  await l.acquireAll(hostWithSlots("s1", "hv01", [], { slots: [claim("g", "hv01", 2)] }));
  const second = await l.acquireAll(
    hostWithSlots("s1", "hv02", [], { slots: [claim("g", "hv02", 2)] }),
  );
  assertEquals(second.slots.map((s) => [s.name, s.member]), [["Group-g.slot-2", "hv02"]]);
  const members = [];
  for (const name of await t.files("_group-g")) {
    members.push([name, (await readLock(t.root, "_group-g", name)).Member]);
  }
  assertEquals(members, [["Group-g.slot-1", "hv01"], ["Group-g.slot-2", "hv02"]]);
});

// Mutants: #takeSlot()'s four rounds (`round < 4` as `<=`), releaseSlots()'s five.
Deno.test("a slot take that keeps losing its create tries four times; a slot free that keeps losing its remove, five", async () => {
  await using t = await tempStore();
  const fs = folderStore(t.root);
  let creates = 0;
  let removes = 0;
  let hiding = false;
  const store: LockStore = {
    ...fs,
    // The slot files vanish from the listing: every look finds slot 1 free.
    list: async (host) =>
      (await fs.list(host)).filter((name) => !(hiding && name.startsWith("Group-"))),
    create: (host, name, data, options) => {
      if (name.startsWith("Group-")) creates++;
      return fs.create(host, name, data, options);
    },
    remove: (host, name, version) => {
      if (!hiding || !name.startsWith("Group-")) return fs.remove(host, name, version);
      removes++;
      return Promise.resolve(false); // changed since it was read, every time
    },
  };
  const l = locker(t.root, new FakeClock(), store);
  const held = await l.acquireAll(hostWithSlots("other", "hv09", ["g"]));
  hiding = true;
  creates = 0;
  const busy = await assertRejects(
    () => l.acquireAll(hostWithSlots("s1", "hv01", ["g"])),
    LockBusyError,
  );
  assertStringIncludes(busy.message, 'group "g": 0 of 1 in maintenance');
  assertEquals(creates, 4);
  const [freed] = await l.releaseSlots(held.slots);
  assertEquals(freed!.status, "rejected");
  assertOk((freed as PromiseRejectedResult).reason instanceof StoreError);
  assertEquals(removes, 5);
});

// Mutants of #createSlot() and #removeSlotIfOurs(): a create that fails.
Deno.test("a slot create that fails: untouched it is passed on, else what it may have made of ours is removed or named", async () => {
  await using t = await tempStore();
  const fs = folderStore(t.root);
  const encode = (fields: Record<string, unknown>) =>
    new TextEncoder().encode(JSON.stringify(fields));
  let fault: "unchanged" | "before" | "after" | "competitor" | "other member" | undefined;
  let failRemove = false;
  const options: unknown[] = [];
  const store: LockStore = {
    ...fs,
    create: async (host, name, data, opts) => {
      if (!name.startsWith("Group-")) return fs.create(host, name, data, opts);
      options.push(opts);
      const what = fault;
      if (what === "unchanged") throw new StoreError(host, "refused", { unchanged: true });
      if (what === "before") throw new StoreError(host, "create failed");
      if (what === "competitor") {
        await fs.create(host, name, encode({ SessionId: "rival", Member: "hv01" }));
      } else if (what === "other member") {
        await fs.create(host, name, encode({ SessionId: "s1", Member: "hv99" }));
      } else {
        const made = await fs.create(host, name, data, opts);
        if (what === undefined) return made;
      }
      throw new StoreError(host, "create answer lost");
    },
    // A store that refused the create untouched may refuse the rest too:
    // nothing is read back, so nothing is named left behind.
    read: (host, name) =>
      fault === "unchanged" && name.startsWith("Group-")
        ? Promise.reject(new StoreError(host, "read failed"))
        : fs.read(host, name),
    remove: (host, name, version) =>
      failRemove && name.startsWith("Group-")
        ? Promise.reject(new StoreError(host, "remove failed"))
        : fs.remove(host, name, version),
  };
  const l = locker(t.root, new FakeClock(), store);
  const attempt = async (what: typeof fault) => {
    fault = what;
    const error = await assertRejects(
      () => l.acquireAll(hostWithSlots("s1", "hv01", ["g"])),
      StoreError,
    );
    const left = await t.files("_group-g");
    for (const name of left) await Deno.remove(`${t.root}/_group-g/${name}`);
    return [error.message, left.length];
  };
  assertEquals(await attempt("unchanged"), ["refused", 0]);
  assertEquals(await attempt("before"), ["create failed", 0]);
  assertEquals(await attempt("after"), ["create answer lost", 0], "ours, removed");
  assertEquals(await attempt("competitor"), ["create answer lost", 1], "another's, kept");
  assertEquals(await attempt("other member"), ["create answer lost", 1], "another member's, kept");
  failRemove = true;
  assertEquals(await attempt("after"), [
    "create answer lost; could not release _group-g/Group-g.slot-1: unlock them with the force option",
    1,
  ]);
  // The lease goes to the store's create (native leases), and only when there is one.
  fault = undefined;
  failRemove = false;
  options.length = 0;
  const leased = await l.acquireAll(hostWithSlots("s1", "hv01", ["g"], { ttlMs: 60_000 }));
  await l.releaseSlots(leased.slots);
  await l.release({ host: "hv01", lockId: "Host", type: "Host", sessionId: "s1" });
  await l.acquireAll(hostWithSlots("s2", "hv01", ["g"]));
  assertEquals(options, [{ ttlMs: 60_000 }, {}]);
  assertEquals(Object.keys(options[1]!), []);
});

// Mutants of #readSlot() and #slots(): what a slot tells, in number order,
// expired to the millisecond, left over only when its member can be judged.
Deno.test("groupSlots() reads each slot's fields, by number, judging lease and member", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  const store: LockStore = {
    ...fs,
    // Newest first, and a slot that is gone by the time it is read.
    list: async (host) => [...(await fs.list(host)).sort().reverse(), "Group-g.slot-7"],
    // A store that would read a folder named "a..b" (this one refuses it).
    read: (host, name) => host === "a..b" ? Promise.resolve(undefined) : fs.read(host, name),
  };
  const l = locker(t.root, clock, store, 1_000);
  const ours = await l.acquireAll(
    hostWithSlots("s1", "hv01", [], {
      slots: [claim("g", "hv01", 20)],
      caller: "patch",
      description: "kb1",
      ttlMs: 60_000,
    }),
  );
  assertEquals(ours.slots.map((s) => s.name), ["Group-g.slot-1"]);
  const write = (n: number, fields: Record<string, unknown>) =>
    Deno.writeTextFile(`${t.root}/_group-g/Group-g.slot-${n}`, JSON.stringify(fields));
  const at = (ms: number) => new Date(clock.now() + ms).toISOString();
  // Out by one millisecond past the skew of 1 s, and exactly at it.
  await write(2, { Member: "hv02", SessionId: "x", ExpiresAtUtc: at(-1_001) });
  await write(10, { Member: "hv03", SessionId: "y", ExpiresAtUtc: at(-1_000) });
  // Members that are no host names: never judged, never left over.
  await write(3, { Member: "HV04", SessionId: "z" });
  await write(4, { Member: "a..b", SessionId: "z" });
  // No session or no member: nothing to judge either.
  await write(5, { Member: "hv05", Holder: "somewhere" });
  await write(6, { SessionId: "z", Holder: { Host: 7, Pid: "8" } });
  // hv08's Host lock is another session's; hv09's cannot be read (a folder).
  await l.acquire(request("w", { hosts: ["hv08"], type: "Host", drain: false }));
  await write(11, { Member: "hv08", SessionId: "v" });
  await Deno.mkdir(`${t.root}/hv09/Host.lock`, { recursive: true });
  await write(12, { Member: "hv09", SessionId: "v" });
  await Deno.writeTextFile(`${t.root}/_group-g/Group-other.slot-1`, "{}");
  await Deno.writeTextFile(`${t.root}/_group-g/Group-g.slot-x`, "{}");
  const slots = await l.groupSlots("g", "_group-g");
  assertEquals(slots.map((s) => [s.slot, s.expired, s.orphaned]), [
    [1, false, false],
    [2, true, true], // hv02 holds no Host lock of session x
    [3, false, false],
    [4, false, false],
    [5, false, false],
    [6, false, false],
    [10, false, true],
    [11, false, true],
    [12, false, false],
  ]);
  const [first, , , , fifth, sixth] = slots;
  assertEquals(first, {
    group: "g",
    slot: 1,
    name: "Group-g.slot-1",
    home: "_group-g",
    expired: false,
    orphaned: false,
    member: "hv01",
    sessionId: "s1",
    caller: "patch",
    description: "kb1",
    lockedAt: new Date(clock.now()),
    expiresAt: new Date(clock.now() + 60_000),
    holder: { host: "test", pid: 1 },
  });
  assertEquals(Object.keys(fifth!).sort(), [
    "expired",
    "group",
    "home",
    "member",
    "name",
    "orphaned",
    "slot",
  ]);
  assertEquals([sixth!.sessionId, sixth!.holder, "member" in sixth!], ["z", {}, false]);
  // A slot that cannot be read is a fault, not a free slot.
  await Deno.mkdir(`${t.root}/_group-g/Group-g.slot-8`);
  await assertRejects(() => l.groupSlots("g", "_group-g"), StoreError);
});

// Mutant: a slot the session held before counted as taken by this attempt
// (`take.value.owned` as true), so a refusal would free it.
Deno.test("a session locking its member again with a full group keeps the slot it held before", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock());
  await l.acquireAll(hostWithSlots("other", "hv09", ["b"]));
  await l.acquireAll(hostWithSlots("s1", "hv01", ["a"]));
  await assertRejects(
    () => l.acquireAll(hostWithSlots("s1", "hv01", ["a", "b"])),
    LockBusyError,
  );
  assertEquals(await t.files("_group-a"), ["Group-a.slot-1"], "slot a is still held");
  assertEquals((await readLock(t.root, "_group-a", "Group-a.slot-1")).SessionId, "s1");
  assertEquals(await t.files("hv01"), ["Host.lock"], "and so is the Host lock");
});

// Mutant: a full group looked at four times over (`free.length === 0 &&
// stale.length === 0` as false): refused after one look, not four.
Deno.test("a full group is refused after one look at its slots", async () => {
  await using t = await tempStore();
  const fs = folderStore(t.root);
  let looks = 0;
  const store: LockStore = {
    ...fs,
    list: (host) => (host === "_group-g" && looks++, fs.list(host)),
  };
  const l = locker(t.root, new FakeClock(), store);
  await l.acquireAll(hostWithSlots("other", "hv09", ["g"]));
  looks = 0;
  await assertRejects(() => l.acquireAll(hostWithSlots("s1", "hv01", ["g"])), LockBusyError);
  assertEquals(looks, 1);
});

// Mutants of renewSlots(): whose slot it is, the new lease, a replace that lost.
Deno.test("renewSlots() renews the session's slot for its member only, and loses one changed under it", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  const { slots: [slot] } = await l.acquireAll(
    hostWithSlots("s1", "hv01", [], { slots: [claim("g", "hv01", 2)], ttlMs: 60_000 }),
  );
  clock.advance(10_000);
  await l.renewSlots([slot!], 30_000);
  const renewed = await readLock(t.root, "_group-g", slot!.name);
  assertEquals(
    [Date.parse(renewed.RenewedAtUtc), Date.parse(renewed.ExpiresAtUtc)],
    [clock.now(), clock.now() + 30_000],
  );
  assertEquals([renewed.Member, renewed.SessionId, renewed.Type], ["hv01", "s1", "GroupSlot"]);
  const lost = (held: typeof slot) =>
    assertRejects(() => l.renewSlots([held!], 30_000), LockLostError);
  // The same name for another member or another session is not this slot.
  await lost({ ...slot!, member: "hv02" });
  await lost({ ...slot!, sessionId: "s2" });
  await lost({ ...slot!, name: "Group-g.slot-2" });
  // Freed between the renewal's look and its write.
  using held = holdAt("locker.slot.renew");
  const renewal = l.renewSlots([slot!], 30_000);
  await held.reached("locker.slot.renew");
  await l.releaseSlots([slot!]);
  held.letGo("locker.slot.renew");
  await assertRejects(() => renewal, LockLostError, "it was freed or taken over");
});

// Mutants of releaseSlots() and releaseSlotsOf(): only the session's slot
// for its member is freed, and only what was freed here is returned.
Deno.test("releaseSlotsOf() frees the session's slots of one member, and tells which it freed", async () => {
  await using t = await tempStore();
  const fs = folderStore(t.root);
  let vanish = "";
  let reads = 0;
  let failing = false;
  const store: LockStore = {
    ...fs,
    remove: (host, name, version) =>
      failing
        ? Promise.reject(new StoreError(host, "remove failed"))
        : fs.remove(host, name, version),
    read: async (host, name) => {
      // The second look at `vanish` (the release's, after the listing's) finds it gone.
      if (name === vanish && ++reads === 2) await Deno.remove(`${t.root}/${host}/${name}`);
      return fs.read(host, name);
    },
  };
  const l = locker(t.root, new FakeClock(), store);
  const g = (member: string) => claim("g", member, 4);
  await l.acquireAll(hostWithSlots("s1", "hv01", [], { slots: [g("hv01")] }));
  await l.acquireAll(hostWithSlots("s1", "hv02", [], { slots: [g("hv02")] }));
  await l.acquireAll(hostWithSlots("s2", "hv03", [], { slots: [g("hv03")] }));
  const members = async () => {
    const out = [];
    for (const name of await t.files("_group-g")) {
      out.push((await readLock(t.root, "_group-g", name)).Member);
    }
    return out;
  };
  assertEquals(await members(), ["hv01", "hv02", "hv03"]);
  // Neither another member's slot of the session nor another session's.
  const none = await l.releaseSlots([
    { group: "g", member: "hv02", home: "_group-g", name: "Group-g.slot-1", sessionId: "s1" },
    { group: "g", member: "hv03", home: "_group-g", name: "Group-g.slot-3", sessionId: "s1" },
  ]);
  assertEquals(none.map((r) => (r as PromiseFulfilledResult<boolean>).value), [false, false]);
  assertEquals(await members(), ["hv01", "hv02", "hv03"]);
  const freed = await l.releaseSlotsOf("hv01", "s1", [g("hv01")]);
  assertEquals(freed.map((s) => [s.name, s.member, s.sessionId]), [[
    "Group-g.slot-1",
    "hv01",
    "s1",
  ]]);
  assertEquals(await members(), ["hv02", "hv03"]);
  vanish = "Group-g.slot-2";
  assertEquals(
    await l.releaseSlotsOf("hv02", "s1", [g("hv02")]),
    [],
    "gone before it was freed here",
  );
  assertEquals(await members(), ["hv03"]);
  failing = true;
  await assertRejects(() => l.releaseSlotsOf("hv03", "s2", [g("hv03")]), StoreError);
});

/** A clock whose sleeps end only when aborted: a wait that nothing but an abort or a change ends. */
class StuckClock extends FakeClock {
  /** Sleeps not ended yet. */
  pending = 0;
  override sleep(_ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((_, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      this.pending++;
      signal?.addEventListener("abort", () => (this.pending--, reject(signal.reason)), {
        once: true,
      });
    });
  }
}

// Mutants of #waitWhileBlocked(): the caller's abort listener not added, or
// not removed; the check of the signal at each turn removed.
Deno.test("an abort ends a wait at once and leaves no listener on the caller's signal", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new StuckClock(), pollingStore(t.root));
  await l.acquire(request("holder", { type: "Host" }));
  const abort = new AbortController();
  let listeners = 0;
  const add = abort.signal.addEventListener.bind(abort.signal);
  const remove = abort.signal.removeEventListener.bind(abort.signal);
  abort.signal.addEventListener = (...args: Parameters<typeof add>) => (listeners++, add(...args));
  abort.signal.removeEventListener = (
    ...args: Parameters<typeof remove>
  ) => (listeners--, remove(...args));
  let waiting = false;
  const waiter = l.acquire(request("s1", {
    retryDelayMs: 60_000,
    attempts: 2,
    signal: abort.signal,
    onProgress: () => (waiting = true),
  }));
  while (!waiting) await new Promise((resolve) => setTimeout(resolve, 5));
  await new Promise((resolve) => setTimeout(resolve, 20));
  abort.abort(new Error("stop"));
  await within(5_000, assertRejects(() => waiter, Error, "stop"));
  assertEquals(listeners, 0);
  assertEquals(await t.files("hv01"), ["Host.lock"]);
});

// Mutants of #waitWhileBlocked() and #blockedFor(): how long each look waits.
Deno.test("a waiter looks every 500 ms without notifications, every 30 s with them, and wakes when the lease ends", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const polling = locker(t.root, clock, pollingStore(t.root));
  await polling.acquire(request("holder", { type: "Host" }));
  const wait = (l: Locker, retryDelayMs: number) =>
    withoutJitter(() =>
      assertRejects(() => l.acquire(request("s1", { retryDelayMs, attempts: 2 })), LockBusyError)
    );
  await wait(polling, 1_000);
  assertEquals(clock.sleeps, [500, 500, 10]);
  // Notifications that never come: a look every 30 s all the same.
  const fs = folderStore(t.root);
  const watches: number[] = [];
  const silentStore: LockStore = {
    ...fs,
    waitForChange: (_host, ms, signal) => {
      watches.push(ms);
      return untilStopped(signal);
    },
  };
  clock.sleeps.length = 0;
  await wait(locker(t.root, clock, silentStore), 100_000);
  assertEquals(clock.sleeps, [30_000, 30_000, 30_000, 10_010]);
  assertEquals(watches, clock.sleeps);
  // A lease that runs out 2 s from now, 100 ms of skew: the next attempt
  // comes 1 ms after both, and breaks it.
  await Deno.mkdir(`${t.root}/db01`);
  await Deno.writeTextFile(
    `${t.root}/db01/Host.lock`,
    JSON.stringify({
      SessionId: "gone",
      ExpiresAtUtc: new Date(clock.now() + 2_000).toISOString(),
    }),
  );
  clock.sleeps.length = 0;
  await withoutJitter(() =>
    locker(t.root, clock, silentStore, 100).acquire(
      request("s2", { hosts: ["db01"], retryDelayMs: 60_000, attempts: 2 }),
    )
  );
  assertEquals(clock.sleeps, [2_101]);
});

// Mutant: the wait's timer and watch not stopped once the wait ends (`stop.abort()` removed).
Deno.test("a wait woken by a change leaves no timer running", async () => {
  await using t = await tempStore();
  const clock = new StuckClock();
  const fs = folderStore(t.root);
  let wakes = 0;
  const store: LockStore = {
    ...fs,
    // One wake-up that says the holder's entry went (it did not), then none.
    waitForChange: (_host, _ms, signal) =>
      wakes++ === 0 ? Promise.resolve({ removed: ["Host.lock"] }) : untilStopped(signal),
  };
  const l = locker(t.root, clock, store);
  await l.acquire(request("holder", { type: "Host" }));
  await assertRejects(
    () => l.acquire(request("s1", { retryDelayMs: 60_000, attempts: 2 })),
    LockBusyError,
  );
  assertEquals([wakes, clock.pending], [1, 0]);
});

// Mutants of #blockedFor(): a holder now of another session, a slot left
// over, no holder named; each ends the wait at the next look.
Deno.test("a wait ends at the next look when the holder changed session or its slot was left over", async () => {
  await using t = await tempStore();
  const clock = new HookedClock();
  const l = locker(t.root, clock, pollingStore(t.root));
  const [first] = await l.acquire(request("first", { type: "Host" }));
  let once: Promise<unknown> | undefined;
  clock.afterSleep = async () => {
    once ??= l.release(first!).then(() => l.acquire(request("second", { type: "Host" })));
    await once;
  };
  await withoutJitter(() =>
    assertRejects(
      () => l.acquire(request("waiter", { retryDelayMs: 10_000, attempts: 2 })),
      LockBusyError,
      "(2 attempts)",
    )
  );
  assertEquals(clock.sleeps, [500], "the look after the first sleep found another holder");
  // A full group whose slot is left over (its member's Host lock gone).
  await l.acquireAll(hostWithSlots("holder", "hv09", ["g"]));
  once = undefined;
  clock.afterSleep = async () => {
    once ??= Deno.remove(`${t.root}/hv09/Host.lock`);
    await once;
  };
  clock.sleeps.length = 0;
  const taken = await withoutJitter(() =>
    l.acquireAll(hostWithSlots("s1", "hv02", ["g"], { retryDelayMs: 10_000, attempts: 2 }))
  );
  assertEquals(taken.slots.map((s) => s.name), ["Group-g.slot-1"]);
  assertEquals(clock.sleeps, [500], "the look after the first sleep found the slot left over");
});

// Mutant: #blockedFor() without its answer for nobody named (`POLL_MS`).
Deno.test("busy with nobody in the way, a waiter looks again every 500 ms even with notifications", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  const store: LockStore = {
    ...fs,
    create: () => Promise.resolve(undefined), // "exists"…
    read: () => Promise.resolve(undefined), // …and gone when looked at
    waitForChange: (_host, _ms, signal) => untilStopped(signal),
  };
  await withoutJitter(() =>
    assertRejects(
      () =>
        locker(t.root, clock, store).acquire(
          request("s1", { type: "Host", retryDelayMs: 1_000, attempts: 2 }),
        ),
      LockBusyError,
    )
  );
  assertEquals(clock.sleeps, [500, 500, 10]);
});

// A folder busy with other locks, or a server that answers every watch at
// once: each wake-up used to be a look and a new watch, as fast as they came.
Deno.test("wake-ups that change nothing in the way are paced: a burst, then 20 looks a second, no busy loop", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  let watches = 0;
  const store: LockStore = {
    ...folderStore(t.root),
    // a change every time at once, and none that names the lock in the way
    waitForChange: () => {
      watches++;
      return Promise.resolve();
    },
  };
  const l = locker(t.root, clock, store);
  await l.acquire(request("holder", { type: "Host" }));
  await within(
    10_000,
    withoutJitter(() =>
      assertRejects(
        () => l.acquire(request("s1", { retryDelayMs: 1_000, attempts: 2 })),
        LockBusyError,
      )
    ),
  );
  // 1010 ms between the attempts: the first look, 10 more at once, then one
  // every 50 ms.
  assertEquals(watches, 1 + 10 + 20);
  assertEquals(clock.sleeps, [...Array(20).fill(50), 10]);
});

// A signal after the take's last check reached the caller (lock, run) with
// the locks in hand, and its release took the session's earlier lock too.
Deno.test("a signal during the last step of a take that found the session's own lock rolls back nothing of it", async () => {
  await using t = await tempStore();
  const fs = folderStore(t.root);
  const stop = new AbortController();
  let armed = false;
  let listed = false;
  const store: LockStore = {
    ...fs,
    // the drain's look (no shared lock in the way) meets the signal: its last await
    list: async (host) => {
      const names = await fs.list(host);
      if (armed) {
        listed = true;
        stop.abort(new Error("interrupted"));
      }
      return names;
    },
  };
  const l = locker(t.root, new FakeClock(), store);
  await l.acquire(request("s", { type: "Host" }));
  armed = true;
  await assertRejects(
    () => l.acquire(request("s", { type: "Host", drainTimeoutMs: 1_000, signal: stop.signal })),
    Error,
    "interrupted",
  );
  assertOk(listed, "the drain looked");
  assertEquals(await t.files("hv01"), ["Host.lock"], "the session's lock from before stays");
});

// Mutants of #waitWhileBlocked()'s wake-up: any one of the entries in the
// way named removed (`some` as `every`), a slot's entry name as it is.
Deno.test("a wake-up naming one slot of a full group makes the waiter attempt at once", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  let wakes = 0;
  const members: string[] = [];
  const store: LockStore = {
    ...fs,
    // The first wake-up says slot 1 went (it did not); then none come. The
    // members' folders (where a slot's Host lock goes) are watched too.
    waitForChange: (host, _ms, signal) => {
      if (host === "hv08" || host === "hv09") {
        members.push(host);
        return untilStopped(signal);
      }
      return wakes++ === 0
        ? Promise.resolve({ removed: ["Group-g.slot-1"] })
        : untilStopped(signal);
    },
  };
  const l = locker(t.root, clock, store);
  const g = (member: string) => claim("g", member, 2);
  await l.acquireAll(hostWithSlots("a", "hv08", [], { slots: [g("hv08")] }));
  await l.acquireAll(hostWithSlots("b", "hv09", [], { slots: [g("hv09")] }));
  await withoutJitter(() =>
    assertRejects(
      () =>
        l.acquireAll(
          hostWithSlots("s1", "hv01", [], {
            slots: [g("hv01")],
            retryDelayMs: 60_000,
            attempts: 2,
          }),
        ),
      LockBusyError,
    )
  );
  assertEquals([wakes, clock.sleeps], [1, []], "attempted on the wake-up, without sleeping");
  assertEquals(members.sort(), ["hv08", "hv09"], "the slots' members' folders watched");
});

// Mutants of acquireAll()'s `wait`: it gives up at its end, to the
// millisecond; progress then tells what is left and no count of attempts.
Deno.test("wait gives up at its end to the millisecond; its progress has no attempt count", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock, pollingStore(t.root));
  await l.acquire(request("holder", { type: "Host" }));
  const progress: unknown[] = [];
  const start = clock.now();
  await within(
    10_000,
    assertRejects(
      () =>
        l.acquire(request("s1", {
          waitMs: 2_000,
          attempts: 1,
          onProgress: (p) => progress.push([p.attempt, p.attempts, p.waitMs, p.host]),
        })),
      LockBusyError,
      "(2 attempts)",
    ),
  );
  assertEquals(clock.now() - start, 2_000);
  assertEquals(progress, [[1, undefined, 2_000, "hv01"]]);
  assertEquals(clock.sleeps, [500, 500, 500, 500]);
  // Retries count their attempts.
  progress.length = 0;
  await withoutJitter(() =>
    assertRejects(
      () =>
        l.acquire(request("s2", {
          retryDelayMs: 990,
          attempts: 2,
          onProgress: (p) => progress.push([p.attempt, p.attempts, p.waitMs, p.host]),
        })),
      LockBusyError,
      "(2 attempts)",
    )
  );
  assertEquals(progress, [[1, 2, 1_000, "hv01"]]);
});

// Mutants of the renewal after a slow take: `>=` as `>`, `ttlMs / 3` as
// `* 3`, `now - attemptStart` as `+`, `&&` as `||`.
Deno.test("a take that lasted a third of the lease renews it before returning, a shorter one does not", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  let slowMs = 0;
  const store: LockStore = {
    ...fs,
    create: (host, name, data, options) => {
      clock.advance(slowMs);
      return fs.create(host, name, data, options);
    },
  };
  const l = locker(t.root, clock, store);
  const renewedAt = async (host: string, extra: Partial<AcquireRequest>) => {
    const start = clock.now();
    await l.acquire(request("s1", { hosts: [host], type: "Host", drain: false, ...extra }));
    const content = await readLock(t.root, host);
    return content.RenewedAtUtc === undefined
      ? undefined
      : [Date.parse(content.RenewedAtUtc) - start, Date.parse(content.ExpiresAtUtc) - start];
  };
  slowMs = 999;
  assertEquals(await renewedAt("hv01", { ttlMs: 3_000 }), undefined);
  slowMs = 1_000;
  assertEquals(await renewedAt("hv02", { ttlMs: 3_000 }), [1_000, 4_000]);
  assertEquals(await renewedAt("hv03", {}), undefined, "no lease, nothing to renew");
});

// Mutants of the drain's renewal: the slots of the request renewed with the locks.
Deno.test("a draining Host lock renews its slots with its lease; a drain that times out frees them", async () => {
  await using t = await tempStore();
  const clock = new HookedClock();
  const l = locker(t.root, clock);
  const [reader] = await l.acquire(request("reader"));
  const start = clock.now();
  let released: Promise<unknown> | undefined;
  clock.afterSleep = async () => {
    if (!released && clock.now() - start >= 1_500) released = l.release(reader!);
    await released;
  };
  const taken = await l.acquireAll(
    hostWithSlots("writer", "hv01", ["g"], { drain: true, ttlMs: 3_000, drainTimeoutMs: 60_000 }),
  );
  const slot = await readLock(t.root, "_group-g", taken.slots[0]!.name);
  assertEquals(Date.parse(slot.RenewedAtUtc), start + 1_000);
  assertEquals(Date.parse(slot.ExpiresAtUtc), start + 4_000);
  await l.releaseSlots(taken.slots);
  await l.release(taken.locks[0]!);
  // A drain that times out: the Host lock and the slot go.
  clock.afterSleep = undefined;
  await l.acquire(request("reader2"));
  await assertRejects(
    () =>
      l.acquireAll(hostWithSlots("writer2", "hv01", ["g"], { drain: true, drainTimeoutMs: 1_000 })),
    DrainTimeoutError,
  );
  assertEquals(await t.files("_group-g"), []);
  assertEquals((await t.files("hv01")).filter((f) => f.startsWith("Host")), []);
});

// Mutant: the drain waits on the shared locks of every host on one host
// (`lock.host === pendingHost` as true), looking again at once forever.
Deno.test("a drain over two hosts waits on the first host's shared locks, then times out", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock, pollingStore(t.root));
  await l.acquire(request("r1", { hosts: ["hv01"] }));
  await l.acquire(request("r2", { hosts: ["db01"] }));
  await within(
    10_000,
    assertRejects(
      () =>
        l.acquire(request("w", { hosts: ["db01", "hv01"], type: "Host", drainTimeoutMs: 1_000 })),
      DrainTimeoutError,
    ),
  );
  assertEquals(clock.sleeps, [500, 500]);
});

// Mutants of acquire() and acquireAll()'s checks of the slots they are given.
Deno.test("slots go with acquireAll() and Host locks only", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock());
  const slots = [claim("g", "hv01")];
  await assertRejects(() => l.acquire(hostWithSlots("s1", "hv01", ["g"])), TypeError, "acquireAll");
  await assertRejects(
    () => l.acquireAll(request("s1", { hosts: ["hv01"], slots })),
    TypeError,
    "Host locks only",
  );
  assertEquals(await t.files("hv01"), []);
  // No slots, or an empty list: a plain lock.
  const plain = await l.acquire(request("s1", { hosts: ["hv01"], slots: [] }));
  assertEquals(plain.map((p) => p.lockId), ["Generic-s1"]);
  assertEquals((await l.acquireAll(request("s2", { hosts: ["hv01"], slots: [] }))).slots, []);
});

// Mutants of #slotContent(): an empty caller or description written, the lease in seconds.
Deno.test("a slot's entry holds its lease in seconds, and no empty caller or description", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  const { slots: [leased] } = await l.acquireAll(
    hostWithSlots("s1", "hv01", ["g"], { caller: "", description: "", ttlMs: 90_000 }),
  );
  const content = await readLock(t.root, "_group-g", leased!.name);
  assertEquals(["Caller" in content, "Description" in content], [false, false]);
  assertEquals(
    [content.TtlSeconds, Date.parse(content.ExpiresAtUtc), content.Group, content.Member],
    [90, clock.now() + 90_000, "g", "hv01"],
  );
  const { slots: [plain] } = await l.acquireAll(hostWithSlots("s2", "hv02", ["h"]));
  const unleased = await readLock(t.root, "_group-h", plain!.name);
  assertEquals(["TtlSeconds" in unleased, "ExpiresAtUtc" in unleased], [false, false]);
});

// Mutants of #takeSlot()'s holders and slotHolder(): a full group names the
// others' slots with what they tell, never the session's own.
Deno.test("a full group's holders are the other sessions' slots, each with what it tells", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const l = locker(t.root, clock);
  const g = (member: string) => claim("g", member, 3);
  await l.acquireAll(hostWithSlots("s1", "hv01", [], { slots: [g("hv01")] }));
  await l.acquireAll(
    hostWithSlots("x", "hv09", [], { slots: [g("hv09")], caller: "c", description: "d" }),
  );
  await Deno.writeTextFile(
    `${t.root}/_group-g/Group-g.slot-3`,
    JSON.stringify({ Type: "GroupSlot" }),
  );
  const busy = await assertRejects(
    () => l.acquireAll(hostWithSlots("s1", "hv02", [], { slots: [g("hv02")] })),
    LockBusyError,
  );
  assertEquals(busy.holders, [
    {
      lockId: "Group-g.slot-2",
      group: "g",
      member: "hv09",
      caller: "c",
      description: "d",
      lockedAt: new Date(clock.now()),
      sessionId: "x",
    },
    { lockId: "Group-g.slot-3", group: "g" },
  ]);
  assertEquals(busy.host, "hv02");
});

// Mutant: a stale slot freed here but taken by another before our create
// counted as ours (`if (made)` as true).
Deno.test("a stale slot another taker takes between our free and our create is not ours", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  const rival = new TextEncoder().encode(
    JSON.stringify({ Type: "GroupSlot", Group: "g", Member: "hv09", SessionId: "rival" }),
  );
  const store: LockStore = {
    ...fs,
    remove: async (host, name, version) => {
      const removed = await fs.remove(host, name, version);
      if (removed && name === "Group-g.slot-1") await fs.create(host, name, rival);
      return removed;
    },
  };
  const l = locker(t.root, clock, store);
  await l.acquireAll(hostWithSlots("dead", "hv08", ["g"], { ttlMs: 1_000 }));
  await Deno.remove(`${t.root}/hv08/Host.lock`);
  clock.advance(5_000);
  await l.acquire(request("rival", { hosts: ["hv09"], type: "Host", drain: false }));
  const busy = await assertRejects(
    () => l.acquireAll(hostWithSlots("s1", "hv01", ["g"])),
    LockBusyError,
  );
  assertStringIncludes(busy.message, 'group "g": 1 of 1 in maintenance: hv09');
  assertEquals((await readLock(t.root, "_group-g", "Group-g.slot-1")).SessionId, "rival");
});

// Mutant: the signal not checked once the attempt took the locks.
Deno.test("an abort that comes while the locks are being taken takes them back", async () => {
  await using t = await tempStore();
  const fs = folderStore(t.root);
  const abort = new AbortController();
  const store: LockStore = {
    ...fs,
    create: async (host, name, data, options) => {
      const made = await fs.create(host, name, data, options);
      abort.abort(new Error("stop"));
      return made;
    },
  };
  const l = locker(t.root, new FakeClock(), store);
  await assertRejects(
    () => l.acquireAll(hostWithSlots("s1", "hv01", ["g"], { signal: abort.signal })),
    Error,
    "stop",
  );
  assertEquals([await t.files("hv01"), await t.files("_group-g")], [[], []]);
});

// Mutant: a request needing more slots of a group than it has names the
// members of other groups too (`c.group === claim.group` as true).
Deno.test("a request needing more slots of one group than it has names that group's members only", async () => {
  await using t = await tempStore();
  const l = locker(t.root, new FakeClock());
  const error = await assertRejects(
    () =>
      l.acquireAll(request("s1", {
        hosts: ["hv01", "hv02"],
        type: "Host",
        drain: false,
        slots: [claim("h", "hv01", 2), claim("g", "hv01"), claim("g", "hv02")],
      })),
    InputError,
  );
  assertStringIncludes(error.message, 'Cannot lock "hv01", "hv02" together: group "g" lets 1');
  assertStringIncludes(error.message, "this needs 2");
  assertEquals([await t.files("hv01"), await t.files("_group-h")], [[], []]);
});

// Mutant: a wake-up without a hint read as one (`!!hint` as true).
Deno.test("a wake-up without a hint makes the waiter look again, not fail", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  let wakes = 0;
  const store: LockStore = {
    ...fs,
    // A change with nothing said about it, then no more.
    waitForChange: (_host, _ms, signal) => wakes++ === 0 ? Promise.resolve() : untilStopped(signal),
  };
  const l = locker(t.root, clock, store);
  await l.acquire(request("holder", { type: "Host" }));
  await withoutJitter(() =>
    assertRejects(
      () => l.acquire(request("s1", { retryDelayMs: 60_000, attempts: 2 })),
      LockBusyError,
    )
  );
  assertEquals(clock.sleeps, [30_000, 30_000, 10]);
});

// Mutant: the drain renews at every look (`now - renewedAt` as `now + renewedAt`).
Deno.test("a drain shorter than a third of the lease never renews it", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const fs = folderStore(t.root);
  let replaces = 0;
  const store: LockStore = {
    ...fs,
    replace: (host, name, version, data) => (replaces++, fs.replace(host, name, version, data)),
  };
  const l = locker(t.root, clock, store);
  await l.acquire(request("reader"));
  await within(
    10_000,
    assertRejects(
      () => l.acquire(request("writer", { type: "Host", drainTimeoutMs: 500, ttlMs: 3_000 })),
      DrainTimeoutError,
    ),
  );
  assertEquals([replaces, clock.sleeps], [0, [500]]);
});
