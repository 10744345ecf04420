/**
 * Host names: validation and the case-insensitive normal form used for
 * folders, keys and refs.
 *
 * @module
 */

import { InputError } from "./errors.ts";
import { kindOf } from "./_text.ts";

const HOST_PATTERN = /^[A-Za-z0-9._-]+$/;

/**
 * Checks a host name and returns its normal (lower-case) form. Host names are
 * case-insensitive, so `DC01` and `dc01` are one host with one lock folder.
 *
 * @param host the name to check
 * @returns the lower-cased name
 * @throws {InputError} on a value that is not a string, an empty name, `.`, `..`, path separators, characters
 * outside `[A-Za-z0-9._-]`, more than 253 characters, or a name starting `_group-` or
 * `.resource-locker` (kept for the stores)
 *
 * @example Normalising a host name
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeHost } from "./host.ts";
 * assert.ok(normalizeHost("DC01") === "dc01");
 * ```
 */
export function normalizeHost(host: string): string {
  const lower = storeHostName(host);
  for (const [prefix, why] of RESERVED_PREFIXES) {
    if (lower.startsWith(prefix)) {
      throw new InputError(`Invalid host name "${host}": names starting "${prefix}" are ${why}`);
    }
  }
  return lower;
}

/**
 * The checks a store makes on every host name it puts into a path or key
 * (the folders a store keeps for itself, such as a group's slots, pass):
 * the lower-cased name, or an {@linkcode InputError}.
 *
 * @param host the name to check
 * @returns the lower-cased name
 * @throws {InputError} as {@linkcode normalizeHost}, but for the reserved prefixes
 */
export function storeHostName(host: string): string {
  if (typeof host !== "string") {
    throw new InputError(`Invalid host name: expected a string, got ${kindOf(host)}`);
  }
  if (host.length === 0) {
    throw new InputError("Invalid host name: it is empty");
  }
  if (host.length > 253) {
    throw new InputError(
      `Invalid host name "${host.slice(0, 20)}…": ${host.length} characters, at most 253`,
    );
  }
  if (host === "." || host === "..") {
    throw new InputError(`Invalid host name "${host}": not a host`);
  }
  if (!HOST_PATTERN.test(host)) {
    throw new InputError(
      `Invalid host name ${
        JSON.stringify(host)
      }: only letters, digits, ".", "_" and "-" are allowed`,
    );
  }
  if (host.includes("..")) {
    throw new InputError(`Invalid host name "${host}": ".." is not allowed`);
  }
  return host.toLowerCase();
}

/**
 * Folder names the stores keep for themselves: a host of such a name would
 * share its folder with a maintenance group's slots, or be skipped as our
 * own file, so its locks would not show in `status --all`.
 */
const RESERVED_PREFIXES: [string, string][] = [
  ["_group-", "kept for maintenance groups' slots"],
  [".resource-locker", "kept for the stores' own files"],
];
