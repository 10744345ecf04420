/**
 * ResourceLocker for Deno: locks on network hosts, so maintenance scripts
 * do not take down hosts that others are using. `Host` locks are exclusive
 * (rebooting), `Generic` and `File` locks are shared (using). Lock files stay
 * compatible with the PowerShell module ResourceLocker.
 *
 * @example Reboot a host only when nobody uses it
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockHostResource } from "@resource-locker/resource-locker";
 * const root = await Deno.makeTempDir();
 * {
 *   await using lock = await lockHostResource("hv01", {
 *     hard: true,
 *     caller: "Invoke-Maintenance",
 *     store: `${root}/{0}`,
 *     dependencies: {},
 *   });
 *   assert.ok(lock.refs.length === 1);
 *   // reboot hv01 here
 * }
 * await Deno.remove(root, { recursive: true });
 * ```
 *
 * @module
 */

export {
  breakResourceLock,
  type BreakResourceLockOptions,
  closeStores,
  fileResourceHost,
  type FleetStatusOptions,
  getFleetStatus,
  getGroupStatus,
  getMaintenanceGroups,
  getResolvedConfig,
  getResourceDependence,
  type GetResourceDependenceOptions,
  getResourceLockHistory,
  getResourceLockId,
  getResourceLockStatus,
  type GroupOptions,
  type HistoryOptions,
  lockFileResource,
  lockHostResource,
  type LockHostResourceOptions,
  type LockLike,
  lockResource,
  type LockResourceOptions,
  type StoreOptions,
  testGroupSlot,
  testHostResourceLock,
  type TestHostResourceLockOptions,
  tryLockResource,
  unlockResource,
  type UnlockResourceOptions,
} from "./src/api.ts";
export { ResourceLock } from "./src/resource_lock.ts";
export type {
  HeldLock,
  HeldSlot,
  HistoryEntry,
  LockInfo,
  LockProgress,
  ReleaseResult,
  SlotInfo,
} from "./src/locker.ts";
export type {
  FleetFailure,
  FleetLock,
  FleetStatus,
  GroupStatus,
  StaleReason,
} from "./src/fleet.ts";
export type { MaintenanceGroup } from "./src/groups.ts";
export type { ContentState, LockType } from "./src/lock_file.ts";
export { defineConfig, type ResolvedConfig, type ResourceLockerConfig } from "./src/config.ts";
export type { DependencyMap } from "./src/dependencies.ts";
export { formatDuration, parseDuration } from "./src/duration.ts";
export { formatLockRef, type LockRef, parseLockRef } from "./src/lock_ref.ts";
export type { Clock } from "./src/clock.ts";
export {
  DrainTimeoutError,
  type ErrorCode,
  type HolderInfo,
  InputError,
  LockBusyError,
  LockLostError,
  LockNotOwnedError,
  ResourceLockerError,
  type ResourceLockerErrorOptions,
  StoreError,
} from "./src/errors.ts";
