/**
 * Maintenance groups: at most `max` members of a group hold Host locks at
 * once (rolling maintenance of a cluster, one or N nodes at a time).
 *
 * A group is defined in the config (`groups`) or in the dependency map file,
 * in its optional second section `"@groups"` (a key no host name can be, so
 * the original module reads such a map as before: see the README).
 *
 * Taking a Host lock on a member also takes a *slot* of each of its groups:
 * an ordinary lock entry `Group-<group>.slot-<n>` (n from 1 to `max`), made
 * with the store's exclusive create, so at most `max` exist whatever races.
 * Where the slots live:
 *
 * - stores whose hosts' folders share one root (a folder template ending in
 *   `/{0}`, `smb://server/share/{0}`, etcd `…/{0}`): a folder of their own
 *   beside the hosts', `_group-<group>`: a name the host-name check lets
 *   through (so it is a folder or prefix like any host's) but no host has,
 *   since host names start with a letter or digit (RFC 1123);
 * - stores with a server or share per host (`\\{0}\ResourceLocks`,
 *   `smb://{0}/…`, `smb://server/{0}`): the folder of one named host, the
 *   group's `home` (default its first member). The slot's name ends in
 *   `.slot-<n>`, which the original's `*.lock` patterns and our lock names
 *   never match, so neither PowerShell nor our drain sees it as a lock.
 *
 * @module
 */

import { InputError } from "./errors.ts";
import { normalizeHost } from "./host.ts";
import { kindOf } from "./_text.ts";

/** A maintenance group. */
export interface MaintenanceGroup {
  /** Name, lower-cased: letters, digits, `.`, `_` and `-`. */
  name: string;
  /** Member hosts, lower-cased, each once, in the order given. */
  members: string[];
  /** How many members may hold Host locks at once (1 or more). */
  max: number;
  /**
   * The host whose folder holds the group's slots on stores where each host
   * has its own server or share. @default the first member
   */
  home?: string;
}

/** The key of the dependency map file's second section. */
export const GROUPS_SECTION = "@groups";

/**
 * Prefix of a group's own folder on stores whose hosts share one root: no
 * host name starts with `_` (RFC 1123), and the fleet view skips it.
 */
export const GROUP_FOLDER_PREFIX = "_group-";

/** `source` says where, as `config "x.ts"` or `dependency map "m.json"`; `where` the place in it. */
function bad(source: string, where: string, why: string): InputError {
  return new InputError(
    `Invalid maintenance groups in ${source}${where ? ` at ${where.trim()}` : ""}: ${why}`,
  );
}

function hostList(value: unknown, source: string, where: string): string[] {
  // PowerShell's ConvertTo-Json writes a one-element array as a plain value.
  const items = typeof value === "string" ? [value] : value;
  if (!Array.isArray(items)) {
    throw bad(source, where, `expected an array of host names, got ${kindOf(value)}`);
  }
  const hosts: string[] = [];
  items.forEach((item: unknown, index) => {
    if (typeof item !== "string") {
      throw bad(source, `${where}[${index}]`, `expected a host name, got ${kindOf(item)}`);
    }
    let host: string;
    try {
      host = normalizeHost(item);
    } catch (error) {
      throw bad(source, `${where}[${index}]`, (error as Error).message);
    }
    if (!hosts.includes(host)) hosts.push(host);
  });
  return hosts;
}

function ownValue(object: object, key: string, source: string, where: string): unknown {
  try {
    return Object.hasOwn(object, key) ? (object as Record<string, unknown>)[key] : undefined;
  } catch (error) {
    throw bad(source, where, `cannot be read: ${(error as Error).message?.split("\n")[0]}`);
  }
}

/**
 * Checks maintenance groups as a config or a map file gives them: an array
 * of `{ name, members, max, home? }` (a single object is one group, as
 * PowerShell writes a one-element array), and returns them normalised.
 *
 * @param value the parsed value
 * @param source where it came from, for messages: `config "x.ts"`, `dependency map "m.json"`
 * @returns the groups, names and hosts lower-cased
 * @throws {InputError} naming the source, the group and the field at fault
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { validateGroups } from "./groups.ts";
 * const [group] = validateGroups([{ name: "HV-A", members: ["HV01", "hv02"], max: 1 }], "options");
 * assert.deepEqual(group, { name: "hv-a", members: ["hv01", "hv02"], max: 1 });
 * assert.throws(() => validateGroups([{ name: "x", members: [], max: 1 }], "options"), /no members/);
 * ```
 */
export function validateGroups(value: unknown, source: string): MaintenanceGroup[] {
  const list = value !== null && typeof value === "object" && !Array.isArray(value)
    ? [value]
    : value;
  if (!Array.isArray(list)) {
    throw bad(source, "", `expected an array of { name, members, max }, got ${kindOf(value)}`);
  }
  const groups: MaintenanceGroup[] = [];
  list.forEach((item: unknown, index) => {
    const at = `[${index}]`;
    if (item === null || typeof item !== "object" || Array.isArray(item)) {
      throw bad(source, at, `expected { name, members, max }, got ${kindOf(item)}`);
    }
    for (const key of Object.keys(item)) {
      if (!["name", "members", "max", "home"].includes(key)) {
        throw bad(source, at, `unknown field ${JSON.stringify(key.slice(0, 40))}`);
      }
    }
    const rawName = ownValue(item, "name", source, at);
    if (typeof rawName !== "string") {
      throw bad(source, `${at}.name`, `expected a group name, got ${kindOf(rawName)}`);
    }
    let name: string;
    try {
      name = normalizeHost(rawName);
    } catch (error) {
      throw bad(
        source,
        `${at}.name`,
        (error as Error).message.replace("Invalid host name", "Invalid group name"),
      );
    }
    const where = ` group "${name}"`;
    const members = hostList(ownValue(item, "members", source, at), source, `${where} members`);
    if (members.length === 0) throw bad(source, where, "it has no members");
    const max = ownValue(item, "max", source, at);
    if (typeof max !== "number" || !Number.isInteger(max) || max < 1) {
      throw bad(source, `${where} max`, `expected a whole number >= 1, got ${kindOf(max)}`);
    }
    const group: MaintenanceGroup = { name, members, max };
    const home = ownValue(item, "home", source, at);
    if (home !== undefined) {
      if (typeof home !== "string") {
        throw bad(source, `${where} home`, `expected a host name, got ${kindOf(home)}`);
      }
      try {
        group.home = normalizeHost(home);
      } catch (error) {
        throw bad(source, `${where} home`, (error as Error).message);
      }
    }
    if (groups.some((g) => g.name === name)) {
      throw bad(source, where, "defined twice");
    }
    groups.push(group);
  });
  return groups;
}

function sameGroup(a: MaintenanceGroup, b: MaintenanceGroup): boolean {
  return a.max === b.max && a.home === b.home && a.members.join() === b.members.join();
}

/**
 * Joins the groups of several sources (the config, the map file). A group
 * defined in two of them must be defined the same way.
 *
 * @param sources groups and where they came from
 * @returns every group once
 * @throws {InputError} when one name has two different definitions
 */
export function mergeGroups(
  sources: readonly { groups: readonly MaintenanceGroup[]; source: string }[],
): MaintenanceGroup[] {
  const merged = new Map<string, { group: MaintenanceGroup; source: string }>();
  for (const { groups, source } of sources) {
    for (const group of groups) {
      const seen = merged.get(group.name);
      if (seen && !sameGroup(seen.group, group)) {
        throw new InputError(
          `Maintenance group "${group.name}" is defined differently in "${seen.source}" and "${source}"`,
        );
      }
      if (!seen) merged.set(group.name, { group, source });
    }
  }
  return [...merged.values()].map((entry) => entry.group);
}

/**
 * The groups a host is a member of.
 *
 * @param host host, lower-cased
 * @param groups every group
 * @returns its groups, in the order given
 */
export function groupsOf(host: string, groups: readonly MaintenanceGroup[]): MaintenanceGroup[] {
  return groups.filter((group) => group.members.includes(host));
}

/**
 * The name of slot `n` of a group: `Group-<group>.slot-<n>`.
 *
 * @param group group name
 * @param n slot number, 1 to max
 * @returns the entry name
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { slotName, slotNumber } from "./groups.ts";
 * assert.equal(slotName("hv-a", 2), "Group-hv-a.slot-2");
 * assert.equal(slotNumber("hv-a", "Group-hv-a.slot-2"), 2);
 * assert.equal(slotNumber("hv", "Group-hv-a.slot-2"), undefined);
 * ```
 */
export function slotName(group: string, n: number): string {
  return `Group-${group}.slot-${n}`;
}

/**
 * The slot number of an entry name, when it is a slot of `group`.
 *
 * @param group group name
 * @param name entry name
 * @returns the number, or undefined
 */
export function slotNumber(group: string, name: string): number | undefined {
  const prefix = `Group-${group}.slot-`;
  if (!name.startsWith(prefix)) return undefined;
  const rest = name.slice(prefix.length);
  return /^[1-9][0-9]{0,5}$/.test(rest) ? Number(rest) : undefined;
}

/**
 * Where a group's slots live: its own folder `_group-<name>` beside the
 * hosts' on a store whose hosts share one root (it can list them), else
 * the folder of its `home` host, by default its first member.
 *
 * @param group the group
 * @param sharedRoot whether the store's host folders share one root
 * @returns the host (or the group's own folder name) to keep the slots in
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { slotHome } from "./groups.ts";
 * const group = { name: "hv-a", members: ["hv01", "hv02"], max: 1 };
 * assert.equal(slotHome(group, true), "_group-hv-a");
 * assert.equal(slotHome(group, false), "hv01");
 * ```
 */
export function slotHome(group: MaintenanceGroup, sharedRoot: boolean): string {
  return sharedRoot ? `${GROUP_FOLDER_PREFIX}${group.name}` : group.home ?? group.members[0]!;
}
