/**
 * The path helpers the local store, the template parser and config need,
 * without loading Node's compatibility layer, which `node:path` would add to
 * every start (the benchmark's `startup-node-path` figure).
 *
 * @module
 */

const SEPARATOR = Deno.build.os === "windows" ? "\\" : "/";

/**
 * Joins path segments with the platform's separator, without doubling separators.
 *
 * @param parts segments
 * @returns the joined path
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { joinPath } from "./path.ts";
 * assert.ok(joinPath("/var/lib/", "locks") === (Deno.build.os === "windows" ? "/var/lib\\locks" : "/var/lib/locks"));
 * ```
 */
export function joinPath(...parts: string[]): string {
  return parts.reduce((left, right) =>
    left === "" ? right : /[\\/]$/.test(left) ? left + right : left + SEPARATOR + right
  );
}

/**
 * The folder above a path.
 *
 * @param path a path
 * @returns everything before the last separator (the path itself when there is none)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parentPath } from "./path.ts";
 * assert.ok(parentPath("/var/lib/locks/dc01") === "/var/lib/locks");
 * ```
 */
export function parentPath(path: string): string {
  // A loop, not /[\\/]+$/: that pattern scans a run of separators again from
  // each one when the run does not end the path (quadratic in its length).
  let end = path.length;
  while (end > 0 && (path[end - 1] === "/" || path[end - 1] === "\\")) end--;
  const trimmed = path.slice(0, end);
  const at = Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\"));
  return at <= 0 ? (at === 0 ? trimmed[0]! : trimmed) : trimmed.slice(0, at);
}

/**
 * Tells whether a path is absolute on a system: `/…`; on Windows `C:\…` or
 * `\\server\share…` (`\…` alone is relative to the current drive there).
 *
 * @param path a path
 * @param os the system (`Deno.build.os`)
 * @returns true when the path does not depend on the current folder
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isAbsolutePath } from "./path.ts";
 * assert.ok(isAbsolutePath("/var/lib/locks", "linux"));
 * assert.ok(isAbsolutePath("C:\\locks", "windows"));
 * assert.ok(!isAbsolutePath("C:\\locks", "linux"));
 * ```
 */
export function isAbsolutePath(path: string, os: string = Deno.build.os): boolean {
  return os === "windows" ? /^(?:[A-Za-z]:[\\/]|[\\/]{2}[^\\/])/.test(path) : path.startsWith("/");
}
