/**
 * Maintenance groups and the fleet view on the SMB store (issue 16), against
 * a private Samba smbd on loopback:
 *
 * - one share per host (`smb://127.0.0.1:PORT/{0}`, as `\\{0}\ResourceLocks`
 *   puts each host on its own server): the store cannot list its hosts, so a
 *   group's slots live in its home host's share, and the fleet view looks at
 *   the hosts the config names;
 * - one share with a folder per host (`smb://127.0.0.1:PORT/locks/{0}`): the
 *   hosts are listed, and slots live in the group's own folder.
 *
 * Files are read in the shares' folders on disk, not through the tool.
 *
 * @module
 */

import { join } from "node:path";
import { assertEquals, assertOk, assertRejects, assertStringIncludes } from "./_assert.ts";
import {
  closeStores,
  getFleetStatus,
  getGroupStatus,
  InputError,
  LockBusyError,
  lockResource,
  StoreError,
} from "../mod.ts";
import { fileNames } from "./_helpers.ts";
import { registerGroupContentionSuite } from "./_group_contention.ts";
import { openTestSmbStore, SMB_USER, smbCredentialsEnv, smbTemplate } from "./_smb_helpers.ts";
import { fileSmbd, smbdGate } from "./_smbd.ts";

const gate = smbdGate();
const SHARES = ["gm1", "gm2", "gm3", "gm4", "locks", "hv01", "hv02", "dc01"];
const smbd = await fileSmbd(gate, {
  shares: SHARES,
  users: [SMB_USER],
});
const smb = { username: SMB_USER.name, password: SMB_USER.password, timeout: "5s" };

function smbTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name: `[smb] ${name}`,
    ignore: gate.ignore,
    async fn() {
      try {
        await fn();
      } finally {
        await closeStores();
      }
    },
  });
}

registerGroupContentionSuite("smb", () =>
  Promise.resolve({
    store: smbTemplate(smbd!.port),
    env: smbCredentialsEnv(),
    config: { smb },
    // Slots live in the home host's share: the first member's.
    slotEntries: async () =>
      (await fileNames(smbd!.dir("gm1"))).filter((name) => name.startsWith("Group-")),
    hostEntries: async (member) =>
      (await fileNames(smbd!.dir(member))).filter((name) => !name.startsWith("Group-")),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  }), { ignore: gate.ignore });

smbTest(
  "with a share per host, a group's slots live in its home host's share and are no lock there",
  async () => {
    const store = smbTemplate(smbd!.port);
    const groups = [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }];
    const options = { store, dependencies: {}, config: { smb, groups }, retries: 1, timeout: 0 };
    const lock = await lockResource("hv02", { ...options, type: "Host", caller: "patch" });
    assertEquals(await fileNames(smbd!.dir("hv01")), ["Group-hv-a.slot-1"]);
    const slot = JSON.parse(await Deno.readTextFile(join(smbd!.dir("hv01"), "Group-hv-a.slot-1")));
    assertEquals([slot.Member, slot.SessionId], ["hv02", lock.sessionId]);
    const busy = await assertRejects(
      () => lockResource("hv01", { ...options, type: "Host" }),
      LockBusyError,
    );
    assertStringIncludes(busy.message, 'group "hv-a": 1 of 1 in maintenance: hv02 by "patch"');
    // hv01 itself is free for shared locks: the slot file is no lock of hv01's.
    const shared = await lockResource("hv01", options);
    await shared.release();
    const status = await getGroupStatus("hv-a", { store, config: { smb, groups } });
    assertEquals([status.home, status.used], ["hv01", 1]);
    assertEquals(status.location, `smb://127.0.0.1:${smbd!.port}/hv01`);
    await lock.release();
    assertEquals(await fileNames(smbd!.dir("hv01")), []);
  },
);

smbTest("with a share per host, the fleet view looks at the hosts the config names", async () => {
  const store = smbTemplate(smbd!.port);
  const groups = [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }];
  const config = { smb, groups, hosts: ["dc01", "nowhere"] };
  await using _lock = await lockResource("dc01", {
    store,
    dependencies: {},
    config,
    caller: "backup",
  });
  const fleet = await getFleetStatus({ store, config });
  assertEquals(fleet.source, "named");
  assertEquals(fleet.hosts, ["dc01", "hv01", "hv02", "nowhere"]);
  assertEquals(fleet.locks.map((l) => [l.host, l.caller]), [["dc01", "backup"]]);
  // A host without a share is a failure of its own.
  assertEquals(fleet.failures.map((f) => [f.host, f.code]), [["nowhere", "STORE_UNREACHABLE"]]);
  assertEquals(fleet.groups.map((g) => [g.name, g.home, g.free]), [["hv-a", "hv01", 1]]);
  const none = await assertRejects(
    () => getFleetStatus({ store, config: { smb, dependenciesFile: "/nonexistent.json" } }),
    InputError,
  );
  assertStringIncludes(none.message, "does not exist");
});

smbTest(
  "with a folder per host in one share, the hosts are listed and slots have their own folder",
  async () => {
    const store = `smb://127.0.0.1:${smbd!.port}/locks/{0}`;
    const raw = await openTestSmbStore(store);
    try {
      assertOk(raw.listHosts !== undefined, "a folder per host in one share can be listed");
      assertEquals(await raw.listHosts!(), []);
    } finally {
      await raw.close();
    }
    assertEquals((await openTestSmbStore(smbTemplate(smbd!.port))).listHosts, undefined);
    const groups = [{ name: "web", members: ["web01", "web02"], max: 1 }];
    const config = { smb, groups };
    await using _a = await lockResource("web01", { store, dependencies: {}, config, type: "Host" });
    await using _b = await lockResource("db01", { store, dependencies: {}, config, ttl: "1h" });
    await Deno.mkdir(join(smbd!.dir("locks"), "ps01"));
    await Deno.writeTextFile(join(smbd!.dir("locks"), "ps01", "Host.lock"), "");
    const old = new Date(Date.now() - 3_600_000);
    await Deno.utime(join(smbd!.dir("locks"), "ps01", "Host.lock"), old, old);
    await Deno.mkdir(join(smbd!.dir("locks"), "Not A Host"));
    const fleet = await getFleetStatus({ store, config });
    assertEquals(fleet.source, "listing");
    assertEquals(fleet.hosts, ["db01", "ps01", "web01"]);
    assertEquals(fleet.skipped, ["Not A Host"]);
    assertEquals(fleet.locks.map((l) => [l.host, l.type, l.stale.join()]), [
      ["db01", "Generic", ""],
      ["ps01", "Host", "empty"],
      ["web01", "Host", ""],
    ]);
    const ps01 = fleet.locks.find((l) => l.host === "ps01")!;
    assertOk(ps01.writtenAt !== undefined, "SMB tells when the file was made");
    assertEquals(fleet.groups.map((g) => [g.home, g.used]), [["_group-web", 1]]);
    assertEquals(await fileNames(join(smbd!.dir("locks"), "_group-web")), ["Group-web.slot-1"]);
    // A root that does not exist is a store error.
    const missing = `smb://127.0.0.1:${smbd!.port}/locks/nowhere/{0}`;
    const error = await assertRejects(
      () => getFleetStatus({ store: missing, config: { smb } }),
      StoreError,
    );
    assertStringIncludes(error.message, "does not exist");
  },
);
