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
import { etcdGateway, etcdTemplate, etcdTestGate, fileEtcd } from "./_etcd.ts";

const gate = await etcdTestGate();
const etcd = await fileEtcd(gate);
let round = 0;

/** Base64 of bytes, as etcd's gateway takes keys and values. */
function base64(data: Uint8Array): string {
  return btoa(Array.from(data, (byte) => String.fromCharCode(byte)).join(""));
}

registerStoreContract("etcd", () => {
  const prefix = `/contract-${++round}`;
  const template = etcdTemplate(etcd!, prefix);
  const open = () => openEtcdStore(template, { historyFolderName: "History", timeoutMs: 5000 });
  const store = open();
  const other = open();
  return Promise.resolve({
    store,
    other,
    host: "hv01",
    async plant(host: string, name: string, data: Uint8Array) {
      // put straight into etcd, as another client would
      await etcdGateway(etcd!, "/v3/kv/put", {
        key: base64(new TextEncoder().encode(`${prefix}/${host}/${name}`)),
        value: base64(data),
      });
    },
    // keys only: nothing of the store's own lives beside the entries
    privateNames: [],
    async [Symbol.asyncDispose]() {
      await store.close();
      await other.close();
    },
  });
}, { ignore: gate.ignore });
