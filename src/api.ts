/**
 * The public functions, named after the original's: `Lock-Resource` is
 * {@linkcode lockResource}, `Unlock-Resource` is {@linkcode unlockResource}, and so on.
 *
 * @module
 */

import { checkedClock, type Clock, SYSTEM_CLOCK } from "./clock.ts";
import {
  resolveConfig,
  type ResolvedConfig,
  type ResourceLockerConfig,
  validateConfig,
} from "./config.ts";
import {
  type DependencyFile,
  type DependencyMap,
  readDependencyFile,
  readDependencyMap,
  resolveDependencies,
  validateDependencyMap,
} from "./dependencies.ts";
import { type FleetStatus, fleetStatus, type GroupStatus, groupStatus } from "./fleet.ts";
import { groupsOf, type MaintenanceGroup, mergeGroups, slotHome, slotName } from "./groups.ts";
import { parseDuration } from "./duration.ts";
import { InputError, LockBusyError } from "./errors.ts";
import { normalizeHost } from "./host.ts";
import { LOCK_TYPES, type LockType } from "./lock_file.ts";
import { FileNames, type LockRef, parseLockRef, toLockRef, validateSessionId } from "./lock_ref.ts";
import { firstLineOf, kindOf, maskSecrets } from "./_text.ts";
import {
  type HeldLock,
  type HistoryEntry,
  Locker,
  type LockInfo,
  type LockProgress,
  mapLimit,
  type ReleaseResult,
  type SlotClaim,
} from "./locker.ts";
import { isResourceLock, ResourceLock } from "./resource_lock.ts";
import type { LockStore } from "./store.ts";
import { openStore } from "./stores/open.ts";

/** The lock type {@linkcode lockResource} takes when none is given. */
export const DEFAULT_LOCK_TYPE: LockType = "Generic";
/** The reason {@linkcode breakResourceLock} records when none is given. */
export const DEFAULT_BREAK_REASON = "broken by hand";

/** Where locks live and which settings apply; every function takes these. */
export interface StoreOptions {
  /** Folder template choosing the store, e.g. `smb://{0}/ResourceLocks`. @default the config's, else the local default store */
  store?: string;
  /** Settings that override config files and environment. */
  config?: ResourceLockerConfig;
  /** A config module to load, as `--config FILE`. */
  configFile?: string;
  /** Source of time (tests inject one). @default the system clock */
  clock?: Clock;
  /**
   * Told each deprecated name this call met (an old setting name in a config
   * file or the `config` option, an old option name), one line each, on
   * every call. The library never prints them. @default none: not reported
   */
  onWarning?: (message: string) => void;
}

/** Options of {@linkcode lockResource}. */
export interface LockResourceOptions extends StoreOptions {
  /** Lock type: `Host` is exclusive, `Generic` and `File` are shared. @default "Generic" */
  type?: LockType;
  /** Who takes the lock (`-CallerName`). */
  caller?: string;
  /** Why (`-Description`). */
  description?: string;
  /** Session id for every lock of this call. @default a new GUID */
  sessionId?: string;
  /** Lock only the host, not what it depends on (`-NoDependencies`). @default false */
  noDependencies?: boolean;
  /**
   * The dependency map itself, instead of the file (whose maintenance
   * groups are then not read either: give those in `config.groups`).
   */
  dependencies?: DependencyMap;
  /** The dependency map file. @default the config's `dependenciesFile` */
  dependenciesFile?: string;
  /** Time between attempts: seconds or `"250ms"`, `"30s"` (`-Timeout`). @default 10 */
  timeout?: number | string;
  /** Attempts in all (`-Retry`). @default 3 */
  retries?: number;
  /**
   * Wait up to this long in all instead of counting attempts: seconds,
   * `"2h"`, or `"forever"`. A waiter wakes when the host may be free (the
   * store tells of changes, or a lease runs out), not on a timer.
   * @default none: `retries` attempts `timeout` apart
   */
  wait?: number | string;
  /** Lease: the lock expires unless renewed; renewed by itself while held. @default none: never expires */
  ttl?: number | string;
  /** Host locks wait for shared locks to drain. @default true */
  drain?: boolean;
  /** How long a Host lock waits for shared locks. @default "1h" */
  drainTimeout?: number | string;
  /** Aborts waiting. */
  signal?: AbortSignal;
  /** Told about each wait: attempt k of n, who holds the host. */
  onProgress?: (progress: LockProgress) => void;
}

/** Options of {@linkcode lockHostResource}. */
export interface LockHostResourceOptions extends Omit<LockResourceOptions, "type"> {
  /** Take an exclusive `Host` lock instead of a `Generic` one (`-Hard`). @default false */
  hard?: boolean;
}

/** Options of {@linkcode unlockResource}. */
export interface UnlockResourceOptions extends StoreOptions {
  /** Release a lock whose session cannot be verified or belongs to another session. @default false */
  force?: boolean;
}

/** Options of {@linkcode testHostResourceLock}. */
export interface TestHostResourceLockOptions extends StoreOptions {
  /** Lock types that count. @default "Any" */
  type?: LockType | "Any" | readonly (LockType | "Any")[];
}

/** Options of {@linkcode getResourceDependence}. */
export interface GetResourceDependenceOptions extends StoreOptions {
  /** The dependency map file. @default the config's `dependenciesFile` */
  dependenciesFile?: string;
  /** @deprecated Use `dependenciesFile` (still read, reported through `onWarning`). */
  file?: string;
  /** The map itself, instead of a file. */
  dependencies?: DependencyMap;
}

/** Options of {@linkcode getResourceLockHistory}. */
export interface HistoryOptions extends StoreOptions {
  /** Newest entries at most. @default all */
  limit?: number;
}

/** Options of {@linkcode breakResourceLock}. */
export interface BreakResourceLockOptions extends StoreOptions {
  /** Why, recorded in history. @default "broken by hand" */
  reason?: string;
  /** Break a lock that has not expired. @default false */
  force?: boolean;
}

/** Something that names a lock: a lock object, a held lock, or a ref string. */
export type LockLike = ResourceLock | HeldLock | string;

// ---------------------------------------------------------------------------
// Input from untyped JavaScript: every function checks what it is given
// with the command line's rules, and answers a wrong type with an
// InputError naming it, never a TypeError from deep inside.

type OptionKind =
  | "string"
  | "text"
  | "boolean"
  | "object"
  | "function"
  | "duration"
  | "number"
  | "signal"
  | "clock"
  | "types"
  | "strings";

/**
 * Longest caller, description or break reason: they are written into the
 * lock file (6 bytes a character at worst, escaped as ASCII), and a lock file
 * larger than the stores read (1 MiB) could never be released.
 */
const MAX_TEXT_CHARS = 10_000;

const EXPECTED: Record<OptionKind, string> = {
  string: "a string",
  text: `a string of at most ${MAX_TEXT_CHARS} characters`,
  boolean: "true or false",
  object: "an object",
  function: "a function",
  duration: 'seconds or a duration like "30s"',
  number: "a number",
  signal: "an AbortSignal",
  clock: "a Clock",
  types: "a lock type or an array of them",
  strings: "an array of strings",
};

function isKind(kind: OptionKind, value: unknown): boolean {
  switch (kind) {
    case "string":
      return typeof value === "string";
    case "text":
      return typeof value === "string" && value.length <= MAX_TEXT_CHARS;
    case "boolean":
      return typeof value === "boolean";
    case "function":
      return typeof value === "function";
    case "number":
      return typeof value === "number";
    case "object":
      return value !== null && typeof value === "object" && !Array.isArray(value);
    case "duration":
      return typeof value === "number" || typeof value === "string";
    case "signal":
      return value instanceof AbortSignal;
    case "clock":
      return value !== null && typeof value === "object" &&
        ["now", "sleep", "utcOffsetMinutes", "schedule"].every((m) =>
          typeof (value as Record<string, unknown>)[m] === "function"
        );
    case "types":
      return typeof value === "string" ||
        (Array.isArray(value) && value.every((t) => typeof t === "string"));
    case "strings":
      return Array.isArray(value) && value.every((t) => typeof t === "string");
  }
}

const STORE_OPTION_KINDS: Record<string, OptionKind> = {
  store: "string",
  config: "object",
  configFile: "string",
  clock: "clock",
  onWarning: "function",
};

const LOCK_OPTION_KINDS: Record<string, OptionKind> = {
  ...STORE_OPTION_KINDS,
  type: "string",
  caller: "text",
  description: "text",
  sessionId: "string",
  noDependencies: "boolean",
  dependencies: "object",
  dependenciesFile: "string",
  timeout: "duration",
  retries: "number",
  wait: "duration",
  ttl: "duration",
  drain: "boolean",
  drainTimeout: "duration",
  signal: "signal",
  onProgress: "function",
  hard: "boolean",
};

/**
 * Checks a function's options: undefined or an object, and each option
 * known here of its kind. Values are checked further where they are used
 * (durations parsed, session ids matched). Only the object's own
 * properties count (a copy of them is returned): an option inherited from
 * a prototype (`Object.create({ force: true })`) is no option, as in the
 * config and the dependency map.
 */
function checkOptions<T extends object>(
  options: T | undefined,
  kinds: Record<string, OptionKind>,
  fn: string,
): T {
  if (options === undefined) return {} as T;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new InputError(`Invalid options of ${fn}(): expected an object, got ${kindOf(options)}`);
  }
  // Read once: a getter or a proxy runs here, once (a failing one is bad
  // input, not a TypeError from deep inside), and a list is copied, so what
  // was checked is what is used.
  let own: Record<string, unknown>;
  try {
    own = { ...options } as Record<string, unknown>;
    for (const key of Object.keys(kinds)) {
      if (Array.isArray(own[key])) own[key] = Array.from(own[key] as unknown[]);
    }
  } catch (error) {
    throw new InputError(`Invalid options of ${fn}(): reading them failed: ${firstLineOf(error)}`);
  }
  for (const [key, kind] of Object.entries(kinds)) {
    const value = own[key];
    if (value !== undefined && !isKind(kind, value)) {
      throw new InputError(
        `Invalid option "${key}" of ${fn}(): expected ${EXPECTED[kind]}, got ${
          typeof value === "string" ? `${value.length} characters` : kindOf(value)
        }`,
      );
    }
  }
  return own as T;
}

/**
 * The value of an option that has a new name: the new one, or the old one
 * (reported through `onWarning`). Both at once is an error.
 */
function renamedOption<T extends StoreOptions, Old extends keyof T, New extends keyof T>(
  options: T,
  old: Old,
  now: New,
  fn: string,
): T[New] | T[Old] {
  if (options[old] === undefined) return options[now];
  if (options[now] !== undefined) {
    throw new InputError(
      `Invalid options of ${fn}(): "${String(old)}" and "${String(now)}" are one option: keep "${
        String(now)
      }"`,
    );
  }
  options.onWarning?.(
    `Option "${String(old)}" of ${fn}() is deprecated: use "${String(now)}"`,
  );
  return options[old];
}

interface Context {
  config: ResolvedConfig;
  locker: Locker;
  clock: Clock;
}

const stores = new Map<string, Promise<LockStore>>();
let holder: { host: string; pid: number; user?: string } | undefined;

function whoAmI(): { host: string; pid: number; user?: string } {
  if (holder) return holder;
  let host = "unknown";
  try {
    host = Deno.hostname();
  } catch { /* no --allow-sys */ }
  let user: string | undefined;
  try {
    user = Deno.env.get("USER") ?? Deno.env.get("USERNAME");
  } catch { /* no --allow-env */ }
  holder = { host, pid: Deno.pid, ...user ? { user } : {} };
  return holder;
}

async function context(options: StoreOptions): Promise<Context> {
  const config = await getResolvedConfig(options);
  const key = JSON.stringify([
    config.folderPathTemplate,
    config.historyFolderName,
    config.smb,
    config.etcd,
    config.defaultStore,
  ]);
  let store = stores.get(key);
  if (!store) {
    // A template or endpoint a store refuses may carry credentials: its error is masked here, once.
    store = openStore(config).catch((error) => {
      if (error instanceof Error) error.message = maskSecrets(error.message);
      throw error;
    });
    stores.set(key, store);
    store.catch(() => stores.delete(key));
  }
  const clock = options.clock ? checkedClock(options.clock) : SYSTEM_CLOCK;
  const locker = new Locker({
    store: await store,
    names: new FileNames(config.fileNameTemplate),
    clock,
    skewMs: config.clockSkewMs,
    concurrency: config.concurrency,
    holder: whoAmI(),
  });
  return { config, locker, clock };
}

/**
 * Closes every store connection this process opened (SMB sessions, etcd
 * watches). Call it at the end of a long-running script; the command line
 * does.
 *
 * @example
 * ```ts
 * import { closeStores } from "@resource-locker/resource-locker";
 * await closeStores();
 * ```
 */
export async function closeStores(): Promise<void> {
  const all = [...stores.values()];
  stores.clear();
  await Promise.allSettled(all.map(async (store) => (await store).close()));
}

async function dependencyMap(
  config: ResolvedConfig,
  map: DependencyMap | undefined,
  file: string | undefined,
): Promise<DependencyMap> {
  if (map) return validateDependencyMap(map, "dependencies option");
  // A map the user named must exist; only the built-in default may be absent.
  const path = file ?? config.dependenciesFile;
  return path === undefined
    ? {}
    : await readDependencyMap(path, { optional: file === undefined && config.defaultDependencies });
}

/**
 * The dependency map and every maintenance group: the config's and the map
 * file's second section. A map given as an object has no groups of its own.
 */
async function mapAndGroups(
  config: ResolvedConfig,
  map?: DependencyMap,
  file?: string,
): Promise<DependencyFile> {
  if (map) {
    return {
      dependencies: validateDependencyMap(map, "dependencies option"),
      groups: config.groups,
    };
  }
  const path = file ?? config.dependenciesFile;
  if (path === undefined) return { dependencies: {}, groups: config.groups };
  const read = await readDependencyFile(path, {
    optional: file === undefined && config.defaultDependencies,
  });
  return {
    dependencies: read.dependencies,
    groups: mergeGroups([
      { groups: config.groups, source: "the config" },
      { groups: read.groups, source: path },
    ]),
  };
}

/**
 * The slots a Host lock on `hosts` takes: one of each group of each member.
 * Where each host has its own server or share, slots live in the home
 * host's folder; with `check`, a file-name template that would make them
 * look like locks to PowerShell there is refused.
 */
function slotClaims(
  hosts: readonly string[],
  groups: readonly MaintenanceGroup[],
  store: LockStore,
  fileNameTemplate: string,
  check: boolean,
): SlotClaim[] {
  const shared = store.listHosts !== undefined;
  const claims: SlotClaim[] = [];
  for (const host of hosts) {
    for (const group of groupsOf(host, groups)) {
      const home = slotHome(group, shared);
      if (check && !shared) checkSlotName(group, home, fileNameTemplate);
      claims.push({ group: group.name, max: group.max, home, member: host });
    }
  }
  return claims;
}

/** Refuses slot names PowerShell's `Test-HostResourceLock` would count as locks of the home host. */
function checkSlotName(group: MaintenanceGroup, home: string, template: string): void {
  const at = template.indexOf("{0}");
  const prefix = template.slice(0, at);
  const suffix = template.slice(at + 3);
  const name = slotName(group.name, group.max);
  if (name.startsWith(prefix) && name.endsWith(suffix)) {
    throw new InputError(
      `Cannot use maintenance group "${group.name}": its slots live in "${home}"'s folder as "${name}", which the file-name template ${
        JSON.stringify(template)
      } makes a lock to PowerShell; use a template with an extension such as "{0}.lock"`,
    );
  }
}

/**
 * Resolves the settings as the library sees them, for `--verbose` and tools.
 *
 * @param options store and config options
 * @returns resolved settings
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getResolvedConfig } from "@resource-locker/resource-locker";
 * const config = await getResolvedConfig({ store: "/var/lib/locks/{0}", config: { retries: 5 } });
 * assert.ok(config.folderPathTemplate === "/var/lib/locks/{0}" && config.lockRetries === 5);
 * ```
 */
export async function getResolvedConfig(
  options: StoreOptions = {},
): Promise<ResolvedConfig> {
  options = checkOptions(options, STORE_OPTION_KINDS, "getResolvedConfig");
  // Checked here, read once: a getter that throws is an InputError naming the option.
  const overrides = validateConfig(options.config ?? {}, "options");
  if (options.store !== undefined) overrides.store = options.store;
  const config = await resolveConfig(overrides, options.configFile);
  for (const warning of config.warnings) options.onWarning?.(warning);
  return config;
}

/**
 * Locks a host and, unless `noDependencies`, the hosts it depends on, all in
 * one session: every lock or none. Port of `Lock-Resource`.
 *
 * Needs `--allow-read --allow-write` (local store), `--allow-net` (SMB, etcd),
 * `--allow-env` and `--allow-sys` (holder name).
 *
 * @param host host to lock
 * @param options type, caller, retries, lease and more
 * @returns the lock object: release it with `unlockResource`, `lock.release()` or `await using`
 * @throws {LockBusyError} when the host stays locked through every attempt
 * @throws {DrainTimeoutError} when a Host lock's shared locks do not drain in time
 * @throws {StoreError} when the store cannot be reached (nothing is left locked)
 * @throws {InputError} on a bad host name, time, map or setting
 *
 * @example Lock and release on a temporary local store
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockResource, unlockResource } from "@resource-locker/resource-locker";
 * const root = await Deno.makeTempDir();
 * const lock = await lockResource("dc01", { type: "Host", caller: "example", store: `${root}/{0}`, dependencies: {} });
 * assert.ok(lock.refs[0]!.startsWith("dc01/Host@"));
 * await unlockResource(lock);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function lockResource(
  host: string,
  options: LockResourceOptions = {},
): Promise<ResourceLock> {
  options = checkOptions(options, LOCK_OPTION_KINDS, "lockResource");
  const main = normalizeHost(host);
  const type = options.type ?? DEFAULT_LOCK_TYPE;
  if (!LOCK_TYPES.includes(type)) {
    throw new InputError(
      `Invalid lock type ${JSON.stringify(type)}: expected Host, Generic or File`,
    );
  }
  const sessionId = validateSessionId(options.sessionId ?? crypto.randomUUID());
  if (
    options.retries !== undefined &&
    (!Number.isInteger(options.retries) || options.retries < 0)
  ) {
    throw new InputError(
      `Invalid retries ${JSON.stringify(options.retries)}: expected a whole number >= 0`,
    );
  }
  const { config, locker, clock } = await context(options);
  // A Host lock on a member of maintenance groups takes a slot of each:
  // the groups come from the config and the map file, read even without
  // dependencies then.
  const read = !options.noDependencies || type === "Host"
    ? await mapAndGroups(config, options.dependencies, options.dependenciesFile)
    : undefined;
  const dependencies = options.noDependencies ? [] : resolveDependencies(main, read!.dependencies);
  const hosts = [...dependencies, main];
  const slots = type === "Host"
    ? slotClaims(hosts, read!.groups, locker.store, config.fileNameTemplate, true)
    : [];
  const ttlMs = options.ttl !== undefined ? parseDuration(options.ttl, "ttl") : config.leaseMs;
  if (ttlMs !== undefined && ttlMs < 100) {
    throw new InputError(
      options.ttl !== undefined
        ? `Invalid ttl: at least 100ms, got ${ttlMs}ms`
        : `Invalid setting "ttl": at least 100ms, got ${ttlMs}ms`,
    );
  }
  const taken = await locker.acquireAll({
    hosts,
    ...slots.length > 0 ? { slots } : {},
    type,
    sessionId,
    ...options.caller !== undefined ? { caller: options.caller } : {},
    ...options.description !== undefined ? { description: options.description } : {},
    retryDelayMs: options.timeout !== undefined
      ? parseDuration(options.timeout, "timeout")
      : config.lockTimeoutMs,
    attempts: options.retries ?? config.lockRetries,
    ...options.wait !== undefined ? { waitMs: parseWait(options.wait) } : {},
    drain: options.drain ?? config.drain,
    drainTimeoutMs: options.drainTimeout !== undefined
      ? parseDuration(options.drainTimeout, "drain timeout")
      : config.drainTimeoutMs,
    ...ttlMs !== undefined ? { ttlMs } : {},
    ...options.signal ? { signal: options.signal } : {},
    ...options.onProgress ? { onProgress: options.onProgress } : {},
  });
  return new ResourceLock(locker, {
    host: main,
    type,
    sessionId,
    locks: taken.locks,
    slots: taken.slots,
    ttlMs,
    clock,
  });
}

/** A total wait: a duration, or `"forever"` (any case, also `Infinity`). */
function parseWait(value: number | string): number {
  if (value === Infinity) return Infinity;
  if (typeof value === "string" && value.trim().toLowerCase() === "forever") return Infinity;
  return parseDuration(value, "wait", "forever");
}

/**
 * Like {@linkcode lockResource} with a single attempt, but returns
 * `undefined` when the host is busy instead of throwing.
 *
 * @param host host to lock
 * @param options as for lockResource (`retries` is ignored)
 * @returns the lock, or undefined when busy
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tryLockResource } from "@resource-locker/resource-locker";
 * const root = await Deno.makeTempDir();
 * const store = `${root}/{0}`;
 * const first = await tryLockResource("hv01", { type: "Host", store, dependencies: {} });
 * const second = await tryLockResource("hv01", { type: "Host", store, dependencies: {} });
 * assert.ok(first !== undefined && second === undefined);
 * await first!.release();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function tryLockResource(
  host: string,
  options: LockResourceOptions = {},
): Promise<ResourceLock | undefined> {
  options = checkOptions(options, LOCK_OPTION_KINDS, "tryLockResource");
  try {
    const { wait: _wait, ...once } = options;
    return await lockResource(host, { ...once, retries: 1 });
  } catch (error) {
    if (error instanceof LockBusyError) return undefined;
    throw error;
  }
}

/**
 * Locks a host: `Generic` (shared), or `Host` (exclusive) with `hard`. Port
 * of `Lock-HostResource`; without a host, locks this machine.
 *
 * @param host host to lock @default this machine's name
 * @param options `hard` and the options of lockResource
 * @returns the lock object
 * @throws {LockBusyError} when busy through every attempt
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockHostResource } from "@resource-locker/resource-locker";
 * const root = await Deno.makeTempDir();
 * {
 *   await using lock = await lockHostResource("hv01", { hard: true, store: `${root}/{0}`, dependencies: {} });
 *   assert.ok(lock.type === "Host");
 * }
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function lockHostResource(
  host?: string,
  options: LockHostResourceOptions = {},
): Promise<ResourceLock> {
  const { hard, ...rest } = checkOptions(options, LOCK_OPTION_KINDS, "lockHostResource");
  return await lockResource(host ?? whoAmI().host, {
    ...rest,
    type: hard ? "Host" : "Generic",
  });
}

/**
 * The host a file path is on: `\\server\share\…` and `smb://server/…` name
 * their server; a local path is on this machine.
 *
 * @param path file path
 * @returns host name
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileResourceHost } from "@resource-locker/resource-locker";
 * assert.ok(fileResourceHost("\\\\fs01\\images\\win.wim") === "fs01");
 * ```
 */
export function fileResourceHost(path: string): string {
  if (typeof path !== "string") {
    throw new InputError(`Invalid file path: expected a string, got ${kindOf(path)}`);
  }
  const unc = /^(?:\\\\|\/\/|smb:\/\/)([^\\/:]*)/i.exec(path);
  if (!unc) return whoAmI().host;
  try {
    return normalizeHost(unc[1]!);
  } catch (error) {
    throw new InputError(`Invalid file path ${JSON.stringify(path)}: ${(error as Error).message}`);
  }
}

/**
 * Puts a `File` lock on the server a file lives on, with the path as the
 * description. Port of `Lock-FileResource`.
 *
 * @param path `\\server\share\file` locks `server`; a local path locks this machine
 * @param options caller and the options of lockResource
 * @returns the lock object
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockFileResource } from "@resource-locker/resource-locker";
 * const root = await Deno.makeTempDir();
 * const lock = await lockFileResource("\\\\fs01\\images\\win.wim", { store: `${root}/{0}`, dependencies: {} });
 * assert.ok(lock.host === "fs01" && lock.type === "File");
 * await lock.release();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function lockFileResource(
  path: string,
  options: Omit<LockResourceOptions, "type" | "description"> = {},
): Promise<ResourceLock> {
  options = checkOptions(options, LOCK_OPTION_KINDS, "lockFileResource");
  if (typeof path !== "string") {
    throw new InputError(`Invalid file path: expected a string, got ${kindOf(path)}`);
  }
  if (path.trim() === "") {
    throw new InputError("Invalid file path: it is empty");
  }
  return await lockResource(fileResourceHost(path), {
    ...options,
    type: "File",
    description: path,
  });
}

/**
 * Every lock named by what a caller passed, each checked as a ref typed on
 * the command line would be (host, lock id, session, type): a lock object
 * built by hand or read back from JSON reaches the store only when it names
 * a lock in it.
 */
function refsOf(locks: unknown): LockRef[] {
  const list: unknown[] = Array.isArray(locks) ? locks : [locks];
  return list.flatMap((item) =>
    isResourceLock(item) ? item.locks.map((held) => toLockRef(held)) : [toLockRef(item)]
  );
}

/**
 * Releases locks into history, each only if it still belongs to the session
 * that took it. Port of `Unlock-Resource`. Releasing what is already
 * released succeeds with status `already-released`, so it is safe in `finally`;
 * a lock that someone broke before it was released has status `lost`.
 * Every ref is tried, even after one fails; then the first failure is thrown.
 *
 * @param locks lock objects or refs (`dc01/Host@<session>`, `dc01/Generic-<session>`)
 * @param options `force` to release a lock whose session cannot be verified
 * @returns one result per lock
 * @throws {LockNotOwnedError} when another session's lock stands in its place
 * @throws {InputError} for a bad ref, or one whose session is unknown without `force`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockResource, unlockResource } from "@resource-locker/resource-locker";
 * const root = await Deno.makeTempDir();
 * const store = `${root}/{0}`;
 * const lock = await lockResource("web01", { store, dependencies: {} });
 * const [result] = await unlockResource(lock.refs, { store });
 * assert.ok(result!.status === "released");
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function unlockResource(
  locks: LockLike | readonly LockLike[],
  options: UnlockResourceOptions = {},
): Promise<ReleaseResult[]> {
  options = checkOptions(options, { ...STORE_OPTION_KINDS, force: "boolean" }, "unlockResource");
  let list: unknown[];
  try {
    list = Array.isArray(locks) ? Array.from(locks) : [locks]; // read once
  } catch (error) {
    throw new InputError(
      `Invalid locks of unlockResource(): reading them failed: ${firstLineOf(error)}`,
    );
  }
  const refs = refsOf(list); // checks everything before anything is released
  const objects = list.filter((l): l is ResourceLock => isResourceLock(l));
  if (objects.length > 0 && !options.force && objects.length === list.length) {
    const results: ReleaseResult[] = [];
    for (const lock of objects) results.push(...await lock.release());
    return results;
  }
  const { locker, config } = await context(options);
  const results: ReleaseResult[] = [];
  let failure: { error: unknown } | undefined;
  let groups: MaintenanceGroup[] | undefined;
  for (const ref of [...refs].reverse()) {
    try {
      results.unshift(await locker.release(ref, options.force ?? false));
      if (ref.type === "Host" && ref.sessionId !== undefined) {
        // The slots of the member's groups go with its Host lock. Groups
        // that cannot be read (a map broken since) leave its slots to be
        // freed by the next taker, who finds them left over.
        groups ??= await mapAndGroups(config).then((read) => read.groups, () => []);
        const claims = slotClaims([ref.host], groups, locker.store, "", false);
        if (claims.length > 0) await locker.releaseSlotsOf(ref.host, ref.sessionId, claims);
      }
    } catch (error) {
      failure ??= { error };
    }
  }
  if (failure) throw failure.error;
  return results;
}

function typesOf(type: TestHostResourceLockOptions["type"]): LockType[] {
  const list: readonly unknown[] = type === undefined
    ? ["Any"]
    : typeof type === "string"
    ? [type]
    : Array.isArray(type)
    ? type
    : [type];
  const result = new Set<LockType>();
  for (const item of list) {
    const match = typeof item === "string"
      ? [...LOCK_TYPES, "Any"].find((t) => t.toLowerCase() === item.toLowerCase())
      : undefined;
    if (!match) {
      throw new InputError(
        `Invalid lock type ${
          typeof item === "string" ? JSON.stringify(item.slice(0, 80)) : kindOf(item)
        }: expected Host, Generic, File or Any`,
      );
    }
    if (match === "Any") LOCK_TYPES.forEach((t) => result.add(t));
    else result.add(match as LockType);
  }
  return [...result];
}

/**
 * Tells whether a host has a live lock of the given types. Port of
 * `Test-HostResourceLock`. Expired leases do not count.
 *
 * @param host host
 * @param options `type`: `Host`, `Generic`, `File`, `Any` or a list
 * @returns true when locked
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockResource, testHostResourceLock } from "@resource-locker/resource-locker";
 * const root = await Deno.makeTempDir();
 * const store = `${root}/{0}`;
 * await using _lock = await lockResource("web01", { store, dependencies: {} });
 * assert.ok(await testHostResourceLock("web01", { store, type: "Generic" }));
 * assert.ok(!(await testHostResourceLock("web01", { store, type: "Host" })));
 * ```
 */
export async function testHostResourceLock(
  host: string,
  options: TestHostResourceLockOptions = {},
): Promise<boolean> {
  options = checkOptions(
    options,
    { ...STORE_OPTION_KINDS, type: "types" },
    "testHostResourceLock",
  );
  const name = normalizeHost(host);
  const types = typesOf(options.type);
  const { locker } = await context(options);
  return await locker.test(name, types);
}

/**
 * The hosts locked together with `host`, in the original's order. Port of
 * `Get-ResourceDependence`.
 *
 * @param host host
 * @param options the map file or the map itself
 * @returns hosts that must be locked with it
 * @throws {InputError} when the map is malformed (naming the file and place)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getResourceDependence } from "@resource-locker/resource-locker";
 * const dependencies = { hv01: ["dc01", "vmm01"], dc01: ["dc02"], dc02: ["dc01"] };
 * assert.ok((await getResourceDependence("dc02", { dependencies })).join() === "dc01,hv01");
 * ```
 */
export async function getResourceDependence(
  host: string,
  options: GetResourceDependenceOptions = {},
): Promise<string[]> {
  options = checkOptions(
    options,
    { ...STORE_OPTION_KINDS, dependenciesFile: "string", file: "string", dependencies: "object" },
    "getResourceDependence",
  );
  const file = renamedOption(options, "file", "dependenciesFile", "getResourceDependence");
  const name = normalizeHost(host);
  const config = options.dependencies ? undefined : await getResolvedConfig(options);
  const map = options.dependencies
    ? validateDependencyMap(options.dependencies, "dependencies option")
    : await dependencyMap(config!, undefined, file);
  return resolveDependencies(name, map);
}

/**
 * The lock id of a lock: the file name without its extension. Port of
 * `Get-ResourceLockId`.
 *
 * @param lock a lock object (its host's lock), a held lock, a ref, or a file name/path
 * @returns e.g. `Host` or `Generic-<session>`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getResourceLockId } from "@resource-locker/resource-locker";
 * assert.ok(getResourceLockId("dc01/Host@abc") === "Host");
 * assert.ok(getResourceLockId("\\\\dc01\\ResourceLocks\\Generic-abc.lock") === "Generic-abc");
 * ```
 */
export function getResourceLockId(lock: LockLike): string {
  if (isResourceLock(lock)) {
    return lock.locks[lock.locks.length - 1]!.lockId;
  }
  if (typeof lock !== "string") return toLockRef(lock).lockId;
  // host/id is a ref, also when its session has a dot (hv01/Generic-a.b,
  // which a file name's extension rule made "Generic-a"); a name ending in
  // .lock, or one that is no ref, is a lock file's path.
  if (/^[^/\\]+\/[^/\\]+$/.test(lock.trim()) && !/\.lock$/i.test(lock.trim())) {
    try {
      return parseLockRef(lock).lockId;
    } catch (error) {
      if (!/\.[^./\\@]+$/.test(lock.trim())) throw error;
    }
  }
  const base = lock.split(/[\\/]/).pop() ?? lock;
  const match = /^(.+)\.([^.]+)$/.exec(base);
  if (!match) {
    throw new InputError(
      `Invalid lock ${JSON.stringify(lock)}: not a ref or a lock file name`,
    );
  }
  return match[1]!;
}

/**
 * Current locks of hosts: type, caller, description, age, expiry, session.
 *
 * @param hosts one host or several
 * @param options store options
 * @returns the locks, per host in the order given
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getResourceLockStatus, lockResource } from "@resource-locker/resource-locker";
 * const root = await Deno.makeTempDir();
 * const store = `${root}/{0}`;
 * await using _lock = await lockResource("web01", { store, caller: "deploy", dependencies: {} });
 * const [info] = await getResourceLockStatus("web01", { store });
 * assert.ok(info!.caller === "deploy" && info!.type === "Generic");
 * ```
 */
export async function getResourceLockStatus(
  hosts: string | readonly string[],
  options: StoreOptions = {},
): Promise<LockInfo[]> {
  options = checkOptions(options, STORE_OPTION_KINDS, "getResourceLockStatus");
  if (typeof hosts !== "string" && !Array.isArray(hosts)) {
    throw new InputError(
      `Invalid hosts: expected a host name or an array of them, got ${kindOf(hosts)}`,
    );
  }
  const names = (typeof hosts === "string" ? [hosts] : [...hosts]).map((host) =>
    normalizeHost(host)
  );
  const { config, locker } = await context(options);
  const results = await mapLimit(
    names,
    config.concurrency,
    (host) => locker.status(host),
  );
  return results.flatMap((result) => {
    if (result.status === "rejected") throw result.reason;
    return result.value;
  });
}

/**
 * Released and broken locks of a host, newest first.
 *
 * @param host host
 * @param options `limit`
 * @returns history entries
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getResourceLockHistory, lockResource } from "@resource-locker/resource-locker";
 * const root = await Deno.makeTempDir();
 * const store = `${root}/{0}`;
 * await (await lockResource("web01", { store, dependencies: {} })).release();
 * assert.ok((await getResourceLockHistory("web01", { store })).length === 1);
 * ```
 */
export async function getResourceLockHistory(
  host: string,
  options: HistoryOptions = {},
): Promise<HistoryEntry[]> {
  options = checkOptions(
    options,
    { ...STORE_OPTION_KINDS, limit: "number" },
    "getResourceLockHistory",
  );
  const name = normalizeHost(host);
  if (
    options.limit !== undefined &&
    (!Number.isInteger(options.limit) || options.limit < 1)
  ) {
    throw new InputError(
      `Invalid limit ${JSON.stringify(options.limit)}: expected a whole number >= 1`,
    );
  }
  const { locker } = await context(options);
  return await locker.history(name, options.limit);
}

/**
 * Breaks a lock: moves it into history with who broke it and why. An expired
 * lock breaks as is; any other needs `force`.
 *
 * @param ref the lock's ref
 * @param options `reason`, `force`
 * @returns the lock that was broken
 * @throws {LockBusyError} when it has not expired and `force` is not set
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { breakResourceLock, lockResource, testHostResourceLock } from "@resource-locker/resource-locker";
 * const root = await Deno.makeTempDir();
 * const store = `${root}/{0}`;
 * const lock = await lockResource("web01", { type: "Host", store, dependencies: {} });
 * await breakResourceLock(lock.refs[0]!, { store, force: true, reason: "example" });
 * assert.ok(!(await testHostResourceLock("web01", { store })));
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function breakResourceLock(
  ref: string,
  options: BreakResourceLockOptions = {},
): Promise<LockInfo> {
  options = checkOptions(
    options,
    { ...STORE_OPTION_KINDS, reason: "text", force: "boolean" },
    "breakResourceLock",
  );
  const parsed = toLockRef(ref);
  const { locker } = await context(options);
  return await locker.breakLock(
    parsed,
    options.reason ?? DEFAULT_BREAK_REASON,
    options.force ?? false,
  );
}

/** Options of {@linkcode getMaintenanceGroups}, {@linkcode getGroupStatus} and {@linkcode testGroupSlot}. */
export interface GroupOptions extends StoreOptions {
  /** The dependency map file, whose `"@groups"` section adds groups. @default the config's `dependenciesFile` */
  dependenciesFile?: string;
}

const GROUP_OPTION_KINDS: Record<string, OptionKind> = {
  ...STORE_OPTION_KINDS,
  dependenciesFile: "string",
};

/**
 * The maintenance groups: the config's `groups` and the dependency map
 * file's `"@groups"` section; with `host`, only the groups it is a member of.
 *
 * @param options the map file, and `host` to filter by
 * @returns the groups
 * @throws {InputError} on a malformed group or one defined two different ways
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getMaintenanceGroups } from "./api.ts";
 * const config = { groups: [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }] };
 * const groups = await getMaintenanceGroups({ config, host: "hv02" });
 * assert.deepEqual(groups.map((g) => g.name), ["hv-a"]);
 * assert.deepEqual(await getMaintenanceGroups({ config, host: "dc01" }), []);
 * ```
 */
export async function getMaintenanceGroups(
  options: GroupOptions & { host?: string } = {},
): Promise<MaintenanceGroup[]> {
  options = checkOptions(
    options,
    { ...GROUP_OPTION_KINDS, host: "string" },
    "getMaintenanceGroups",
  );
  const host = options.host === undefined ? undefined : normalizeHost(options.host);
  const config = await getResolvedConfig(options);
  const { groups } = await mapAndGroups(config, undefined, options.dependenciesFile);
  return host === undefined ? groups : groupsOf(host, groups);
}

async function findGroup(name: string, options: GroupOptions, fn: string) {
  options = checkOptions(options, GROUP_OPTION_KINDS, fn);
  if (typeof name !== "string") {
    throw new InputError(`Invalid group name: expected a string, got ${kindOf(name)}`);
  }
  const wanted = name.toLowerCase();
  const ctx = await context(options);
  const { groups } = await mapAndGroups(ctx.config, undefined, options.dependenciesFile);
  const group = groups.find((g) => g.name === wanted);
  if (!group) {
    throw new InputError(
      `Unknown maintenance group ${JSON.stringify(name.slice(0, 80))}: ${
        groups.length ? `known: ${groups.map((g) => g.name).join(", ")}` : "no groups are defined"
      }`,
    );
  }
  return { group, ...ctx };
}

/**
 * Who is in maintenance in a group: its slots, each with its member,
 * caller, session, lease and whether it is expired or left over (its
 * member's Host lock released or broken without it), and how many are free.
 *
 * @param name the group's name
 * @param options store options and the map file
 * @returns the group's status
 * @throws {InputError} when no such group is defined
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getGroupStatus, lockResource } from "./api.ts";
 * const root = await Deno.makeTempDir();
 * const options = { store: `${root}/{0}`, config: { groups: [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }] } };
 * {
 *   await using _lock = await lockResource("hv01", { ...options, type: "Host", dependencies: {}, caller: "patch" });
 *   const status = await getGroupStatus("hv-a", options);
 *   assert.ok(status.used === 1 && status.free === 0 && status.slots[0]!.member === "hv01");
 * }
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function getGroupStatus(
  name: string,
  options: GroupOptions = {},
): Promise<GroupStatus> {
  const { group, locker } = await findGroup(name, options, "getGroupStatus");
  return await groupStatus(locker, group);
}

/**
 * Tells whether a group has a free slot: whether a Host lock on one of its
 * members (not in maintenance yet) would get past the group now. Expired
 * and left-over slots count as free: the next taker frees them.
 *
 * @param name the group's name
 * @param options store options and the map file
 * @returns true when a slot is free
 * @throws {InputError} when no such group is defined
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockResource, testGroupSlot } from "./api.ts";
 * const root = await Deno.makeTempDir();
 * const options = { store: `${root}/{0}`, config: { groups: [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }] } };
 * assert.ok(await testGroupSlot("hv-a", options));
 * {
 *   await using _lock = await lockResource("hv02", { ...options, type: "Host", dependencies: {} });
 *   assert.ok(!(await testGroupSlot("hv-a", options)));
 * }
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function testGroupSlot(name: string, options: GroupOptions = {}): Promise<boolean> {
  const { group, locker } = await findGroup(name, options, "testGroupSlot");
  return (await groupStatus(locker, group)).free > 0;
}

/** Options of {@linkcode getFleetStatus}. */
export interface FleetStatusOptions extends GroupOptions {
  /** More hosts to look at where the store cannot list its hosts. @default the config's `hosts` */
  hosts?: readonly string[];
  /** A file naming more hosts, one per line. @default the config's `hostsFile` */
  hostsFile?: string;
}

/**
 * Every lock of the fleet, stale ones flagged, and every maintenance
 * group's slots. The hosts are the folders under the store's root where
 * the hosts' folders share one (a local folder `/…/{0}`,
 * `smb://server/share/{0}`, etcd); where each host has its own server or
 * share, the hosts the config names (the dependency map's, the groups'
 * members, `hosts`, `hostsFile`), looked at `concurrency` at once. A host
 * that cannot be read is listed in `failures`; the others are still shown.
 *
 * @param options store options, named hosts, hosts file, map file
 * @returns the fleet's locks and groups
 * @throws {InputError} when the store cannot list its hosts and none are named
 * @throws {StoreError} when the store's root cannot be listed
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getFleetStatus, lockResource } from "./api.ts";
 * const root = await Deno.makeTempDir();
 * const store = `${root}/{0}`;
 * {
 *   await using _a = await lockResource("web01", { store, dependencies: {}, caller: "deploy" });
 *   await using _b = await lockResource("db01", { store, dependencies: {}, type: "Host", ttl: "5m" });
 *   const fleet = await getFleetStatus({ store });
 *   assert.equal(fleet.source, "listing");
 *   assert.deepEqual(fleet.locks.map((l) => `${l.host}:${l.type}`), ["db01:Host", "web01:Generic"]);
 *   assert.deepEqual(fleet.locks.map((l) => l.stale.length), [0, 0]);
 * }
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function getFleetStatus(options: FleetStatusOptions = {}): Promise<FleetStatus> {
  options = checkOptions(
    options,
    { ...GROUP_OPTION_KINDS, hosts: "strings", hostsFile: "string" },
    "getFleetStatus",
  );
  const named = (options.hosts ?? []).map((host) => normalizeHost(host));
  const { config, locker } = await context(options);
  const { dependencies, groups } = await mapAndGroups(
    config,
    undefined,
    options.dependenciesFile,
  );
  return await fleetStatus({
    template: config.folderPathTemplate,
    locker,
    groups,
    dependencies,
    hosts: [...config.hosts, ...named],
    hostsFile: options.hostsFile ?? config.hostsFile,
    concurrency: config.concurrency,
    staleEmptyMs: config.staleEmptyMs,
    stalePowerShellMs: config.stalePowerShellMs,
  });
}
