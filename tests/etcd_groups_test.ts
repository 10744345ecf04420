/**
 * Maintenance groups and the fleet view on the etcd store (issue 16),
 * against a private etcd on loopback: slots under the group's own prefix
 * `…/_group-<name>/`, tied to etcd leases like locks; hosts listed by
 * skipping through the keys (a host's History is never read in full). Keys
 * are read straight from etcd, not through the tool.
 *
 * @module
 */

import { assertEquals, assertOk, assertStringIncludes } from "./_assert.ts";
import {
  closeStores,
  getFleetStatus,
  LockBusyError,
  lockResource,
  tryLockResource,
} from "../mod.ts";
import { registerGroupContentionSuite } from "./_group_contention.ts";
import { etcdKeys, etcdTemplate, etcdTestGate, fileEtcd } from "./_etcd.ts";
import { openEtcdStore } from "../src/stores/etcd.ts";

const gate = await etcdTestGate();
const etcd = await fileEtcd(gate);

function etcdTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name: `[etcd] ${name}`,
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

/** Names under a prefix, read straight from etcd. */
async function names(prefix: string): Promise<string[]> {
  return (await etcdKeys(etcd!, prefix, { keysOnly: true })).map((kv) =>
    kv.key.slice(prefix.length)
  );
}

registerGroupContentionSuite("etcd", () =>
  Promise.resolve({
    store: etcdTemplate(etcd!, "/rl-groups"),
    slotEntries: () => names("/rl-groups/_group-gm-cluster/"),
    hostEntries: async (member) =>
      (await names(`/rl-groups/${member}/`)).filter((name) => !name.startsWith("History/")),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  }), { ignore: gate.ignore });

etcdTest("a group's slots live under its own prefix, tied to etcd leases like locks", async () => {
  const store = etcdTemplate(etcd!, "/rl-slots");
  const groups = [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }];
  const options = { store, dependencies: {}, config: { groups }, type: "Host" as const };
  const lock = await lockResource("hv01", { ...options, ttl: "30s", caller: "patch" });
  const [slot] = await etcdKeys(etcd!, "/rl-slots/_group-hv-a/");
  assertEquals(slot!.key, "/rl-slots/_group-hv-a/Group-hv-a.slot-1");
  assertOk(slot!.lease !== "0", "the slot has an etcd lease of its own");
  assertEquals(JSON.parse(slot!.value).Member, "hv01");
  assertEquals(await tryLockResource("hv02", options), undefined);
  const busy = await lockResource("hv02", { ...options, retries: 1 }).catch((e) => e);
  assertOk(busy instanceof LockBusyError, String(busy));
  assertStringIncludes(busy.message, 'group "hv-a": 1 of 1 in maintenance: hv01 by "patch"');
  await lock.release();
  assertEquals(await names("/rl-slots/_group-hv-a/"), []);
});

etcdTest(
  "the fleet view lists the hosts by skipping through the keys, past long histories",
  async () => {
    const prefix = "/rl-fleet";
    const store = etcdTemplate(etcd!, prefix);
    // Hosts with many History keys each: more than a page of keys.
    for (const host of ["a01", "b01", "c01"]) {
      for (let i = 0; i < 300; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, j) =>
            fetch(`${etcd!.endpoint}/v3/kv/put`, {
              method: "POST",
              body: JSON.stringify({
                key: btoa(`${prefix}/${host}/History/Generic-${i + j}.lock`),
                value: btoa("{}"),
              }),
            }).then((r) => r.body?.cancel())),
        );
      }
    }
    await using _a = await lockResource("b01", { store, dependencies: {}, caller: "deploy" });
    await using _b = await lockResource("d01", { store, dependencies: {}, type: "Host" });
    const raw = openEtcdStore(store, { historyFolderName: "History" });
    try {
      assertEquals((await raw.listHosts!()).sort(), ["a01", "b01", "c01", "d01"]);
    } finally {
      await raw.close();
    }
    const other = openEtcdStore(`etcd://127.0.0.1:${etcd!.clientPort}/x/{0}/locks`, {
      historyFolderName: "History",
    });
    assertEquals(other.listHosts, undefined, "a prefix per host inside: no shared root");
    await other.close();
    const fleet = await getFleetStatus({ store });
    assertEquals(fleet.source, "listing");
    assertEquals(fleet.hosts, ["a01", "b01", "c01", "d01"]);
    assertEquals(fleet.locks.map((l) => [l.host, l.type, l.caller ?? null]), [
      ["b01", "Generic", "deploy"],
      ["d01", "Host", null],
    ]);
  },
);
