/**
 * Lock refs name every lock that counts, and messages show a hostile lock
 * file safely (issue 10). A lock file written by someone else may carry any
 * characters in its session, and a ref must still name it so it can be
 * released.
 *
 * @module
 */

import { assertEquals, assertOk, assertStringIncludes, assertThrows } from "./_assert.ts";
import { tempStore } from "./_helpers.ts";
import { LockBusyError, lockResource } from "../mod.ts";
import { InputError } from "../src/errors.ts";
import { formatLockRef, parseLockRef, toLockRef } from "../src/lock_ref.ts";

Deno.test("refs of sessions made here are unchanged; others are written %XX and read back", () => {
  const cases: [string, string, string | undefined, string][] = [
    ["Generic-3f2a-1", "3f2a-1", undefined, "hv01/Generic-3f2a-1"],
    ["Generic-a@b", "a@b", undefined, "hv01/Generic-a%40b"],
    ["File-a\\..\\..\\x", "a\\..\\..\\x", undefined, "hv01/File-a%5C..%5C..%5Cx"],
    ["Generic-a b%", "a b%", undefined, "hv01/Generic-a%20b%25"],
    ["Generic-\x1b[31mred", "\x1b[31mred", undefined, "hv01/Generic-%1B%5B31mred"],
    ["Generic-é", "é", undefined, "hv01/Generic-%C3%A9"],
    ["Generic-.hidden", ".hidden", undefined, "hv01/Generic-.hidden"],
    ["Host", "x/y@z", "x/y@z", "hv01/Host@x%2Fy%40z"],
  ];
  for (const [lockId, session, given, ref] of cases) {
    assertEquals(formatLockRef("hv01", lockId, given), ref);
    const parsed = parseLockRef(ref);
    assertEquals(parsed.lockId, lockId, ref);
    assertEquals(parsed.sessionId, session, ref);
    assertEquals(formatLockRef(parsed.host, parsed.lockId, parsed.sessionId), ref, "round trip");
  }
});

Deno.test("a ref whose session would leave the host's folder or is malformed is an InputError", () => {
  for (
    const ref of [
      "hv01/Generic-a%2F..%2F..%2Fx", // "/" in a file name
      "hv01/Generic-a%00", // NUL
      "hv01/Generic-%zz", // broken escape
      "hv01/Generic-%C3", // cut UTF-8
      "hv01/Generic-a%", // escape cut short
      "hv01/Generic-a@b", // raw "@": two sessions
    ]
  ) {
    assertThrows(() => parseLockRef(ref), InputError);
  }
});

Deno.test("lock objects carry raw lock ids, checked by the same rules as refs", () => {
  assertEquals(
    toLockRef({ host: "HV01", lockId: "Generic-a@b", type: "Generic" }),
    { host: "hv01", lockId: "Generic-a@b", type: "Generic", sessionId: "a@b" },
  );
  for (
    const lockId of ["Generic-a/../x", "File-a\0", "Generic-" + "x".repeat(300)]
  ) {
    assertStringIncludes(
      assertThrows(() => toLockRef({ host: "hv01", lockId }), InputError).message,
      "Invalid lock object",
    );
  }
});

Deno.test("a Host lock's session that no ref could carry is left out of its ref", () => {
  assertEquals(formatLockRef("hv01", "Host", "x".repeat(256)), "hv01/Host");
  assertEquals(formatLockRef("hv01", "Host", "a\0b"), "hv01/Host");
  assertEquals(formatLockRef("hv01", "Host", "x".repeat(255)), `hv01/Host@${"x".repeat(255)}`);
});

Deno.test("a busy host's message cuts and escapes each field of a hostile lock file", async () => {
  await using t = await tempStore();
  await Deno.mkdir(`${t.root}/hv01`);
  const caller = "\x1b]0;pwned\x07" + "c".repeat(100_000);
  await Deno.writeTextFile(
    `${t.root}/hv01/Host.lock`,
    JSON.stringify({ Caller: caller, Description: "d".repeat(100_000) }),
  );
  const error = await lockResource("hv01", {
    store: t.store,
    dependencies: {},
    timeout: 0,
    retries: 1,
  })
    .then(() => undefined, (e) => e as Error);
  assertOk(error instanceof LockBusyError, String(error));
  assertOk(error.message.length < 1_000, `message of ${error.message.length} characters`);
  assertOk(
    ![...error.message].some((c) => c.charCodeAt(0) < 0x20),
    JSON.stringify(error.message.slice(0, 120)),
  );
  assertStringIncludes(error.message, "characters)");
});

// Mutants found by `deno task mutate` (issue 18): each test names the one it kills.

// Mutant: formatLockRef() without its check that the id names a session (`parsed?.sessionId`).
Deno.test("a ref of an id that is no lock id is written as it is", () => {
  assertEquals(formatLockRef("hv01", "Other"), "hv01/Other");
  assertEquals(formatLockRef("hv01", "Generic-"), "hv01/Generic-");
});

// Mutants: checkNamedSession() quotes the whole session, takes "" or exactly 255 characters
// wrongly, or forbids "/" in a Host lock's session (which is in no file name).
Deno.test("a named session: 1 to 255 characters, quoted at most 80 in errors, '/' only outside file names", () => {
  const lock = (lockId: string, sessionId?: string) =>
    toLockRef({ host: "hv01", lockId, ...(sessionId !== undefined ? { sessionId } : {}) });
  assertEquals(lock("Generic-" + "é".repeat(255)).sessionId, "é".repeat(255));
  const long = assertThrows(() => lock("Generic-" + "é".repeat(256)), InputError);
  assertStringIncludes(long.message, `"${"é".repeat(80)}"`);
  assertOk(!long.message.includes("é".repeat(81)), long.message);
  assertThrows(() => lock("Host", ""), InputError);
  assertEquals(lock("Host", "a/b").sessionId, "a/b");
  assertThrows(() => lock("Generic-a/b"), InputError);
  assertEquals(parseLockRef("hv01/Host@a%2Fb").sessionId, "a/b");
});
