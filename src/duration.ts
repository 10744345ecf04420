/**
 * Durations as users write them: seconds (fractions allowed) or a number
 * with a unit, `250ms`, `30s`, `5m`, `2h`.
 *
 * @module
 */

import { InputError } from "./errors.ts";

/** The longest duration accepted: 100 years. Anything longer is a typo, and would not fit a date. */
export const MAX_DURATION_MS = 100 * 365.25 * 24 * 3_600_000;

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a duration into milliseconds.
 *
 * @param value seconds as a number, or a string such as `"1.5"`, `"250ms"`, `"5m"`
 * @param what the setting's name, used in the error message
 * @param also a word the caller takes besides durations (`"forever"`), named in the error message
 * @returns milliseconds, never negative, at most {@linkcode MAX_DURATION_MS}
 * @throws {InputError} when the value is not a duration or longer than 100 years
 *
 * @example Durations
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDuration } from "@resource-locker/resource-locker";
 * assert.ok(parseDuration("250ms", "timeout") === 250);
 * assert.ok(parseDuration("2", "timeout") === 2000);
 * assert.ok(parseDuration(0.5, "timeout") === 500);
 * ```
 */
export function parseDuration(value: string | number, what: string, also?: string): number {
  const orAlso = also !== undefined ? `, or ${also}` : "";
  const checked = (ms: number) => {
    if (ms > MAX_DURATION_MS) {
      throw new InputError(
        `Invalid ${what} ${JSON.stringify(value)}: longer than 100 years`,
      );
    }
    return ms;
  };
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) {
      throw new InputError(`Invalid ${what} ${value}: expected seconds >= 0${orAlso}`);
    }
    return checked(Math.round(value * 1000));
  }
  const match = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$/.exec(
    String(value),
  );
  if (!match) {
    throw new InputError(
      `Invalid ${what} ${
        JSON.stringify(value)
      }: expected seconds or a number with ms, s, m or h${orAlso}`,
    );
  }
  return checked(Math.round(Number(match[1]) * UNITS[match[2] ?? "s"]!));
}

/**
 * Formats milliseconds for people: `250ms`, `12s`, `5m 3s`, `2h 1m`.
 *
 * @param ms milliseconds
 * @returns a short human-readable duration
 *
 * @example Formatting
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDuration } from "@resource-locker/resource-locker";
 * assert.ok(formatDuration(65_000) === "1m 5s");
 * ```
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m}m ${s % 60}s` : `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}
