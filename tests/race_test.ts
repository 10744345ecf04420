/**
 * The races and crashes of issue 9, each forced at its moment with a seam
 * (`src/_seam.ts`), not hoped for: two breakers of one expired lease, an
 * unlock or renewal that a breaker overtakes, interrupted drains, rollback
 * of a failed attempt, and processes killed inside creation and renewal.
 *
 * @module
 */

import {
  assertEquals,
  assertOk,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "./_assert.ts";
import {
  breakResourceLock,
  getResourceLockHistory,
  LockBusyError,
  LockLostError,
  lockResource,
  type LockResourceOptions,
  unlockResource,
} from "../mod.ts";
import { FakeClock, tempStore } from "./_helpers.ts";
import { pausedAt } from "./_seams.ts";
import { openFsStore } from "../src/stores/fs.ts";
import { runCli, spawnCli } from "./_cli_helpers.ts";
import { parseDuration } from "../src/duration.ts";
import { LIGHT_CLOCK, MAX_TIMER_MS, SYSTEM_CLOCK } from "../src/clock.ts";

const FAST = { dependencies: {}, timeout: 0, retries: 1 };
const config = { clockSkew: 0 };

function opts(store: string, extra: LockResourceOptions = {}): LockResourceOptions {
  return { store, ...FAST, config, ...extra };
}

/** A Host lock on `host` whose lease has run out on `clock`. */
async function expiredHostLock(store: string, clock: FakeClock, host = "hv01") {
  const dead = await lockResource(
    host,
    opts(store, { type: "Host", ttl: 1, clock, caller: "dead" }),
  );
  clock.advance(5_000);
  return dead;
}

Deno.test("two callers breaking one expired lease: one wins, the other finds the new holder", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  await expiredHostLock(t.store, clock);
  let second: unknown;
  // A judges the dead lock, then pauses; B breaks it and takes the host.
  const { result: first } = await pausedAt(
    "locker.break.judged",
    () =>
      lockResource("hv01", opts(t.store, { type: "Host", clock, caller: "A" })).then(
        (lock) => lock,
        (error) => error,
      ),
    async () => {
      second = await lockResource("hv01", opts(t.store, { type: "Host", clock, caller: "B" }));
    },
  );
  assertOk(first instanceof LockBusyError, `A must not get the host: ${first}`);
  assertStringIncludes(first.message, '"B"');
  assertEquals((second as { host: string }).host, "hv01");
  const broken = (await getResourceLockHistory("hv01", { store: t.store, clock }))
    .filter((e) => e.breakReason === "lease expired");
  assertEquals(broken.map((e) => e.caller), ["dead"], "the dead lock is broken once");
  assertEquals(await t.files("hv01"), ["Host.lock"]);
});

Deno.test("a slow unlock overtaken by a breaker never moves the new holder's lock", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const slow = await lockResource("hv01", opts(t.store, { type: "Host", ttl: 1, clock }));
  let taker: Awaited<ReturnType<typeof lockResource>> | undefined;
  const { result } = await pausedAt(
    "locker.release.checked",
    () => slow.release().then(() => "released", (error) => error),
    async () => {
      clock.advance(5_000); // the lease runs out while the release stalls
      taker = await lockResource("hv01", opts(t.store, { type: "Host", clock, caller: "taker" }));
    },
  );
  assertOk(result instanceof LockLostError, `the slow holder learns it lost the lock: ${result}`);
  assertOk(slow.signal.aborted);
  assertEquals(await t.files("hv01"), ["Host.lock"], "the taker's lock stays");
  await assertRejects(
    () => lockResource("hv01", opts(t.store, { type: "Host", clock })),
    LockBusyError,
    '"taker"',
  );
  assertEquals(
    (await unlockResource(taker!.refs, { store: t.store, clock }))[0]?.status,
    "released",
  );
});

Deno.test("a renewal overtaken by a break and a new holder is lost and rewrites nothing", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const holder = await lockResource("hv01", opts(t.store, { type: "Host", ttl: 60, clock }));
  const { result } = await pausedAt(
    "locker.renew.checked",
    () => holder.renew().then(() => "renewed", (error) => error),
    async () => {
      await breakResourceLock(holder.refs[0]!, { store: t.store, force: true, clock });
      await lockResource("hv01", opts(t.store, { type: "Host", clock, caller: "next" }));
    },
  );
  assertOk(result instanceof LockLostError, `renew must report the loss: ${result}`);
  const content = JSON.parse(await Deno.readTextFile(`${t.root}/hv01/Host.lock`));
  assertEquals(content.Caller, "next");
  assertEquals(
    content.RenewedAtUtc,
    undefined,
    "the new holder's lock was not renewed by the old one",
  );
});

Deno.test("release() of a lock broken by someone else says lost, not already released", async () => {
  await using t = await tempStore();
  const lock = await lockResource("hv01", opts(t.store, { type: "Host", ttl: 60 }));
  await breakResourceLock(lock.refs[0]!, { store: t.store, force: true, reason: "stuck" });
  const [result] = await unlockResource(lock.refs, { store: t.store });
  assertEquals(result?.status, "lost");
  assertEquals(result?.breakReason, "stuck");
  assertStringIncludes(result?.brokenBy ?? "", String(Deno.pid));
  await assertRejects(() => lock.release(), LockLostError, "stuck");
  assertOk(lock.signal.aborted);
});

Deno.test("an aborted drain leaves no Host lock behind", async () => {
  await using t = await tempStore();
  const reader = await lockResource("hv01", opts(t.store));
  const abort = new AbortController();
  const waiting = lockResource("hv01", {
    ...opts(t.store, { type: "Host", drainTimeout: "30s" }),
    signal: abort.signal,
    onProgress: (progress) => {
      if (progress.phase === "drain") abort.abort(new Error("interrupted"));
    },
  });
  await assertRejects(() => waiting, Error, "interrupted");
  assertEquals(await t.files("hv01"), [`Generic-${reader.sessionId}.lock`]);
  await reader.release();
});

Deno.test("an onProgress that throws during a drain leaves no Host lock behind", async () => {
  await using t = await tempStore();
  const reader = await lockResource("hv01", opts(t.store));
  await assertRejects(
    () =>
      lockResource("hv01", {
        ...opts(t.store, { type: "Host", drainTimeout: "30s" }),
        onProgress: () => {
          throw new Error("progress handler failed");
        },
      }),
    Error,
    "progress handler failed",
  );
  assertEquals(await t.files("hv01"), [`Generic-${reader.sessionId}.lock`]);
  await reader.release();
});

Deno.test("a failed attempt rolls back only the locks it created, not the session's earlier ones", async () => {
  await using t = await tempStore();
  const session = crypto.randomUUID();
  const earlier = await lockResource("db01", opts(t.store, { sessionId: session }));
  const blocker = await lockResource("web01", opts(t.store, { type: "Host" }));
  await assertRejects(
    () =>
      // Locking x01 locks the hosts mapped to it: db01 (held), app01, web01 (busy).
      lockResource("x01", {
        ...opts(t.store, { sessionId: session }),
        dependencies: { db01: ["x01"], app01: ["x01"], web01: ["x01"] },
      }),
    LockBusyError,
  );
  assertEquals(await t.files("db01"), [`Generic-${session}.lock`], "the earlier lock stays");
  assertEquals(await t.files("app01"), [], "the new ones are rolled back");
  assertEquals(await t.files("x01"), []);
  await earlier.release();
  await blocker.release();
});

Deno.test("a drain counts neither the session's own shared lock nor expired ones", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const session = crypto.randomUUID();
  const own = await lockResource("hv01", opts(t.store, { sessionId: session, clock }));
  await lockResource("hv01", opts(t.store, { ttl: 1, clock, caller: "expired reader" }));
  clock.advance(5_000);
  const host = await lockResource(
    "hv01",
    opts(t.store, {
      type: "Host",
      sessionId: session,
      clock,
      drainTimeout: 0,
    }),
  );
  assertEquals((await t.files("hv01")).sort(), ["Host.lock", `Generic-${session}.lock`].sort());
  await host.release();
  await own.release();
});

Deno.test("the command line: unlock - releases every ref it can and reports each failure", async () => {
  await using t = await tempStore();
  const env = await cliEnv(t.root);
  const a = await lockResource("a01", opts(t.store));
  const b = await lockResource("b01", opts(t.store, { type: "Host" }));
  const c = await lockResource("c01", opts(t.store));
  // b01 is broken and retaken by another session before the unlock.
  await breakResourceLock(b.refs[0]!, { store: t.store, force: true });
  const other = await lockResource("b01", opts(t.store, { type: "Host", caller: "other" }));
  const result = await runCli(["unlock", "-"], {
    env,
    stdin: [...a.refs, ...b.refs, ...c.refs].join("\n"),
  });
  assertEquals(result.code, 3, result.stderr);
  const lines = result.stderr.trim().split("\n");
  assertEquals(lines.length, 3, result.stderr);
  assertStringIncludes(lines[0]!, `Released ${a.refs[0]}`);
  assertStringIncludes(lines[1]!, "another session");
  assertStringIncludes(lines[2]!, `Released ${c.refs[0]}`);
  assertEquals(await t.files("a01"), []);
  assertEquals(await t.files("c01"), []);
  assertEquals(await t.files("b01"), ["Host.lock"]);
  await other.release();
});

Deno.test("the command line: unlock of a lock someone broke exits 5 and says who broke it", async () => {
  await using t = await tempStore();
  const env = await cliEnv(t.root);
  const lock = await lockResource("hv01", opts(t.store, { type: "Host" }));
  await breakResourceLock(lock.refs[0]!, { store: t.store, force: true, reason: "operator" });
  const result = await runCli(["unlock", lock.refs[0]!], { env });
  assertEquals(result.code, 5, result.stderr);
  assertStringIncludes(result.stderr, "Lost:");
  assertStringIncludes(result.stderr, "operator");
});

for (
  const [point, leaves] of [
    ["fs.create.written", "nothing"],
    ["fs.create.linked", "a whole lock"],
  ] as const
) {
  Deno.test(`a lock killed at ${point} leaves ${leaves}, never an empty Host.lock`, async () => {
    await using t = await tempStore();
    const seam = await Deno.makeTempDir({ prefix: "rl-seam-" });
    try {
      const child = spawnCli(["lock", "hv01", "--hard", "--ttl", "1s"], {
        env: { ...await cliEnv(t.root), RESOURCE_LOCKER_TEST_SEAM: `${point}:${seam}` },
        stdout: "null",
        stderr: "null",
      });
      await waitForFile(`${seam}/reached`, 20_000);
      child.kill("SIGKILL");
      await child.status;
      const files = await t.files("hv01");
      const locks = files.filter((f) => f.endsWith(".lock"));
      if (leaves === "nothing") assertEquals(locks, []);
      else {
        assertEquals(locks, ["Host.lock"]);
        const content = JSON.parse(await Deno.readTextFile(`${t.root}/hv01/Host.lock`));
        assertOk(content.SessionId && content.ExpiresAtUtc, "complete, with its lease");
      }
      // Nothing that blocks for good: the lease frees the host.
      const next = await runCli(
        ["lock", "hv01", "--hard", "--retries", "20", "--timeout", "200ms"],
        {
          env: await cliEnv(t.root),
        },
      );
      assertEquals(next.code, 0, next.stderr);
    } finally {
      await Deno.remove(seam, { recursive: true });
    }
  });
}

Deno.test("a holder killed inside its renewal leaves its lock whole and the guard free", async () => {
  await using t = await tempStore();
  const seam = await Deno.makeTempDir({ prefix: "rl-seam-" });
  try {
    const child = spawnCli(["run", "hv01", "--hard", "--ttl", "600ms", "--", "sleep", "30"], {
      env: { ...await cliEnv(t.root), RESOURCE_LOCKER_TEST_SEAM: `fs.replace.verified:${seam}` },
      stdout: "null",
      stderr: "null",
    });
    await waitForFile(`${seam}/reached`, 20_000);
    const before = await Deno.readTextFile(`${t.root}/hv01/Host.lock`);
    child.kill("SIGKILL");
    await child.status;
    assertEquals(await Deno.readTextFile(`${t.root}/hv01/Host.lock`), before, "untouched");
    // The guard died with its holder: a forced unlock goes through at once.
    const forced = await runCli(["unlock", "hv01/Host", "--force"], {
      env: await cliEnv(t.root),
      timeoutMs: 10_000,
    });
    assertEquals(forced.code, 0, forced.stderr);
    assertEquals(await t.files("hv01"), []);
  } finally {
    await Deno.remove(seam, { recursive: true });
  }
});

Deno.test("durations beyond the timers' range: refused when absurd, waited out when long", async () => {
  assertEquals(parseDuration("2000h", "ttl"), 2000 * 3_600_000);
  assertStringIncludes(
    assertThrows(() => parseDuration("9999999999h", "ttl"), Error).message,
    "100 years",
  );
  // A wait longer than one timer holds must not fire at once (it used to fire after 1 ms).
  for (const clock of [SYSTEM_CLOCK, LIGHT_CLOCK]) {
    let fired = false;
    const cancel = clock.schedule(() => fired = true, MAX_TIMER_MS + 1000);
    const abort = new AbortController();
    const sleeping = clock.sleep(MAX_TIMER_MS * 2, abort.signal).then(
      () => "woke",
      () => "aborted",
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    abort.abort();
    assertEquals(await sleeping, "aborted");
    cancel();
    assertEquals(fired, false);
  }
});

/** Environment for the command line on the temporary store under `root`: no dependencies, 100 ms skew. */
async function cliEnv(root: string): Promise<Record<string, string>> {
  const path = `${root}/config.ts`;
  await Deno.writeTextFile(`${root}/none.json`, "{}"); // a named map must exist
  await Deno.writeTextFile(
    path,
    `export default { clockSkew: "100ms", dependenciesFile: "${root}/none.json" };`,
  );
  return { RESOURCE_LOCKER_STORE: `${root}/{0}`, RESOURCE_LOCKER_CONFIG: path };
}

async function waitForFile(path: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      await Deno.stat(path);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  throw new Error(`${path} did not appear in ${timeoutMs} ms`);
}

Deno.test("a drain that fails keeps the session's earlier Host locks (re-entered, not created)", async () => {
  await using t = await tempStore();
  const session = crypto.randomUUID();
  const earlier = await lockResource("db01", opts(t.store, { type: "Host", sessionId: session }));
  const reader = await lockResource("x01", opts(t.store));
  await assertRejects(
    () =>
      lockResource("x01", {
        ...opts(t.store, { type: "Host", sessionId: session, drainTimeout: 0 }),
        dependencies: { db01: ["x01"] },
      }),
    Error,
    "did not drain",
  );
  assertEquals(await t.files("db01"), ["Host.lock"], "the earlier Host lock stays");
  assertEquals(await t.files("x01"), [`Generic-${reader.sessionId}.lock`]);
  await earlier.release();
  await reader.release();
});

Deno.test("a break that loses to the holder's renewal never counts as a free host", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const holder = await lockResource("hv01", opts(t.store, { type: "Host", ttl: 1, clock }));
  clock.advance(5_000); // the lease ran out, but nobody broke it yet
  const { result } = await pausedAt(
    "locker.break.judged",
    () =>
      lockResource("hv01", opts(t.store, { clock })).then(
        () => "granted",
        (error) => error,
      ),
    () => holder.renew(), // the holder renews between the judgement and the break
  );
  assertOk(result instanceof LockBusyError, `a shared lock beside a renewed Host lock: ${result}`);
  assertEquals(holder.signal.aborted, false);
  assertEquals(await t.files("hv01"), ["Host.lock"]);
  await holder.release();
});

Deno.test("a draining Host lock keeps waiting for a shared lock whose break lost to its renewal", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const reader = await lockResource("hv01", opts(t.store, { ttl: 1, clock }));
  clock.advance(5_000);
  const { result } = await pausedAt(
    "locker.break.judged",
    () =>
      lockResource("hv01", opts(t.store, { type: "Host", clock, drainTimeout: 0 })).then(
        () => "granted",
        (error) => error,
      ),
    () => reader.renew(),
  );
  assertOk(result instanceof Error && /did not drain/.test(result.message), String(result));
  assertEquals(await t.files("hv01"), [`Generic-${reader.sessionId}.lock`]);
  await reader.release();
});

Deno.test("a renewal never rewrites a lock file that names no session (PowerShell's in place of ours)", async () => {
  await using t = await tempStore();
  const holder = await lockResource("hv01", opts(t.store, { type: "Host", ttl: 60 }));
  await Deno.remove(`${t.root}/hv01/Host.lock`);
  await Deno.writeTextFile(`${t.root}/hv01/Host.lock`, "Invoke-Maintenance"); // PowerShell's first write
  await assertRejects(() => holder.renew(), LockLostError);
  assertEquals(await Deno.readTextFile(`${t.root}/hv01/Host.lock`), "Invoke-Maintenance");
  assertOk(holder.signal.aborted);
});

Deno.test("a read meeting a renewal's rename between its look and its open reads the new file", async () => {
  await using t = await tempStore();
  const store = openFsStore(`${t.root}/{0}`, { historyFolderName: "History" });
  const other = openFsStore(`${t.root}/{0}`, { historyFolderName: "History" });
  const v1 = (await store.create("hv01", "Host.lock", new TextEncoder().encode("one")))!;
  const { result } = await pausedAt(
    "fs.read.looked",
    () => store.read("hv01", "Host.lock"),
    () => other.replace("hv01", "Host.lock", v1, new TextEncoder().encode("two")),
  );
  assertEquals(new TextDecoder().decode(result?.data), "two");
});

Deno.test("a renewal under way when the release goes through is not a loss", async () => {
  await using t = await tempStore();
  const lock = await lockResource("hv01", opts(t.store, { type: "Host", ttl: 60 }));
  const { competing } = await pausedAt(
    "locker.renew.checked",
    () => lock.renew().catch((error) => error),
    () => lock.release(),
  );
  assertEquals(competing.map((r) => r.status), ["released"]);
  assertEquals(lock.signal.aborted, false);
});

Deno.test("break --force of a lock renewed between judgement and break breaks it all the same", async () => {
  await using t = await tempStore();
  const holder = await lockResource("hv01", opts(t.store, { type: "Host", ttl: 60 }));
  const { result } = await pausedAt(
    "locker.break.judged",
    () => breakResourceLock(holder.refs[0]!, { store: t.store, force: true, reason: "stuck" }),
    () => holder.renew(),
  );
  assertEquals(result.ref, holder.refs[0]);
  assertEquals(await t.files("hv01"), []);
  await assertRejects(() => holder.renew(), LockLostError);
});

Deno.test("a ref naming a session never breaks a lock that names another or none", async () => {
  await using t = await tempStore();
  await Deno.mkdir(`${t.root}/hv01`);
  await Deno.writeTextFile(`${t.root}/hv01/Host.lock`, "Invoke-Maintenance"); // PowerShell's
  await assertRejects(
    () => breakResourceLock(`hv01/Host@${crypto.randomUUID()}`, { store: t.store, force: true }),
    Error,
    "another session",
  );
  assertEquals(await Deno.readTextFile(`${t.root}/hv01/Host.lock`), "Invoke-Maintenance");
});

Deno.test("a broken Host lock is reported lost however long History has grown", async () => {
  await using t = await tempStore();
  await Deno.mkdir(`${t.root}/hv01/History`, { recursive: true });
  // A long History of other sessions' Host locks, in no particular order.
  for (let i = 0; i < 600; i++) {
    await Deno.writeTextFile(
      `${t.root}/hv01/History/Host.lock-${crypto.randomUUID()}`,
      JSON.stringify({ SessionId: crypto.randomUUID(), BrokenBy: "someone" }),
    );
  }
  for (let round = 0; round < 5; round++) {
    const lock = await lockResource("hv01", opts(t.store, { type: "Host" }));
    await breakResourceLock(lock.refs[0]!, { store: t.store, force: true, reason: `r${round}` });
    const [result] = await unlockResource(lock.refs, { store: t.store });
    assertEquals(result?.status, "lost");
    assertEquals(result?.breakReason, `r${round}`);
  }
});
