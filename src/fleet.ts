/**
 * The fleet view: every lock of every host at once, stale locks flagged,
 * and who is in maintenance in each maintenance group.
 *
 * Hosts are found by listing the store's root where its hosts' folders
 * share one (`/var/lib/locks/{0}`, `smb://server/share/{0}`, etcd), else
 * taken from what the config names: the dependency map's hosts, the groups'
 * members, the `hosts` setting and a hosts file.
 *
 * @module
 */

import { readSmallFile, SmallFileError } from "./_file.ts";
import { InputError, ResourceLockerError, StoreError } from "./errors.ts";
import { GROUP_FOLDER_PREFIX, type MaintenanceGroup, slotHome } from "./groups.ts";
import { normalizeHost } from "./host.ts";
import { maskSecrets } from "./_text.ts";
import { decodeText } from "./lock_file.ts";
import { type Locker, type LockInfo, mapLimit, type SlotInfo } from "./locker.ts";
import type { DependencyMap } from "./dependencies.ts";

/**
 * Why a lock is flagged stale: `expired` (its lease ran out and nobody broke
 * it yet), `empty` (an empty file older than `staleEmptyAfter`: a PowerShell
 * writer died between its two steps), `powershell` (written by the original
 * module, which has no leases, and older than `stalePowerShellAfter`).
 */
export type StaleReason = "expired" | "empty" | "powershell";

/** A lock in the fleet view. */
export interface FleetLock extends LockInfo {
  /** Why it looks stale; [] for a lock in good standing. */
  stale: StaleReason[];
}

/** A maintenance group and who is in maintenance. */
export interface GroupStatus {
  /** Group name. */
  name: string;
  /** Member hosts. */
  members: string[];
  /** Members allowed in maintenance at once. */
  max: number;
  /** Where its slots live: its own folder (`_group-<name>`) or its home host. */
  home: string;
  /** The store location of that folder (a path, share URL or key prefix; no secret). */
  location: string;
  /** Slots taken and in force (numbered up to max, neither expired nor left over). */
  used: number;
  /** Slots a Host lock on a member can take now: `max - used`. */
  free: number;
  /** Every slot entry found, by number, with its state. */
  slots: SlotInfo[];
}

/** A host or group the view could not read. */
export interface FleetFailure {
  /** The host (or, for a group, where its slots live). */
  host: string;
  /** The group, when it was a group's slots that could not be read. */
  group?: string;
  /** Stable error code, e.g. `STORE_UNREACHABLE`. */
  code: string;
  /** One-line message. */
  message: string;
}

/** What {@linkcode fleetStatus} found. */
export interface FleetStatus {
  /** `listing`: the hosts are the folders under the store's root; `named`: those the config names. */
  source: "listing" | "named";
  /** The hosts looked at, sorted. */
  hosts: string[];
  /** Folders under the store's root that are no lower-case host names (never looked into). */
  skipped: string[];
  /** Every lock found, by host (Host lock first). */
  locks: FleetLock[];
  /** Every maintenance group. */
  groups: GroupStatus[];
  /** Hosts and groups that could not be read. */
  failures: FleetFailure[];
}

/** What the fleet view needs to know besides the locker. */
export interface FleetContext {
  /** The store's folder template, for messages (secrets are masked). */
  template: string;
  /** The engine over the store. */
  locker: Locker;
  /** Maintenance groups (config and map file). */
  groups: readonly MaintenanceGroup[];
  /** The dependency map, whose hosts are named hosts. */
  dependencies: DependencyMap;
  /** Hosts named by the config or the caller. */
  hosts: readonly string[];
  /** A hosts file to read, or undefined. */
  hostsFile: string | undefined;
  /** Hosts looked at at once. */
  concurrency: number;
  /** Age after which an empty lock file is stale, ms. */
  staleEmptyMs: number;
  /** Age after which a PowerShell lock is stale, ms. */
  stalePowerShellMs: number;
}

/** Largest hosts file read. */
const MAX_HOSTS_FILE_BYTES = 16 * 1024 * 1024;

/**
 * Reads a hosts file: one host name per line; `#` starts a comment; blank
 * lines are skipped.
 *
 * @param path the file
 * @returns the hosts, lower-cased, each once
 * @throws {InputError} when it is missing, too large, or a line is no host name (naming the line)
 * @throws {StoreError} when it exists but cannot be read
 */
export async function readHostsFile(path: string): Promise<string[]> {
  let bytes: Uint8Array;
  try {
    bytes = await readSmallFile(path, MAX_HOSTS_FILE_BYTES);
  } catch (error) {
    if (error instanceof SmallFileError && error.reason !== "unreadable") {
      throw new InputError(`Invalid hosts file "${path}": ${error.message}`);
    }
    throw new StoreError(path, `Cannot read hosts file "${path}": ${(error as Error).message}`, {
      cause: error,
    });
  }
  const hosts = new Set<string>();
  decodeText(bytes).replace(/^\uFEFF/, "").split(/\r?\n/).forEach((line, index) => {
    const name = line.replace(/#.*$/, "").trim();
    if (name === "") return;
    try {
      hosts.add(normalizeHost(name));
    } catch (error) {
      throw new InputError(
        `Invalid hosts file "${path}" line ${index + 1}: ${(error as Error).message}`,
      );
    }
  });
  return [...hosts];
}

/**
 * The hosts a config names: the dependency map's (keys and lists), the
 * groups' members and homes, the `hosts` setting and the hosts file.
 *
 * @param context what the config names
 * @returns the hosts, sorted, each once
 */
export async function namedHosts(context: FleetContext): Promise<string[]> {
  const hosts = new Set<string>(context.hosts);
  for (const [host, list] of Object.entries(context.dependencies)) {
    hosts.add(host);
    for (const item of list) hosts.add(item);
  }
  for (const group of context.groups) {
    for (const member of group.members) hosts.add(member);
    if (group.home !== undefined) hosts.add(group.home);
  }
  if (context.hostsFile !== undefined) {
    for (const host of await readHostsFile(context.hostsFile)) hosts.add(host);
  }
  return [...hosts].sort();
}

/**
 * Why a lock looks stale, judged at `now` (the store's clock).
 *
 * @param info the lock
 * @param now epoch milliseconds on the store's clock
 * @param limits the ages after which empty and PowerShell locks are stale
 * @returns the reasons; [] when none
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { staleReasons } from "./fleet.ts";
 * const limits = { staleEmptyMs: 60_000, stalePowerShellMs: 86_400_000 };
 * const empty = { host: "dc01", lockId: "Host", type: "Host" as const, ref: "dc01/Host",
 *   expired: false, state: "empty" as const, origin: "unknown" as const, writtenAt: new Date(0) };
 * assert.deepEqual(staleReasons(empty, 120_000, limits), ["empty"]);
 * assert.deepEqual(staleReasons(empty, 30_000, limits), []);
 * ```
 */
export function staleReasons(
  info: LockInfo,
  now: number,
  limits: { staleEmptyMs: number; stalePowerShellMs: number },
): StaleReason[] {
  const reasons: StaleReason[] = [];
  if (info.expired) reasons.push("expired");
  if (
    info.state === "empty" && info.writtenAt !== undefined &&
    now - info.writtenAt.getTime() > limits.staleEmptyMs
  ) reasons.push("empty");
  const since = info.lockedAt ?? info.writtenAt;
  if (
    info.origin === "powershell" && since !== undefined &&
    now - since.getTime() > limits.stalePowerShellMs
  ) reasons.push("powershell");
  return reasons;
}

function failureOf(host: string, error: unknown, group?: string): FleetFailure {
  if (!(error instanceof ResourceLockerError)) throw error;
  return {
    host,
    ...group !== undefined ? { group } : {},
    code: error.code,
    message: error.message,
  };
}

/**
 * A group's slots and how many are in force.
 *
 * @param locker the engine
 * @param group the group
 * @returns its status
 */
export async function groupStatus(
  locker: Locker,
  group: MaintenanceGroup,
): Promise<GroupStatus> {
  const home = slotHome(group, locker.store.listHosts !== undefined);
  const slots = await locker.groupSlots(group.name, home);
  const used = slots.filter((s) => s.slot <= group.max && !s.expired && !s.orphaned).length;
  return {
    name: group.name,
    members: [...group.members],
    max: group.max,
    home,
    location: locker.store.describe(home),
    used,
    free: Math.max(0, group.max - used),
    slots,
  };
}

/**
 * Every lock of the fleet and every group's slots. A host or group that
 * cannot be read is a failure of its own; the others are still shown.
 *
 * @param context the locker and what the config names
 * @returns the view
 * @throws {InputError} when the store cannot list its hosts and none are named
 * @throws {StoreError} when the store's root cannot be listed
 */
export async function fleetStatus(context: FleetContext): Promise<FleetStatus> {
  const store = context.locker.store;
  let source: FleetStatus["source"];
  let hosts: string[];
  const skipped: string[] = [];
  if (store.listHosts) {
    source = "listing";
    hosts = [];
    for (const name of await store.listHosts()) {
      if (name.startsWith(GROUP_FOLDER_PREFIX)) continue; // a group's slots, shown with its group
      let host: string | undefined;
      try {
        host = normalizeHost(name);
      } catch { /* not a host name */ }
      if (host === name) hosts.push(host);
      else skipped.push(name);
    }
    hosts.sort();
    skipped.sort();
  } else {
    source = "named";
    hosts = await namedHosts(context);
    if (hosts.length === 0) {
      throw new InputError(
        `Cannot find the hosts of "${
          maskSecrets(context.template)
        }": each host has its own server or share there, so name them: the hosts setting, a hosts file (hostsFile, --hosts FILE) or a dependency map`,
      );
    }
  }
  const failures: FleetFailure[] = [];
  const locks: FleetLock[] = [];
  const results = await mapLimit(hosts, context.concurrency, async (host) => {
    const infos = await context.locker.status(host);
    if (infos.length === 0) return [];
    const now = await context.locker.storeNow(host);
    return infos.map((info): FleetLock => ({ ...info, stale: staleReasons(info, now, context) }));
  });
  results.forEach((result, i) => {
    if (result.status === "fulfilled") locks.push(...result.value);
    else failures.push(failureOf(hosts[i]!, result.reason));
  });
  const groups: GroupStatus[] = [];
  const groupResults = await mapLimit(
    context.groups,
    context.concurrency,
    (group) => groupStatus(context.locker, group),
  );
  groupResults.forEach((result, i) => {
    const group = context.groups[i]!;
    if (result.status === "fulfilled") groups.push(result.value);
    else {
      failures.push(
        failureOf(slotHome(group, store.listHosts !== undefined), result.reason, group.name),
      );
    }
  });
  return { source, hosts, skipped, locks, groups, failures };
}
