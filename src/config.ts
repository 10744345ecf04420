/**
 * Settings, replacing the original's `Config.ps1` and module-wide variables.
 *
 * Resolution, later wins: built-in defaults, `config.ts` beside the module,
 * `RESOURCE_LOCKER_CONFIG` (or `--config FILE`), environment variables, then
 * flags or function options.
 *
 * @module
 */

import { isAbsolutePath, joinPath as join, parentPath } from "./path.ts";
import { parseDuration } from "./duration.ts";
import { InputError } from "./errors.ts";
import { checkSmallFile, SmallFileError } from "./_file.ts";
import { kindOf, registerSecret, registerUrlSecrets, showValue } from "./_text.ts";
import { type MaintenanceGroup, validateGroups } from "./groups.ts";
import { normalizeHost } from "./host.ts";

/**
 * Every setting. Times take seconds (fractions allowed) or a string with a
 * unit: `"250ms"`, `"30s"`, `"5m"`, `"2h"`.
 *
 * A setting has one name wherever it is given: the config key here is the
 * library option and, in kebab case, the flag (`dependenciesFile`,
 * `dependenciesFile:`, `--dependencies-file`). The names used before
 * ({@linkcode RENAMED_SETTINGS}) still work and are reported as deprecated.
 */
export interface ResourceLockerConfig {
  /** Dependency map file; the original's `$ModuleWideResourceDependenciesFilePath`. @default "ResourceLocker-Dependencies.json" beside mod.ts */
  dependenciesFile?: string;
  /** @deprecated Use `dependenciesFile`. */
  dependenciesFilePath?: string;
  /** Time between lock attempts; the original's `$ModuleWideLockTimeout`. @default 10 */
  timeout?: number | string;
  /** @deprecated Use `timeout`. */
  lockTimeout?: number | string;
  /** Attempts in all; the original's `$ModuleWideLockRetries`. @default 3 */
  retries?: number;
  /** @deprecated Use `retries`. */
  lockRetries?: number;
  /** History folder name; the original's `$ModuleWideLockHistoryFolderName`. @default "History" */
  historyFolderName?: string;
  /** Lock file name template; the original's `$ModuleWideLockFileNameTemplate`. @default "{0}.lock" */
  fileNameTemplate?: string;
  /**
   * Folder template choosing the store; the original's `$ModuleWideLockFolderPathTemplate`
   * (there `\\{0}\ResourceLocks`). @default a folder under the user's state directory
   */
  store?: string;
  /** @deprecated Use `store`. */
  folderPathTemplate?: string;
  /** Host locks wait for shared locks to drain. @default true */
  drain?: boolean;
  /**
   * How a waiter on a local or mounted folder learns of changes:
   * `"notify"` (file-system notifications), `"poll"` (looks every half
   * second), `"auto"`: notifications except on network file systems (NFS,
   * SMB/CIFS mounts, FUSE), where other machines' changes are not notified.
   * @default "auto"
   */
  watch?: "auto" | "notify" | "poll";
  /** How long a Host lock waits for shared locks to drain. @default "1h" (as AutomaticMaintenance) */
  drainTimeout?: number | string;
  /** Lease of every lock; none means locks never expire, as in the original. @default undefined */
  ttl?: number | string;
  /** @deprecated Use `ttl`. */
  lease?: number | string;
  /** Lease of the locks `run` takes, so a killed `run` frees its host soon. @default "60s" */
  runTtl?: number | string;
  /** @deprecated Use `runTtl`. */
  runLease?: number | string;
  /** Clock skew allowed between machines when judging expiry. @default "30s" */
  clockSkew?: number | string;
  /** Hosts locked, checked or released at once (a host with many dependencies). @default 64 */
  concurrency?: number;
  /**
   * Maintenance groups: at most `max` members of a group hold Host locks at
   * once. The dependency map file may define more in its `"@groups"` section.
   * @default []
   */
  groups?: MaintenanceGroup[];
  /**
   * Hosts `status --all` looks at where the store cannot list its hosts
   * (a server or share per host), besides the dependency map's hosts and the
   * groups' members. @default []
   */
  hosts?: string[];
  /**
   * A file naming more such hosts, one per line (`#` starts a comment);
   * relative to the config module's folder. @default none
   */
  hostsFile?: string;
  /** An empty lock file older than this is flagged stale (a PowerShell writer died between its two steps). @default "5m" */
  staleEmptyAfter?: number | string;
  /** A lock written by PowerShell (no lease) older than this is flagged stale. @default "24h" */
  stalePowerShellAfter?: number | string;
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
    /**
     * `auto`: sign every message whenever the server supports it and check
     * every answer's signature; `required`: refuse a session that cannot be
     * signed. @default "auto"
     */
    signing?: "auto" | "required";
    /** `auto`: encrypt when the server or share requires it; `required`: always. @default "auto" */
    encrypt?: "auto" | "required";
  };
  /** Settings of `resource-locker serve`. */
  serve?: {
    /**
     * Tokens allowed to take and release locks through the server (each
     * `{ name, token }`: the name is recorded in History, the token, at least
     * 16 characters, is never shown). None: the server is read-only, unless
     * `RESOURCE_LOCKER_SERVE_TOKEN` is set. @default []
     */
    tokens?: { name: string; token: string }[];
  };
  /** etcd store settings. */
  etcd?: {
    /** More endpoints besides the template's, tried in turn. */
    endpoints?: string[];
    /** Released locks kept per host. @default 1000 */
    historyLimit?: number;
    /** Timeout of every request. @default "5s" */
    timeout?: number | string;
    /** PEM file of the CA that signed the servers' certificates; endpoints then speak TLS. */
    ca?: string;
    /** PEM file of the client certificate shown to etcd; with `key`. */
    cert?: string;
    /** PEM file of the client certificate's private key. */
    key?: string;
    /** etcd user, when etcd has authentication on. */
    username?: string;
    /** Its password; never printed or logged. */
    password?: string;
  };
}

/**
 * Settings that were renamed so that each has one name in config files,
 * library options and flags: old name to new name. An old name still works;
 * using it adds a deprecation line to {@linkcode ResolvedConfig.warnings}.
 */
export const RENAMED_SETTINGS: ReadonlyMap<string, string> = new Map([
  ["dependenciesFilePath", "dependenciesFile"],
  ["lockTimeout", "timeout"],
  ["lockRetries", "retries"],
  ["folderPathTemplate", "store"],
  ["lease", "ttl"],
  ["runLease", "runTtl"],
]);

/**
 * The built-in defaults of the settings that have one, written once: the
 * resolution below and the command line's help read them.
 */
export const CONFIG_DEFAULTS = {
  timeout: 10,
  retries: 3,
  historyFolderName: "History",
  fileNameTemplate: "{0}.lock",
  drain: true,
  watch: "auto",
  drainTimeout: "1h",
  runTtl: "60s",
  clockSkew: "30s",
  concurrency: 64,
  staleEmptyAfter: "5m",
  stalePowerShellAfter: "24h",
  smb: { timeout: "15s", signing: "auto", encrypt: "auto" },
  etcd: { historyLimit: 1000, timeout: "5s" },
} as const;

/** File name of the built-in dependency map, beside `mod.ts`. */
export const DEFAULT_DEPENDENCIES_NAME = "ResourceLocker-Dependencies.json";

/**
 * The environment variables that set a setting, by the setting's name
 * (`configFile` is the option and `--config-file` the flag naming a config
 * module; `smb.username` is the setting below `smb`).
 */
export const SETTING_ENV = {
  store: "RESOURCE_LOCKER_STORE",
  dependenciesFile: "RESOURCE_LOCKER_DEPENDENCIES",
  configFile: "RESOURCE_LOCKER_CONFIG",
  "smb.username": "RESOURCE_LOCKER_SMB_USERNAME",
  "smb.password": "RESOURCE_LOCKER_SMB_PASSWORD",
  "smb.domain": "RESOURCE_LOCKER_SMB_DOMAIN",
  "etcd.endpoints": "RESOURCE_LOCKER_ETCD_ENDPOINTS",
  "etcd.username": "RESOURCE_LOCKER_ETCD_USERNAME",
  "etcd.password": "RESOURCE_LOCKER_ETCD_PASSWORD",
} as const;

/** Settings after resolution, times in milliseconds; each field names the setting it comes from. */
export interface ResolvedConfig {
  /** Dependency map file (`dependenciesFile`), or undefined for none. */
  dependenciesFile: string | undefined;
  /** @deprecated Use `dependenciesFile`. */
  dependenciesFilePath: string | undefined;
  /** True when the map file is the built-in default, which may be absent; a map named by a setting must exist. */
  defaultDependencies: boolean;
  /** Milliseconds between attempts (`timeout`). */
  lockTimeoutMs: number;
  /** Attempts in all (`retries`). */
  lockRetries: number;
  /** History folder name. */
  historyFolderName: string;
  /** Lock file name template. */
  fileNameTemplate: string;
  /** Folder template (`store`). */
  folderPathTemplate: string;
  /** True when the folder template is the built-in default. */
  defaultStore: boolean;
  /** Drain on Host locks. */
  drain: boolean;
  /** How waiters on a folder store learn of changes. */
  watch: "auto" | "notify" | "poll";
  /** Drain timeout in milliseconds. */
  drainTimeoutMs: number;
  /** Lease in milliseconds (`ttl`), or undefined. */
  leaseMs: number | undefined;
  /** Lease of `run` in milliseconds (`runTtl`). */
  runLeaseMs: number;
  /** Clock skew in milliseconds. */
  clockSkewMs: number;
  /** Hosts handled at once. */
  concurrency: number;
  /** Maintenance groups from the config (the map file's are added where it is read). */
  groups: MaintenanceGroup[];
  /** Hosts named for `status --all`. */
  hosts: string[];
  /** File naming more hosts, or undefined. */
  hostsFile: string | undefined;
  /** Age in milliseconds after which an empty lock file is stale. */
  staleEmptyMs: number;
  /** Age in milliseconds after which a PowerShell lock is stale. */
  stalePowerShellMs: number;
  /** SMB settings. */
  smb: {
    username?: string;
    password?: string;
    domain?: string;
    port?: number;
    timeoutMs: number;
    signing: "auto" | "required";
    encrypt: "auto" | "required";
  };
  /** `resource-locker serve`'s settings. */
  serve: { tokens: { name: string; token: string }[] };
  /** etcd settings. */
  etcd: {
    endpoints: string[];
    historyLimit: number;
    timeoutMs: number;
    ca?: string;
    cert?: string;
    key?: string;
    username?: string;
    password?: string;
  };
  /**
   * One line for each deprecated setting name the config files or options
   * used, e.g. `Setting "lockRetries" of config "/etc/rl.ts" is deprecated:
   * use "retries"`. The library never prints them; the command line does.
   */
  warnings: string[];
}

/**
 * Types a config module's default export.
 *
 * @param config settings to override
 * @returns the same settings
 *
 * @example config.ts
 * ```ts
 * import { defineConfig } from "@resource-locker/resource-locker";
 * export default defineConfig({ store: "\\\\{0}\\ResourceLocks", retries: 5 });
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

/**
 * The folder of the default store's state: `$XDG_STATE_HOME` or
 * `$HOME/.local/state` (Windows: `%LOCALAPPDATA%`), which must be absolute:
 * a relative or empty one would put locks under each caller's working
 * folder, where two callers do not see each other's locks.
 */
function stateDir(): string {
  const fix =
    "set it to an absolute folder, or choose a store with RESOURCE_LOCKER_STORE, the folderPathTemplate setting or the store option";
  const remedies = { remedies: ["store"] };
  const absolute = (name: string, value: string) => {
    if (!isAbsolutePath(value)) {
      throw new InputError(
        `Cannot use the default store: ${name} ${
          JSON.stringify(value)
        } is not an absolute path; ${fix}`,
        remedies,
      );
    }
    return value;
  };
  if (Deno.build.os === "windows") {
    const local = env("LOCALAPPDATA");
    if (local) return join(absolute("LOCALAPPDATA", local), "resource-locker");
    const profile = env("USERPROFILE");
    if (profile) {
      return join(absolute("USERPROFILE", profile), "AppData", "Local", "resource-locker");
    }
    throw new InputError(
      `Cannot use the default store: LOCALAPPDATA and USERPROFILE are not set; ${fix}`,
      remedies,
    );
  }
  const state = env("XDG_STATE_HOME");
  if (state) return join(absolute("XDG_STATE_HOME", state), "resource-locker");
  const home = env("HOME");
  if (home) return join(absolute("HOME", home), ".local", "state", "resource-locker");
  throw new InputError(
    `Cannot use the default store: HOME is not set or empty; set HOME or XDG_STATE_HOME to an absolute folder, or choose a store with RESOURCE_LOCKER_STORE, the folderPathTemplate setting or the store option`,
    remedies,
  );
}

/**
 * The folder template of the embedded default store.
 *
 * @throws {InputError} when no absolute state folder is known (HOME empty, XDG_STATE_HOME relative)
 */
export function defaultFolderPathTemplate(): string {
  return join(stateDir(), "locks", "{0}");
}

type Kind =
  | "string"
  | "name"
  | "duration"
  | "lease"
  | "count"
  | "boolean"
  | "positive"
  | "watch"
  | "groups"
  | "hosts"
  | "object";

/** Every setting and its kind; a Map, so `constructor` or `__proto__` is no setting. */
const KEYS: ReadonlyMap<string, Kind> = new Map([
  ["dependenciesFile", "string"],
  ["timeout", "duration"],
  ["retries", "count"],
  ["historyFolderName", "name"],
  ["fileNameTemplate", "string"],
  ["store", "string"],
  ["drain", "boolean"],
  ["watch", "watch"],
  ["drainTimeout", "duration"],
  ["ttl", "lease"],
  ["runTtl", "lease"],
  ["clockSkew", "duration"],
  ["concurrency", "positive"],
  ["groups", "groups"],
  ["hosts", "hosts"],
  ["hostsFile", "string"],
  ["staleEmptyAfter", "duration"],
  ["stalePowerShellAfter", "duration"],
  ["smb", "object"],
  ["etcd", "object"],
  ["serve", "object"],
]);

/** The shortest lease: renewals come every third of it. */
export const MIN_LEASE_MS = 100;

/** Settings below `smb`, `etcd` and `serve`: what each must be. Their values are never shown in messages. */
const SUB_KEYS: Readonly<
  Record<"smb" | "etcd" | "serve", ReadonlyMap<string, [string, (v: unknown) => boolean]>>
> = {
  serve: new Map([
    ["tokens", [
      "an array of { name, token } strings",
      (v) =>
        Array.isArray(v) &&
        v.every((t) =>
          t !== null && typeof t === "object" && typeof t.name === "string" &&
          typeof t.token === "string"
        ),
    ]],
  ]),
  smb: new Map([
    ["username", ["a string", (v) => typeof v === "string"]],
    ["password", ["a string", (v) => typeof v === "string"]],
    ["domain", ["a string", (v) => typeof v === "string"]],
    ["port", [
      "a port number 1-65535",
      (v) => Number.isInteger(v) && (v as number) > 0 && (v as number) < 65536,
    ]],
    ["timeout", ['seconds or a duration like "15s"', isDuration]],
    ["signing", ['"auto" or "required"', (v) => v === "auto" || v === "required"]],
    ["encrypt", ['"auto" or "required"', (v) => v === "auto" || v === "required"]],
  ]),
  etcd: new Map([
    ["endpoints", [
      "an array of URL strings",
      (v) => Array.isArray(v) && v.every((e) => typeof e === "string"),
    ]],
    ["historyLimit", ["a whole number >= 1", (v) => Number.isInteger(v) && (v as number) > 0]],
    ["timeout", ['seconds or a duration like "5s"', isDuration]],
    ["ca", ["a file path", isPath]],
    ["cert", ["a file path", isPath]],
    ["key", ["a file path", isPath]],
    ["username", ["a string", (v) => typeof v === "string"]],
    ["password", ["a string", (v) => typeof v === "string"]],
  ]),
};

function isPath(value: unknown): boolean {
  return typeof value === "string" && value !== "";
}

function isDuration(value: unknown): boolean {
  if (typeof value !== "number" && typeof value !== "string") return false;
  try {
    parseDuration(value, "t");
    return true;
  } catch {
    return false;
  }
}

/** Own enumerable entries, read once (getters run once; a throwing one is an error naming `source`). */
function ownEntries(value: object, source: string, where: string): [string, unknown][] {
  try {
    return Object.keys(value).map((key) => [key, (value as Record<string, unknown>)[key]]);
  } catch (error) {
    const message = (error instanceof Error ? error.message : String(error)).split("\n")[0];
    throw new InputError(`Invalid config "${source}": reading ${where} failed: ${message}`);
  }
}

function suggestion(key: string, known: Iterable<string>): string {
  for (const name of known) {
    if (name.toLowerCase() === key.toLowerCase()) {
      return ` (did you mean "${RENAMED_SETTINGS.get(name) ?? name}"?)`;
    }
  }
  return "";
}

/** Deprecation lines of the configs {@linkcode validateConfig} returned, by the copy it returned. */
const WARNINGS = new WeakMap<object, readonly string[]>();

/**
 * The deprecation lines found when `config` was checked: one per old
 * setting name it used ({@linkcode RENAMED_SETTINGS}).
 *
 * @param config a config returned by {@linkcode validateConfig} or {@linkcode loadConfigModule}
 * @returns the lines, empty when it used only current names
 */
export function configWarnings(config: ResourceLockerConfig | undefined): readonly string[] {
  return (config && WARNINGS.get(config)) ?? [];
}

function describeSource(source: string): string {
  return source === "options" ? "of the config option" : `of config "${source}"`;
}

/** An own data property's value, never running a getter (which may throw or change). */
function ownValue(object: unknown, key: string): unknown {
  if (object === null || typeof object !== "object") return undefined;
  try {
    const descriptor = Object.getOwnPropertyDescriptor(object, key);
    return descriptor && "value" in descriptor ? descriptor.value : undefined;
  } catch {
    return undefined; // a Proxy that throws: validation reports it
  }
}

/**
 * Remembers the passwords of a config before it is checked: an error about
 * any setting may show a value (a password pasted into `lease` by mistake),
 * and it must be masked even when the config is refused. Values of keys
 * below `smb` and `etcd` whose name says they are secret (not `key`, a
 * file's path), and the
 * credentials of the store's template and etcd's endpoints.
 */
function registerConfigSecrets(config: object): void {
  for (const section of ["smb", "etcd"]) {
    const value = ownValue(config, section);
    if (value === null || typeof value !== "object") continue;
    let keys: string[] = [];
    try {
      keys = Object.keys(value);
    } catch { /* reported by validation */ }
    for (const key of keys) {
      const item = ownValue(value, key);
      if (typeof item === "string" && /pass|pwd|secret|token|cred/i.test(key)) {
        registerSecret(item);
      }
    }
    const endpoints = ownValue(value, "endpoints");
    for (const endpoint of Array.isArray(endpoints) ? endpoints : [endpoints]) {
      if (typeof endpoint === "string") registerUrlSecrets(endpoint);
    }
  }
  for (const key of ["store", "folderPathTemplate"]) {
    const template = ownValue(config, key);
    if (typeof template === "string") registerUrlSecrets(template);
  }
}

/**
 * Checks a config object, naming the setting at fault. Only own properties
 * count, each read once; the result is a plain copy, so getters are not
 * run again. Values below `smb` and `etcd` are never shown (a misspelled
 * `Password` is still a password), nor any value at length.
 *
 * Old setting names ({@linkcode RENAMED_SETTINGS}) are accepted and stored
 * under their new names; {@linkcode configWarnings} of the copy tells which.
 *
 * @param config the object
 * @param source where it came from, for messages
 * @returns a checked copy, every setting under its current name
 * @throws {InputError} on an unknown setting, a value of the wrong kind, or a setting given by both its names
 */
export function validateConfig(
  config: unknown,
  source: string,
): ResourceLockerConfig {
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw new InputError(
      `Invalid config "${source}": expected an object (export default defineConfig({...})), got ${
        kindOf(config)
      }`,
    );
  }
  registerConfigSecrets(config);
  const copy: Record<string, unknown> = {};
  const warnings: string[] = [];
  const given = new Map<string, string>(); // current name -> the name it was given by
  for (const [key, value] of ownEntries(config, source, "its settings")) {
    const renamed = RENAMED_SETTINGS.get(key);
    const name = renamed ?? key;
    const kind = KEYS.get(name);
    const bad = (expected: string) =>
      new InputError(
        `Invalid config "${source}": setting "${key}" ${expected}, got ${showValue(value)}`,
      );
    if (!kind) {
      throw new InputError(
        `Invalid config "${source}": unknown setting ${JSON.stringify(key)}${
          suggestion(key, [...KEYS.keys(), ...RENAMED_SETTINGS.keys()])
        }`,
      );
    }
    if (value === undefined) continue;
    const other = given.get(name);
    if (other !== undefined) {
      throw new InputError(
        `Invalid config "${source}": "${other}" and "${key}" are one setting: keep "${name}"`,
      );
    }
    given.set(name, key);
    if (renamed !== undefined) {
      warnings.push(
        `Setting "${key}" ${describeSource(source)} is deprecated: use "${renamed}"`,
      );
    }
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
    if (kind === "watch" && value !== "auto" && value !== "notify" && value !== "poll") {
      throw bad('must be "auto", "notify" or "poll"');
    }
    if (kind === "positive" && (!Number.isInteger(value) || (value as number) < 1)) {
      throw bad("must be a whole number >= 1");
    }
    if ((kind === "duration" || kind === "lease") && !isDuration(value)) {
      throw bad('must be seconds or a duration like "30s"');
    }
    if (kind === "lease" && parseDuration(value as string | number, key) < MIN_LEASE_MS) {
      throw bad(`must be at least ${MIN_LEASE_MS}ms`);
    }
    if (kind === "groups") {
      copy[key] = validateGroups(value, `config "${source}" setting "groups"`);
      continue;
    }
    if (kind === "hosts") {
      if (!Array.isArray(value)) throw bad("must be an array of host names");
      copy[key] = value.map((host: unknown, index) => {
        try {
          return normalizeHost(host as string);
        } catch (error) {
          throw new InputError(
            `Invalid config "${source}": setting "hosts"[${index}]: ${(error as Error).message}`,
          );
        }
      });
      continue;
    }
    if (kind === "object") {
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new InputError(
          `Invalid config "${source}": setting "${key}" must be an object, got ${kindOf(value)}`,
        );
      }
      const known = SUB_KEYS[key as "smb" | "etcd" | "serve"];
      const sub: Record<string, unknown> = {};
      for (const [name, item] of ownEntries(value, source, `"${key}"`)) {
        const rule = known.get(name);
        if (!rule) {
          throw new InputError(
            `Invalid config "${source}": unknown setting ${JSON.stringify(`${key}.${name}`)}${
              suggestion(name, known.keys())
            }`,
          );
        }
        if (item === undefined) continue;
        if (!rule[1](item)) {
          throw new InputError(
            `Invalid config "${source}": setting "${key}.${name}" must be ${rule[0]}, got ${
              kindOf(item)
            }`,
          );
        }
        sub[name] = Array.isArray(item)
          ? item.map((e) => e !== null && typeof e === "object" ? { ...e } : e)
          : item;
      }
      copy[key] = sub;
      continue;
    }
    copy[name] = value;
  }
  const c = copy as ResourceLockerConfig;
  registerSecret(c.smb?.password);
  registerSecret(c.etcd?.password);
  for (const token of c.serve?.tokens ?? []) registerSecret(token.token);
  if (c.store) registerUrlSecrets(c.store);
  for (const endpoint of c.etcd?.endpoints ?? []) registerUrlSecrets(endpoint);
  if (warnings.length) WARNINGS.set(c, warnings);
  return c;
}

/** Longest a config module may take to load: a top-level await that never settles is an error, not a hang. */
export const CONFIG_LOAD_TIMEOUT_MS = 10_000;
/** Largest config module loaded. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** Options of {@linkcode loadConfigModule}. */
export interface LoadConfigOptions {
  /** Return undefined instead of failing when the file does not exist. @default false */
  optional?: boolean;
  /** Give up loading after this long. @default CONFIG_LOAD_TIMEOUT_MS */
  timeoutMs?: number;
}

/**
 * Loads a config module (a `config.ts` exporting `defineConfig({...})` as
 * default). Any failure of the file (missing, not a regular file, too
 * large, a syntax error, a throw or a getter that throws, a top-level await
 * that does not settle in time) is one {@linkcode InputError} naming it. A
 * relative `dependenciesFile` in it is taken from the module's folder.
 *
 * @param specifier path or URL of the module
 * @param options `optional`, `timeoutMs`
 * @returns the settings
 * @throws {InputError} when it cannot be loaded or is invalid
 */
export async function loadConfigModule(
  specifier: string | URL,
  options: LoadConfigOptions = {},
): Promise<ResourceLockerConfig | undefined> {
  const { optional = false, timeoutMs = CONFIG_LOAD_TIMEOUT_MS } = options;
  const url = specifier instanceof URL
    ? specifier
    : /^[a-z][a-z0-9+.-]*:/i.test(specifier) && !/^[a-z]:[\\/]/i.test(specifier)
    ? new URL(specifier)
    : new URL(
      `file://${specifier.startsWith("/") ? "" : Deno.cwd() + "/"}${specifier}`,
    );
  const name = url.protocol === "file:" ? decodeURIComponent(url.pathname) : url.href;
  const fail = (why: string) => new InputError(`Cannot load config "${name}": ${why}`);
  if (url.protocol === "file:") {
    try {
      await checkSmallFile(url, MAX_CONFIG_BYTES);
    } catch (error) {
      if (error instanceof SmallFileError && error.reason === "missing" && optional) {
        return undefined;
      }
      throw fail((error as Error).message);
    }
  }
  let module: { default?: unknown };
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    module = await Promise.race([
      import(url.href),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              fail(
                `it did not finish loading in ${
                  timeoutMs / 1000
                }s (a top-level await that never settles?)`,
              ),
            ),
          timeoutMs,
        );
      }),
    ]);
  } catch (error) {
    if (error instanceof InputError) throw error;
    const message = error instanceof Error ? error.message ?? String(error) : String(error);
    // Optional and served over the network (mod.ts imported by URL): only its absence is allowed.
    const notFound = (error as { code?: string }).code === "ERR_MODULE_NOT_FOUND" ||
      /^Module not found/.test(message);
    if (optional && url.protocol !== "file:" && notFound) return undefined;
    throw fail(await withoutLiterals(message.split("\n")[0]!, url));
  } finally {
    clearTimeout(timer);
  }
  let config: ResourceLockerConfig;
  try {
    config = validateConfig(module.default, name);
  } catch (error) {
    if (error instanceof InputError) throw error;
    throw fail((error instanceof Error ? error.message : String(error)).split("\n")[0]!);
  }
  const deps = config.dependenciesFile;
  if (deps !== undefined && url.protocol === "file:" && !isAbsolutePath(deps)) {
    config.dependenciesFile = join(parentPath(name), deps.replace(/^\.[\\/]/, ""));
  }
  for (const file of ["ca", "cert", "key"] as const) {
    const path = config.etcd?.[file];
    if (path !== undefined && url.protocol === "file:" && !isAbsolutePath(path)) {
      config.etcd![file] = join(parentPath(name), path.replace(/^\.[\\/]/, ""));
    }
  }
  const hostsFile = config.hostsFile;
  if (hostsFile !== undefined && url.protocol === "file:" && !isAbsolutePath(hostsFile)) {
    config.hostsFile = join(parentPath(name), hostsFile.replace(/^\.[\\/]/, ""));
  }
  return config;
}

/**
 * A config module's own error without the strings written in the module:
 * one that failed to load (a syntax error, an exception it threw) was never
 * read, so its secrets are not known as such, and a message such as
 * `bad <password>` would show one. Every string literal of the file that
 * could be one (6 characters or more, no blanks) is masked, as written and
 * as its value (a password with a quote or a backslash is written escaped, and the
 * message shows its value), also JSON-escaped and URL-encoded.
 */
async function withoutLiterals(message: string, url: URL): Promise<string> {
  if (url.protocol !== "file:") return message;
  const text = await Deno.readTextFile(url).catch(() => "");
  const literals = new Set<string>();
  for (const [, , body] of text.matchAll(/(["'`])((?:\\.|(?!\1)[^\\\n])*)\1/g)) {
    const value = literalValue(body!);
    for (
      const form of [body!, value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]
    ) {
      if (form.length >= 6 && !/\s/.test(form)) literals.add(form);
    }
  }
  let masked = message;
  for (const literal of [...literals].sort((a, b) => b.length - a.length)) {
    masked = masked.replaceAll(literal, "***");
  }
  return masked;
}

/** The one-character escapes of a JavaScript string literal. */
const CHARACTER_ESCAPES = new Map([
  ["n", "\n"],
  ["r", "\r"],
  ["t", "\t"],
  ["b", "\b"],
  ["f", "\f"],
  ["v", "\v"],
  ["0", "\0"],
]);

/**
 * The value of a string literal's body as written in a module, its escapes
 * resolved (an escaped quote or backslash, `\x41`, `\u0041`, `\u{41}`, `\n`).
 */
function literalValue(body: string): string {
  return body.replace(
    /\\(?:u\{([0-9a-fA-F]{1,6})\}|u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|([\s\S]))/g,
    (_, braced?: string, u4?: string, x2?: string, other?: string) => {
      const hex = braced ?? u4 ?? x2;
      if (hex !== undefined) {
        const code = parseInt(hex, 16);
        return code <= 0x10ffff ? String.fromCodePoint(code) : "";
      }
      return CHARACTER_ESCAPES.get(other!) ?? (other === "\n" ? "" : other!);
    },
  );
}

function fromEnvironment(): ResourceLockerConfig {
  const c: ResourceLockerConfig = {};
  const store = env(SETTING_ENV.store);
  if (store) c.store = store;
  const deps = env(SETTING_ENV.dependenciesFile);
  if (deps) c.dependenciesFile = deps;
  const smb: NonNullable<ResourceLockerConfig["smb"]> = {};
  const username = env(SETTING_ENV["smb.username"]);
  const password = env(SETTING_ENV["smb.password"]);
  const domain = env(SETTING_ENV["smb.domain"]);
  if (username) smb.username = username;
  if (password) smb.password = password;
  if (domain) smb.domain = domain;
  if (Object.keys(smb).length) c.smb = smb;
  const endpoints = env(SETTING_ENV["etcd.endpoints"]);
  const etcd: NonNullable<ResourceLockerConfig["etcd"]> = {};
  if (endpoints) etcd.endpoints = endpoints.split(",").map((e) => e.trim()).filter(Boolean);
  const etcdUser = env(SETTING_ENV["etcd.username"]);
  const etcdPassword = env(SETTING_ENV["etcd.password"]);
  if (etcdUser) etcd.username = etcdUser;
  if (etcdPassword) etcd.password = etcdPassword;
  if (Object.keys(etcd).length) c.etcd = etcd;
  registerSecret(etcdPassword);
  registerSecret(password);
  if (store) registerUrlSecrets(store);
  if (endpoints) registerUrlSecrets(endpoints);
  return c;
}

function merge(
  ...layers: (ResourceLockerConfig | undefined)[]
): ResourceLockerConfig {
  const out: ResourceLockerConfig = {};
  for (const layer of layers) {
    if (!layer) continue;
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined || !KEYS.has(key)) continue;
      if (key === "smb" || key === "etcd" || key === "serve") {
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
const DEFAULT_DEPENDENCIES = new URL(`../${DEFAULT_DEPENDENCIES_NAME}`, import.meta.url);
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
    const beside = await loadConfigModule(BESIDE_MODULE, { optional: true });
    const named = env(SETTING_ENV.configFile);
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
  const checked = validateConfig(overrides, "options");
  const c = merge(...layers, flagFile, fromEnvironment(), checked);
  const d = CONFIG_DEFAULTS;
  const dependenciesFile = c.dependenciesFile ??
    (DEFAULT_DEPENDENCIES.protocol === "file:"
      ? decodeURIComponent(DEFAULT_DEPENDENCIES.pathname)
      : undefined);
  return {
    dependenciesFile,
    dependenciesFilePath: dependenciesFile,
    defaultDependencies: c.dependenciesFile === undefined,
    lockTimeoutMs: parseDuration(c.timeout ?? d.timeout, "timeout"),
    lockRetries: c.retries ?? d.retries,
    historyFolderName: c.historyFolderName ?? d.historyFolderName,
    fileNameTemplate: c.fileNameTemplate ?? d.fileNameTemplate,
    folderPathTemplate: c.store ?? defaultFolderPathTemplate(),
    defaultStore: c.store === undefined,
    drain: c.drain ?? d.drain,
    watch: c.watch ?? d.watch,
    drainTimeoutMs: parseDuration(c.drainTimeout ?? d.drainTimeout, "drainTimeout"),
    leaseMs: c.ttl === undefined ? undefined : parseDuration(c.ttl, "ttl"),
    runLeaseMs: parseDuration(c.runTtl ?? d.runTtl, "runTtl"),
    clockSkewMs: parseDuration(c.clockSkew ?? d.clockSkew, "clockSkew"),
    concurrency: c.concurrency ?? d.concurrency,
    groups: c.groups ?? [],
    hosts: c.hosts ?? [],
    hostsFile: c.hostsFile,
    staleEmptyMs: parseDuration(c.staleEmptyAfter ?? d.staleEmptyAfter, "staleEmptyAfter"),
    stalePowerShellMs: parseDuration(
      c.stalePowerShellAfter ?? d.stalePowerShellAfter,
      "stalePowerShellAfter",
    ),
    smb: {
      ...c.smb?.username !== undefined ? { username: c.smb.username } : {},
      ...c.smb?.password !== undefined ? { password: c.smb.password } : {},
      ...c.smb?.domain !== undefined ? { domain: c.smb.domain } : {},
      ...c.smb?.port !== undefined ? { port: c.smb.port } : {},
      timeoutMs: parseDuration(c.smb?.timeout ?? d.smb.timeout, "smb.timeout"),
      signing: c.smb?.signing ?? d.smb.signing,
      encrypt: c.smb?.encrypt ?? d.smb.encrypt,
    },
    etcd: {
      endpoints: c.etcd?.endpoints ?? [],
      historyLimit: c.etcd?.historyLimit ?? d.etcd.historyLimit,
      timeoutMs: parseDuration(c.etcd?.timeout ?? d.etcd.timeout, "etcd.timeout"),
      ...c.etcd?.ca !== undefined ? { ca: c.etcd.ca } : {},
      ...c.etcd?.cert !== undefined ? { cert: c.etcd.cert } : {},
      ...c.etcd?.key !== undefined ? { key: c.etcd.key } : {},
      ...c.etcd?.username !== undefined ? { username: c.etcd.username } : {},
      ...c.etcd?.password !== undefined ? { password: c.etcd.password } : {},
    },
    serve: { tokens: c.serve?.tokens ?? [] },
    warnings: [
      ...new Set([...layers, flagFile, overrides, checked].flatMap(configWarnings)),
    ],
  };
}
