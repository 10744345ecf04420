/**
 * SMB sections of the benchmark, against a private Samba smbd on loopback
 * (`tests/_smbd.ts`): the SMB store's overhead over the same SMB operations
 * done directly, what signing and encryption cost, fan-out to 8, 64 and 512
 * hosts against the same SMB calls done directly, and `status` at scale.
 *
 * Layout: one share with a folder per host, `smb://127.0.0.1:<port>/locks/{0}`.
 * smbd serves it all from one process over one connection per store, where a
 * share per host would fork a process per host (500 for `status`), which made
 * the figures slower and noisier on a small machine without telling more.
 *
 * Loopback has no network latency: a round trip there is smbd's and the
 * client's CPU, so fan-out on loopback measures throughput, not parallelism.
 * The fan-out figures are also taken through a forwarding proxy that holds
 * every chunk {@linkcode DELAY_MS} ms each way (`tests/_smb_proxy.ts`), as a
 * network would: those show whether hosts are taken in parallel.
 *
 * Without smbd the section prints one line and gives no figures: the
 * benchmark is not a test.
 *
 * @module
 */

import { closeStores, lockResource } from "../mod.ts";
import { SYSTEM_CLOCK } from "../src/clock.ts";
import { FileNames } from "../src/lock_ref.ts";
import { Locker, mapLimit } from "../src/locker.ts";
import type { LockStore } from "../src/store.ts";
import type { SmbStoreOptions } from "../src/stores/smb.ts";
import { smbdMissing, startSmbd } from "../tests/_smbd.ts";
import { startSmbProxy } from "../tests/_smb_proxy.ts";
import { compare, type Figure, figure } from "./_measure.ts";
import { fanOutCounts, type FanOutFloor, type FanOutOptions } from "./_handoff.ts";

/** What a section gets from the benchmark runner. */
export interface SectionContext {
  /** Few runs. */
  quick: boolean;
  /** Runs per figure. */
  runs: number;
  /** Temporary folder for the run. */
  root: string;
  /** Whether a figure id was asked for. */
  wants(id: string): boolean;
  /** The fan-out figure on any store. */
  fanOut(name: string, store: string, runs: number, options?: FanOutOptions): Promise<Figure[]>;
  /** The status-at-scale figure on any store. */
  statusAtScale(
    name: string,
    store: string,
    hosts: number,
    runs: number,
    options?: {
      config?: Record<string, unknown>;
      baseline?: (names: string[]) => Promise<unknown>;
    },
  ): Promise<Figure>;
  /** The fleet-view figure on any store. */
  fleetAtScale(
    name: string,
    store: string,
    hosts: number,
    runs: number,
    options: { config?: Record<string, unknown>; baseline: () => Promise<unknown> },
  ): Promise<Figure>;
}

const USER = { name: "bench", password: "Bench-pa55word" };
const SHARE = "locks";
const SUBJECT_HOST = "smb-bench01";
const DIRECT_HOST = "smb-direct01";
/** Delay each way of the simulated network, in ms. */
const DELAY_MS = 2;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function templateFor(port: number): string {
  return `smb://127.0.0.1:${port}/${SHARE}/{0}`;
}

/** The SMB store itself, for the baselines (loaded as the library loads it). */
async function openDirect(
  template: string,
  security: Pick<SmbStoreOptions, "signing" | "encrypt"> = {},
): Promise<LockStore> {
  const { openSmbStore } = await import("../src/stores/smb.ts");
  return openSmbStore(template, {
    username: USER.name,
    password: USER.password,
    historyFolderName: "History",
    timeoutMs: 10_000,
    ...security,
  });
}

/**
 * A Host lock and its release through the locking rules (`Locker`, as
 * `lockResource` uses them) on `store`: what `lockResource` + `release()`
 * do, less resolving the settings, on a store whose signing and
 * encryption the benchmark chooses (`smb.signing` offers no "off").
 */
function lockerCycle(store: LockStore, host: string): () => Promise<void> {
  const locker = new Locker({
    store,
    names: new FileNames("{0}.lock"),
    clock: SYSTEM_CLOCK,
    skewMs: 30_000,
    holder: { host: "bench-host", pid: Deno.pid },
  });
  return async () => {
    const locks = await locker.acquire({
      hosts: [host],
      type: "Host",
      sessionId: crypto.randomUUID(),
      caller: "bench",
      retryDelayMs: 100,
      attempts: 1,
      drain: true,
      drainTimeoutMs: 10_000,
    });
    const failed = (await locker.releaseAll(locks)).find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  };
}

/** Lock file content of the size the engine writes. */
function lockContent(): Uint8Array {
  return encoder.encode(JSON.stringify({
    Caller: "bench",
    LockedAt: 639_000_000_000_000_000,
    LockedAtUtc: new Date().toISOString(),
    Type: "Host",
    SessionId: crypto.randomUUID(),
    Holder: { Host: "bench-host", Pid: Deno.pid },
  }));
}

/**
 * What a Host lock does on the store, done directly with the store's own
 * calls: exclusive create with content, then list (the drain check).
 */
async function directLock(store: LockStore, host: string): Promise<void> {
  if (await store.create(host, "Host.lock", lockContent()) === undefined) {
    throw new Error(`${host}/Host.lock exists`);
  }
  await store.list(host);
}

/** What its release does, done directly: read, then rewrite and rename into History. */
async function directRelease(store: LockStore, host: string): Promise<void> {
  const entry = await store.read(host, "Host.lock");
  if (!entry) throw new Error(`${host}/Host.lock vanished`);
  const fields = JSON.parse(decoder.decode(entry.data));
  fields.UnlockedAt = 639_000_000_000_000_001;
  fields.UnlockedAtUtc = new Date().toISOString();
  const archived = await store.archive(
    host,
    "Host.lock",
    entry.version,
    `Host.lock-${crypto.randomUUID()}`,
    encoder.encode(JSON.stringify(fields)),
  );
  if (!archived) throw new Error(`${host}/Host.lock vanished`);
}

/** A Host lock and its release, done directly with the store's own calls. */
async function directCycle(store: LockStore, host: string): Promise<void> {
  await directLock(store, host);
  await directRelease(store, host);
}

/**
 * The fan-out floor on a store reached directly (SMB, etcd): each host's
 * {@linkcode directLock} and {@linkcode directRelease} calls.
 *
 * @param store the store, opened apart from the library's
 * @returns the floor
 */
export function storeFloor(store: LockStore): FanOutFloor {
  return {
    describe: `the same ${store.kind} store calls done directly (create, list; read, archive)`,
    lock: (host) => directLock(store, host),
    release: (host) => directRelease(store, host),
  };
}

/**
 * SMB figures: store overhead, fan-out on loopback and over a simulated
 * network, status at scale. Starts and stops its own smbd.
 *
 * @param context the benchmark runner's settings and shared figures
 * @returns the figures; none without smbd
 */
export async function smbSections(context: SectionContext): Promise<Figure[]> {
  const statusHosts = context.quick ? 100 : 500;
  const wanted = {
    overhead: context.wants("smb-overhead"),
    fanOut: context.wants("smb-fanout"),
    fanOutDelayed: context.wants(`smb-${DELAY_MS}ms-fanout`),
    status: context.wants(`smb-status-${statusHosts}`),
    fleet: context.wants(`smb-fleet-${statusHosts}`),
    security: context.wants("smb-security"),
  };
  if (!Object.values(wanted).some(Boolean)) return [];
  const missing = smbdMissing();
  if (missing !== undefined) {
    console.log(`SMB figures skipped: ${missing}`);
    return [];
  }

  const smbd = await startSmbd({ shares: [SHARE], users: [USER] });
  const template = templateFor(smbd.port);
  const config = { smb: { username: USER.name, password: USER.password, timeout: "10s" } };
  const direct = await openDirect(template);
  const figures: Figure[] = [];
  try {
    if (wanted.overhead) figures.push(await overhead(context, smbd.port, config, direct));
    if (wanted.security) figures.push(...await security(context, template));
    if (wanted.fanOut) {
      const loopback = await context.fanOut("smb", template, context.runs, {
        config,
        floor: storeFloor(direct),
        counts: fanOutCounts(context.quick),
      });
      for (const f of loopback) {
        f.method += "; smbd on loopback, one connection: no network latency, a round trip is " +
          "smbd's and the client's CPU";
      }
      figures.push(...loopback);
    }
    if (wanted.fanOutDelayed) {
      await using proxy = startSmbProxy(smbd.port, { delayMs: DELAY_MS });
      // The floor goes through the same proxy, on a connection of its own.
      const delayedDirect = await openDirect(templateFor(proxy.port));
      let delayed: Figure[];
      try {
        delayed = await context.fanOut(`smb-${DELAY_MS}ms`, templateFor(proxy.port), context.runs, {
          config,
          floor: storeFloor(delayedDirect),
          counts: fanOutCounts(context.quick),
        });
      } finally {
        await delayedDirect.close();
      }
      for (const f of delayed) {
        f.method += `; through a proxy holding every chunk ${DELAY_MS} ms each way (a network)`;
      }
      figures.push(...delayed);
      await closeStores(); // its connection goes before the proxy does
    }
    if (wanted.status) {
      // Both sides on fresh connections (smbd serves each from its own process).
      await closeStores();
      const reader = await openDirect(template);
      try {
        const f = await context.statusAtScale(
          "smb",
          template,
          statusHosts,
          context.quick ? 3 : 20,
          {
            config,
            baseline: async (names) => {
              const results = await mapLimit(names, 16, async (host) => {
                for (const name of await reader.list(host)) await reader.read(host, name);
              });
              const failed = results.find((r) => r.status === "rejected");
              if (failed) throw (failed as PromiseRejectedResult).reason;
            },
          },
        );
        f.subject = `status of ${statusHosts} hosts (smb, a folder per host), 64 at once`;
        f.baseline = "listing and reading the same lock files with the SMB store's own calls, " +
          "16 hosts at once";
        f.method += "; each side on a fresh connection";
        figures.push(f);
      } finally {
        await reader.close();
      }
    }
    if (wanted.fleet) {
      // A folder of its own in the share: the fleet view lists it, so it holds these hosts only.
      await Deno.mkdir(`${smbd.dir(SHARE)}/fleet`);
      const fleetTemplate = `smb://127.0.0.1:${smbd.port}/${SHARE}/fleet/{0}`;
      await closeStores();
      const reader = await openDirect(fleetTemplate);
      try {
        const f = await context.fleetAtScale(
          "smb",
          fleetTemplate,
          statusHosts,
          context.quick ? 3 : 10,
          {
            config,
            baseline: async () => {
              const hosts = await reader.listHosts!();
              const results = await mapLimit(hosts, 64, async (host) => {
                for (const name of await reader.list(host)) await reader.read(host, name);
              });
              const failed = results.find((r) => r.status === "rejected");
              if (failed) throw (failed as PromiseRejectedResult).reason;
            },
          },
        );
        f.baseline = "listing the root and every host folder, and reading the lock files, " +
          "with the SMB store's own calls, 64 hosts at once";
        figures.push(f);
      } finally {
        await reader.close();
      }
    }
  } finally {
    await direct.close();
    await closeStores();
    await smbd.close();
  }
  return figures;
}

/** lockResource(Host) + release against the same SMB operations done directly. */
async function overhead(
  context: SectionContext,
  port: number,
  config: Record<string, unknown>,
  direct: LockStore,
): Promise<Figure> {
  const runs = context.runs * 5;
  const subjectCycle = async (store: string) => {
    const lock = await lockResource(SUBJECT_HOST, {
      store,
      config,
      type: "Host",
      caller: "bench",
      dependencies: {},
      retries: 1,
    });
    await lock.release();
  };
  const result = await compare(
    () => subjectCycle(templateFor(port)),
    () => directCycle(direct, DIRECT_HOST),
    runs,
  );
  const trips = await countRoundTrips(port, subjectCycle);
  const f = figure({
    id: "smb-overhead",
    subject: "lockResource(Host) + release, SMB store",
    baseline: "the same SMB operations with the store's own calls " +
      "(exclusive create + write, list, read, rewrite + rename into History)",
    target: 1.3,
    unit: "ms",
    method: `in-process against smbd on loopback, one connection each, ${runs} interleaved ` +
      "runs each after 3 warm-ups, median; round trips per cycle counted at a forwarding proxy",
  }, result);
  f.extra = {
    cyclesPerSecond: 1000 / result.subject.median,
    subjectRoundTrips: trips.subject,
    baselineRoundTrips: trips.baseline,
  };
  return f;
}

/**
 * What signing and encryption cost: a Host lock + release on the same smbd
 * through stores that differ only in them, each interleaved with the
 * unsigned one on the same dialect. SMB 3.1.1 against the defaults (its
 * TREE_CONNECT is signed even so, as the protocol demands); SMB 3.0 (the
 * AES-128-CCM cipher) against a second smbd that speaks nothing newer.
 */
async function security(context: SectionContext, template: string): Promise<Figure[]> {
  const runs = context.runs * 3;
  const method = `in-process Locker Host lock + release (create, list, read, read, archive) ` +
    `against smbd on loopback, one connection each, ${runs} interleaved runs each after ` +
    "3 warm-ups, median";
  const figures: Figure[] = [];
  const measure = async (
    server: string,
    variants: {
      id: string;
      subject: string;
      baseline: string;
      security: Pick<SmbStoreOptions, "signing" | "encrypt">;
    }[],
  ) => {
    const unsigned = await openDirect(server, { signing: "off" });
    try {
      for (const variant of variants) {
        const store = await openDirect(server, variant.security);
        try {
          const result = await compare(
            lockerCycle(store, `${variant.id}-subject`),
            lockerCycle(unsigned, `${variant.id}-baseline`),
            runs,
          );
          const f = figure({
            id: variant.id,
            subject: variant.subject,
            baseline: variant.baseline,
            unit: "ms",
            method,
          }, result);
          f.extra = { costMs: result.subject.median - result.baseline.median };
          figures.push(f);
        } finally {
          await store.close();
        }
      }
    } finally {
      await unsigned.close();
    }
  };
  await measure(template, [
    {
      id: "smb-security-signed",
      subject: "Host lock + release, SMB 3.1.1 signed (AES-128-GMAC, the default)",
      baseline: "the same, SMB 3.1.1 unsigned",
      security: {},
    },
    {
      id: "smb-security-gcm",
      subject: "Host lock + release, SMB 3.1.1 encrypted (AES-128-GCM)",
      baseline: "the same, SMB 3.1.1 unsigned",
      security: { encrypt: "required" },
    },
  ]);
  const smb30 = await startSmbd({
    shares: [SHARE],
    users: [USER],
    extraGlobal: ["server min protocol = SMB3_00", "server max protocol = SMB3_00"],
  });
  try {
    await measure(templateFor(smb30.port), [
      {
        id: "smb-security-cmac",
        subject: "Host lock + release, SMB 3.0 signed (AES-128-CMAC)",
        baseline: "the same, SMB 3.0 unsigned",
        security: {},
      },
      {
        id: "smb-security-ccm",
        subject: "Host lock + release, SMB 3.0 encrypted (AES-128-CCM)",
        baseline: "the same, SMB 3.0 unsigned",
        security: { encrypt: "required" },
      },
    ]);
  } finally {
    await smb30.close();
  }
  return figures;
}

/** SMB requests (frames) one warm cycle of each side sends, counted at a forwarding proxy. */
async function countRoundTrips(
  port: number,
  subjectCycle: (template: string) => Promise<void>,
): Promise<{ subject: number; baseline: number }> {
  let frames = 0;
  await using proxy = startSmbProxy(port, {
    rule: () => {
      frames++;
      return "pass";
    },
  });
  const proxied = templateFor(proxy.port);
  const store = await openDirect(proxied);
  try {
    await subjectCycle(proxied); // connects
    await directCycle(store, DIRECT_HOST);
    frames = 0;
    await subjectCycle(proxied);
    const subject = frames;
    frames = 0;
    await directCycle(store, DIRECT_HOST);
    return { subject, baseline: frames };
  } finally {
    await store.close();
    await closeStores();
  }
}
