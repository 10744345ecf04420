/**
 * The flags several commands share: the global ones, and the lock options of
 * `lock`, `lock-file` and `run`. Defaults come from the config's defaults
 * (`src/config.ts`) and the library's, formatted here, never retyped.
 *
 * @module
 */

import { DEFAULT_LOCK_TYPE } from "../src/api.ts";
import { CONFIG_DEFAULTS, DEFAULT_DEPENDENCIES_NAME, SETTING_ENV } from "../src/config.ts";
import { formatDuration, parseDuration } from "../src/duration.ts";
import type { FlagDeclaration } from "./command.ts";

type Defaulted = Exclude<keyof typeof CONFIG_DEFAULTS, "smb" | "etcd">;

/** A config default as help shows it: times as `10s`, `1h`. */
export function configDefault(setting: Defaulted): string {
  const value = CONFIG_DEFAULTS[setting];
  return typeof value === "string" || setting === "timeout"
    ? formatDuration(parseDuration(value as string | number, setting))
    : String(value);
}

/** Flags every command takes. */
export const GLOBAL_FLAGS: readonly FlagDeclaration[] = [
  {
    name: "store",
    value: "TEMPLATE",
    help: "folder template choosing the store: /path/{0}, \\\\{0}\\share, smb://, etcd://",
    setting: "store",
    env: SETTING_ENV.store,
    default: "~/.local/state/resource-locker/locks/{0}",
  },
  {
    name: "config-file",
    value: "FILE",
    help: "config module (as config.example.ts)",
    file: true,
    env: SETTING_ENV.configFile,
    deprecated: ["config"],
  },
  { name: "json", help: 'print one JSON document on stdout ("version": 1)' },
  {
    name: "quiet",
    short: "q",
    help: "no progress or informational messages; errors and warnings still print",
  },
  {
    name: "verbose",
    short: "v",
    help: "more messages on stderr: the store used, the stack of an error",
  },
  { name: "help", short: "h", help: "show this help" },
  { name: "version", help: "show the version" },
];

/** `--dependencies-file`, of `lock`, `lock-file`, `run` and `deps`. */
export const DEPENDENCIES_FILE: FlagDeclaration = {
  name: "dependencies-file",
  value: "FILE",
  help: "dependency map: each host and the hosts it depends on",
  file: true,
  setting: "dependenciesFile",
  env: SETTING_ENV.dependenciesFile,
  default: `${DEFAULT_DEPENDENCIES_NAME} beside mod.ts`,
  deprecated: ["file"],
};

/** `--group NAME`, of `status` and `test`: a maintenance group. */
export const GROUP_FLAG: FlagDeclaration = {
  name: "group",
  value: "NAME",
  help: "a maintenance group (the config's groups, the dependency map's @groups)",
};

/** The lock options of `lock` and `run`; `lock-file` takes some of them. */
export const LOCK_FLAGS: readonly FlagDeclaration[] = [
  { name: "hard", help: "exclusive Host lock (same as --type host)" },
  {
    name: "type",
    value: "TYPE",
    help: "lock type",
    choices: ["host", "generic", "file"],
    default: DEFAULT_LOCK_TYPE.toLowerCase(),
  },
  { name: "caller", value: "NAME", help: "who takes the lock" },
  { name: "description", value: "TEXT", help: "why" },
  {
    name: "session-id",
    value: "ID",
    help: "session id of every lock taken",
    default: "a new GUID",
    deprecated: ["session"],
  },
  { name: "no-dependencies", help: "lock only the host, not the hosts it depends on" },
  DEPENDENCIES_FILE,
  {
    name: "timeout",
    value: "TIME",
    help: "time between attempts",
    setting: "timeout",
    default: configDefault("timeout"),
  },
  {
    name: "retries",
    value: "N",
    help: "attempts in all",
    setting: "retries",
    default: configDefault("retries"),
  },
  {
    name: "wait",
    value: "TIME",
    help:
      'wait up to TIME in all, or "forever", woken when the host may be free; attempts are not counted',
    default: "none",
  },
  {
    name: "ttl",
    value: "TIME",
    help: "lease: the lock expires unless renewed",
    setting: "ttl",
    default: "none, never expires",
  },
  {
    name: "no-drain",
    help: "a Host lock does not wait for shared locks to drain",
    setting: "drain",
  },
  {
    name: "drain-timeout",
    value: "TIME",
    help: "how long a Host lock waits for shared locks to drain",
    setting: "drainTimeout",
    default: configDefault("drainTimeout"),
  },
];

/** The lock flags of `names`, in declaration order. */
export function lockFlags(...names: string[]): FlagDeclaration[] {
  return LOCK_FLAGS.filter((flag) => names.includes(flag.name));
}
