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
    /**
     * `auto`: sign every message whenever the server supports it and check
     * every answer's signature; `required`: refuse a session that cannot be
     * signed. @default "auto"
     */
    signing?: "auto" | "required";
    /** `auto`: encrypt when the server or share requires it; `required`: always. @default "auto" */
    encrypt?: "auto" | "required";
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
  /** True when the map file is the built-in default, which may be absent; a map named by a setting must exist. */
  defaultDependencies: boolean;
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
    signing: "auto" | "required";
    encrypt: "auto" | "required";
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

/**
 * The folder of the default store's state: `$XDG_STATE_HOME` or
 * `$HOME/.local/state` (Windows: `%LOCALAPPDATA%`), which must be absolute:
 * a relative or empty one would put locks under each caller's working
 * folder, where two callers do not see each other's locks.
 */
function stateDir(): string {
  const fix =
    "set it to an absolute folder, or choose a store with --store, RESOURCE_LOCKER_STORE or folderPathTemplate";
  const absolute = (name: string, value: string) => {
    if (!isAbsolutePath(value)) {
      throw new InputError(
        `Cannot use the default store: ${name} ${
          JSON.stringify(value)
        } is not an absolute path; ${fix}`,
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
    );
  }
  const state = env("XDG_STATE_HOME");
  if (state) return join(absolute("XDG_STATE_HOME", state), "resource-locker");
  const home = env("HOME");
  if (home) return join(absolute("HOME", home), ".local", "state", "resource-locker");
  throw new InputError(
    `Cannot use the default store: HOME is not set or empty; set HOME or XDG_STATE_HOME to an absolute folder, or choose a store with --store, RESOURCE_LOCKER_STORE or folderPathTemplate`,
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
  | "object";

/** Every setting and its kind; a Map, so `constructor` or `__proto__` is no setting. */
const KEYS: ReadonlyMap<string, Kind> = new Map([
  ["dependenciesFilePath", "string"],
  ["lockTimeout", "duration"],
  ["lockRetries", "count"],
  ["historyFolderName", "name"],
  ["fileNameTemplate", "string"],
  ["folderPathTemplate", "string"],
  ["drain", "boolean"],
  ["drainTimeout", "duration"],
  ["lease", "lease"],
  ["runLease", "lease"],
  ["clockSkew", "duration"],
  ["concurrency", "positive"],
  ["smb", "object"],
  ["etcd", "object"],
]);

/** The shortest lease: renewals come every third of it. */
export const MIN_LEASE_MS = 100;

/** Settings below `smb` and `etcd`: what each must be. Their values are never shown in messages. */
const SUB_KEYS: Readonly<
  Record<"smb" | "etcd", ReadonlyMap<string, [string, (v: unknown) => boolean]>>
> = {
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
  ]),
};

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
    if (name.toLowerCase() === key.toLowerCase()) return ` (did you mean "${name}"?)`;
  }
  return "";
}

/**
 * Checks a config object, naming the setting at fault. Only own properties
 * count, each read once; the result is a plain copy, so getters are not
 * run again. Values below `smb` and `etcd` are never shown (a misspelled
 * `Password` is still a password), nor any value at length.
 *
 * @param config the object
 * @param source where it came from, for messages
 * @returns a checked copy
 * @throws {InputError} on an unknown setting or a value of the wrong kind
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
  const copy: Record<string, unknown> = {};
  for (const [key, value] of ownEntries(config, source, "its settings")) {
    const kind = KEYS.get(key);
    const bad = (expected: string) =>
      new InputError(
        `Invalid config "${source}": setting "${key}" ${expected}, got ${showValue(value)}`,
      );
    if (!kind) {
      throw new InputError(
        `Invalid config "${source}": unknown setting ${JSON.stringify(key)}${
          suggestion(key, KEYS.keys())
        }`,
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
    if ((kind === "duration" || kind === "lease") && !isDuration(value)) {
      throw bad('must be seconds or a duration like "30s"');
    }
    if (kind === "lease" && parseDuration(value as string | number, key) < MIN_LEASE_MS) {
      throw bad(`must be at least ${MIN_LEASE_MS}ms`);
    }
    if (kind === "object") {
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new InputError(
          `Invalid config "${source}": setting "${key}" must be an object, got ${kindOf(value)}`,
        );
      }
      const known = SUB_KEYS[key as "smb" | "etcd"];
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
        sub[name] = Array.isArray(item) ? [...item] : item;
      }
      copy[key] = sub;
      continue;
    }
    copy[key] = value;
  }
  const c = copy as ResourceLockerConfig;
  registerSecret(c.smb?.password);
  if (c.folderPathTemplate) registerUrlSecrets(c.folderPathTemplate);
  for (const endpoint of c.etcd?.endpoints ?? []) registerUrlSecrets(endpoint);
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
 * relative `dependenciesFilePath` in it is taken from the module's folder.
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
    throw fail(message.split("\n")[0]!);
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
  const deps = config.dependenciesFilePath;
  if (deps !== undefined && url.protocol === "file:" && !isAbsolutePath(deps)) {
    config.dependenciesFilePath = join(parentPath(name), deps.replace(/^\.[\\/]/, ""));
  }
  return config;
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
    const beside = await loadConfigModule(BESIDE_MODULE, { optional: true });
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
    defaultDependencies: c.dependenciesFilePath === undefined,
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
      signing: c.smb?.signing ?? "auto",
      encrypt: c.smb?.encrypt ?? "auto",
    },
    etcd: {
      endpoints: c.etcd?.endpoints ?? [],
      historyLimit: c.etcd?.historyLimit ?? 1000,
      timeoutMs: parseDuration(c.etcd?.timeout ?? "5s", "etcd.timeout"),
    },
  };
}
