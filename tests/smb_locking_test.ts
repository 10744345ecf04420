/**
 * The locking rules over the SMB store, through the public API, against a
 * real Samba smbd on loopback: one share per host (`smb://127.0.0.1:PORT/{0}`
 * puts the host in the share name, as `smb://fileserver:port/{0}` does), lock
 * files checked on the shares' folders directly, PowerShell's lock files
 * placed on a share, processes contending, and the faults.
 *
 * @module
 */

import { join } from "node:path";
import {
  closeStores,
  DrainTimeoutError,
  getResourceLockHistory,
  getResourceLockStatus,
  InputError,
  LockBusyError,
  LockLostError,
  lockResource,
  type LockResourceOptions,
  StoreError,
  testHostResourceLock,
  unlockResource,
} from "../mod.ts";
import { assertEquals, assertOk, assertRejects, assertStringIncludes } from "./_assert.ts";
import { runContention } from "./_contention.ts";
import { psFixtures, windowsPowerShell51Lock } from "./_fixtures.ts";
import { waitFor, within } from "./_helpers.ts";
import {
  filesOn,
  pauseAt,
  SMB_USER,
  smbCredentialsEnv,
  smbTemplate,
  startTestSmbd,
  writeUnderSmbd,
} from "./_smb_helpers.ts";
import {
  type FrameAction,
  type SmbProxy,
  type SmbRequestInfo,
  startSmbProxy,
} from "./_smb_proxy.ts";
import { type Smbd, smbdTest, type StartSmbdOptions } from "./_smbd.ts";

function smbOptions(port: number, timeout = "3s"): LockResourceOptions {
  return {
    store: smbTemplate(port),
    config: { smb: { username: SMB_USER.name, password: SMB_USER.password, timeout } },
    dependencies: {},
  };
}

async function jsonOn(smbd: Smbd, share: string, name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(join(smbd.dir(share), name)));
}

/**
 * A test against a private smbd with these shares, given with the options
 * that lock through it; the library's cached stores are closed at its end.
 */
function smbLockingTest(
  name: string,
  shares: string[],
  fn: (smbd: Smbd, options: LockResourceOptions, t: Deno.TestContext) => Promise<void>,
  smbdOptions: Omit<StartSmbdOptions, "shares" | "users"> = {},
): void {
  smbdTest(name, async (t) => {
    await using smbd = await startTestSmbd(shares, smbdOptions);
    try {
      await fn(smbd, smbOptions(smbd.port), t);
    } finally {
      await closeStores();
    }
  });
}

/** A folder named Host.lock on dc01's share: locking dc01 is a StoreError naming its path. */
async function lockOverHostFolder(
  smbd: Smbd,
  options: LockResourceOptions,
  type: "Host" | "Generic",
): Promise<StoreError> {
  await Deno.mkdir(join(smbd.dir("dc01"), "Host.lock"));
  const error = await assertRejects(() => lockResource("dc01", { ...options, type }), StoreError);
  assertStringIncludes(error.message, "dc01/Host.lock");
  return error;
}

smbLockingTest(
  "SMB: lock, test, status, unlock and history through the API",
  ["dc01"],
  async (smbd, options) => {
    const lock = await lockResource("DC01", {
      ...options,
      type: "Host",
      caller: "Invoke-Maintenance",
      description: "patch Tuesday",
    });
    assertEquals(lock.refs, [`dc01/Host@${lock.sessionId}`]);
    assertEquals(await filesOn(smbd, "dc01"), ["Host.lock"]);
    const content = await jsonOn(smbd, "dc01", "Host.lock");
    assertEquals(content.Caller, "Invoke-Maintenance");
    assertEquals(content.Description, "patch Tuesday");
    assertEquals(content.SessionId, lock.sessionId);
    assertOk(typeof content.LockedAt === "number", "LockedAt in .NET ticks");

    assertEquals(await testHostResourceLock("dc01", { ...options, type: "Host" }), true);
    assertEquals(await testHostResourceLock("dc01", { ...options, type: "Generic" }), false);
    const [info] = await getResourceLockStatus("dc01", options);
    assertEquals(info?.type, "Host");
    assertEquals(info?.caller, "Invoke-Maintenance");
    assertEquals(info?.sessionId, lock.sessionId);

    const busy = await assertRejects(
      () => lockResource("dc01", { ...options, type: "Generic", retries: 1 }),
      LockBusyError,
    );
    assertStringIncludes(busy.message, `"Invoke-Maintenance"`);
    assertEquals(await filesOn(smbd, "dc01"), ["Host.lock"], "the shared lock backed off");

    const [released] = await unlockResource(lock, options);
    assertEquals(released?.status, "released");
    assertEquals(await filesOn(smbd, "dc01"), []);
    const history = await filesOn(smbd, "dc01", "History");
    assertEquals(history.length, 1);
    assertOk(history[0]!.startsWith("Host.lock-"), history[0]);
    const archived = await jsonOn(smbd, "dc01", join("History", history[0]!));
    assertOk(typeof archived.UnlockedAt === "number", "UnlockedAt added");
    assertEquals(archived.Caller, "Invoke-Maintenance");

    const entries = await getResourceLockHistory("dc01", options);
    assertEquals(entries.map((e) => [e.lockId, e.caller]), [["Host", "Invoke-Maintenance"]]);
    const [again] = await unlockResource(lock.refs, options);
    assertEquals(again?.status, "already-released");
    assertEquals(await testHostResourceLock("dc01", options), false);
  },
);

smbLockingTest(
  "SMB: dependencies on several shares are locked all together or not at all",
  ["dc01", "dc02", "hv01", "vmm01"],
  async (smbd, smb) => {
    const dependencies = { hv01: ["dc01", "vmm01"], dc01: ["dc02"], dc02: ["dc01"] };
    const options = { ...smb, dependencies };
    const lock = await lockResource("dc01", { ...options, type: "Host", caller: "maint" });
    assertEquals(lock.refs.map((ref) => ref.split("@")[0]), [
      "dc02/Host",
      "hv01/Host",
      "dc01/Host",
    ]);
    for (const share of ["dc01", "dc02", "hv01"]) {
      assertEquals(await filesOn(smbd, share), ["Host.lock"], share);
      assertEquals((await jsonOn(smbd, share, "Host.lock")).SessionId, lock.sessionId);
    }
    assertEquals(await filesOn(smbd, "vmm01"), []);
    await assertRejects(
      () => lockResource("dc02", { ...options, noDependencies: true, type: "Generic", retries: 1 }),
      LockBusyError,
    );
    assertEquals(await filesOn(smbd, "dc02"), ["Host.lock"]);
    await lock.release();
    for (const share of ["dc01", "dc02", "hv01", "vmm01"]) {
      assertEquals(await filesOn(smbd, share), [], share);
    }
    assertEquals((await filesOn(smbd, "hv01", "History")).length, 1);

    // A Host lock on hv01 by PowerShell: locking dc02 (which needs dc01 and
    // hv01) fails on hv01 and leaves nothing on dc01 or dc02.
    await writeUnderSmbd(join(smbd.dir("hv01"), "Host.lock"), windowsPowerShell51Lock());
    const busy = await assertRejects(
      () => lockResource("dc02", { ...options, type: "Generic", retries: 1 }),
      LockBusyError,
    );
    assertEquals(busy.host, "hv01");
    for (const share of ["dc01", "dc02"]) assertEquals(await filesOn(smbd, share), [], share);
    assertEquals(await filesOn(smbd, "hv01"), ["Host.lock"]);

    // A dependency whose share does not exist: a StoreError naming it, and
    // the lock taken on dc02 is rolled back.
    const missing = await assertRejects(
      () =>
        lockResource("dc02", {
          ...options,
          dependencies: { app01: ["dc02"] },
          type: "Generic",
          retries: 1,
        }),
      StoreError,
    );
    assertStringIncludes(missing.message, `share "app01" does not exist`);
    assertEquals(await filesOn(smbd, "dc02"), []);
  },
);

smbLockingTest(
  "SMB: lock files PowerShell wrote on a share count, show their details, need force",
  ["hv01"],
  async (smbd, options, t) => {
    for (const fixture of psFixtures()) {
      await t.step(fixture.name, async () => {
        await writeUnderSmbd(join(smbd.dir("hv01"), "Host.lock"), fixture.bytes);
        assertEquals(await testHostResourceLock("hv01", { ...options, type: "Host" }), true);
        const [info] = await getResourceLockStatus("hv01", options);
        assertEquals(info?.state, fixture.expected.state);
        assertEquals(info?.caller, fixture.expected.caller);
        assertEquals(info?.description, fixture.expected.description);
        await assertRejects(
          () => lockResource("hv01", { ...options, type: "Generic", retries: 1 }),
          LockBusyError,
        );
        await assertRejects(() => unlockResource("hv01/Host", options), InputError);
        const [result] = await unlockResource("hv01/Host", { ...options, force: true });
        assertEquals(result?.status, "released");
        assertEquals(await filesOn(smbd, "hv01"), []);
      });
    }
    const history = await getResourceLockHistory("hv01", options);
    assertEquals(history.length, psFixtures().length);
    assertOk(history.every((entry) => entry.unlockedAt !== undefined));

    await t.step(
      "a shared lock of PowerShell is drained, or ignored with drain: false",
      async () => {
        const generic = `Generic-${crypto.randomUUID()}.lock`;
        await writeUnderSmbd(join(smbd.dir("hv01"), generic), windowsPowerShell51Lock());
        const drain = await assertRejects(
          () => lockResource("hv01", { ...options, type: "Host", drainTimeout: "300ms" }),
          DrainTimeoutError,
        );
        assertStringIncludes(drain.message, "Gérard Dupré");
        assertEquals(await filesOn(smbd, "hv01"), [generic], "the Host lock was given back");
        const lock = await lockResource("hv01", { ...options, type: "Host", drain: false });
        assertEquals(await filesOn(smbd, "hv01"), [generic, "Host.lock"].sort());
        await lock.release();
      },
    );
  },
);

smbLockingTest(
  "SMB: processes contending over SMB never overlap (independent oracle)",
  ["hv01"],
  async (smbd) => {
    const workers = 3;
    const rounds = 10;
    const result = await runContention({
      store: smbTemplate(smbd.port),
      host: "hv01",
      workers,
      rounds,
      env: smbCredentialsEnv(),
      timeoutMs: 120_000,
    });
    assertEquals(result.violations, []);
    assertEquals(result.codes, [0, 0, 0]);
    assertEquals(result.acquired, workers * rounds);
    assertOk(result.hostRounds >= 9, `Host rounds: ${result.hostRounds}`);
    assertEquals(await filesOn(smbd, "hv01"), [], "no lock file left");
    assertEquals((await filesOn(smbd, "hv01", "History")).length, workers * rounds);
  },
);

smbLockingTest(
  "SMB: wrong password, missing share, read-only share are StoreErrors, nothing left",
  ["dc01", "ro01"],
  async (smbd, options) => {
    const wrong = "not-the-Pa55word-xyz";
    const logon = await assertRejects(
      () =>
        lockResource("dc01", {
          ...options,
          config: { smb: { username: SMB_USER.name, password: wrong, timeout: "3s" } },
        }),
      StoreError,
    );
    assertEquals(logon.code, "STORE_UNREACHABLE");
    assertStringIncludes(logon.message, "wrong user name or password");
    assertOk(!Deno.inspect(logon, { depth: 20 }).includes(wrong));

    const share = await assertRejects(() => lockResource("db01", options), StoreError);
    assertStringIncludes(share.message, `share "db01" does not exist`);

    const readOnly = await assertRejects(
      () => lockResource("ro01", { ...options, type: "Host" }),
      StoreError,
    );
    assertStringIncludes(readOnly.message, "ro01/Host.lock");
    assertStringIncludes(readOnly.message, "access denied");
    assertEquals(await filesOn(smbd, "ro01"), []);
    assertEquals(await testHostResourceLock("ro01", options), false, "reading works");
    assertEquals(await filesOn(smbd, "dc01"), []);
  },
  { readOnlyShares: ["ro01"] },
);

smbLockingTest(
  "SMB: a folder named like the lock file is a StoreError for a Host lock and status",
  ["dc01"],
  async (smbd, options) => {
    const host = await lockOverHostFolder(smbd, options, "Host");
    assertStringIncludes(host.message, "folder where a lock file should be");
    await assertRejects(() => getResourceLockStatus("dc01", options), StoreError);
    await assertRejects(() => testHostResourceLock("dc01", options), StoreError);
    assertEquals(await filesOn(smbd, "dc01"), []);
  },
);

smbLockingTest(
  "SMB: a shared lock whose Host check fails is taken back (folder named Host.lock)",
  ["dc01"],
  async (smbd, options) => {
    await lockOverHostFolder(smbd, options, "Generic");
    assertEquals(
      await filesOn(smbd, "dc01"),
      [],
      "the shared lock taken before the check is gone",
    );
  },
);

/** A proxy rule: act on the first request of `share` that `match` picks, and after that. */
function onShare(
  share: string,
  match: (request: SmbRequestInfo) => boolean,
  action: "cut" | "freeze",
  options: { thenRefuse?: boolean } = {},
): { rule: (request: SmbRequestInfo) => "pass" | "cut" | "freeze"; fired: () => boolean } {
  let fired = false;
  return {
    rule(request) {
      if (request.share !== share) return "pass";
      if (fired && options.thenRefuse) return "cut";
      if (!fired && match(request)) {
        fired = true;
        return action;
      }
      return "pass";
    },
    fired: () => fired,
  };
}

/** The first request of a create's compound: CREATE (FILE_CREATE) of the store's temporary file. */
/** How long the proxy of {@linkcode cutsAnswerOfHostLock} holds each chunk, each way. */
const ANSWER_DELAY_MS = 40;

const createsLockFile = (r: SmbRequestInfo) =>
  r.command === 5 && r.disposition === 2 && (r.name ?? "").startsWith(".resource-locker-");

/**
 * A server that carries out the create of hv01's Host.lock and dies before
 * its answer arrives: the proxy holds every answer of hv01's connection
 * once the create went through; when it has been sent (the store's seam)
 * and the whole Host.lock is on the share, every connection is cut; with
 * `thenRefuse`, hv01 refuses every later connection too.
 */
function cutsAnswerOfHostLock(
  smbd: Smbd,
  options: { thenRefuse?: boolean } = {},
): {
  rule: (request: SmbRequestInfo) => FrameAction;
  /** The proxy whose connections to cut. */
  attach(proxy: SmbProxy): void;
  fired: () => boolean;
} & Disposable {
  let refusing = false;
  let fired = false;
  let proxy: SmbProxy | undefined;
  const pause = pauseAt("smb.create.sent", (e) => e.host === "hv01" && e.name === "Host.lock");
  pause.reached.then(async () => {
    await waitFor(
      "hv01's Host.lock",
      async () => {
        const files = [...await filesOn(smbd, "hv01"), ...await filesOn(smbd, "dc01")];
        return files.filter((name) => name === "Host.lock").length === 2;
      },
      5_000,
      2,
    );
    refusing = options.thenRefuse ?? false;
    proxy!.cut();
    fired = true;
    pause.release();
  });
  return {
    // hv01's create reaches the server, its answer never the client: the
    // server "dies right after creating the lock file", whatever the timing.
    rule: (request) =>
      request.share !== "hv01"
        ? "pass"
        : refusing
        ? "cut"
        : createsLockFile(request)
        ? "hold-answers"
        : "pass",
    attach: (attached) => {
      proxy = attached;
    },
    fired: () => fired,
    [Symbol.dispose]: () => pause[Symbol.dispose](),
  };
}

/**
 * Locks dc01, which needs hv01, as Host through a proxy on `port`: the
 * StoreError it must give within 10 s.
 */
function lockThrough(port: number, timeout?: string): Promise<StoreError> {
  const options = { ...smbOptions(port, timeout), dependencies: { hv01: ["dc01"] } };
  return within(
    10_000,
    assertRejects(() => lockResource("dc01", { ...options, type: "Host" }), StoreError),
  );
}

smbdTest(
  "SMB: a server that stops answering mid-lock times out; the other locks are rolled back",
  async () => {
    await using smbd = await startTestSmbd(["dc01", "hv01"]);
    const trap = onShare("hv01", createsLockFile, "freeze");
    await using proxy = startSmbProxy(smbd.port, trap);
    try {
      const started = Date.now();
      const error = await lockThrough(proxy.port, "800ms");
      assertOk(trap.fired());
      assertStringIncludes(error.message, "hv01");
      assertStringIncludes(error.message, "did not answer within 800 ms");
      assertOk(Date.now() - started < 5_000, `${Date.now() - started} ms`);
      assertEquals(await filesOn(smbd, "dc01"), [], "dc01's lock was rolled back");
      assertEquals(await filesOn(smbd, "hv01"), []);
    } finally {
      await closeStores();
    }
  },
);

smbdTest(
  "SMB: a server that dies right after creating the lock file leaves no lock behind",
  async () => {
    await using smbd = await startTestSmbd(["dc01", "hv01"]);
    using trap = cutsAnswerOfHostLock(smbd);
    await using started = startSmbProxy(smbd.port, { rule: trap.rule, delayMs: ANSWER_DELAY_MS });
    trap.attach(started);
    try {
      const error = await lockThrough(started.port);
      assertOk(trap.fired());
      assertStringIncludes(error.message, "hv01/Host.lock");
      assertEquals(await filesOn(smbd, "hv01"), [], "the lock file made was removed");
      assertEquals(await filesOn(smbd, "dc01"), [], "dc01's lock was rolled back");
    } finally {
      await closeStores();
    }
  },
);

smbdTest("SMB: a lock half taken on a server that stays down is reported by name", async () => {
  await using smbd = await startTestSmbd(["dc01", "hv01"]);
  using trap = cutsAnswerOfHostLock(smbd, { thenRefuse: true });
  await using started = startSmbProxy(smbd.port, { rule: trap.rule, delayMs: ANSWER_DELAY_MS });
  trap.attach(started);
  try {
    const error = await lockThrough(started.port);
    assertStringIncludes(error.message, "hv01/Host.lock");
    assertStringIncludes(error.message, "could not release hv01/Host@");
    assertEquals(await filesOn(smbd, "hv01"), ["Host.lock"], "it could not be removed");
    const left = JSON.parse(await Deno.readTextFile(join(smbd.dir("hv01"), "Host.lock")));
    assertEquals(left.Type, "Host", "whole, never empty");
    assertEquals(await filesOn(smbd, "dc01"), [], "dc01's lock was rolled back");
  } finally {
    await closeStores();
  }
});

smbLockingTest(
  "SMB: a held lock whose server dies is lost once its lease runs out",
  ["dc01"],
  async (smbd, smb) => {
    const options = {
      ...smb,
      config: {
        smb: { username: SMB_USER.name, password: SMB_USER.password, timeout: "500ms" },
        clockSkew: 0,
      },
    };
    const lock = await lockResource("dc01", { ...options, type: "Host", ttl: "900ms" });
    await smbd.stop();
    const lost = await within(
      10_000,
      new Promise<unknown>((resolve) => {
        if (lock.signal.aborted) resolve(lock.signal.reason);
        lock.signal.addEventListener("abort", () => resolve(lock.signal.reason), { once: true });
      }),
    );
    assertOk(lost instanceof LockLostError, String(lost));
    assertStringIncludes(lost.message, "not renewed before they expired");
    await smbd.restart();
    assertEquals(await filesOn(smbd, "dc01"), ["Host.lock"], "the stale file is still there");
    const next = await lockResource("dc01", { ...options, type: "Host" });
    assertEquals((await filesOn(smbd, "dc01", "History")).length, 1, "the stale lock was broken");
    await next.release();
  },
);
