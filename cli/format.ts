/**
 * How the commands show what the library returns: tables of values from
 * the store, lock fields for `--json`, operands counted.
 *
 * @module
 */

import { formatDuration } from "../src/duration.ts";
import { showField } from "../src/_text.ts";
import { UsageError } from "./errors.ts";

/** A table of values from the store: each cell cut and escaped before the columns are measured. */
export function table(cells: string[][]): string {
  const rows = cells.map((row) => row.map(showField));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd())
    .join("\n");
}

/** A lock as `--json` shows it (one builder for the command line and the server). */
export { lockJson } from "../src/documents.ts";

/** How long ago, or `?`. */
export function age(date: Date | undefined, now: number): string {
  return date ? formatDuration(now - date.getTime()) : "?";
}

/** The one operand of a command that takes exactly one. */
export function oneOperand(operands: string[], what: string, command: string): string {
  if (operands.length !== 1) {
    throw new UsageError(
      operands.length === 0
        ? `Missing ${what}: resource-locker ${command} <${what}>`
        : `Too many arguments: ${command} takes one ${what}, got ${operands.length}`,
    );
  }
  return operands[0]!;
}
