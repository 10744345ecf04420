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
import { type SmbRequestInfo, startSmbProxy } from "./_smb_proxy.ts";
import { type Smbd, smbdTest, startSmbd } from "./_smbd.ts";

const USER = { name: "locker", password: "L0ck-Pa55word-smb" };

function smbOptions(port: number, timeout = "3s"): LockResourceOptions {
  return {
    store: `smb://127.0.0.1:${port}/{0}`,
    config: { smb: { username: USER.name, password: USER.password, timeout } },
    dependencies: {},
  };
}

/** Names of the files (not folders) in a share's folder, or in its History. */
async function filesOn(smbd: Smbd, share: string, sub = ""): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(join(smbd.dir(share), sub))) {
      if (entry.isFile) names.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names.sort();
}

async function jsonOn(smbd: Smbd, share: string, name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(join(smbd.dir(share), name)));
}

async function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

smbdTest("SMB: lock, test, status, unlock and history through the API", async () => {
  await using smbd = await startSmbd({ shares: ["dc01"], users: [USER] });
  const options = smbOptions(smbd.port);
  try {
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
  } finally {
    await closeStores();
  }
});

smbdTest("SMB: dependencies on several shares are locked all together or not at all", async () => {
  await using smbd = await startSmbd({
    shares: ["dc01", "dc02", "hv01", "vmm01"],
    users: [USER],
  });
  const dependencies = { hv01: ["dc01", "vmm01"], dc01: ["dc02"], dc02: ["dc01"] };
  const options = { ...smbOptions(smbd.port), dependencies };
  try {
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
    await Deno.writeFile(join(smbd.dir("hv01"), "Host.lock"), windowsPowerShell51Lock());
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
  } finally {
    await closeStores();
  }
});

smbdTest(
  "SMB: lock files PowerShell wrote on a share count, show their details, need force",
  async (t) => {
    await using smbd = await startSmbd({ shares: ["hv01"], users: [USER] });
    const options = smbOptions(smbd.port);
    try {
      for (const fixture of psFixtures()) {
        await t.step(fixture.name, async () => {
          await Deno.writeFile(join(smbd.dir("hv01"), "Host.lock"), fixture.bytes);
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
          await Deno.writeFile(join(smbd.dir("hv01"), generic), windowsPowerShell51Lock());
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
    } finally {
      await closeStores();
    }
  },
);

smbdTest("SMB: processes contending over SMB never overlap (independent oracle)", async () => {
  await using smbd = await startSmbd({ shares: ["hv01"], users: [USER] });
  const workers = 3;
  const rounds = 10;
  const result = await runContention({
    store: `smb://127.0.0.1:${smbd.port}/{0}`,
    host: "hv01",
    workers,
    rounds,
    env: {
      RESOURCE_LOCKER_SMB_USERNAME: USER.name,
      RESOURCE_LOCKER_SMB_PASSWORD: USER.password,
    },
    timeoutMs: 120_000,
  });
  assertEquals(result.violations, []);
  assertEquals(result.codes, [0, 0, 0]);
  assertEquals(result.acquired, workers * rounds);
  assertOk(result.hostRounds >= 9, `Host rounds: ${result.hostRounds}`);
  assertEquals(await filesOn(smbd, "hv01"), [], "no lock file left");
  assertEquals((await filesOn(smbd, "hv01", "History")).length, workers * rounds);
});

smbdTest(
  "SMB: wrong password, missing share, read-only share are StoreErrors, nothing left",
  async () => {
    await using smbd = await startSmbd({
      shares: ["dc01", "ro01"],
      users: [USER],
      readOnlyShares: ["ro01"],
    });
    const wrong = "not-the-Pa55word-xyz";
    try {
      const logon = await assertRejects(
        () =>
          lockResource("dc01", {
            ...smbOptions(smbd.port),
            config: { smb: { username: USER.name, password: wrong, timeout: "3s" } },
          }),
        StoreError,
      );
      assertEquals(logon.code, "STORE_UNREACHABLE");
      assertStringIncludes(logon.message, "wrong user name or password");
      assertOk(!Deno.inspect(logon, { depth: 20 }).includes(wrong));

      const options = smbOptions(smbd.port);
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
    } finally {
      await closeStores();
    }
  },
);

smbdTest(
  "SMB: a folder named like the lock file is a StoreError for a Host lock and status",
  async () => {
    await using smbd = await startSmbd({ shares: ["dc01"], users: [USER] });
    const options = smbOptions(smbd.port);
    try {
      await Deno.mkdir(join(smbd.dir("dc01"), "Host.lock"));
      const host = await assertRejects(
        () => lockResource("dc01", { ...options, type: "Host" }),
        StoreError,
      );
      assertStringIncludes(host.message, "dc01/Host.lock");
      assertStringIncludes(host.message, "folder where a lock file should be");
      await assertRejects(() => getResourceLockStatus("dc01", options), StoreError);
      await assertRejects(() => testHostResourceLock("dc01", options), StoreError);
      assertEquals(await filesOn(smbd, "dc01"), []);
    } finally {
      await closeStores();
    }
  },
);

smbdTest(
  "SMB: a shared lock whose Host check fails is taken back (folder named Host.lock)",
  async () => {
    await using smbd = await startSmbd({ shares: ["dc01"], users: [USER] });
    const options = smbOptions(smbd.port);
    try {
      await Deno.mkdir(join(smbd.dir("dc01"), "Host.lock"));
      const generic = await assertRejects(
        () => lockResource("dc01", { ...options, type: "Generic" }),
        StoreError,
      );
      assertStringIncludes(generic.message, "dc01/Host.lock");
      assertEquals(
        await filesOn(smbd, "dc01"),
        [],
        "the shared lock taken before the check is gone",
      );
    } finally {
      await closeStores();
    }
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

const createsHostLock = (r: SmbRequestInfo) =>
  r.command === 5 && r.disposition === 2 && r.name === "Host.lock";

smbdTest(
  "SMB: a server that stops answering mid-lock times out; the other locks are rolled back",
  async () => {
    await using smbd = await startSmbd({ shares: ["dc01", "hv01"], users: [USER] });
    const trap = onShare("hv01", createsHostLock, "freeze");
    await using proxy = startSmbProxy(smbd.port, trap);
    const options = { ...smbOptions(proxy.port, "800ms"), dependencies: { hv01: ["dc01"] } };
    try {
      const started = Date.now();
      const error = await within(
        10_000,
        assertRejects(() => lockResource("dc01", { ...options, type: "Host" }), StoreError),
      );
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
    await using smbd = await startSmbd({ shares: ["dc01", "hv01"], users: [USER] });
    // The WRITE after hv01's Host.lock was created never arrives: the file
    // exists, empty, and the connection is gone.
    let created = false;
    const trap = onShare("hv01", (r) => {
      if (createsHostLock(r)) created = true;
      return created && r.command === 9;
    }, "cut");
    await using proxy = startSmbProxy(smbd.port, trap);
    const options = { ...smbOptions(proxy.port), dependencies: { hv01: ["dc01"] } };
    try {
      const error = await within(
        10_000,
        assertRejects(() => lockResource("dc01", { ...options, type: "Host" }), StoreError),
      );
      assertOk(trap.fired());
      assertStringIncludes(error.message, "hv01/Host.lock");
      assertEquals(await filesOn(smbd, "hv01"), [], "the half-written file was removed");
      assertEquals(await filesOn(smbd, "dc01"), [], "dc01's lock was rolled back");
    } finally {
      await closeStores();
    }
  },
);

smbdTest("SMB: a lock half taken on a server that stays down is reported by name", async () => {
  await using smbd = await startSmbd({ shares: ["dc01", "hv01"], users: [USER] });
  let created = false;
  const trap = onShare(
    "hv01",
    (r) => {
      if (createsHostLock(r)) created = true;
      return created && r.command === 9;
    },
    "cut",
    { thenRefuse: true },
  );
  await using proxy = startSmbProxy(smbd.port, trap);
  const options = { ...smbOptions(proxy.port), dependencies: { hv01: ["dc01"] } };
  try {
    const error = await within(
      10_000,
      assertRejects(() => lockResource("dc01", { ...options, type: "Host" }), StoreError),
    );
    assertStringIncludes(error.message, "hv01/Host.lock");
    assertStringIncludes(error.message, "left behind");
    assertEquals(await filesOn(smbd, "hv01"), ["Host.lock"], "it could not be removed");
    assertEquals(await filesOn(smbd, "dc01"), [], "dc01's lock was rolled back");
  } finally {
    await closeStores();
  }
});

smbdTest("SMB: a held lock whose server dies is lost once its lease runs out", async () => {
  await using smbd = await startSmbd({ shares: ["dc01"], users: [USER] });
  const options = {
    ...smbOptions(smbd.port),
    config: {
      smb: { username: USER.name, password: USER.password, timeout: "500ms" },
      clockSkew: 0,
    },
  };
  try {
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
  } finally {
    await closeStores();
  }
});
