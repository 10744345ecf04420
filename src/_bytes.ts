/**
 * Byte helpers shared by the stores, the HTTP client and the server.
 *
 * @module
 */

/**
 * The parts one after the other, in one array; the part itself when there
 * is only one (not copied).
 *
 * @param parts byte arrays in order
 * @returns their concatenation
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { concatBytes } from "./_bytes.ts";
 * assert.deepEqual(concatBytes([Uint8Array.of(1), Uint8Array.of(2, 3)]), Uint8Array.of(1, 2, 3));
 * ```
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
