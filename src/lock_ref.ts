/**
 * Lock ids, lock file names and lock refs.
 *
 * - lock id: the file name without its extension: `Host`, `Generic-<session>`, `File-<session>`;
 * - lock ref: `<host>/<lock id>[@<session>]`, e.g. `dc01/Host@3f2a…`.
 *
 * Sessions we make, and sessions callers choose, use letters, digits, `.`,
 * `_` and `-` only. Lock files written by others may carry anything in their
 * name (`Generic-a@b.lock`, `Generic-a\..\x.lock`); they count as locks, so
 * they must be nameable: a ref writes every other character of a session
 * as `%XX` (its UTF-8 bytes), and parsing a ref decodes it. Refs of sessions
 * made here never change.
 *
 * @module
 */

import { InputError } from "./errors.ts";
import { normalizeHost } from "./host.ts";
import type { LockType } from "./lock_file.ts";
import { firstLineOf, kindOf, showValue } from "./_text.ts";

/** A parsed lock ref. */
export interface LockRef {
  /** Host, lower-cased. */
  host: string;
  /** Lock id: `Host`, `Generic-<session>` or `File-<session>`. */
  lockId: string;
  /** Lock type from the id. */
  type: LockType;
  /** Session, when the ref or the id names it. */
  sessionId?: string;
}

const SESSION = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/**
 * Checks a session id. GUIDs are what we make; any short id of letters,
 * digits, `.`, `_` and `-` is accepted (it ends up in file names).
 *
 * @param sessionId the id
 * @returns the id
 * @throws {InputError} when it could not be part of a file name
 */
export function validateSessionId(sessionId: string): string {
  if (typeof sessionId !== "string") {
    throw new InputError(`Invalid session id: expected a string, got ${kindOf(sessionId)}`);
  }
  if (!SESSION.test(sessionId)) {
    throw new InputError(
      `Invalid session id ${showValue(sessionId)}: use letters, digits, ".", "_" and "-"`,
    );
  }
  return sessionId;
}

/**
 * The lock id of a lock of `type` taken by `sessionId`.
 *
 * @param type lock type
 * @param sessionId session
 * @returns `Host`, `Generic-<session>` or `File-<session>`
 */
export function lockIdOf(type: LockType, sessionId: string): string {
  return type === "Host" ? "Host" : `${type}-${sessionId}`;
}

/**
 * Parses a lock id.
 *
 * @param lockId e.g. `Generic-3f2a…`
 * @returns its type and the session it names, or undefined when it is not a lock id
 */
export function parseLockId(
  lockId: string,
): { type: LockType; sessionId?: string } | undefined {
  if (lockId === "Host") return { type: "Host" };
  const match = /^(Generic|File)-(.+)$/.exec(lockId);
  if (!match) return undefined;
  return { type: match[1] as LockType, sessionId: match[2]! };
}

/** Turns lock ids into file names and back, for a file-name template like `{0}.lock`. */
export class FileNames {
  readonly #prefix: string;
  readonly #suffix: string;
  /**
   * @param template the file-name template, with `{0}` once
   * @throws {InputError} when the template has no placeholder
   */
  constructor(template: string) {
    const at = template.indexOf("{0}");
    if (at < 0 || template.indexOf("{0}", at + 1) >= 0) {
      throw new InputError(
        `Invalid file-name template ${JSON.stringify(template)}: it needs "{0}" exactly once`,
      );
    }
    if (/[\\/]/.test(template)) {
      throw new InputError(
        `Invalid file-name template ${JSON.stringify(template)}: no path separators`,
      );
    }
    this.#prefix = template.slice(0, at);
    this.#suffix = template.slice(at + 3);
  }
  /** File name of a lock id. */
  fileName(lockId: string): string {
    return this.#prefix + lockId + this.#suffix;
  }
  /** Lock id of a file name, or undefined when the name is not a lock file. */
  lockId(fileName: string): string | undefined {
    if (
      !fileName.startsWith(this.#prefix) || !fileName.endsWith(this.#suffix)
    ) return undefined;
    const id = fileName.slice(
      this.#prefix.length,
      fileName.length - this.#suffix.length,
    );
    return parseLockId(id) ? id : undefined;
  }
  /** Lock id of a history entry (`Host.lock-<suffix>` is the Host lock). */
  historyLockId(fileName: string): string | undefined {
    const direct = this.lockId(fileName);
    if (direct) return direct;
    const host = this.fileName("Host");
    return fileName.startsWith(host + "-") ? "Host" : undefined;
  }
}

/**
 * Formats a lock ref.
 *
 * @param host host
 * @param lockId lock id
 * @param sessionId session, added for Host locks whose id does not name it
 * @returns `<host>/<lock id>[@<session>]`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatLockRef } from "@resource-locker/resource-locker";
 * assert.ok(formatLockRef("dc01", "Host", "s1") === "dc01/Host@s1");
 * assert.ok(formatLockRef("dc01", "Generic-s1", "s1") === "dc01/Generic-s1");
 * ```
 */
export function formatLockRef(
  host: string,
  lockId: string,
  sessionId?: string,
): string {
  if (lockId === "Host") {
    // A session read from a Host lock's content that no ref could carry
    // (huge, NUL) is left out: the ref still names the lock.
    const named = sessionId && sessionId.length <= 255 && !sessionId.includes("\0");
    return named ? `${host}/Host@${encodeSession(sessionId)}` : `${host}/Host`;
  }
  const parsed = parseLockId(lockId);
  if (parsed?.sessionId === undefined) return `${host}/${lockId}`;
  return `${host}/${parsed.type}-${encodeSession(parsed.sessionId)}`;
}

/** Characters a ref shows as they are; every other one is `%XX`. */
const PLAIN = /^[A-Za-z0-9_.-]$/;

function encodeSession(sessionId: string): string {
  if (SESSION.test(sessionId)) return sessionId;
  let out = "";
  for (const char of sessionId) {
    if (PLAIN.test(char)) {
      out += char;
      continue;
    }
    for (const byte of new TextEncoder().encode(char)) {
      out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    }
  }
  return out;
}

/** Decodes the session of a ref; undefined when its `%` escapes are not well-formed UTF-8. */
function decodeSession(text: string): string | undefined {
  if (!text.includes("%")) return text;
  if (/%(?![0-9A-Fa-f]{2})/.test(text)) return undefined;
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/**
 * Checks the session of a lock that exists (named in a ref or a lock object).
 * Rules as strict as for new sessions would leave files that count as locks
 * but that nobody could release. In a lock id it is part of a file name, so
 * it must stay one name: no `/`, no NUL; each store refuses what its system
 * cannot hold (`\` on Windows and SMB).
 */
function checkNamedSession(sessionId: string, inFileName: boolean): string {
  if (SESSION.test(sessionId)) return sessionId;
  const shown = JSON.stringify(sessionId.slice(0, 80));
  if (sessionId === "" || sessionId.length > 255 || sessionId.includes("\0")) {
    throw new InputError(`Invalid session id ${shown}: empty, too long or with a NUL`);
  }
  if (inFileName && sessionId.includes("/")) {
    throw new InputError(`Invalid session id ${shown}: "/" cannot be in a lock file name`);
  }
  return sessionId;
}

/**
 * Parses a lock ref.
 *
 * @param ref `<host>/<lock id>[@<session>]`
 * @returns the parsed ref
 * @throws {InputError} when it is not a ref
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseLockRef } from "@resource-locker/resource-locker";
 * const ref = parseLockRef("DC01/Host@s1");
 * assert.ok(ref.host === "dc01" && ref.type === "Host" && ref.sessionId === "s1");
 * ```
 */
export function parseLockRef(ref: string): LockRef {
  if (typeof ref !== "string") {
    throw new InputError(
      `Invalid lock ref: expected a string like "dc01/Host@<session>", got ${kindOf(ref)}`,
    );
  }
  const match = /^([^/\\@]+)\/([^/\\@]+)(?:@([^/\\@]+))?$/.exec(ref.trim());
  const bad = (why: string) => new InputError(`Invalid lock ref ${showValue(ref)}: ${why}`);
  if (!match) throw bad("expected <host>/<lock id>[@<session>], e.g. dc01/Host@<session>");
  const host = normalizeHost(match[1]!);
  const parsed = parseLockId(match[2]!);
  if (!parsed) {
    throw bad(`${showValue(match[2])} is not Host, Generic-<session> or File-<session>`);
  }
  const decode = (text: string, inFileName: boolean) => {
    const decoded = decodeSession(text);
    if (decoded === undefined) throw bad(`the session has a broken %XX escape`);
    try {
      return checkNamedSession(decoded, inFileName);
    } catch (error) {
      throw bad((error as Error).message);
    }
  };
  const named = parsed.sessionId === undefined ? undefined : decode(parsed.sessionId, true);
  const given = match[3] === undefined ? undefined : decode(match[3], false);
  if (named !== undefined && given !== undefined && named !== given) {
    throw bad("two different sessions");
  }
  const lockId = named === undefined ? "Host" : `${parsed.type}-${named}`;
  const result: LockRef = { host, lockId, type: parsed.type };
  const sessionId = named ?? given;
  if (sessionId !== undefined) result.sessionId = sessionId;
  return result;
}

/**
 * Checks a lock given as a ref string or as an object with `host`,
 * `lockId`, `type` and `sessionId` (a held lock, or one read back from JSON),
 * with the same rules as a ref typed on the command line: a valid host name,
 * a lock id naming its type and a valid session, a type and a session that
 * agree with the lock id. Anything else, of any type, is an InputError.
 *
 * @param value a ref string or a lock object
 * @returns the parsed, normalised ref
 * @throws {InputError} when it does not name a lock
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toLockRef } from "./lock_ref.ts";
 * assert.equal(toLockRef({ host: "DC01", lockId: "Generic-s1", type: "Generic", sessionId: "s1" }).host, "dc01");
 * assert.throws(() => toLockRef({ host: "../../x", lockId: "Host" }), /Invalid lock object/);
 * ```
 */
export function toLockRef(value: unknown): LockRef {
  if (typeof value === "string") return parseLockRef(value);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InputError(
      `Invalid lock: expected a lock object or a ref like "dc01/Host@<session>", got ${
        kindOf(value)
      }`,
    );
  }
  const bad = (why: string) => new InputError(`Invalid lock object: ${why}`);
  let fields: Record<string, unknown>;
  try {
    // Read once: a getter runs here, once, and a failing one is bad input.
    const { host, lockId, type, sessionId } = value as Record<string, unknown>;
    fields = { host, lockId, type, sessionId };
  } catch (error) {
    throw bad(`reading it failed: ${firstLineOf(error)}`);
  }
  const { host, lockId, type, sessionId } = fields;
  let normal: string;
  try {
    normal = normalizeHost(host as string);
  } catch (error) {
    throw bad((error as Error).message);
  }
  if (typeof lockId !== "string") {
    throw bad(`lockId: expected a string, got ${kindOf(lockId)}`);
  }
  const parsed = parseLockId(lockId);
  if (!parsed) {
    throw bad(
      `lockId ${
        JSON.stringify(lockId.slice(0, 80))
      } is not Host, Generic-<session> or File-<session>`,
    );
  }
  if (type !== undefined && type !== parsed.type) {
    throw bad(
      `type ${showValue(type)} does not match lockId ${JSON.stringify(lockId.slice(0, 80))}`,
    );
  }
  if (sessionId !== undefined && typeof sessionId !== "string") {
    throw bad(`sessionId: expected a string, got ${kindOf(sessionId)}`);
  }
  if (parsed.sessionId !== undefined && sessionId !== undefined && sessionId !== parsed.sessionId) {
    throw bad("sessionId does not match the session in lockId");
  }
  const session = parsed.sessionId ?? sessionId;
  const result: LockRef = { host: normal, lockId, type: parsed.type };
  if (session !== undefined) {
    try {
      result.sessionId = checkNamedSession(session, parsed.sessionId !== undefined);
    } catch (error) {
      throw bad((error as Error).message);
    }
  }
  return result;
}
