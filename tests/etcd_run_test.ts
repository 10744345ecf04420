/**
 * The `run` and lease suite of issue 4 (tests/_run_suite.ts) on the etcd
 * store, each test against its own private etcd on loopback. The lock
 * entries are read straight from etcd over its HTTP gateway, not through the
 * tool.
 *
 * An expired etcd lease deletes its key by itself, so the SIGKILL test finds
 * no "lease expired" break in History (`expiryLeavesHistory: false`); that
 * the key really goes with its lease is checked in etcd_locking_test.ts.
 *
 * Without `etcd` installed the suite skips with a message, except under
 * CI=true, where it fails.
 */

import { registerRunSuite, type SuiteStore } from "./_run_suite.ts";
import {
  ETCD_PREFIX,
  etcdKeys,
  type EtcdServer,
  etcdTemplate,
  etcdTestGate,
  startEtcd,
} from "./_etcd.ts";

const { ignore } = await etcdTestGate();

/** Names of the live entries of a host, read over etcd's HTTP gateway (History excluded). */
async function liveNames(etcd: EtcdServer, host: string): Promise<string[]> {
  const prefix = `${ETCD_PREFIX}/${host}/`;
  return (await etcdKeys(etcd, prefix, { keysOnly: true, timeoutMs: 5000 }))
    .map((kv) => kv.key.slice(prefix.length))
    .filter((name) => !name.includes("/"))
    .sort();
}

async function openEtcd(): Promise<SuiteStore> {
  const etcd = await startEtcd();
  return {
    store: etcdTemplate(etcd),
    files: (host) => liveNames(etcd, host),
    [Symbol.asyncDispose]: () => etcd.close(),
  };
}

registerRunSuite("etcd", openEtcd, { ignore, expiryLeavesHistory: false });
