/**
 * etcd sections of the benchmark, against a private etcd on loopback
 * (`tests/_etcd.ts`):
 *
 * - `cli-run-etcd`: the whole command `resource-locker run <host> -- true`
 *   on the etcd store against `etcdctl lock <name> true` (issue 6 item 4,
 *   target at most 2 times), and `cli-run-etcd-rss`: peak memory of both;
 * - `etcd-fanout-8`, `etcd-fanout-64`: locking a host with 8 and 64
 *   dependency hosts against 1;
 * - `etcd-status-<n>`: `status` over many hosts against the same range reads
 *   done directly over etcd's HTTP gateway.
 *
 * Without etcd (or etcdctl, for the first figure) the section prints one line
 * and gives no figures: the benchmark is not a test.
 *
 * @module
 */

import { closeStores } from "../mod.ts";
import { mapLimit } from "../src/locker.ts";
import { etcdInstalled, startEtcd } from "../tests/_etcd.ts";
import { canRun, CLI_PERMISSIONS, compareCommands, type Figure } from "./_measure.ts";
import type { SectionContext } from "./_smb.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const PREFIX = "/resource-locks";
const ETCDCTL = Deno.env.get("ETCDCTL_BINARY") ?? "etcdctl";
const PERMS = CLI_PERMISSIONS;

function etcdctlInstalled(): Promise<boolean> {
  return canRun(ETCDCTL, ["version"], { ETCDCTL_API: "3" });
}

/** The smallest key above every key starting with `prefix` (ASCII prefixes). */
function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/**
 * etcd figures: the whole `run` command against `etcdctl lock`, its peak
 * memory, fan-out and status at scale.
 *
 * @param context the benchmark runner's settings and shared figures
 * @returns the figures asked for; [] without etcd
 */
export async function etcdSections(context: SectionContext): Promise<Figure[]> {
  const { quick, wants } = context;
  const status = `etcd-status-${quick ? 100 : 500}`;
  const fleet = `etcd-fleet-${quick ? 100 : 500}`;
  const wanted = ["cli-run-etcd", "etcd-fanout", status, fleet].filter((id) => wants(id));
  if (wanted.length === 0) return [];
  if (!await etcdInstalled()) {
    console.error("etcd figures skipped: etcd is not installed (apt-get install etcd-server)");
    return [];
  }
  const figures: Figure[] = [];
  const etcd = await startEtcd();
  try {
    const store = `etcd://127.0.0.1:${etcd.clientPort}${PREFIX}/{0}`;
    if (wants("cli-run-etcd")) {
      if (await etcdctlInstalled()) {
        figures.push(...await cliRun(store, etcd.endpoint, quick ? 3 : 30));
      } else {
        console.error(
          "cli-run-etcd skipped: etcdctl is not installed (Debian package etcd-client)",
        );
      }
    }
    if (wants("etcd-fanout")) {
      // issue 6 sets the 3x fan-out target for the local and SMB stores only
      for (const f of await context.fanOut("etcd", store, context.runs)) {
        delete f.target;
        figures.push(f);
      }
    }
    if (wants(status)) {
      const endpoint = etcd.endpoint;
      figures.push(
        await context.statusAtScale("etcd", store, quick ? 100 : 500, quick ? 3 : 10, {
          baseline: (hosts) => directRanges(endpoint, hosts),
        }),
      );
    }
    if (wants(fleet)) {
      const endpoint = etcd.endpoint;
      const f = await context.fleetAtScale(
        "etcd",
        `etcd://127.0.0.1:${etcd.clientPort}${FLEET_PREFIX}/{0}`,
        quick ? 100 : 500,
        quick ? 3 : 10,
        { baseline: () => directFleet(endpoint) },
      );
      f.baseline = "one range of every key under the prefix (keys only) for the hosts, then " +
        "one range per host, 64 at once, over etcd's HTTP gateway";
      figures.push(f);
    }
  } finally {
    await closeStores();
    await etcd.close();
  }
  return figures;
}

/**
 * `deno run cli.ts run <host> -- true` against `etcdctl lock <name> true`,
 * interleaved, as separate processes; wall time and peak RSS.
 */
function cliRun(store: string, endpoint: string, runs: number): Promise<Figure[]> {
  return compareCommands({
    id: "cli-run-etcd",
    subject: "resource-locker run <host> -- true (etcd store)",
    baseline: "etcdctl lock <name> true",
    target: 2,
    subjectCmd: [Deno.execPath(), "run", ...PERMS, CLI, "run", "etcd-bench01", "--", "true"],
    baselineCmd: [ETCDCTL, `--endpoints=${endpoint}`, "lock", "etcd-bench01", "true"],
    env: { RESOURCE_LOCKER_STORE: store, NO_COLOR: "1", ETCDCTL_API: "3" },
    runs,
  });
}

const FLEET_PREFIX = "/fleet-bench";

/** What the fleet view reads, done directly: the hosts from one range of keys, then each host's range. */
async function directFleet(endpoint: string): Promise<void> {
  const root = `${FLEET_PREFIX}/`;
  const response = await fetch(`${endpoint}/v3/kv/range`, {
    method: "POST",
    body: JSON.stringify({ key: btoa(root), range_end: btoa(prefixEnd(root)), keys_only: true }),
  });
  const body = await response.json() as { kvs?: { key: string }[] };
  const hosts = new Set<string>();
  for (const kv of body.kvs ?? []) hosts.add(atob(kv.key).slice(root.length).split("/")[0]!);
  const results = await mapLimit([...hosts], 64, async (host) => {
    const prefix = `${root}${host}/`;
    const answer = await fetch(`${endpoint}/v3/kv/range`, {
      method: "POST",
      body: JSON.stringify({ key: btoa(prefix), range_end: btoa(prefixEnd(prefix)) }),
    });
    const kvs = (await answer.json() as { kvs?: { key: string; value?: string }[] }).kvs ?? [];
    for (const kv of kvs) {
      if (!atob(kv.key).includes("/History/")) JSON.parse(atob(kv.value ?? ""));
    }
  });
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

/** What `status` reads, done directly: one range (keys and values) per host, 64 at once, as status. */
async function directRanges(endpoint: string, hosts: string[]): Promise<void> {
  const results = await mapLimit(hosts, 64, async (host) => {
    const prefix = `${PREFIX}/${host}/`;
    const response = await fetch(`${endpoint}/v3/kv/range`, {
      method: "POST",
      body: JSON.stringify({ key: btoa(prefix), range_end: btoa(prefixEnd(prefix)) }),
    });
    const body = await response.json() as { kvs?: { key: string; value?: string }[] };
    for (const kv of body.kvs ?? []) {
      if (!atob(kv.key).includes("/History/")) JSON.parse(atob(kv.value ?? ""));
    }
  });
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
