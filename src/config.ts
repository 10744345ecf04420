/**
 * Settings, replacing the original's `Config.ps1` and module-wide variables.
 *
 * Resolution, later wins: built-in defaults, `config.ts` beside the module,
 * `RESOURCE_LOCKER_CONFIG` (or `--config FILE`), environment variables, then
 * flags or function options.
 *
 * @module
 */

import { joinPath as join } from "./path.ts";
import { parseDuration } from "./duration.ts";
import { InputError } from "./errors.ts";

/**
 * Every setting. Times take seconds (fractions allowed) or a string with a
 * unit: `"250ms"`, `"30s"`, `"5m"`, `"2h"`.
 */
export interface ResourceLockerConfig {
  /** Dependency map file; the original's `$ModuleWideResourceDependenciesFilePath`. @default "ResourceLocker-Dependencies.json" beside mod.ts */
  dependenciesFilePath?: string;
  /** Time between lock attempts; the original's `$ModuleWideLockTimeout`. @default 10 */
  lockTimeout?: number | string;
  /** Attempts in all; the original's `$ModuleWideLockRetries`. @default 3 */
  lockRetries?: number;
  /** History folder name; the original's `$ModuleWideLockHistoryFolderName`. @default "History" */
  historyFolderName?: string;
  /** Lock file name template; the original's `$ModuleWideLockFileNameTemplate`. @default "{0}.lock" */
  fileNameTemplate?: string;
  /**
   * Folder template choosing the store; the original's `$ModuleWideLockFolderPathTemplate`
   * (there `\\{0}\ResourceLocks`). @default a folder under the user's state directory
   */
  folderPathTemplate?: string;
  /** Host locks wait for shared locks to drain. @default true */
  drain?: boolean;
  /** How long a Host lock waits for shared locks to drain. @default "1h" (as AutomaticMaintenance) */
  drainTimeout?: number | string;
  /** Lease of every lock; none means locks never expire, as in the original. @default undefined */
  lease?: number | string;
  /** Lease of the locks `run` takes, so a killed `run` frees its host soon. @default "60s" */
  runLease?: number | string;
  /** Clock skew allowed between machines when judging expiry. @default "30s" */
  clockSkew?: number | string;
  /** Hosts locked, checked or released at once (a host with many dependencies). @default 64 */
  concurrency?: number;
  /** SMB store settings. */
  smb?: {
    /** User name. */
    username?: string;
    /** Password; never printed or logged. */
    password?: string;
    /** Domain. */
    domain?: string;
    /** Port when the template names none. @default 445 */
    port?: number;
    /** Timeout of connecting and of every request. @default "15s" */
    timeout?: number | string;
  };
  /** etcd store settings. */
  etcd?: {
    /** More endpoints besides the template's, tried in turn. */
    endpoints?: string[];
    /** Released locks kept per host. @default 1000 */
    historyLimit?: number;
    /** Timeout of every request. @default "5s" */
    timeout?: number | string;
  };
}

/** Settings after resolution, times in milliseconds. */
export interface ResolvedConfig {
  /** Dependency map file, or undefined for none. */
  dependenciesFilePath: string | undefined;
  /** Milliseconds between attempts. */
  lockTimeoutMs: number;
  /** Attempts in all. */
  lockRetries: number;
  /** History folder name. */
  historyFolderName: string;
  /** Lock file name template. */
  fileNameTemplate: string;
  /** Folder template. */
  folderPathTemplate: string;
  /** True when the folder template is the built-in default. */
  defaultStore: boolean;
  /** Drain on Host locks. */
  drain: boolean;
  /** Drain timeout in milliseconds. */
  drainTimeoutMs: number;
  /** Lease in milliseconds, or undefined. */
  leaseMs: number | undefined;
  /** Lease of `run` in milliseconds. */
  runLeaseMs: number;
  /** Clock skew in milliseconds. */
  clockSkewMs: number;
  /** Hosts handled at once. */
  concurrency: number;
  /** SMB settings. */
  smb: {
    username?: string;
    password?: string;
    domain?: string;
    port?: number;
    timeoutMs: number;
  };
  /** etcd settings. */
  etcd: { endpoints: string[]; historyLimit: number; timeoutMs: number };
}

/**
 * Types a config module's default export.
 *
 * @param config settings to override
 * @returns the same settings
 *
 * @example config.ts
 * ```ts
 * import { defineConfig } from "./config.ts";
 * export default defineConfig({ folderPathTemplate: "\\\\{0}\\ResourceLocks", lockRetries: 5 });
 * ```
 */
export function defineConfig(
  config: ResourceLockerConfig,
): ResourceLockerConfig {
  return config;
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: environment settings do not apply
  }
}

function stateDir(): string {
  const home = env("HOME") ?? env("USERPROFILE") ?? ".";
  if (Deno.build.os === "windows") {
    return join(
      env("LOCALAPPDATA") ?? join(home, "AppData", "Local"),
      "resource-locker",
    );
  }
  return join(
    env("XDG_STATE_HOME") ?? join(home, ".local", "state"),
    "resource-locker",
  );
}

/** The folder template of the embedded default store. */
export function defaultFolderPathTemplate(): string {
  return join(stateDir(), "locks", "{0}");
}

const KEYS: Record<string, string> = {
  dependenciesFilePath: "string",
  lockTimeout: "duration",
  lockRetries: "count",
  historyFolderName: "name",
  fileNameTemplate: "string",
  folderPathTemplate: "string",
  drain: "boolean",
  drainTimeout: "duration",
  lease: "duration",
  runLease: "duration",
  clockSkew: "duration",
  concurrency: "positive",
  smb: "object",
  etcd: "object",
};

/**
 * Checks a config object, naming the setting at fault.
 *
 * @param config the object
 * @param source where it came from, for messages
 * @returns the same object, typed
 * @throws {InputError} on an unknown setting or a value of the wrong kind
 */
export function validateConfig(
  config: unknown,
  source: string,
): ResourceLockerConfig {
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw new InputError(
      `Invalid config "${source}": expected an object (export default defineConfig({...}))`,
    );
  }
  for (const [key, value] of Object.entries(config)) {
    const kind = KEYS[key];
    const bad = (expected: string) =>
      new InputError(
        `Invalid config "${source}": setting "${key}" ${expected}, got ${JSON.stringify(value)}`,
      );
    if (!kind) {
      throw new InputError(
        `Invalid config "${source}": unknown setting "${key}"`,
      );
    }
    if (value === undefined) continue;
    if (kind === "string" && (typeof value !== "string" || value === "")) {
      throw bad("must be a non-empty string");
    }
    if (
      kind === "name" &&
      (typeof value !== "string" || !/^[A-Za-z0-9._ -]+$/.test(value) ||
        /^\.+$/.test(value))
    ) {
      throw bad("must be a folder name");
    }
    if (
      kind === "count" && (!Number.isInteger(value) || (value as number) < 0)
    ) {
      throw bad("must be a whole number >= 0");
    }
    if (kind === "boolean" && typeof value !== "boolean") {
      throw bad("must be true or false");
    }
    if (kind === "positive" && (!Number.isInteger(value) || (value as number) < 1)) {
      throw bad("must be a whole number >= 1");
    }
    if (kind === "duration") {
      try {
        parseDuration(value as string | number, key);
      } catch {
        throw bad('must be seconds or a duration like "30s"');
      }
    }
    if (
      kind === "object" &&
      (value === null || typeof value !== "object" || Array.isArray(value))
    ) {
      throw bad("must be an object");
    }
  }
  const c = config as ResourceLockerConfig;
  if (c.smb) {
    for (const [key, value] of Object.entries(c.smb)) {
      const ok = key === "port"
        ? Number.isInteger(value) && (value as number) > 0 &&
          (value as number) < 65536
        : key === "timeout"
        ? typeof value === "number" || typeof value === "string"
        : ["username", "password", "domain"].includes(key) &&
          typeof value === "string";
      if (!ok) {
        const shown = key === "password" ? "(hidden)" : JSON.stringify(value);
        throw new InputError(
          `Invalid config "${source}": setting "smb.${key}" is not valid: ${shown}`,
        );
      }
    }
  }
  if (c.etcd) {
    for (const [key, value] of Object.entries(c.etcd)) {
      const ok = key === "endpoints"
        ? Array.isArray(value) && value.every((v) => typeof v === "string")
        : key === "historyLimit"
        ? Number.isInteger(value) && (value as number) > 0
        : key === "timeout" &&
          (typeof value === "number" || typeof value === "string");
      if (!ok) {
        throw new InputError(
          `Invalid config "${source}": setting "etcd.${key}" is not valid: ${
            JSON.stringify(value)
          }`,
        );
      }
    }
  }
  return c;
}

/**
 * Loads a config module (a `config.ts` exporting `defineConfig({...})` as default).
 *
 * @param specifier path or URL of the module
 * @param optional return undefined instead of failing when it does not exist
 * @returns the settings
 * @throws {InputError} when it cannot be loaded or is invalid
 */
export async function loadConfigModule(
  specifier: string | URL,
  optional = false,
): Promise<ResourceLockerConfig | undefined> {
  const url = specifier instanceof URL
    ? specifier
    : /^[a-z][a-z0-9+.-]*:/i.test(specifier) && !/^[a-z]:[\\/]/i.test(specifier)
    ? new URL(specifier)
    : new URL(
      `file://${specifier.startsWith("/") ? "" : Deno.cwd() + "/"}${specifier}`,
    );
  if (optional && url.protocol === "file:") {
    try {
      await Deno.stat(url);
    } catch {
      return undefined;
    }
  }
  let module: { default?: unknown };
  try {
    module = await import(url.href);
  } catch (error) {
    if (optional) return undefined;
    const message = ((error as Error).message ?? String(error)).split("\n")[0];
    throw new InputError(
      `Cannot load config "${decodeURIComponent(url.pathname)}": ${message}`,
    );
  }
  return validateConfig(module.default, decodeURIComponent(url.pathname));
}

function fromEnvironment(): ResourceLockerConfig {
  const c: ResourceLockerConfig = {};
  const store = env("RESOURCE_LOCKER_STORE");
  if (store) c.folderPathTemplate = store;
  const deps = env("RESOURCE_LOCKER_DEPENDENCIES");
  if (deps) c.dependenciesFilePath = deps;
  const smb: NonNullable<ResourceLockerConfig["smb"]> = {};
  const username = env("RESOURCE_LOCKER_SMB_USERNAME");
  const password = env("RESOURCE_LOCKER_SMB_PASSWORD");
  const domain = env("RESOURCE_LOCKER_SMB_DOMAIN");
  if (username) smb.username = username;
  if (password) smb.password = password;
  if (domain) smb.domain = domain;
  if (Object.keys(smb).length) c.smb = smb;
  const endpoints = env("RESOURCE_LOCKER_ETCD_ENDPOINTS");
  if (endpoints) {
    c.etcd = {
      endpoints: endpoints.split(",").map((e) => e.trim()).filter(Boolean),
    };
  }
  return c;
}

function merge(
  ...layers: (ResourceLockerConfig | undefined)[]
): ResourceLockerConfig {
  const out: ResourceLockerConfig = {};
  for (const layer of layers) {
    if (!layer) continue;
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined) continue;
      if (key === "smb" || key === "etcd") {
        (out as Record<string, unknown>)[key] = {
          ...(out as Record<string, object>)[key],
          ...value,
        };
      } else (out as Record<string, unknown>)[key] = value;
    }
  }
  return out;
}

const BESIDE_MODULE = new URL("../config.ts", import.meta.url);
const DEFAULT_DEPENDENCIES = new URL(
  "../ResourceLocker-Dependencies.json",
  import.meta.url,
);
let fileLayers: Promise<ResourceLockerConfig[]> | undefined;

/**
 * Resolves the settings: defaults, `config.ts` beside the module,
 * `RESOURCE_LOCKER_CONFIG` or `configFile`, environment, then `overrides`.
 *
 * @param overrides settings from flags or function options
 * @param configFile a config module named by `--config`
 * @returns resolved settings
 * @throws {InputError} naming the setting at fault
 */
export async function resolveConfig(
  overrides: ResourceLockerConfig = {},
  configFile?: string,
): Promise<ResolvedConfig> {
  fileLayers ??= (async () => {
    const beside = await loadConfigModule(BESIDE_MODULE, true);
    const named = env("RESOURCE_LOCKER_CONFIG");
    return [beside ?? {}, named ? (await loadConfigModule(named)) ?? {} : {}];
  })();
  let layers: ResourceLockerConfig[];
  try {
    layers = await fileLayers;
  } catch (error) {
    fileLayers = undefined;
    throw error;
  }
  const flagFile = configFile ? await loadConfigModule(configFile) : undefined;
  const c = merge(
    ...layers,
    flagFile,
    fromEnvironment(),
    validateConfig(overrides, "options"),
  );
  const folderPathTemplate = c.folderPathTemplate ??
    defaultFolderPathTemplate();
  return {
    dependenciesFilePath: c.dependenciesFilePath ??
      (DEFAULT_DEPENDENCIES.protocol === "file:"
        ? decodeURIComponent(DEFAULT_DEPENDENCIES.pathname)
        : undefined),
    lockTimeoutMs: parseDuration(c.lockTimeout ?? 10, "lockTimeout"),
    lockRetries: c.lockRetries ?? 3,
    historyFolderName: c.historyFolderName ?? "History",
    fileNameTemplate: c.fileNameTemplate ?? "{0}.lock",
    folderPathTemplate,
    defaultStore: c.folderPathTemplate === undefined,
    drain: c.drain ?? true,
    drainTimeoutMs: parseDuration(c.drainTimeout ?? "1h", "drainTimeout"),
    leaseMs: c.lease === undefined ? undefined : parseDuration(c.lease, "lease"),
    runLeaseMs: parseDuration(c.runLease ?? "60s", "runLease"),
    clockSkewMs: parseDuration(c.clockSkew ?? "30s", "clockSkew"),
    concurrency: c.concurrency ?? 64,
    smb: {
      ...c.smb?.username !== undefined ? { username: c.smb.username } : {},
      ...c.smb?.password !== undefined ? { password: c.smb.password } : {},
      ...c.smb?.domain !== undefined ? { domain: c.smb.domain } : {},
      ...c.smb?.port !== undefined ? { port: c.smb.port } : {},
      timeoutMs: parseDuration(c.smb?.timeout ?? "15s", "smb.timeout"),
    },
    etcd: {
      endpoints: c.etcd?.endpoints ?? [],
      historyLimit: c.etcd?.historyLimit ?? 1000,
      timeoutMs: parseDuration(c.etcd?.timeout ?? "5s", "etcd.timeout"),
    },
  };
}
