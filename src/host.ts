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
 * outside `[A-Za-z0-9._-]` or more than 253 characters
 *
 * @example Normalising a host name
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeHost } from "./host.ts";
 * assert.ok(normalizeHost("DC01") === "dc01");
 * ```
 */
export function normalizeHost(host: string): string {
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
