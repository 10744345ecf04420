/**
 * FleetLock (the reboot protocol of Zincati, Fedora CoreOS and Flatcar) on
 * top of the maintenance groups: a node's reboot slot is a Host lock on the
 * host named by the client's `id`, which takes a slot of its maintenance
 * groups, the one named by `group` among them.
 *
 * The lock lives in the store, not in the server: its session is derived
 * from the group and the id (a UUID-shaped SHA-256), so any server, even
 * after a restart, finds and releases it, and a second `pre-reboot` of the
 * same node is recognised as its own (the protocol's recursive lock). The
 * lock has no lease unless the config sets `ttl`: a node may take long to
 * reboot, and the server does not renew it.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  getGroupStatus,
  getMaintenanceGroups,
  getResourceDependence,
  getResourceLockStatus,
  type GroupOptions,
  lockResource,
  unlockResource,
} from "../api.ts";
import { DrainTimeoutError, InputError, LockBusyError, StoreError } from "../errors.ts";
import { normalizeHost } from "../host.ts";
import { formatLockRef } from "../lock_ref.ts";

/** A FleetLock failure: the HTTP status, and the protocol's `kind` (a small fixed set) and `value`. */
export class FleetLockError extends Error {
  override name = "FleetLockError";
  constructor(readonly status: number, readonly kind: string, message: string) {
    super(message);
  }
}

/** Every `kind` the server answers, with its status (the protocol wants few, fixed kinds). */
export const FLEETLOCK_KINDS: Readonly<Record<string, number>> = {
  missing_fleetlock_header: 400,
  invalid_client_params: 400,
  unknown_group: 400,
  not_group_member: 400,
  unauthorized: 401,
  failed_lock_semaphore_full: 409,
  failed_lock_host_busy: 409,
  failed_unlock: 409,
  store_unavailable: 503,
  internal_error: 500,
};

function fail(kind: keyof typeof FLEETLOCK_KINDS, message: string): FleetLockError {
  return new FleetLockError(FLEETLOCK_KINDS[kind]!, kind, message);
}

/** The client's parameters, checked as the protocol says. */
export interface ClientParams {
  /** The node's id: the host its Host lock is on. */
  id: string;
  /** Its reboot group: a maintenance group it is a member of. */
  group: string;
}

/** Reads `{"client_params": {"id": …, "group": …}}`. */
export function parseClientParams(body: unknown): ClientParams {
  const params = body !== null && typeof body === "object"
    ? (body as Record<string, unknown>).client_params
    : undefined;
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw fail("invalid_client_params", "the body needs client_params: {id, group}");
  }
  const { id, group } = params as Record<string, unknown>;
  if (typeof id !== "string" || id === "") {
    throw fail("invalid_client_params", "client_params.id must be a non-empty string");
  }
  if (typeof group !== "string" || !/^[a-zA-Z0-9.-]+$/.test(group)) {
    throw fail("invalid_client_params", "client_params.group must match ^[a-zA-Z0-9.-]+$");
  }
  return { id, group };
}

/**
 * The session of a node's reboot slot: the same for the same group and id
 * on every server and after every restart.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fleetLockSession } from "./fleetlock.ts";
 * assert.equal(fleetLockSession("workers", "node-a"), fleetLockSession("workers", "node-a"));
 * assert.notEqual(fleetLockSession("workers", "node-a"), fleetLockSession("workers", "node-b"));
 * assert.match(fleetLockSession("workers", "node-a"), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
 * ```
 */
export function fleetLockSession(group: string, id: string): string {
  const hex = createHash("sha256").update(`fleetlock\0${group}\0${id}`, "utf8").digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20, 32)
  }`;
}

async function nodeAndGroup(
  params: ClientParams,
  options: GroupOptions,
): Promise<{ host: string; group: string; session: string }> {
  let host: string;
  try {
    host = normalizeHost(params.id);
  } catch (error) {
    throw fail("invalid_client_params", `client_params.id: ${(error as Error).message}`);
  }
  const group = params.group.toLowerCase();
  const all = await getMaintenanceGroups(options);
  const found = all.find((g) => g.name === group);
  if (!found) {
    throw fail("unknown_group", `no maintenance group "${group}" is configured`);
  }
  if (!found.members.includes(host)) {
    throw fail("not_group_member", `"${host}" is not a member of maintenance group "${group}"`);
  }
  return { host, group, session: fleetLockSession(group, params.id) };
}

async function holds(host: string, session: string, options: GroupOptions): Promise<boolean> {
  const locks = await getResourceLockStatus(host, options);
  return locks.some((l) => l.type === "Host" && l.sessionId === session && !l.expired);
}

function storeFailure(error: unknown): never {
  if (error instanceof FleetLockError) throw error;
  if (error instanceof InputError) throw fail("invalid_client_params", error.message);
  if (error instanceof StoreError) throw fail("store_unavailable", error.message);
  throw fail("internal_error", error instanceof Error ? error.message.split("\n")[0]! : "error");
}

/** What a FleetLock call did. */
export interface FleetLockResult {
  /** The node's host. */
  host: string;
  /** The group. */
  group: string;
  /** The lock's session. */
  sessionId: string;
  /** True when it changed the store; false when the node already held (pre-reboot) or did not hold (steady-state). */
  changed: boolean;
}

/**
 * `pre-reboot`: takes the node's Host lock and its group slot, or answers
 * that it already holds them.
 *
 * @param params the client's id and group
 * @param caller who asked (`serve/<token>@<address>`), recorded in the lock
 * @param options store options and the map file
 * @throws {FleetLockError} with the protocol's kind
 */
export async function preReboot(
  params: ClientParams,
  caller: string,
  options: GroupOptions,
): Promise<FleetLockResult> {
  try {
    const { host, group, session } = await nodeAndGroup(params, options);
    const result = { host, group, sessionId: session };
    if (await holds(host, session, options)) return { ...result, changed: false };
    try {
      await lockResource(host, {
        ...options,
        type: "Host",
        sessionId: session,
        caller,
        description: `FleetLock reboot of "${params.id.slice(0, 100)}" in group "${group}"`,
        retries: 1,
        drainTimeout: "1s",
      });
      return { ...result, changed: true };
    } catch (error) {
      if (!(error instanceof LockBusyError || error instanceof DrainTimeoutError)) throw error;
      // The same node asking twice at once: one of the two took it.
      if (await holds(host, session, options)) return { ...result, changed: false };
      const status = await getGroupStatus(group, options);
      if (status.free === 0) {
        throw fail(
          "failed_lock_semaphore_full",
          `group "${group}" is full: ${status.used} of ${status.max} slots in use`,
        );
      }
      throw fail("failed_lock_host_busy", error.message);
    }
  } catch (error) {
    storeFailure(error);
  }
}

/**
 * `steady-state`: releases the node's Host lock (its dependencies' too)
 * and its group slot; nothing held is success.
 *
 * @param params the client's id and group
 * @param options store options and the map file
 * @throws {FleetLockError} with the protocol's kind
 */
export async function steadyState(
  params: ClientParams,
  options: GroupOptions,
): Promise<FleetLockResult> {
  try {
    const { host, group, session } = await nodeAndGroup(params, options);
    const result = { host, group, sessionId: session };
    if (!(await holds(host, session, options))) return { ...result, changed: false };
    const dependencies = await getResourceDependence(host, options);
    const refs = [...dependencies, host].map((h) => formatLockRef(h, "Host", session));
    const results = await unlockResource(refs, options);
    const lost = results.find((r) => r.status === "lost");
    if (lost) {
      throw fail("failed_unlock", `${lost.ref} was broken by ${lost.brokenBy ?? "someone"}`);
    }
    return { ...result, changed: true };
  } catch (error) {
    storeFailure(error);
  }
}
