/**
 * Bearer tokens of `resource-locker serve`: who may take and release locks
 * through the server. Tokens are compared in constant time (SHA-256 digests
 * of equal length, `timingSafeEqual`), every configured token is compared
 * whatever matched, and a token is never returned, logged or shown: only its
 * name is.
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import { InputError } from "../errors.ts";
import { kindOf, registerSecret } from "../_text.ts";

/** A token allowed to write through the server, and the name History records for it. */
export interface ServeToken {
  /** Who holds it, recorded in History (`serve/<name>@<address>`): letters, digits, `.`, `_`, `-`. */
  name: string;
  /** The secret, at least 16 characters. Never printed. */
  token: string;
}

export { TOKEN_ENV } from "./token_env.ts";

/** Shortest token accepted: a guessable token would make the check pointless. */
export const MIN_TOKEN_CHARS = 16;

function digest(text: string): Uint8Array {
  return createHash("sha256").update(text, "utf8").digest();
}

/**
 * Checks tokens as a config or an option gives them; registers each as a
 * secret, so that no output ever shows it.
 *
 * @param value the list
 * @param source where it came from, for messages
 * @returns the tokens
 * @throws {InputError} naming the entry at fault (never its token)
 */
export function validateTokens(value: unknown, source: string): ServeToken[] {
  if (!Array.isArray(value)) {
    throw new InputError(
      `Invalid ${source}: expected an array of { name, token }, got ${kindOf(value)}`,
    );
  }
  const names = new Set<string>();
  return value.map((item: unknown, index) => {
    const at = `${source}[${index}]`;
    if (item === null || typeof item !== "object" || Array.isArray(item)) {
      throw new InputError(`Invalid ${at}: expected { name, token }, got ${kindOf(item)}`);
    }
    const { name, token } = item as Record<string, unknown>;
    if (typeof token === "string") registerSecret(token);
    for (const key of Object.keys(item)) {
      if (key !== "name" && key !== "token") {
        throw new InputError(`Invalid ${at}: unknown field ${JSON.stringify(key.slice(0, 40))}`);
      }
    }
    if (typeof name !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
      throw new InputError(
        `Invalid ${at}.name: expected 1 to 64 letters, digits, ".", "_" or "-"`,
      );
    }
    if (names.has(name)) throw new InputError(`Invalid ${at}.name: "${name}" is given twice`);
    names.add(name);
    if (typeof token !== "string" || token.length < MIN_TOKEN_CHARS || /\s/.test(token)) {
      throw new InputError(
        `Invalid ${at}.token: expected at least ${MIN_TOKEN_CHARS} characters without spaces`,
      );
    }
    return { name, token };
  });
}

/** The tokens a server accepts, kept as digests. */
export class TokenCheck {
  readonly #tokens: { name: string; digest: Uint8Array }[];

  constructor(tokens: readonly ServeToken[]) {
    this.#tokens = tokens.map(({ name, token }) => ({ name, digest: digest(token) }));
  }

  /** True when at least one token is configured (writes are possible at all). */
  get enabled(): boolean {
    return this.#tokens.length > 0;
  }

  /**
   * The name of the token an `Authorization: Bearer …` header carries, or
   * undefined when it carries none or a wrong one. Every token is compared,
   * in constant time each, whatever matched.
   */
  check(authorization: string | null): string | undefined {
    const match = /^Bearer +([^\s]+) *$/i.exec(authorization ?? "");
    if (!match) return undefined;
    const given = digest(match[1]!);
    let found: string | undefined;
    for (const { name, digest } of this.#tokens) {
      if (timingSafeEqual(given, digest) && found === undefined) found = name;
    }
    return found;
  }
}
