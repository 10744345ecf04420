/**
 * etcd sections of the benchmark, against a private etcd on loopback
 * (`tests/_etcd.ts`):
 *
 * - `cli-run-etcd`: the whole command `resource-locker run <host> -- true`
 *   on the etcd store against `etcdctl lock <name> true` (issue 6 item 4,
 *   target at most 2 times), and `cli-run-etcd-rss`: peak memory of both;
 * - `etcd-fanout-8`, `-64`, `-512`: locking a host with N dependency hosts
 *   against the same etcd store calls for its N + 1 hosts done directly;
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
import { type SectionContext, storeFloor } from "./_smb.ts";
import { fanOutCounts } from "./_handoff.ts";
import { openEtcdStore } from "../src/stores/etcd.ts";

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
  const wanted = ["cli-run-etcd", "etcd-fanout", status].filter((id) => wants(id));
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
      // Issues 6 and 12 set fan-out targets for the local and SMB stores only.
      const direct = openEtcdStore(store, { historyFolderName: "History" });
      try {
        const floor = storeFloor(direct);
        const counts = fanOutCounts(quick);
        for (const f of await context.fanOut("etcd", store, context.runs, { floor, counts })) {
          delete f.target;
          figures.push(f);
        }
      } finally {
        await direct.close();
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
