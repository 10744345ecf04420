/**
 * `status <host>...`: the current locks of hosts; `status --all`: every lock
 * of the fleet, stale ones flagged, and the maintenance groups; `status
 * --group NAME`: who is in maintenance in a group.
 *
 * @module
 */

import {
  getFleetStatus,
  getGroupStatus,
  getResourceLockStatus,
  type GroupStatus,
} from "../../mod.ts";
import type { StoreOptions } from "../../src/api.ts";
import { CONFIG_DEFAULTS } from "../../src/config.ts";
import { formatDuration } from "../../src/duration.ts";
import type { CommandDeclaration, Values } from "../command.ts";
import { EXIT, UsageError } from "../errors.ts";
import { DEPENDENCIES_FILE, GROUP_FLAG } from "../flags.ts";
import { age, table } from "../format.ts";
import { fleetDocument, groupDocument, hostsDocument } from "../../src/documents.ts";
import { type Io, printJson } from "../io.ts";

function leaseLeft(expiresAt: Date | undefined, expired: boolean, now: number): string {
  if (!expiresAt) return "never";
  return expired ? "expired" : `${formatDuration(expiresAt.getTime() - now)} left`;
}

function groupRows(groups: readonly GroupStatus[]): string[][] {
  const rows = [["GROUP", "IN MAINTENANCE", "FREE", "MEMBERS", "SLOTS IN"]];
  for (const g of groups) {
    const live = g.slots.filter((s) => s.slot <= g.max && !s.expired && !s.orphaned);
    rows.push([
      g.name,
      `${g.used} of ${g.max}${
        live.length ? `: ${live.map((s) => s.member ?? "?").join(", ")}` : ""
      }`,
      String(g.free),
      g.members.join(","),
      g.location,
    ]);
  }
  return rows;
}

function dependenciesFile(values: Values): { dependenciesFile?: string } {
  const file = values["dependencies-file"];
  return typeof file === "string" ? { dependenciesFile: file } : {};
}

async function statusAll(
  operands: string[],
  values: Values,
  io: Io,
  storeOptions: StoreOptions,
): Promise<number> {
  if (operands.length > 0 || values.group !== undefined) {
    throw new UsageError("status --all takes no host names and no --group");
  }
  const fleet = await getFleetStatus({
    ...storeOptions,
    ...typeof values.hosts === "string" ? { hostsFile: values.hosts } : {},
    ...dependenciesFile(values),
  });
  const now = Date.now();
  if (values.json) {
    printJson(io, fleetDocument(fleet, now));
  } else {
    if (fleet.locks.length > 0) {
      const rows = [["HOST", "TYPE", "CALLER", "HOLDER", "AGE", "LEASE", "STALE", "REF"]];
      for (const l of fleet.locks) {
        rows.push([
          l.host,
          l.type,
          l.caller ?? (l.state === "ok" ? "-" : `(unknown: ${l.state} file)`),
          l.holder ? `${l.holder.host ?? "?"}:${l.holder.pid ?? "?"}` : "-",
          age(l.lockedAt ?? l.writtenAt, now),
          leaseLeft(l.expiresAt, l.expired, now),
          l.stale.length ? l.stale.join(",") : "-",
          l.ref,
        ]);
      }
      io.out(table(rows));
    } else if (!values.quiet) {
      const n = fleet.hosts.length;
      io.err(`No locks on the ${n} host${n === 1 ? "" : "s"} looked at`);
    }
    if (fleet.groups.length > 0) {
      if (fleet.locks.length > 0) io.out("");
      io.out(table(groupRows(fleet.groups)));
    }
    // Folders no ref can name: said, not silently left out (their locks are not looked at).
    for (const name of fleet.skipped) {
      io.err(`Warning: skipped "${name}" under the store's root: not a lower-case host name`);
    }
    for (const failure of fleet.failures) {
      const what = failure.group !== undefined ? `group "${failure.group}"` : failure.host;
      io.err(`Error: ${what}: ${failure.message}`);
    }
  }
  return fleet.failures.length > 0 ? EXIT.STORE : EXIT.OK;
}

async function statusGroup(
  operands: string[],
  values: Values,
  io: Io,
  storeOptions: StoreOptions,
): Promise<number> {
  if (operands.length > 0 || values.hosts !== undefined) {
    throw new UsageError("status --group NAME takes no host names and no --hosts");
  }
  const group = await getGroupStatus(String(values.group), {
    ...storeOptions,
    ...dependenciesFile(values),
  });
  const locks = await getResourceLockStatus(group.members, storeOptions);
  const now = Date.now();
  if (values.json) {
    printJson(io, groupDocument(group, locks, now));
    return EXIT.OK;
  }
  io.out(
    `Group "${group.name}": ${group.used} of ${group.max} in maintenance, ${group.free} free; members ${
      group.members.join(", ")
    }; slots in ${group.location}`,
  );
  if (group.slots.length > 0) {
    const rows = [["SLOT", "MEMBER", "CALLER", "HOLDER", "AGE", "LEASE", "STATE", "SESSION"]];
    for (const slot of group.slots) {
      rows.push([
        String(slot.slot),
        slot.member ?? "?",
        slot.caller ?? "-",
        slot.holder ? `${slot.holder.host ?? "?"}:${slot.holder.pid ?? "?"}` : "-",
        age(slot.lockedAt, now),
        leaseLeft(slot.expiresAt, slot.expired, now),
        slot.orphaned
          ? "left over (its Host lock is gone)"
          : slot.expired
          ? "expired"
          : slot.slot > group.max
          ? "above max"
          : "in maintenance",
        slot.sessionId ?? "?",
      ]);
    }
    io.out(table(rows));
  }
  if (locks.length > 0) {
    const rows = [["HOST", "TYPE", "CALLER", "AGE", "LEASE", "SESSION"]];
    for (const l of locks) {
      rows.push([
        l.host,
        l.type,
        l.caller ?? (l.state === "ok" ? "-" : `(unknown: ${l.state} file)`),
        age(l.lockedAt, now),
        leaseLeft(l.expiresAt, l.expired, now),
        l.sessionId ?? "?",
      ]);
    }
    io.out("");
    io.out(table(rows));
  }
  return EXIT.OK;
}

/** `status <host>...`, `status --all`, `status --group NAME`. */
export const STATUS: CommandDeclaration = {
  name: "status",
  operands: "<host>...",
  usage: "<host>... | --all | --group NAME [options]",
  summary: "current locks; --all: the whole fleet; --group NAME: a maintenance group",
  description: `Shows current locks: type, caller, description, age, expiry, session.

--all shows every lock of the fleet: the hosts are the folders under the
store's root (a folder /…/{0}, smb://server/share/{0}, etcd), or, where each
host has its own server or share, the hosts the config names (the
dependency map's, the groups' members, the hosts setting, hostsFile or
--hosts FILE: one host per line). STALE flags expired locks nobody broke,
empty files and PowerShell locks older than staleEmptyAfter (${CONFIG_DEFAULTS.staleEmptyAfter}) and
stalePowerShellAfter (${CONFIG_DEFAULTS.stalePowerShellAfter}). Then every maintenance group. A host that
cannot be read is one line on stderr, and the exit code is 4.

--group shows a maintenance group: its slots (who is in maintenance, since
when, lease), then its members' locks.`,
  flags: [
    { name: "all", help: "every lock of the fleet, stale ones flagged, and the groups" },
    GROUP_FLAG,
    {
      name: "hosts",
      value: "FILE",
      help: "with --all: a file naming more hosts, one per line",
      file: true,
      setting: "hostsFile",
      default: "none",
    },
    DEPENDENCIES_FILE,
  ],
  async handler({ operands, values, io, storeOptions }) {
    if (values.all) return await statusAll(operands, values, io, storeOptions);
    if (values.group !== undefined) return await statusGroup(operands, values, io, storeOptions);
    if (values.hosts !== undefined || values["dependencies-file"] !== undefined) {
      throw new UsageError("--hosts and --dependencies-file go with status --all or --group");
    }
    if (operands.length === 0) {
      throw new UsageError(
        "Missing host: resource-locker status <host>... (or --all, or --group NAME)",
      );
    }
    const locks = await getResourceLockStatus(operands, storeOptions);
    const now = Date.now();
    if (values.json) {
      printJson(io, hostsDocument(operands, locks, now));
      return EXIT.OK;
    }
    if (locks.length === 0) {
      if (!values.quiet) {
        io.err(`No locks on ${operands.map((h) => `"${h.toLowerCase()}"`).join(", ")}`);
      }
      return EXIT.OK;
    }
    const rows = [["HOST", "TYPE", "CALLER", "DESCRIPTION", "AGE", "EXPIRES", "SESSION"]];
    for (const l of locks) {
      rows.push([
        l.host,
        l.type,
        l.caller ?? (l.state === "ok" ? "-" : `(unknown: ${l.state} file)`),
        l.description ?? "-",
        age(l.lockedAt, now),
        l.expiresAt
          ? (l.expired ? "expired" : `in ${formatDuration(l.expiresAt.getTime() - now)}`)
          : "never",
        l.sessionId ?? "?",
      ]);
    }
    io.out(table(rows));
    return EXIT.OK;
  },
};
