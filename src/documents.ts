/**
 * The JSON documents of `--json` and of `resource-locker serve`'s API, built
 * in one place so that the command line and the server answer the same
 * bytes for the same state (`schemas/` describes each).
 *
 * @module
 */

import type { FleetLock, FleetStatus, GroupStatus } from "./fleet.ts";
import type { HistoryEntry, LockInfo, ReleaseResult } from "./locker.ts";
import type { ResourceLock } from "./resource_lock.ts";
import { escapeJson, maskSecrets } from "./_text.ts";

/** A lock as `--json` shows it. */
export function lockJson(info: LockInfo, now: number): Record<string, unknown> {
  return {
    host: info.host,
    ref: info.ref,
    lockId: info.lockId,
    type: info.type,
    sessionId: info.sessionId ?? null,
    caller: info.caller ?? null,
    description: info.description ?? null,
    lockedAt: info.lockedAt?.toISOString() ?? null,
    ageSeconds: info.lockedAt ? Math.round((now - info.lockedAt.getTime()) / 1000) : null,
    expiresAt: info.expiresAt?.toISOString() ?? null,
    expired: info.expired,
    content: info.state,
    holder: info.holder ?? null,
  };
}

/** A lock of the fleet view: a lock object plus its lease left, origin, write time and staleness. */
export function fleetLockJson(l: FleetLock, now: number): Record<string, unknown> {
  return {
    ...lockJson(l, now),
    leaseLeftSeconds: l.expiresAt
      ? Math.max(0, Math.round((l.expiresAt.getTime() - now) / 1000))
      : null,
    origin: l.origin ?? "unknown",
    writtenAt: l.writtenAt?.toISOString() ?? null,
    stale: l.stale,
  };
}

/** A maintenance group as `--json` shows it. */
export function groupJson(g: GroupStatus, now: number): Record<string, unknown> {
  return {
    name: g.name,
    members: g.members,
    max: g.max,
    used: g.used,
    free: g.free,
    home: g.home,
    location: g.location,
    slots: g.slots.map((slot) => ({
      slot: slot.slot,
      name: slot.name,
      member: slot.member ?? null,
      sessionId: slot.sessionId ?? null,
      caller: slot.caller ?? null,
      description: slot.description ?? null,
      lockedAt: slot.lockedAt?.toISOString() ?? null,
      ageSeconds: slot.lockedAt ? Math.round((now - slot.lockedAt.getTime()) / 1000) : null,
      expiresAt: slot.expiresAt?.toISOString() ?? null,
      expired: slot.expired,
      orphaned: slot.orphaned,
      holder: slot.holder ?? null,
    })),
  };
}

/** `status --all --json`, without `version`. */
export function fleetDocument(fleet: FleetStatus, now: number): Record<string, unknown> {
  return {
    command: "status",
    all: true,
    source: fleet.source,
    hosts: fleet.hosts,
    skipped: fleet.skipped,
    locks: fleet.locks.map((l) => fleetLockJson(l, now)),
    groups: fleet.groups.map((g) => groupJson(g, now)),
    failures: fleet.failures,
  };
}

/** `status <host>... --json`, without `version`. */
export function hostsDocument(
  hosts: readonly string[],
  locks: readonly LockInfo[],
  now: number,
): Record<string, unknown> {
  return {
    command: "status",
    hosts: hosts.map((h) => h.toLowerCase()),
    locks: locks.map((l) => lockJson(l, now)),
  };
}

/** `status --group NAME --json`, without `version`. */
export function groupDocument(
  group: GroupStatus,
  locks: readonly LockInfo[],
  now: number,
): Record<string, unknown> {
  return {
    command: "status",
    group: groupJson(group, now),
    locks: locks.map((l) => lockJson(l, now)),
  };
}

/** `history <host> --json`, without `version`. */
export function historyDocument(
  host: string,
  entries: readonly HistoryEntry[],
  now: number,
): Record<string, unknown> {
  return {
    command: "history",
    host: host.toLowerCase(),
    entries: entries.map((e) => ({
      ...lockJson(e, now),
      name: e.name,
      unlockedAt: e.unlockedAt?.toISOString() ?? null,
      brokenBy: e.brokenBy ?? null,
      breakReason: e.breakReason ?? null,
    })),
  };
}

/** `break --json`, without `version`. */
export function breakDocument(info: LockInfo, now: number): Record<string, unknown> {
  return { command: "break", broken: lockJson(info, now) };
}

/** `lock --json` and `lock-file --json`, without `version`. */
export function lockDocument(command: string, lock: ResourceLock): Record<string, unknown> {
  return {
    command,
    host: lock.host,
    type: lock.type,
    sessionId: lock.sessionId,
    refs: lock.refs,
  };
}

/** One result of `unlock --json`. */
export function releaseJson(result: ReleaseResult): Record<string, unknown> {
  return JSON.parse(JSON.stringify(result));
}

/**
 * A document as text, exactly as `--json` prints it: `"version": 1` first,
 * indented by two, secrets masked, control and format characters escaped.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { documentText } from "./documents.ts";
 * assert.equal(documentText({ command: "id", lockId: "Host" }), '{\n  "version": 1,\n  "command": "id",\n  "lockId": "Host"\n}');
 * ```
 */
export function documentText(document: Record<string, unknown>): string {
  return escapeJson(maskSecrets(JSON.stringify({ version: 1, ...document }, null, 2)));
}
