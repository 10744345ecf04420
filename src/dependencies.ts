/**
 * The dependency map `ResourceLocker-Dependencies.json`: a host mapped to the
 * hosts that depend on it. Locking a host locks the hosts it depends on.
 *
 * @module
 */

import { InputError, StoreError } from "./errors.ts";
import { normalizeHost } from "./host.ts";

/** A dependency map: host → hosts that depend on it (run on it, or must not be down with it). */
export type DependencyMap = Readonly<Record<string, readonly string[]>>;

/**
 * Checks a parsed dependency map and returns it with host names normalised.
 *
 * @param value the parsed JSON
 * @param source where it came from, for error messages
 * @returns the map, keys and values lower-cased
 * @throws {InputError} naming the source and the place when the shape is wrong
 */
export function validateDependencyMap(
  value: unknown,
  source: string,
): DependencyMap {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InputError(
      `Invalid dependency map "${source}": expected an object of host name arrays`,
    );
  }
  const map: Record<string, string[]> = {};
  for (const [key, list] of Object.entries(value)) {
    const where = `Invalid dependency map "${source}" at ${JSON.stringify(key)}`;
    let host: string;
    try {
      host = normalizeHost(key);
    } catch (error) {
      throw new InputError(`${where}: ${(error as Error).message}`);
    }
    // PowerShell's ConvertTo-Json writes a one-element array as a plain string.
    const items = typeof list === "string" ? [list] : list;
    if (!Array.isArray(items)) {
      throw new InputError(`${where}: expected an array of host names`);
    }
    const targets = map[host] ??= [];
    items.forEach((item, index) => {
      if (typeof item !== "string") {
        throw new InputError(`${where}[${index}]: expected a host name string`);
      }
      try {
        targets.push(normalizeHost(item));
      } catch (error) {
        throw new InputError(`${where}[${index}]: ${(error as Error).message}`);
      }
    });
  }
  return map;
}

/**
 * Reads a dependency map file. A missing file means no dependencies.
 *
 * @param path the JSON file
 * @returns the map ({} when the file does not exist)
 * @throws {InputError} when the file is not JSON or not a map of host arrays
 * @throws {StoreError} when the file exists but cannot be read
 */
export async function readDependencyMap(path: string): Promise<DependencyMap> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    if (error instanceof Deno.errors.IsADirectory) {
      throw new InputError(`Invalid dependency map "${path}": it is a folder`);
    }
    throw new StoreError(
      path,
      `Cannot read dependency map "${path}": ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch (error) {
    throw new InputError(
      `Invalid dependency map "${path}": not JSON: ${(error as Error).message}`,
    );
  }
  return validateDependencyMap(parsed, path);
}

/**
 * The hosts that must be locked with `host`: every host X whose list holds
 * `host`, then, level by level, the hosts whose lists hold one of those;
 * never `host` itself, each once, cycles allowed. Order as the original:
 * the direct ones by name, then each further level by name.
 *
 * @param host the host to be locked
 * @param map the dependency map
 * @returns hosts to lock with it
 *
 * @example The original README's map
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveDependencies } from "./dependencies.ts";
 * const map = { hv01: ["dc01", "vmm01"], dc01: ["dc02"], dc02: ["dc01"] };
 * assert.ok(resolveDependencies("dc01", map).join() === "dc02,hv01");
 * ```
 */
export function resolveDependencies(
  host: string,
  map: DependencyMap,
): string[] {
  const self = normalizeHost(host);
  const names = Object.keys(map).sort();
  const dependents = (target: string) => names.filter((name) => map[name]!.includes(target));
  const seen = new Set<string>([self]);
  const result: string[] = [];
  let level = [self];
  while (level.length > 0) {
    const next = new Set<string>();
    for (const item of level) {
      for (const name of dependents(item)) if (!seen.has(name)) next.add(name);
    }
    level = [...next].sort();
    for (const name of level) seen.add(name);
    result.push(...level);
  }
  return result;
}
