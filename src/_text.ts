/**
 * Text that reaches a terminal or a log: control characters shown instead of
 * sent, long values cut, secrets masked, and the wording the library's
 * messages and the command line's share (who holds a lock). Library code
 * builds messages; the command line passes everything it prints through
 * these, once, at its output (see `cli/io.ts`).
 *
 * @module
 */

import type { HolderInfo } from "./errors.ts";

/** Longest value shown in a message or a table cell, in characters. */
export const MAX_FIELD_CHARS = 200;

/**
 * Characters a terminal may act on, or that hide or reorder text: C0 and C1
 * controls, DEL, format characters (bidirectional overrides, zero-width
 * characters), line and paragraph separators, lone surrogates.
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;
const UNSAFE_KEEPING_NEWLINES = /(?!\n)[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;

function showChar(char: string): string {
  switch (char) {
    case "\n":
      return "\\n";
    case "\r":
      return "\\r";
    case "\t":
      return "\\t";
  }
  const code = char.codePointAt(0)!;
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
}

/**
 * Shows control and format characters as escapes (`\x1b`, `\n`, `\u{202e}`)
 * so that text from a store or a user cannot drive the terminal.
 *
 * @param text any text
 * @param keepNewlines leave `\n` as is (multi-line output whose lines were built from escaped parts)
 * @returns the text, safe to print
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { escapeControl } from "./_text.ts";
 * assert.equal(escapeControl("a\x1b]0;title\x07b"), "a\\x1b]0;title\\x07b");
 * assert.equal(escapeControl("x\u202ey"), "x\\u{202e}y");
 * ```
 */
export function escapeControl(text: string, keepNewlines = false): string {
  return text.replace(keepNewlines ? UNSAFE_KEEPING_NEWLINES : UNSAFE, showChar);
}

/**
 * Cuts text to `max` characters (code points), with an ellipsis and the
 * length when it was longer.
 *
 * @param text any text
 * @param max characters kept
 * @returns the text, at most `max` characters plus a short note
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { truncate } from "./_text.ts";
 * assert.equal(truncate("abcdef", 3), "abc… (6 characters)");
 * ```
 */
export function truncate(text: string, max: number = MAX_FIELD_CHARS): string {
  if (text.length <= max) return text;
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  return `${chars.slice(0, max).join("")}… (${chars.length} characters)`;
}

/**
 * One value from a store or a user, for a message or a table cell: cut to
 * {@linkcode MAX_FIELD_CHARS}, control characters shown.
 *
 * @param text the value
 * @returns safe text for one line
 */
export function showField(text: string): string {
  return escapeControl(truncate(text));
}

/**
 * The first line of a thrown value's message, as one safe field
 * ({@linkcode showField}): what a getter or proxy of the caller's threw.
 * Never throws (a message that is itself a throwing getter).
 *
 * @param error anything thrown
 * @returns one short line
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { firstLineOf } from "./_text.ts";
 * assert.equal(firstLineOf(new Error("a\nb")), "a");
 * ```
 */
export function firstLineOf(error: unknown): string {
  try {
    return showField(
      (error instanceof Error ? String(error.message) : String(error)).split("\n")[0]!,
    );
  } catch {
    return "(a value that cannot be shown)";
  }
}

/**
 * Describes a value for an error message without echoing more than a short,
 * safe form of it: strings quoted and cut, objects by their kind. Never
 * throws (BigInt, cycles, getters).
 *
 * @param value anything
 * @returns e.g. `"abc"`, `42`, `null`, `an object`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { showValue } from "./_text.ts";
 * assert.equal(showValue("5x"), '"5x"');
 * assert.equal(showValue(10n), "10n");
 * assert.equal(showValue([1]), "an array");
 * ```
 */
export function showValue(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(truncate(value, 80));
    case "number":
    case "boolean":
      return String(value);
    case "bigint":
      return `${value}n`;
    case "undefined":
      return "undefined";
    case "symbol":
      return "a symbol";
    case "function":
      return "a function";
  }
  if (value === null) return "null";
  return Array.isArray(value) ? "an array" : "an object";
}

/** The kind of a value, for messages that must not show it: `a string`, `a number`, `null`. */
export function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  const type = typeof value;
  return type === "undefined" ? "undefined" : `${/^[aeiou]/.test(type) ? "an" : "a"} ${type}`;
}

// ---------------------------------------------------------------------------
// Who holds a lock

/** What {@linkcode describeHolder} shows besides kind, caller and time. */
export interface DescribeHolderOptions {
  /** Show the description. @default true */
  description?: boolean;
  /** Show the session id. @default false */
  session?: boolean;
}

/**
 * Who holds a lock, for messages: kind, caller, description, session, since
 * when. Caller and description are cut to {@linkcode MAX_FIELD_CHARS}.
 *
 * @param holder the lock, as its file tells
 * @param options what to show besides kind, caller and time
 * @returns e.g. `Host lock held by "Invoke-Maintenance" ("patch") since 2026-01-02T03:04:05.000Z`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeHolder } from "./_text.ts";
 * assert.equal(
 *   describeHolder({ lockId: "Generic-s1", caller: "deploy", sessionId: "s1" }, { session: true }),
 *   'Generic lock held by "deploy" (session s1)',
 * );
 * assert.equal(describeHolder({ lockId: "Host" }), "Host lock held by an unknown caller");
 * ```
 */
export function describeHolder(holder: HolderInfo, options: DescribeHolderOptions = {}): string {
  if (holder.group !== undefined) return describeSlotHolder(holder);
  const kind = holder.lockId === "Host" ? "Host lock" : `${holder.lockId.split("-")[0]} lock`;
  // Every field comes from a lock file anyone may have written: cut and
  // escaped one by one, so a huge caller cannot push the rest out of sight.
  const who = holder.caller !== undefined ? `"${showField(holder.caller)}"` : "an unknown caller";
  const what = options.description !== false && holder.description !== undefined
    ? ` ("${showField(holder.description)}")`
    : "";
  const session = options.session && holder.sessionId !== undefined
    ? ` (session ${holder.sessionId})`
    : "";
  const since = holder.lockedAt ? ` since ${holder.lockedAt.toISOString()}` : "";
  return `${kind} held by ${who}${what}${session}${since}`;
}

/** A group's slot taken: the member it is for, who and since when. */
export function describeSlotHolder(holder: HolderInfo): string {
  const member = holder.member !== undefined ? showField(holder.member) : "an unknown host";
  const who = holder.caller !== undefined ? `"${showField(holder.caller)}"` : "an unknown caller";
  const since = holder.lockedAt ? ` since ${holder.lockedAt.toISOString()}` : "";
  return `${member} by ${who}${since}`;
}

/**
 * Describes a full maintenance group, for messages.
 *
 * @param group the group's name
 * @param max its slots
 * @param holders its slots taken by others
 * @param needs the members a lock asked slots for, when more than one
 * @returns e.g. `group "hv-a": 1 of 1 in maintenance: hv02 by "Invoke-Maintenance" since 2026-…`
 */
export function describeGroup(
  group: string,
  max: number,
  holders: readonly HolderInfo[],
  needs: readonly string[] = [],
): string {
  const shown = holders.slice(0, 3).map(describeSlotHolder).join("; ");
  const more = holders.length > 3 ? ` and ${holders.length - 3} more` : "";
  const asked = needs.length > 1 ? `; locking ${needs.join(", ")} needs ${needs.length} slots` : "";
  return `group "${group}": ${holders.length} of ${max} in maintenance${
    holders.length ? `: ${shown}${more}` : ""
  }${asked}`;
}

/**
 * Describes the locks in the way: the first `limit`, then how many more.
 *
 * @param holders locks
 * @param limit how many are described
 * @param options as for {@linkcode describeHolder}
 * @returns e.g. `Host lock held by "Invoke-Maintenance" since 2026-…`
 */
export function describeHolders(
  holders: readonly HolderInfo[],
  limit = 3,
  options: DescribeHolderOptions = {},
): string {
  if (holders.length === 0) return "no lock in the way any more";
  const first = holders.slice(0, limit).map((holder) => describeHolder(holder, options)).join(
    "; ",
  );
  return holders.length > limit ? `${first} and ${holders.length - limit} more` : first;
}

// ---------------------------------------------------------------------------
// Secrets

const MASK = "***";
/** Shortest registered secret masked by value: shorter ones would mask ordinary text. */
const MIN_SECRET_CHARS = 3;
const secrets = new Set<string>();

/**
 * Remembers a secret (a password from config, the environment or a
 * template) so that {@linkcode maskSecrets} hides it wherever it appears,
 * also JSON-escaped or URL-encoded.
 *
 * @param value the secret; empty or very short values are ignored
 */
export function registerSecret(value: string | undefined): void {
  if (typeof value !== "string" || value.length < MIN_SECRET_CHARS) return;
  secrets.add(value);
  secrets.add(JSON.stringify(value).slice(1, -1));
  secrets.add(encodeURIComponent(value));
}

/**
 * Remembers the passwords in the URLs of a text (`scheme://user:password@host`).
 *
 * @param text a template, endpoint or any text with URLs
 */
export function registerUrlSecrets(text: string): void {
  const authorities = [
    ...[...text.matchAll(URL_AUTHORITY)].map((match) => match[2]!),
    ...[...text.matchAll(BARE_USERINFO)].map((match) => `${match[2]}:${match[3]}@`),
  ];
  for (const authority of authorities) {
    const password = passwordOf(authority);
    if (password === undefined) continue;
    registerSecret(password);
    try {
      registerSecret(decodeURIComponent(password));
    } catch { /* not percent-encoded */ }
  }
}

// The patterns below run over whole documents (`--json`, the server's
// answers) that hold values from a store, up to a lock file's size (1 MiB):
// each must take time in proportion to the text. A pattern that may start at
// every character of a long run and scan to its end each time takes its
// square (a caller of 40000 letters took seconds, one of ";pass" repeated
// for ever): so starts are rare characters, and runs that a start may scan
// are bounded.

/**
 * `://` and the authority after it (up to the path, query or fragment):
 * whatever the scheme before it (a letter-led scheme was looked for from
 * every letter, scanning its whole run of letters each time).
 */
const URL_AUTHORITY = /(:\/\/)([^\s/?#"'<>\\]*)/g;
/** Longest user or password {@linkcode BARE_USERINFO} looks at. */
const MAX_USERINFO_CHARS = 256;
/**
 * `user:password@` without a scheme, as a careless hand writes it: an etcd
 * endpoint `svc:pw@etcd1:2379`, a template `//svc:pw@fs01/locks/{0}` or
 * `smb:/svc:pw@fs01/{0}`, `\\svc:pw@fs01\share`. It starts a value (after a
 * space, quote, comma, `=`, `(` or `[`) or follows a `/` or `\`; the password
 * runs to the last `@` before the host, as in a URL. User and password are
 * at most {@linkcode MAX_USERINFO_CHARS} characters each, and the user holds
 * none of the characters a value starts after.
 */
const BARE_USERINFO = new RegExp(
  `(^|[\\s"'(,=[/\\\\])([^\\s:/?#"'<>\\\\@,(=[]{1,${MAX_USERINFO_CHARS}}):` +
    `([^\\s/?#"'<>\\\\]{0,${MAX_USERINFO_CHARS}})@`,
  "g",
);
/**
 * A query or parameter name (after the last `?`, `&` or `;` before its `=`);
 * {@linkcode SECRET_NAME} says whether its value is secret.
 */
const PARAMETER_NAME = /[?&;]([^=&#\s"'\\?;]*)=/g;
/** A parameter's value, from where it starts. */
const PARAMETER_VALUE = /[^&#\s"'\\]*/y;
/** Parameter names whose values are secret. */
const SECRET_NAME = /pass|pwd|secret|token|key|auth|cred/i;

/** The text with the value of every parameter whose name says it is secret masked. */
function maskParameters(text: string): string {
  let masked = "";
  let from = 0;
  PARAMETER_NAME.lastIndex = 0;
  for (let match; (match = PARAMETER_NAME.exec(text)) !== null;) {
    if (!SECRET_NAME.test(match[1]!)) continue;
    const start = PARAMETER_NAME.lastIndex;
    PARAMETER_VALUE.lastIndex = start;
    PARAMETER_VALUE.exec(text);
    masked += `${text.slice(from, start)}${MASK}`;
    from = PARAMETER_VALUE.lastIndex;
    PARAMETER_NAME.lastIndex = from;
  }
  return masked + text.slice(from);
}

function passwordOf(authority: string): string | undefined {
  const at = authority.lastIndexOf("@");
  if (at < 0) return undefined;
  const userinfo = authority.slice(0, at);
  const colon = userinfo.indexOf(":");
  return colon < 0 ? undefined : userinfo.slice(colon + 1);
}

/**
 * Masks secrets in a text: the password of every URL (`smb://user:***@host`),
 * secret query values (`?password=***`), and every registered secret.
 *
 * @param text any text, JSON included
 * @returns the text with secrets replaced by `***`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { maskSecrets } from "./_text.ts";
 * assert.equal(maskSecrets("smb://svc:p@ss@fs01/{0}?password=x"), "smb://svc:***@fs01/{0}?password=***");
 * assert.equal(maskSecrets('endpoint "svc:pw@etcd1:2379"'), 'endpoint "svc:***@etcd1:2379"');
 * ```
 */
export function maskSecrets(text: string): string {
  let masked = text.replace(URL_AUTHORITY, (whole, scheme: string, authority: string) => {
    const password = passwordOf(authority);
    if (password === undefined) return whole;
    const user = authority.slice(0, authority.indexOf(":"));
    return `${scheme}${user}:${MASK}${authority.slice(authority.lastIndexOf("@"))}`;
  }).replace(BARE_USERINFO, (_whole, before: string, user: string) => `${before}${user}:${MASK}@`);
  masked = maskParameters(masked);
  // Longest first, so a secret that contains another is masked whole.
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (masked.includes(secret)) masked = masked.replaceAll(secret, MASK);
  }
  return masked;
}

/**
 * Makes a JSON document safe for a terminal without changing its values:
 * the characters `JSON.stringify` leaves raw (DEL, C1 controls, format
 * characters, line separators) are written as `\uXXXX` escapes, which JSON
 * reads back to the same strings.
 *
 * @param json a JSON text
 * @returns the same document, only ASCII-safe escapes added
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { escapeJson } from "./_text.ts";
 * const text = escapeJson(JSON.stringify({ caller: "a\u009bb\u202e" }));
 * assert.equal(text, '{"caller":"a\\u009bb\\u202e"}');
 * assert.equal(JSON.parse(text).caller, "a\u009bb\u202e");
 * ```
 */
export function escapeJson(json: string): string {
  return json.replace(
    /(?![\n ])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu,
    (char) =>
      Array.from(
        { length: char.length },
        (_, i) => `\\u${char.charCodeAt(i).toString(16).padStart(4, "0")}`,
      ).join(""),
  );
}
