/**
 * The crash-and-race stress test (tests/_kill_stress.ts) on the etcd store,
 * against a private etcd on loopback. The oracle reads the keys straight from
 * etcd's HTTP gateway, not through the tool.
 *
 * Leases: the tool writes the expiry into the value and ties the key to an
 * etcd lease of whole seconds (1 s for the 600 ms used here), kept alive by
 * each renewal; a dead holder's key goes by a break once the written expiry
 * and the skew have passed, or when etcd's lease runs out, whichever is
 * first. The oracle judges by the written expiry either way.
 *
 * Without etcd the test is skipped with a message; under CI (CI set and not
 * "false" or "0") a missing etcd fails.
 *
 * @module
 */

import { type KillStressStore, registerKillStressSuite, underCi } from "./_kill_stress.ts";
import {
  ETCD_PREFIX,
  etcdGateway,
  etcdInstalled,
  etcdKeys,
  etcdTemplate,
  startEtcd,
} from "./_etcd.ts";

const HOST = "hv01";
const missing = !await etcdInstalled();
if (missing) {
  const message = `etcd is not installed (apt-get install etcd-server)`;
  if (underCi()) {
    Deno.test("[etcd] kill stress: etcd is installed (required under CI)", () => {
      throw new Error(`etcd is required under CI: ${message}`);
    });
  } else console.warn(`%cSkipping the etcd kill stress test: ${message}`, "color: yellow");
}

const bytes = (text: string) => new Uint8Array([...text].map((c) => c.charCodeAt(0)));
const latin1 = (data: Uint8Array) => String.fromCharCode(...data);

async function openEtcd(): Promise<KillStressStore> {
  const etcd = await startEtcd({ quiet: true });
  const prefix = (host: string) => `${ETCD_PREFIX}/${host}/`;
  return {
    store: etcdTemplate(etcd),
    entries: async (host) =>
      (await etcdKeys(etcd, prefix(host), { timeoutMs: 5000 }))
        .map((kv) => ({ name: kv.key.slice(prefix(host).length), data: bytes(kv.value) }))
        .filter((e) => !e.name.includes("/")),
    history: async (host) =>
      (await etcdKeys(etcd, `${prefix(host)}History/`, { timeoutMs: 5000 })).map((kv) =>
        bytes(kv.value)
      ),
    removeEntry: async (host, name) => {
      await etcdGateway(etcd, "/v3/kv/deleterange", { key: btoa(prefix(host) + name) });
    },
    createEntry: async (host, name, data) => {
      const key = btoa(prefix(host) + name);
      const answer = await etcdGateway(etcd, "/v3/kv/txn", {
        compare: [{ key, target: "CREATE", create_revision: "0" }],
        success: [{ request_put: { key, value: btoa(latin1(data)) } }],
      });
      return answer.succeeded === true;
    },
    [Symbol.asyncDispose]: () => etcd.close(),
  };
}

registerKillStressSuite("etcd", openEtcd, {
  ignore: missing,
  host: HOST,
  seams: {
    required: {
      creation: ["etcd.create.txn", "etcd.create.applied"],
      renewal: ["etcd.replace.txn", "locker.renew.checked"],
      release: ["etcd.archive.txn", "locker.release.checked"],
    },
    optional: ["etcd.remove.txn", "locker.break.judged"],
  },
});
