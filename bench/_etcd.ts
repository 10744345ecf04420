/**
 * etcd sections of the benchmark, against a private etcd on loopback
 * (`tests/_etcd.ts`):
 *
 * - `cli-run-etcd`: the whole command `resource-locker run <host> -- true`
 *   on the etcd store against `etcdctl lock <name> true` (issue 6 item 4,
 *   target at most 2 times), and `cli-run-etcd-rss`: peak memory of both;
 * - `cli-run-etcd-secure`: the same over TLS with authentication (a CA,
 *   a user and password, etcd's default bcrypt cost) against `etcdctl lock`
 *   with the same TLS and user, and `cli-run-etcd-secure-vs-plain`: against
 *   our own `run` on plain etcd, in the same run; `cli-run-etcd-mtls`: with
 *   a client certificate demanded too, against etcdctl doing the same;
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
import { enableAuth, etcdInstalled, type EtcdServer, startEtcd } from "../tests/_etcd.ts";
import { makeCertificates, opensslInstalled, type TestCertificates } from "../tests/_tls.ts";
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
  const fleet = `etcd-fleet-${quick ? 100 : 500}`;
  const wanted = [
    "cli-run-etcd",
    "cli-run-etcd-secure",
    "cli-run-etcd-mtls",
    "etcd-fanout",
    status,
    fleet,
  ].filter((id) => wants(id));
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
    if (wants("cli-run-etcd-secure") || wants("cli-run-etcd-mtls")) {
      if (!await etcdctlInstalled() || !await opensslInstalled()) {
        console.error(
          "cli-run-etcd-secure skipped: etcdctl and openssl are needed (etcd-client, openssl)",
        );
      } else {
        figures.push(...await cliRunSecure(context, store, quick ? 3 : 30));
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

const USER = { name: "bench", password: "Bench-Pw-31f7c0" };

/** An etcd with TLS and authentication on: a user with read and write on the lock and etcdctl prefixes. */
async function secureEtcd(certs: TestCertificates, clientCertAuth: boolean): Promise<EtcdServer> {
  const etcd = await startEtcd({
    tls: {
      server: certs.server,
      ca: certs.ca.cert,
      clientCertAuth,
      ...clientCertAuth ? { client: certs.client } : {},
    },
    // etcd's default cost of checking a password, as in production
    args: ["--bcrypt-cost=10"],
    quiet: true,
  });
  await enableAuth(etcd, "Root-Pw-bench-8e1", [{
    ...USER,
    grants: [
      { prefix: `${PREFIX}/`, permission: "READWRITE" },
      { prefix: "etcd-bench01/", permission: "READWRITE" }, // etcdctl lock's keys
    ],
  }]);
  return etcd;
}

/**
 * `run <host> -- true` over TLS with authentication against etcdctl with
 * the same, and against our `run` on plain etcd; then with client
 * certificates demanded, against etcdctl with the same.
 */
async function cliRunSecure(
  context: SectionContext,
  plainStore: string,
  runs: number,
): Promise<Figure[]> {
  const figures: Figure[] = [];
  await using certs = await makeCertificates();
  const config = `${certs.dir}/config.ts`;
  for (const mtls of [false, true]) {
    const id = mtls ? "cli-run-etcd-mtls" : "cli-run-etcd-secure";
    if (!context.wants(id)) continue;
    const etcd = await secureEtcd(certs, mtls);
    try {
      const port = new URL(etcd.endpoint).port;
      const store = `etcd://127.0.0.1:${port}${PREFIX}/{0}`;
      await Deno.writeTextFile(
        config,
        `export default ${
          JSON.stringify({
            etcd: {
              ca: certs.ca.cert,
              ...mtls ? { cert: certs.client.cert, key: certs.client.key } : {},
              username: USER.name,
              password: USER.password,
            },
          })
        };\n`,
      );
      const run = (target: string, withConfig: boolean) => [
        Deno.execPath(),
        "run",
        ...PERMS,
        CLI,
        "run",
        "etcd-bench01",
        "--store",
        target,
        ...withConfig ? ["--config-file", config] : [],
        "--",
        "true",
      ];
      const what = mtls ? "TLS, client certificate, user" : "TLS, user";
      figures.push(
        ...await compareCommands({
          id,
          subject: `resource-locker run <host> -- true (etcd, ${what})`,
          baseline: `etcdctl lock <name> true (${what})`,
          subjectCmd: run(store, true),
          baselineCmd: [
            ETCDCTL,
            `--endpoints=${etcd.endpoint}`,
            `--cacert=${certs.ca.cert}`,
            ...mtls ? [`--cert=${certs.client.cert}`, `--key=${certs.client.key}`] : [],
            `--user=${USER.name}:${USER.password}`,
            "lock",
            "etcd-bench01",
            "true",
          ],
          env: { NO_COLOR: "1", ETCDCTL_API: "3" },
          runs,
        }),
      );
      if (!mtls) {
        const [vsPlain] = await compareCommands({
          id: "cli-run-etcd-secure-vs-plain",
          subject: `resource-locker run <host> -- true (etcd, ${what})`,
          baseline: "resource-locker run <host> -- true (etcd, plain HTTP, no user)",
          subjectCmd: run(store, true),
          baselineCmd: run(plainStore, false),
          env: { NO_COLOR: "1" },
          runs,
        });
        figures.push(vsPlain!);
      }
    } finally {
      await etcd.close();
    }
  }
  return figures;
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
