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
import { type EtcdServer, etcdTestGate, startEtcd } from "./_etcd.ts";

const PREFIX = "/resource-locks";
const { ignore } = await etcdTestGate();

/** Names of the live entries of a host, read over etcd's HTTP gateway (History excluded). */
async function liveNames(etcd: EtcdServer, host: string): Promise<string[]> {
  const prefix = `${PREFIX}/${host}/`;
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  const response = await fetch(`${etcd.endpoint}/v3/kv/range`, {
    method: "POST",
    body: JSON.stringify({ key: btoa(prefix), range_end: btoa(end), keys_only: true }),
    signal: AbortSignal.timeout(5000),
  });
  if (!response.ok) {
    throw new Error(`etcd range: HTTP ${response.status}: ${await response.text()}`);
  }
  const body = await response.json() as { kvs?: { key: string }[] };
  return (body.kvs ?? [])
    .map((kv) => atob(kv.key).slice(prefix.length))
    .filter((name) => !name.includes("/"))
    .sort();
}

async function openEtcd(): Promise<SuiteStore> {
  const etcd = await startEtcd();
  return {
    store: `etcd://127.0.0.1:${etcd.clientPort}${PREFIX}/{0}`,
    files: (host) => liveNames(etcd, host),
    [Symbol.asyncDispose]: () => etcd.close(),
  };
}

registerRunSuite("etcd", openEtcd, { ignore, expiryLeavesHistory: false });
