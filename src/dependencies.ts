/**
 * The dependency map `ResourceLocker-Dependencies.json`: a host mapped to the
 * hosts that depend on it. Locking a host locks the hosts it depends on.
 *
 * @module
 */

import { readSmallFile, SmallFileError } from "./_file.ts";
import { firstLineOf, kindOf } from "./_text.ts";
import { InputError, StoreError } from "./errors.ts";
import { normalizeHost } from "./host.ts";
import { decodeText } from "./lock_file.ts";
import { GROUPS_SECTION, type MaintenanceGroup, validateGroups } from "./groups.ts";

/** A dependency map: host → hosts that depend on it (run on it, or must not be down with it). */
export type DependencyMap = Readonly<Record<string, readonly string[]>>;

/** Largest dependency map read: a map of every host of a big fleet is far smaller. */
export const MAX_DEPENDENCY_MAP_BYTES = 16 * 1024 * 1024;

/**
 * Checks a parsed dependency map and returns it with host names normalised.
 * Only the map's own keys count: a host named `constructor` or `__proto__`
 * is a host like any other. The second section, `"@groups"`, is no host:
 * {@linkcode readDependencyFile} reads it.
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
      `Invalid dependency map "${source}": expected an object of host name arrays, got ${
        kindOf(value)
      }`,
    );
  }
  let entries: [string, unknown][];
  try {
    entries = Object.entries(value);
  } catch (error) {
    throw new InputError(
      `Invalid dependency map "${source}": cannot be read: ${firstLineOf(error)}`,
    );
  }
  const map: Record<string, string[]> = Object.create(null);
  for (const [key, list] of entries) {
    if (key === GROUPS_SECTION) continue; // the maintenance groups, read by readDependencyFile
    const where = `Invalid dependency map "${source}" at ${JSON.stringify(key)}`;
    let host: string;
    try {
      host = normalizeHost(key);
    } catch (error) {
      throw new InputError(`${where}: ${(error as Error).message}`);
    }
    // PowerShell's ConvertTo-Json writes a one-element array as a plain string.
    if (typeof list !== "string" && !Array.isArray(list)) {
      throw new InputError(`${where}: expected an array of host names, got ${kindOf(list)}`);
    }
    let items: unknown[];
    try {
      items = typeof list === "string" ? [list] : Array.from(list); // read once
    } catch (error) {
      throw new InputError(`${where}: cannot be read: ${firstLineOf(error)}`);
    }
    const targets = Object.hasOwn(map, host) ? map[host]! : (map[host] = []);
    for (let index = 0; index < items.length; index++) {
      const item: unknown = items[index];
      if (typeof item !== "string") {
        throw new InputError(
          `${where}[${index}]: expected a host name string, got ${kindOf(item)}`,
        );
      }
      try {
        targets.push(normalizeHost(item));
      } catch (error) {
        throw new InputError(`${where}[${index}]: ${(error as Error).message}`);
      }
    }
  }
  return map;
}

function decodeUtf32(bytes: Uint8Array, littleEndian: boolean): string {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let text = "";
  for (let at = 0; at + 4 <= bytes.length; at += 4) {
    const code = view.getUint32(at, littleEndian);
    text += code <= 0x10ffff ? String.fromCodePoint(code) : "\uFFFD";
  }
  return text;
}

/**
 * Decodes a map in any encoding PowerShell writes: UTF-8 with or without
 * BOM (PowerShell 7, `-Encoding utf8`), UTF-16 LE or BE with BOM (Windows
 * PowerShell 5.1's `Out-File`, `-Encoding Unicode` / `BigEndianUnicode`),
 * UTF-32 with BOM (`-Encoding UTF32`), and the ANSI code page
 * (`-Encoding Default`, read as Windows-1252).
 */
function decodeMap(bytes: Uint8Array): string {
  if (bytes[0] === 0xff && bytes[1] === 0xfe && bytes[2] === 0 && bytes[3] === 0) {
    return decodeUtf32(bytes.subarray(4), true);
  }
  if (bytes[0] === 0 && bytes[1] === 0 && bytes[2] === 0xfe && bytes[3] === 0xff) {
    return decodeUtf32(bytes.subarray(4), false);
  }
  if (bytes.length >= 2 && bytes[0] === 0 && bytes[1] !== 0) {
    return new TextDecoder("utf-16be").decode(bytes); // UTF-16 BE without BOM
  }
  return decodeText(bytes).replace(/^\uFEFF/, "");
}

/** Options of {@linkcode readDependencyMap}. */
export interface ReadDependencyMapOptions {
  /** A missing file means no dependencies (the implicit default map); otherwise it is an error. @default false */
  optional?: boolean;
}

/** A dependency map file's two sections. */
export interface DependencyFile {
  /** The map: host → hosts that depend on it. */
  dependencies: DependencyMap;
  /** The maintenance groups of its optional `"@groups"` section; [] without one. */
  groups: MaintenanceGroup[];
}

/**
 * Reads a dependency map file with its optional second section, the
 * maintenance groups under the key `"@groups"` (an array of
 * `{ name, members, max, home? }`). Maps without it, as the original
 * module's, read as before; the original reads a map with it as before
 * too, since no host is named `@groups`.
 *
 * @param path the JSON file
 * @param options `optional` when the map was not named by the user
 * @returns the map and the groups (both empty when an optional file does not exist)
 * @throws {InputError} as {@linkcode readDependencyMap}, and for a malformed `@groups` section
 * @throws {StoreError} when the file exists but cannot be read
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readDependencyFile } from "./dependencies.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, JSON.stringify({
 *   hv01: ["dc01"],
 *   "@groups": [{ name: "hv-cluster-a", members: ["hv01", "hv02"], max: 1 }],
 * }));
 * const { dependencies, groups } = await readDependencyFile(path);
 * assert.deepEqual(Object.keys(dependencies), ["hv01"]);
 * assert.equal(groups[0]!.name, "hv-cluster-a");
 * await Deno.remove(path);
 * ```
 */
export async function readDependencyFile(
  path: string,
  options: ReadDependencyMapOptions = {},
): Promise<DependencyFile> {
  const parsed = await readMapJson(path, options);
  if (parsed === undefined) return { dependencies: {}, groups: [] };
  const dependencies = validateDependencyMap(parsed, path);
  const section = Object.hasOwn(parsed as object, GROUPS_SECTION)
    ? (parsed as Record<string, unknown>)[GROUPS_SECTION]
    : undefined;
  return {
    dependencies,
    groups: section === undefined
      ? []
      : validateGroups(section, `dependency map "${path}" section "${GROUPS_SECTION}"`),
  };
}

/**
 * Reads a dependency map file. Only a regular file of at most
 * {@linkcode MAX_DEPENDENCY_MAP_BYTES} is read: a folder, FIFO or device at
 * the path is an error, never a hang.
 *
 * @param path the JSON file
 * @param options `optional` when the map was not named by the user
 * @returns the map ({} when the file does not exist and `optional` is set)
 * @throws {InputError} when the file is missing (unless optional), not a regular file, too large, not JSON or not a map of host arrays
 * @throws {StoreError} when the file exists but cannot be read
 */
export async function readDependencyMap(
  path: string,
  options: ReadDependencyMapOptions = {},
): Promise<DependencyMap> {
  const parsed = await readMapJson(path, options);
  return parsed === undefined ? {} : validateDependencyMap(parsed, path);
}

/** The parsed JSON of a map file; undefined when an optional file does not exist. */
async function readMapJson(
  path: string,
  options: ReadDependencyMapOptions,
): Promise<unknown> {
  let bytes: Uint8Array;
  try {
    bytes = await readSmallFile(path, MAX_DEPENDENCY_MAP_BYTES);
  } catch (error) {
    if (!(error instanceof SmallFileError) || error.reason === "unreadable") {
      throw new StoreError(path, `Cannot read dependency map "${path}": ${firstLineOf(error)}`, {
        cause: error,
      });
    }
    if (error.reason === "missing") {
      if (options.optional) return undefined;
      throw new InputError(
        `Dependency map "${path}" does not exist: create it, or name another with RESOURCE_LOCKER_DEPENDENCIES or the dependenciesFile setting or option`,
        { remedies: ["dependenciesFile"] },
      );
    }
    throw new InputError(`Invalid dependency map "${path}": ${error.message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(decodeMap(bytes));
  } catch (error) {
    throw new InputError(`Invalid dependency map "${path}": not JSON: ${firstLineOf(error)}`);
  }
  return parsed;
}

/**
 * The hosts that must be locked with `host`: every host X whose list holds
 * `host`, then, level by level, the hosts whose lists hold one of those;
 * never `host` itself, each once, cycles allowed. Order as the original's
 * `Get-ResourceDependence` (checked against it by the PowerShell interop
 * suite): the direct ones by name (ordinal, ignoring case, as .NET sorts
 * them: `_` after letters), then each further level in the order of the
 * host that led to it, and by name among the hosts one host led to.
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
  // Who lists each host, each name once and in name order: built in one pass
  // over the map, so a map of many hosts (or one long chain) is resolved in
  // time proportional to its size, not its size squared.
  const listedBy = new Map<string, string[]>();
  for (const name of Object.keys(map).sort(byNameIgnoringCase)) {
    for (const target of map[name]!) {
      const names = listedBy.get(target);
      if (!names) listedBy.set(target, [name]);
      else if (names[names.length - 1] !== name) names.push(name);
    }
  }
  const dependents = (target: string) => listedBy.get(target) ?? [];
  const seen = new Set<string>([self]);
  const result: string[] = [];
  let level = [self];
  while (level.length > 0) {
    const next = new Set<string>();
    for (const item of level) {
      for (const name of dependents(item)) if (!seen.has(name)) next.add(name);
    }
    level = [...next];
    for (const name of level) seen.add(name);
    result.push(...level);
  }
  return result;
}

/** .NET's ordinal ignore-case order (upper-cased code units), as PowerShell sorts member names. */
function byNameIgnoringCase(a: string, b: string): number {
  const x = a.toUpperCase();
  const y = b.toUpperCase();
  return x < y ? -1 : x > y ? 1 : 0;
}
