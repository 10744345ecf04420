/**
 * The lock-file format, compatible with the PowerShell module ResourceLocker
 * both ways.
 *
 * PowerShell writes `Caller`, `Description` (each only when given) and
 * `LockedAt`, and on unlock adds `UnlockedAt`; times are .NET ticks of the
 * writer's local clock. We write those and our own unambiguous fields. We
 * read every encoding PowerShell produces (ANSI code page, UTF-8 with or
 * without BOM, UTF-16 LE/BE with BOM) and the two intermediate states of its
 * two-step write (an empty file, a file holding only the caller name).
 *
 * @module
 */

/** Lock types: `Host` is exclusive, `Generic` and `File` are shared. */
export type LockType = "Host" | "Generic" | "File";

/** The lock types, in the original's order. */
export const LOCK_TYPES: readonly LockType[] = ["Host", "Generic", "File"];

/** .NET ticks at the Unix epoch. */
const EPOCH_TICKS = 621_355_968_000_000_000n;

/**
 * What a lock file's content tells: `ok` parsed, `empty` file, `partial`
 * (only the caller name: the original's first write step), `unreadable`.
 */
export type ContentState = "ok" | "empty" | "partial" | "unreadable";

/** A lock file's content, decoded. Unknown fields are kept in `fields`. */
export interface LockContent {
  /** How much of the content could be read. */
  state: ContentState;
  /** All fields as read, big integers as `bigint`, so a rewrite keeps them exactly. */
  fields: Record<string, unknown>;
  /** Caller name, when known. */
  caller?: string;
  /** Description, when known. */
  description?: string;
  /** When the lock was taken (from `LockedAtUtc`, else from `LockedAt` ticks read as local time). */
  lockedAt?: Date;
  /** Session id, when written by us. */
  sessionId?: string;
  /** Lease expiry, when the lock has one. */
  expiresAt?: Date;
}

/**
 * Converts epoch milliseconds to .NET ticks of the local clock, as
 * PowerShell's `(Get-Date).Ticks`.
 *
 * @param epochMs milliseconds since the Unix epoch
 * @param utcOffsetMinutes local offset from UTC in minutes
 * @returns ticks
 *
 * @example Ticks of the Unix epoch in UTC
 * ```ts
 * import assert from "node:assert/strict";
 * import { toLocalTicks } from "./lock_file.ts";
 * assert.ok(toLocalTicks(0, 0) === 621355968000000000n);
 * ```
 */
export function toLocalTicks(
  epochMs: number,
  utcOffsetMinutes: number,
): bigint {
  const localMs = Math.round(epochMs) + utcOffsetMinutes * 60_000;
  return EPOCH_TICKS + BigInt(localMs) * 10_000n;
}

/**
 * Converts .NET ticks read as local time to epoch milliseconds.
 *
 * @param ticks local-clock ticks
 * @param utcOffsetMinutes the local offset to assume
 * @returns milliseconds since the Unix epoch
 */
export function fromLocalTicks(
  ticks: bigint,
  utcOffsetMinutes: number,
): number {
  return Number((ticks - EPOCH_TICKS) / 10_000n) - utcOffsetMinutes * 60_000;
}

/** Decodes bytes the way PowerShell may have written them. */
export function decodeText(bytes: Uint8Array): string {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    return new TextDecoder("utf-8").decode(bytes.subarray(3));
  }
  if (bytes[0] === 0xff && bytes[1] === 0xfe) {
    return new TextDecoder("utf-16le").decode(bytes.subarray(2));
  }
  if (bytes[0] === 0xfe && bytes[1] === 0xff) {
    return new TextDecoder("utf-16be").decode(bytes.subarray(2));
  }
  if (bytes.length >= 2 && bytes[1] === 0 && bytes[0] !== 0) {
    return new TextDecoder("utf-16le").decode(bytes);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    // Windows PowerShell 5.1 writes with the ANSI code page.
    return new TextDecoder("windows-1252").decode(bytes);
  }
}

function parseJson(text: string): unknown {
  return JSON.parse(
    text,
    (_key, value, context?: { source?: string }) =>
      typeof value === "number" && !Number.isSafeInteger(value) &&
        context?.source !== undefined && /^-?\d+$/.test(context.source)
        ? BigInt(context.source)
        : value,
  );
}

function toDate(value: unknown): Date | undefined {
  if (typeof value !== "string") return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function toTicks(value: unknown): bigint | undefined {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isFinite(value)) {
    return BigInt(Math.trunc(value));
  }
  if (typeof value === "string" && /^\d+$/.test(value)) return BigInt(value);
  return undefined;
}

/**
 * The text without the NULs that end it (a file padded by a crashed write).
 * Not `/\0+$/`: from every NUL of a run that does not end the text it scans
 * the run again, which made a planted lock file of NULs and one letter take
 * half an hour to read (1 MiB; every command reading it hung).
 */
function withoutTrailingNuls(text: string): string {
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) === 0) end--;
  return end === text.length ? text : text.slice(0, end);
}

/**
 * Reads a lock file's content. Never throws: content that cannot be read
 * yields state `empty`, `partial` or `unreadable`, because a lock file counts
 * by its name alone.
 *
 * @param bytes the file's bytes
 * @param utcOffsetMinutes offset used to read `LockedAt` ticks when `LockedAtUtc` is absent
 * @returns the decoded content
 *
 * @example A file written by Windows PowerShell 5.1
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeLockContent } from "./lock_file.ts";
 * const bytes = new TextEncoder().encode('{\r\n    "Caller":  "Invoke-Maintenance",\r\n    "LockedAt":  639000000000000000\r\n}\r\n');
 * const content = decodeLockContent(bytes, 0);
 * assert.ok(content.caller === "Invoke-Maintenance");
 * ```
 */
export function decodeLockContent(
  bytes: Uint8Array,
  utcOffsetMinutes: number,
): LockContent {
  const text = withoutTrailingNuls(decodeText(bytes).replace(/^\uFEFF/, "")).trim();
  if (text === "") return { state: "empty", fields: {} };
  let parsed: unknown;
  try {
    parsed = parseJson(text);
  } catch {
    // The original's first write step leaves only the caller name.
    return !text.includes("\n") && !text.startsWith("{")
      ? { state: "partial", fields: {}, caller: text }
      : { state: "unreadable", fields: {} };
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return typeof parsed === "string"
      ? { state: "partial", fields: {}, caller: parsed }
      : { state: "unreadable", fields: {} };
  }
  const fields = parsed as Record<string, unknown>;
  const content: LockContent = { state: "ok", fields };
  if (typeof fields.Caller === "string") content.caller = fields.Caller;
  if (typeof fields.Description === "string") {
    content.description = fields.Description;
  }
  if (typeof fields.SessionId === "string") {
    content.sessionId = fields.SessionId;
  }
  const lockedAtUtc = toDate(fields.LockedAtUtc);
  const ticks = toTicks(fields.LockedAt);
  if (lockedAtUtc) content.lockedAt = lockedAtUtc;
  else if (ticks !== undefined) {
    content.lockedAt = new Date(fromLocalTicks(ticks, utcOffsetMinutes));
  }
  const expiresAt = toDate(fields.ExpiresAtUtc);
  if (expiresAt) content.expiresAt = expiresAt;
  return content;
}

/** `JSON.rawJSON` (ES2025), not yet in TypeScript's lib. */
const rawJson = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

/**
 * Serialises lock fields as PowerShell-readable JSON: pure ASCII (non-ASCII
 * characters escaped, so every PowerShell version reads it whatever encoding
 * it assumes), CRLF line ends, big integers (ticks) written exactly.
 *
 * @param fields the fields to write; `bigint` values are written as integers
 * @returns the bytes of the file
 *
 * @example Ticks are written exactly
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeLockContent } from "./lock_file.ts";
 * const text = new TextDecoder().decode(encodeLockContent({ LockedAt: 639000000000000001n }));
 * assert.ok(text.includes("639000000000000001"));
 * ```
 */
export function encodeLockContent(fields: Record<string, unknown>): Uint8Array {
  const json = JSON.stringify(
    fields,
    (_key, value) => typeof value === "bigint" ? rawJson(value.toString()) : value,
    2,
  ).replace(
    /[\u007f-\uffff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
  );
  return new TextEncoder().encode(json.replace(/\n/g, "\r\n") + "\r\n");
}
