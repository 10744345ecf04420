/**
 * Exit codes, and how an error becomes one: its code, its one line, its
 * `--json` form.
 *
 * @module
 */

import { InputError, ResourceLockerError } from "../src/errors.ts";

/**
 * Exit codes of the command line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXIT } from "./errors.ts";
 * assert.equal(EXIT.USAGE, 2);
 * ```
 */
export const EXIT = {
  /** Done. */
  OK: 0,
  /** `test`: no lock. */
  NOT_LOCKED: 1,
  /** Bad usage or bad input. */
  USAGE: 2,
  /** Lock not acquired: busy, timed out, drain timed out, another session's lock. */
  NOT_ACQUIRED: 3,
  /** Store unreachable or I/O error. */
  STORE: 4,
  /** Lock lost while `run` held it, or broken before `unlock`. */
  LOST: 5,
} as const;

/** Bad usage of the command line: an unknown command or option, a missing operand. */
export class UsageError extends InputError {
  override name = "UsageError";
}

/**
 * Maps an error to its exit code.
 *
 * @param error what was thrown
 * @returns the exit code
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exitCodeOf } from "./errors.ts";
 * import { InputError } from "../src/errors.ts";
 * assert.equal(exitCodeOf(new InputError("bad")), 2);
 * assert.equal(exitCodeOf(new Error("anything else")), 4);
 * ```
 */
export function exitCodeOf(error: unknown): number {
  if (error instanceof ResourceLockerError) {
    switch (error.code) {
      case "BAD_INPUT":
        return EXIT.USAGE;
      case "LOCK_BUSY":
      case "DRAIN_TIMEOUT":
      case "LOCK_NOT_OWNED":
        return EXIT.NOT_ACQUIRED;
      case "LOCK_LOST":
        return EXIT.LOST;
      default:
        return EXIT.STORE;
    }
  }
  return EXIT.STORE;
}

/** The flag for each library option or setting an error names as its remedy. */
const REMEDY_FLAGS: ReadonlyMap<string, string> = new Map([
  ["force", "--force"],
  ["dependenciesFile", "--dependencies-file"],
  ["store", "--store"],
]);

/**
 * An error's message for one line. Ours are one line by construction, so a
 * line break in one came from data (a lock file's caller) and is kept, to be
 * shown escaped; a foreign error keeps its first line (no stack trace). The
 * library names its remedies as options (`force`); the flags are added here.
 */
export function errorMessage(error: unknown): string {
  if (error instanceof ResourceLockerError) {
    const flags = error.remedies.map((name) => REMEDY_FLAGS.get(name)).filter((f) => f);
    return flags.length ? `${error.message} (${flags.join(", ")})` : error.message;
  }
  return error instanceof Error ? String(error.message).split("\n")[0]! : String(error);
}

/** An error as `--json` shows it: code, message, exit code. */
export function errorJson(error: unknown): Record<string, unknown> {
  return {
    code: (error as { code?: string }).code ?? "ERROR",
    message: errorMessage(error),
    exitCode: exitCodeOf(error),
  };
}
