/**
 * The few assertions the tests need, over `node:assert/strict` (the
 * standard library on JSR is out of reach of our build machines).
 *
 * @module
 */

import assert from "node:assert/strict";

/** Deep equality. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

/** Truthiness. */
export function assertOk(value: unknown, message?: string): asserts value {
  assert.ok(value, message);
}

/** Substring. */
export function assertStringIncludes(actual: string, expected: string, message?: string): void {
  assert.ok(
    actual.includes(expected),
    message ?? `expected ${JSON.stringify(actual)} to include ${JSON.stringify(expected)}`,
  );
}

/** Throws an instance of `type`; returns the error. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  type: new (...args: any[]) => E,
): E {
  try {
    fn();
  } catch (error) {
    assert.ok(
      error instanceof type,
      `expected ${type.name}, got ${(error as Error)?.name}: ${(error as Error)?.message}`,
    );
    return error;
  }
  throw new assert.AssertionError({ message: `expected ${type.name} to be thrown` });
}

/** Rejects with an instance of `type` (whose message includes `includes`, when given); returns the error. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  type: new (...args: any[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (error) {
    assert.ok(
      error instanceof type,
      `expected ${type.name}, got ${(error as Error)?.name}: ${(error as Error)?.message}`,
    );
    if (includes !== undefined) assertStringIncludes(error.message, includes);
    return error;
  }
  throw new assert.AssertionError({ message: `expected ${type.name} to be rejected` });
}

/**
 * A character that must never reach a terminal raw: C0 and C1 controls but
 * the newline, DEL, zero-width and bidirectional marks.
 */
// deno-lint-ignore no-control-regex
export const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]/;

/** Text that carries no raw control character ({@linkcode RAW_CONTROL}). */
export function assertNoRawControl(text: string, what = "text"): void {
  assert.doesNotMatch(
    text,
    RAW_CONTROL,
    `${what}: a raw control character in ${JSON.stringify(text)}`,
  );
}
