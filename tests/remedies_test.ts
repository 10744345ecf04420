/**
 * The library says what is wrong in its own terms and names the option that
 * gets past it (`remedies`); only the command line speaks of flags, which it
 * adds from those remedies.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  breakResourceLock,
  InputError,
  LockBusyError,
  lockResource,
  ResourceLockerError,
  unlockResource,
} from "../mod.ts";
import { tempStore } from "./_helpers.ts";
import { runCli, runCliInProcess } from "./_cli_helpers.ts";

/** What a library error must look like: no command-line flag, the remedy named as an option. */
function assertLibraryTerms(error: unknown, remedy: string, optionText: RegExp): void {
  assert.ok(error instanceof ResourceLockerError, String(error));
  assert.doesNotMatch(error.message, /(^|\s|\()--[a-z]/, error.message);
  assert.doesNotMatch(error.message, /resource-locker /, error.message);
  assert.match(error.message, optionText);
  assert.deepEqual(error.remedies, [remedy]);
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected a rejection");
}

Deno.test("unlockResource() of a ref without its session names the force option, not a flag", async () => {
  await using t = await tempStore();
  const lock = await lockResource("dc01", { type: "Host", store: t.store, dependencies: {} });
  const error = await caught(unlockResource("dc01/Host", { store: t.store }));
  assert.ok(error instanceof InputError);
  assertLibraryTerms(error, "force", /the force option releases it/);
  assert.deepEqual(await t.files("dc01"), ["Host.lock"]);
  await lock.release();
});

Deno.test("breakResourceLock() of a live lock names the force option, not a flag", async () => {
  await using t = await tempStore();
  const lock = await lockResource("dc01", { type: "Host", store: t.store, dependencies: {} });
  const error = await caught(breakResourceLock(lock.refs[0]!, { store: t.store }));
  assert.ok(error instanceof LockBusyError);
  assertLibraryTerms(error, "force", /the force option breaks it/);
  await lock.release();
});

Deno.test("a missing dependency map names the dependenciesFile setting or option, not a flag", async () => {
  await using t = await tempStore();
  const missing = join(t.root, "missing.json");
  const error = await caught(
    lockResource("dc01", { store: t.store, dependenciesFile: missing }),
  );
  assert.ok(error instanceof InputError);
  assertLibraryTerms(error, "dependenciesFile", /dependenciesFile setting or option/);
  assert.ok(error.message.includes(missing));
});

Deno.test("the command line adds the flag for each remedy the library names", async () => {
  await using t = await tempStore();
  const lock = await lockResource("dc01", { type: "Host", store: t.store, dependencies: {} });
  const unlock = await runCliInProcess(["unlock", "dc01/Host", "--store", t.store]);
  assert.equal(unlock.code, 2, unlock.stderr);
  assert.match(unlock.stderr, /^Error: .*the force option releases it anyway \(--force\)\n$/);

  const broken = await runCliInProcess(["break", lock.refs[0]!, "--store", t.store]);
  assert.equal(broken.code, 3, broken.stderr);
  assert.match(broken.stderr, /^Error: .*the force option breaks it anyway \(--force\)\n$/);

  // An error without a remedy gets no flag advice.
  const bad = await runCliInProcess(["status", "../x", "--store", t.store]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.doesNotMatch(bad.stderr, /\(--/);
  await lock.release();
});

Deno.test("the default store under a relative XDG_STATE_HOME: the library names the store option, the command line --store", async () => {
  const result = await runCli(["status", "dc01"], {
    env: { XDG_STATE_HOME: "relative/state", HOME: "/nonexistent-home" },
  });
  assert.equal(result.code, 2, result.stderr);
  assert.match(
    result.stderr,
    /^Error: Cannot use the default store: XDG_STATE_HOME "relative\/state" is not an absolute path; .*the store option \(--store\)\n$/,
  );
});
