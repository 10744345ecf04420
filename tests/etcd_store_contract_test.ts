/**
 * The store contract (`_store_contract.ts`) on the etcd store, against a real
 * etcd on loopback: two store objects, each with its own connections, stand
 * for two processes. One etcd serves the whole file; each test takes a key
 * prefix of its own. Without `etcd` installed the tests skip with a message,
 * except under CI, where a failing test says so.
 *
 * @module
 */

import { registerStoreContract } from "./_store_contract.ts";
import { openEtcdStore } from "../src/stores/etcd.ts";
import { etcdTemplate, etcdTestGate, fileEtcd } from "./_etcd.ts";

const gate = await etcdTestGate();
const etcd = await fileEtcd(gate);
let round = 0;

registerStoreContract("etcd", () => {
  const template = etcdTemplate(etcd!, `/contract-${++round}`);
  const open = () => openEtcdStore(template, { historyFolderName: "History", timeoutMs: 5000 });
  const store = open();
  const other = open();
  return Promise.resolve({
    store,
    other,
    host: "hv01",
    async [Symbol.asyncDispose]() {
      await store.close();
      await other.close();
    },
  });
}, { ignore: gate.ignore });
