/**
 * Typed errors with stable codes. Callers switch on `code`, the command line
 * maps each code to an exit status.
 *
 * @module
 */

/** Stable error codes. */
export type ErrorCode =
  | "LOCK_BUSY"
  | "DRAIN_TIMEOUT"
  | "LOCK_LOST"
  | "LOCK_NOT_OWNED"
  | "STORE_UNREACHABLE"
  | "BAD_INPUT";

/** Who holds a lock, as far as its file tells. */
export interface HolderInfo {
  /** Lock id, e.g. "Host" or "Generic-<session>". */
  lockId: string;
  /** Caller name written into the lock, when known. */
  caller?: string;
  /** Description written into the lock, when known. */
  description?: string;
  /** When the lock was taken, when known. */
  lockedAt?: Date;
  /** Session id of the holder, when known. */
  sessionId?: string;
  /**
   * For a slot of a maintenance group (a busy group): the group's name;
   * `lockId` is then the slot's entry name, `Group-<group>.slot-<n>`.
   */
  group?: string;
  /** For a slot: the member host in maintenance that holds it. */
  member?: string;
}

/** Options of {@linkcode ResourceLockerError} and its subclasses. */
export interface ResourceLockerErrorOptions extends ErrorOptions {
  /** Options of the call that would get past the error; see {@linkcode ResourceLockerError.remedies}. @default [] */
  remedies?: readonly string[];
}

/**
 * Base class of every error this library throws on purpose.
 *
 * @example Switching on the stable code
 * ```ts
 * import assert from "node:assert/strict";
 * import { ResourceLockerError, StoreError } from "@resource-locker/resource-locker";
 * const error: unknown = new StoreError("/locks/dc01", 'Cannot list "/locks/dc01": access denied');
 * if (error instanceof ResourceLockerError) assert.ok(error.code === "STORE_UNREACHABLE");
 * ```
 */
export class ResourceLockerError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode;
  /**
   * Options or settings, by their library names, that would get past this
   * error, such as `force` (the message names them too). A front end shows
   * them in its own terms: the command line adds the matching flag.
   */
  remedies: readonly string[];
  /**
   * Creates the error.
   *
   * @param code stable code
   * @param message one-line message
   * @param options standard error options (cause) and `remedies`
   */
  constructor(code: ErrorCode, message: string, options?: ResourceLockerErrorOptions) {
    super(message, options);
    this.name = "ResourceLockerError";
    this.code = code;
    this.remedies = options?.remedies ?? [];
  }
}

/**
 * A lock could not be taken: another holder kept the host through every
 * attempt.
 *
 * @example Catching a busy host
 * ```ts
 * import assert from "node:assert/strict";
 * import { LockBusyError } from "@resource-locker/resource-locker";
 * const error = new LockBusyError("dc01", 'Cannot lock "dc01": busy', []);
 * if (error instanceof LockBusyError) assert.ok(error.code === "LOCK_BUSY");
 * ```
 */
export class LockBusyError extends ResourceLockerError {
  /** The host that could not be locked. */
  readonly host: string;
  /** Who holds it. */
  readonly holders: readonly HolderInfo[];
  /**
   * Creates the error.
   *
   * @param host the host that failed
   * @param message one-line message
   * @param holders the locks in the way
   * @param options standard error options and `remedies`
   */
  constructor(
    host: string,
    message: string,
    holders: readonly HolderInfo[],
    options?: ResourceLockerErrorOptions,
  ) {
    super("LOCK_BUSY", message, options);
    this.name = "LockBusyError";
    this.host = host;
    this.holders = holders;
  }
}

/**
 * A Host lock was taken but shared locks did not drain in time; it was released.
 *
 * @example Telling a drain time-out from a busy host
 * ```ts
 * import assert from "node:assert/strict";
 * import { DrainTimeoutError } from "@resource-locker/resource-locker";
 * const error = new DrainTimeoutError("hv01", 'Cannot lock "hv01": shared locks did not drain in 60s', []);
 * assert.ok(error.code === "DRAIN_TIMEOUT" && error.host === "hv01");
 * ```
 */
export class DrainTimeoutError extends ResourceLockerError {
  /** The host whose shared locks did not drain. */
  readonly host: string;
  /** The shared locks still there. */
  readonly holders: readonly HolderInfo[];
  /**
   * Creates the error.
   *
   * @param host the host
   * @param message one-line message
   * @param holders shared locks still present
   */
  constructor(host: string, message: string, holders: readonly HolderInfo[]) {
    super("DRAIN_TIMEOUT", message);
    this.name = "DrainTimeoutError";
    this.host = host;
    this.holders = holders;
  }
}

/**
 * A held lock was broken by someone else or could not be renewed before it expired.
 *
 * @example The lost lock's ref
 * ```ts
 * import assert from "node:assert/strict";
 * import { LockLostError } from "@resource-locker/resource-locker";
 * const error = new LockLostError("dc01/Host@s1", 'Lock "dc01/Host@s1" was lost');
 * assert.ok(error.code === "LOCK_LOST" && error.ref === "dc01/Host@s1");
 * ```
 */
export class LockLostError extends ResourceLockerError {
  /** Ref of the lost lock. */
  readonly ref: string;
  /**
   * Creates the error.
   *
   * @param ref the lock ref
   * @param message one-line message
   * @param options standard error options
   */
  constructor(ref: string, message: string, options?: ErrorOptions) {
    super("LOCK_LOST", message, options);
    this.name = "LockLostError";
    this.ref = ref;
  }
}

/**
 * Unlock found another session's lock where ours was.
 *
 * @example Who holds the lock now
 * ```ts
 * import assert from "node:assert/strict";
 * import { LockNotOwnedError } from "@resource-locker/resource-locker";
 * const error = new LockNotOwnedError("dc01/Host@s1", "taken over", { lockId: "Host", sessionId: "s2" });
 * assert.ok(error.code === "LOCK_NOT_OWNED" && error.holder.sessionId === "s2");
 * ```
 */
export class LockNotOwnedError extends ResourceLockerError {
  /** The ref that was asked for. */
  readonly ref: string;
  /** Who holds the lock now. */
  readonly holder: HolderInfo;
  /**
   * Creates the error.
   *
   * @param ref the ref asked for
   * @param message one-line message
   * @param holder the current holder
   */
  constructor(ref: string, message: string, holder: HolderInfo) {
    super("LOCK_NOT_OWNED", message);
    this.name = "LockNotOwnedError";
    this.ref = ref;
    this.holder = holder;
  }
}

/**
 * The store could not be reached or an I/O operation failed.
 *
 * @example Where the store failed
 * ```ts
 * import assert from "node:assert/strict";
 * import { StoreError } from "@resource-locker/resource-locker";
 * const error = new StoreError("smb://fs01/locks", 'Cannot connect to "fs01": connection refused', {
 *   unchanged: true,
 * });
 * assert.ok(error.code === "STORE_UNREACHABLE" && error.location === "smb://fs01/locks");
 * assert.ok(error.unchanged);
 * ```
 */
export class StoreError extends ResourceLockerError {
  /** Where: a folder, share or endpoint (never a secret). */
  readonly location: string;
  /**
   * True when the store is sure the failed call changed nothing (it failed
   * before its request went out, or the server answered with an error). A
   * lost answer leaves it false: the change may have happened.
   */
  readonly unchanged: boolean;
  /**
   * Creates the error.
   *
   * @param location where it failed
   * @param message one-line message
   * @param options standard error options (cause), `remedies`, and `unchanged`
   */
  constructor(
    location: string,
    message: string,
    options?: ResourceLockerErrorOptions & { unchanged?: boolean },
  ) {
    super("STORE_UNREACHABLE", message, options);
    this.name = "StoreError";
    this.location = location;
    this.unchanged = options?.unchanged === true;
  }
}

/**
 * Bad input: a host name, template, time, dependency map or setting.
 *
 * @example Bad input has its own code
 * ```ts
 * import assert from "node:assert/strict";
 * import { InputError } from "@resource-locker/resource-locker";
 * assert.ok(new InputError('Invalid host name "../x"').code === "BAD_INPUT");
 * ```
 *
 * @example The option that gets past it
 * ```ts
 * import assert from "node:assert/strict";
 * import { InputError } from "@resource-locker/resource-locker";
 * const error = new InputError('Cannot unlock "dc01/Host": the ref does not name its session; the force option releases it anyway', { remedies: ["force"] });
 * assert.deepEqual(error.remedies, ["force"]);
 * ```
 */
export class InputError extends ResourceLockerError {
  /**
   * Creates the error.
   *
   * @param message one-line message naming the thing at fault
   * @param options standard error options and `remedies`
   */
  constructor(message: string, options?: ResourceLockerErrorOptions) {
    super("BAD_INPUT", message, options);
    this.name = "InputError";
  }
}
