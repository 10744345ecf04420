/**
 * From parsed flags to the library's options: each flag has the name of
 * the option and setting it sets (`--dependencies-file` is
 * `dependenciesFile`), and the checks only a command line needs (`--hard`
 * against `--type`, whole numbers).
 *
 * @module
 */

import type { LockResourceOptions, StoreOptions } from "../src/api.ts";
import { LIGHT_CLOCK } from "../src/clock.ts";
import type { LockType } from "../src/lock_file.ts";
import type { LockProgress } from "../src/locker.ts";
import { formatDuration } from "../src/duration.ts";
import { describeHolders } from "../src/_text.ts";
import type { Values } from "./command.ts";
import type { Io } from "./io.ts";
import { UsageError } from "./errors.ts";

/** A Map, so an inherited name is no lock type. */
const LOCK_TYPES: ReadonlyMap<string, LockType> = new Map([
  ["host", "Host"],
  ["generic", "Generic"],
  ["file", "File"],
]);

/**
 * Store options from the global flags. `onWarning` reports what the
 * library finds deprecated (old setting names in a config file).
 */
export function storeOptions(values: Values, onWarning: (message: string) => void): StoreOptions {
  // The command line's clock: see LIGHT_CLOCK (no Node timers loaded).
  const options: StoreOptions = { clock: LIGHT_CLOCK, onWarning };
  if (typeof values.store === "string") options.store = values.store;
  if (typeof values["config-file"] === "string") options.configFile = values["config-file"];
  return options;
}

/** The lock type of `--type` and `--hard`. */
export function lockType(value: string | boolean | undefined, hard: boolean): LockType | undefined {
  if (hard) {
    if (value !== undefined && String(value).toLowerCase() !== "host") {
      throw new UsageError(`--hard and --type ${value} disagree: --hard means a Host lock`);
    }
    return "Host";
  }
  if (value === undefined) return undefined;
  const type = LOCK_TYPES.get(String(value).toLowerCase());
  if (!type) {
    throw new UsageError(
      `Invalid lock type ${JSON.stringify(value)}: expected host, generic or file`,
    );
  }
  return type;
}

/** A whole number flag (`--retries`). */
export function wholeNumber(values: Values, flag: string, min: number): number | undefined {
  const value = values[flag];
  if (typeof value !== "string") return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min) {
    throw new UsageError(
      `Invalid --${flag} ${JSON.stringify(value)}: expected a whole number${
        min > 0 ? ` >= ${min}` : ""
      }`,
    );
  }
  return Number(value);
}

/** Lock options from the lock flags; progress goes to stderr unless `--quiet`. */
export function lockOptions(values: Values, store: StoreOptions, io: Io): LockResourceOptions {
  const options: LockResourceOptions = { ...store };
  const type = lockType(values.type, values.hard === true);
  if (type) options.type = type;
  if (typeof values.caller === "string") options.caller = values.caller;
  if (typeof values.description === "string") options.description = values.description;
  if (typeof values["session-id"] === "string") options.sessionId = values["session-id"];
  if (values["no-dependencies"]) options.noDependencies = true;
  if (typeof values["dependencies-file"] === "string") {
    options.dependenciesFile = values["dependencies-file"];
  }
  if (typeof values.timeout === "string") options.timeout = values.timeout;
  const retries = wholeNumber(values, "retries", 0);
  if (retries !== undefined) options.retries = retries;
  if (typeof values.wait === "string") options.wait = values.wait;
  if (typeof values.ttl === "string") options.ttl = values.ttl;
  if (values["no-drain"]) {
    if (values["drain-timeout"] !== undefined) {
      throw new UsageError("--no-drain and --drain-timeout exclude each other");
    }
    options.drain = false;
  }
  if (typeof values["drain-timeout"] === "string") {
    options.drainTimeout = values["drain-timeout"];
  }
  if (values.quiet !== true) options.onProgress = (progress) => io.err(describeProgress(progress));
  return options;
}

/**
 * One line of progress, stamped with its time: waiting for a busy host, or
 * for shared locks to drain. The library reports a change at once and the
 * same state every 30 s while it lasts, so a long wait stays readable in a log.
 */
export function describeProgress(progress: LockProgress): string {
  const holders = progress.holders.length ? describeHolders(progress.holders, 2) : "a lock";
  const at = progress.at.toISOString();
  const left = (what: string) =>
    Number.isFinite(progress.waitMs)
      ? `${what} ${formatDuration(progress.waitMs)}`
      : "waiting as long as it takes";
  if (progress.phase === "retry") {
    const attempt = progress.attempts !== undefined
      ? `attempt ${progress.attempt} of ${progress.attempts}, next in ${
        formatDuration(progress.waitMs)
      } at the latest`
      : `attempt ${progress.attempt}, ${left("giving up in")}`;
    return `${at} Waiting for "${progress.host}": ${holders} (${attempt})`;
  }
  return `${at} Draining "${progress.host}": waiting for ${progress.holders.length} shared lock${
    progress.holders.length === 1 ? "" : "s"
  } (${holders}; ${left("giving up in")})`;
}
