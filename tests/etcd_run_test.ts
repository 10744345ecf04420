/**
 * The `run` suite (tests/_run_suite.ts) on the etcd store, against one
 * private etcd on loopback for the file (`fileEtcd`), each test under a key
 * prefix of its own. The lock entries are read straight from etcd over its
 * HTTP gateway, not through the tool.
 *
 * An expired etcd lease deletes its key by itself, so the SIGKILL test finds
 * no "lease expired" break in History (`expiryLeavesHistory: false`); that
 * the key really goes with its lease is checked in etcd_locking_test.ts.
 *
 * Without `etcd` installed the suite skips with a message, except under CI,
 * where it fails.
 */

import { registerRunSuite, type SuiteStore } from "./_run_suite.ts";
import { etcdKeys, type EtcdServer, etcdTemplate, etcdTestGate, fileEtcd } from "./_etcd.ts";

const gate = await etcdTestGate();
const etcd = await fileEtcd(gate);
let next = 0;

/** Names of the live entries of a host, read over etcd's HTTP gateway (History excluded). */
async function liveNames(server: EtcdServer, prefix: string, host: string): Promise<string[]> {
  const base = `${prefix}/${host}/`;
  return (await etcdKeys(server, base, { keysOnly: true, timeoutMs: 5000 }))
    .map((kv) => kv.key.slice(base.length))
    .filter((name) => !name.includes("/"))
    .sort();
}

function openEtcd(): Promise<SuiteStore> {
  if (!etcd) throw new Error("no etcd");
  const server = etcd;
  const prefix = `/run-suite-${next++}`;
  return Promise.resolve({
    store: etcdTemplate(server, prefix),
    files: (host) => liveNames(server, prefix, host),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  });
}

registerRunSuite("etcd", openEtcd, { ignore: gate.ignore, expiryLeavesHistory: false });
