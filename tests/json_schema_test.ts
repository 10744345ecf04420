/**
 * Every `--json` document the command line prints matches its JSON Schema
 * in `schemas/` (JSON Schema 2020-12, checked with Ajv): each command run for
 * real on a temporary local store, in success and failure cases, stdout
 * parsed as exactly one document. The schemas are closed, so a field added,
 * renamed or retyped in the output fails here until its schema (and the
 * README's `--json` section) say so; a command that gains `--json` without a
 * schema fails the coverage test.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Ajv2020, type ValidateFunction } from "npm:ajv@8.20.0/dist/2020.js";
import { REPO_ROOT, runCliInProcess } from "./_cli_helpers.ts";
import { spawnRun } from "./_run_helpers.ts";
import { closeStores, lockResource } from "../mod.ts";

const SCHEMA_DIR = join(REPO_ROOT, "schemas");

/** The document each command prints with --json (run has none: it refuses --json). */
const SCHEMA_OF_COMMAND: Readonly<Record<string, string>> = {
  lock: "lock",
  "lock-file": "lock",
  unlock: "unlock",
  test: "test",
  deps: "deps",
  id: "id",
  status: "status",
  history: "history",
  break: "break",
  run: "error",
  serve: "error",
  completions: "error",
};

async function loadSchemas(): Promise<Map<string, ValidateFunction>> {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  const names: string[] = [];
  for await (const entry of Deno.readDir(SCHEMA_DIR)) {
    if (!entry.name.endsWith(".schema.json")) continue;
    const schema = JSON.parse(await Deno.readTextFile(join(SCHEMA_DIR, entry.name)));
    assert.equal(schema.$id, entry.name, `${entry.name}: $id is its file name`);
    assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema", entry.name);
    ajv.addSchema(schema);
    names.push(entry.name.replace(/\.schema\.json$/, ""));
  }
  const validators = new Map<string, ValidateFunction>();
  for (const name of names) validators.set(name, ajv.getSchema(`${name}.schema.json`)!);
  return validators;
}

const VALIDATORS = await loadSchemas();

/** Checks a document against a schema; returns Ajv's errors as text, "" when valid. */
function problems(schema: string, document: unknown): string {
  const validate = VALIDATORS.get(schema);
  assert.ok(validate, `no schema ${schema}`);
  return validate(document) ? "" : JSON.stringify(validate.errors, null, 1);
}

/** A run's stdout: exactly one JSON document, valid against `schema`. */
function assertDocument(
  result: { code: number; stdout: string; stderr: string },
  schema: string,
): Record<string, unknown> {
  const context = `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
  let document: Record<string, unknown>;
  try {
    document = JSON.parse(result.stdout);
  } catch (error) {
    throw new assert.AssertionError({
      message: `stdout is not one JSON document (${error})\n${context}`,
    });
  }
  assert.equal(problems(schema, document), "", `${schema} schema\n${context}`);
  return document;
}

/** Runs the command line in-process on a store with `--json`. */
function json(store: string, ...args: string[]) {
  return runCliInProcess([...args, "--json", "--store", store]);
}

/** A temporary store with a dependency map (hv01 runs vm01 and dc01). */
async function withStore(
  fn: (t: { root: string; store: string; deps: string }) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "rl-json-" });
  const deps = join(root, "deps.json");
  await Deno.writeTextFile(deps, JSON.stringify({ hv01: ["vm01", "dc01"], dc01: ["dc02"] }));
  await Deno.mkdir(join(root, "locks"));
  try {
    await fn({ root, store: join(root, "locks", "{0}"), deps });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("every command's --json document has a schema, and every schema file is used", async () => {
  const help = await runCliInProcess(["--help"]);
  assert.equal(help.code, 0);
  const section = help.stdout.split(/\n\s*\n/).find((part) => part.startsWith("Commands:"));
  assert.ok(section, help.stdout);
  const commands = section.split("\n").slice(1).map((line) => line.trim().split(/\s+/)[0]!);
  assert.ok(commands.length >= 10, section);
  assert.deepEqual(commands.filter((c) => !Object.hasOwn(SCHEMA_OF_COMMAND, c)), []);
  const used = new Set([...Object.values(SCHEMA_OF_COMMAND), "error", "common"]);
  assert.deepEqual([...VALIDATORS.keys()].filter((name) => !used.has(name)).sort(), []);
});

Deno.test("lock, lock-file, status, test, id, deps, history, break and unlock print documents their schemas accept", async () => {
  await withStore(async ({ root, store, deps }) => {
    const map = ["--dependencies-file", deps];
    // lock with dependencies and a lease
    const lock = assertDocument(
      await json(store, "lock", "dc01", "--hard", "--caller", "json-test", "--ttl", "5m", ...map),
      "lock",
    );
    assert.equal(lock.command, "lock");
    assert.deepEqual((lock.refs as string[]).map((r) => r.split("/")[0]), ["hv01", "dc01"]);

    const file = await json(store, "lock-file", "/srv/share/report.txt", "--caller", "json-test");
    assert.equal(file.code, 0, file.stderr);
    assert.equal(assertDocument(file, "lock").command, "lock-file");

    // A lock file of an unknown writer, empty: its fields are null in status.
    await Deno.mkdir(join(root, "locks", "web01"));
    await Deno.writeFile(join(root, "locks", "web01", "Generic-planted-1.lock"), new Uint8Array());

    const status = await json(store, "status", "dc01", "hv01", "web01", "nohost");
    assert.equal(status.code, 0, status.stderr);
    const locks = assertDocument(status, "status").locks as Record<string, unknown>[];
    assert.ok(locks.some((l) => l.content === "empty" && l.caller === null), status.stdout);
    assert.ok(locks.some((l) => typeof l.expiresAt === "string" && l.holder !== null));

    const locked = await json(store, "test", "dc01");
    assert.equal(locked.code, 0);
    assert.equal(assertDocument(locked, "test").locked, true);
    const free = await json(store, "test", "nohost");
    assert.equal(free.code, 1);
    assert.equal(assertDocument(free, "test").locked, false);

    assert.equal(assertDocument(await json(store, "id", "dc01/Host@s-1"), "id").lockId, "Host");
    assert.deepEqual(
      assertDocument(await json(store, "deps", "vm01", ...map), "deps").dependencies,
      ["hv01"],
    );
    assert.deepEqual(
      assertDocument(await json(store, "deps", "hv01", ...map), "deps").dependencies,
      [],
    );
    const asFormat = await runCliInProcess(["deps", "dc01", "--format", "json", ...map]);
    assertDocument(asFormat, "deps");

    // break --force, then unlock of every ref: released, lost, already released, failed.
    const [hv01, dc01] = lock.refs as string[];
    const broken = await json(store, "break", hv01!, "--force", "--reason", "json test");
    assert.equal(broken.code, 0, broken.stderr);
    assert.equal((assertDocument(broken, "break").broken as { ref: string }).ref, hv01);

    assert.equal((await json(store, "lock", "app01", "--hard")).code, 0);
    // app01/Host names no session: refused without --force.
    const unlock = await json(store, "unlock", hv01!, dc01!, "app01/Host");
    assert.equal(unlock.code, 5, unlock.stderr); // the first failure: hv01 was lost
    const results = assertDocument(unlock, "unlock").results as { status: string }[];
    assert.deepEqual(results.map((r) => r.status), ["lost", "released", "failed"]);
    const again = await json(store, "unlock", dc01!);
    assert.equal(again.code, 0);
    assert.deepEqual(
      (assertDocument(again, "unlock").results as { status: string }[]).map((r) => r.status),
      ["already-released"],
    );

    const history = await json(store, "history", "hv01");
    assert.equal(history.code, 0, history.stderr);
    const entries = assertDocument(history, "history").entries as Record<string, unknown>[];
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.breakReason, "json test");
    assert.equal(
      assertDocument(await json(store, "history", "nohost"), "history").entries instanceof Array,
      true,
    );
  });
});

Deno.test("status --all, status --group, test --group and deps with groups print documents their schemas accept", async () => {
  await withStore(async ({ root, store }) => {
    const map = join(root, "groups.json");
    await Deno.writeTextFile(
      map,
      JSON.stringify({
        hv01: ["vm01"],
        "@groups": [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }],
      }),
    );
    const flags = ["--dependencies-file", map];
    assert.equal((await json(store, "lock", "vm01", "--hard", "--ttl", "5m", ...flags)).code, 0);
    // An empty lock file of a dead PowerShell writer: flagged stale once old enough.
    await Deno.mkdir(join(root, "locks", "web01"));
    const empty = join(root, "locks", "web01", "Generic-planted-1.lock");
    await Deno.writeFile(empty, new Uint8Array());
    const old = new Date(Date.now() - 3_600_000);
    await Deno.utime(empty, old, old);

    const all = assertDocument(await json(store, "status", "--all", ...flags), "status");
    assert.equal(all.all, true);
    const locks = all.locks as Record<string, unknown>[];
    assert.deepEqual(locks.map((l) => l.host).sort(), ["hv01", "vm01", "web01"]);
    assert.deepEqual(locks.find((l) => l.host === "web01")!.stale, ["empty"]);
    const groups = all.groups as Record<string, unknown>[];
    assert.deepEqual(groups.map((g) => [g.name, g.used, g.free]), [["hv-a", 1, 0]]);

    const group = assertDocument(
      await json(store, "status", "--group", "hv-a", ...flags),
      "status",
    );
    assert.equal((group.group as { slots: unknown[] }).slots.length, 1);

    const full = await json(store, "test", "--group", "hv-a", ...flags);
    assert.equal(full.code, 1);
    assert.equal(assertDocument(full, "test").free, false);

    const deps = assertDocument(await json(store, "deps", "hv01", ...flags), "deps");
    assert.deepEqual((deps.groups as { locked: string[] }[])[0]!.locked, ["hv01"]);

    // The check can fail: each shape is closed, and fields keep their types.
    const bad: [string, Record<string, unknown>, (d: Record<string, unknown>) => void][] = [
      ["status", all, (d) => (d.locks as Record<string, unknown>[])[0]!.stale = ["old"]],
      ["status", all, (d) => delete d.failures],
      ["status", group, (d) => (d.group as Record<string, unknown>).extra = 1],
      ["test", JSON.parse(full.stdout), (d) => d.host = "hv01"],
      ["deps", deps, (d) => delete (d.groups as Record<string, unknown>[])[0]!.locked],
    ];
    for (const [schema, good, change] of bad) {
      const copy = structuredClone(good);
      change(copy);
      assert.notEqual(problems(schema, copy), "", `${schema}: ${change}`);
    }
  });
});

Deno.test("failing commands print an error document its schema accepts, with the exit code they exit with", async () => {
  await withStore(async ({ store, deps }) => {
    const held = await json(store, "lock", "db01", "--hard");
    assert.equal(held.code, 0, held.stderr);
    const cases: [string[], number, string][] = [
      [["lock", "db01", "--retries", "1"], 3, "LOCK_BUSY"],
      [["break", (assertDocument(held, "lock").refs as string[])[0]!], 3, "LOCK_BUSY"],
      [["lock", "db01", "--no-such-flag"], 2, "BAD_INPUT"],
      [["no-such-command"], 2, "BAD_INPUT"],
      [["status", "../etc"], 2, "BAD_INPUT"],
      [["deps", "dc01", "--dependencies-file", `${deps}.missing`], 2, "BAD_INPUT"],
      [["run", "db02", "--json", "--store", store, "--", "true"], 2, "BAD_INPUT"],
      [["completions", "bash", "--json"], 2, "BAD_INPUT"],
    ];
    for (const [args, code, errorCode] of cases) {
      const result = args.includes("--") ? await runCliInProcess(args) : await json(store, ...args);
      assert.equal(result.code, code, `${args.join(" ")}: ${result.stderr}`);
      const error = assertDocument(result, "error").error as Record<string, unknown>;
      assert.equal(error.code, errorCode, args.join(" "));
      assert.equal(error.exitCode, code, args.join(" "));
    }
    const unreachable = await runCliInProcess([
      "status",
      "dc01",
      "--json",
      "--store",
      join(store, "..", "missing-root", "{0}"),
    ]);
    assert.equal(unreachable.code, 4, unreachable.stderr);
    assert.equal(
      (assertDocument(unreachable, "error").error as Record<string, unknown>).code,
      "STORE_UNREACHABLE",
    );
  });
});

Deno.test("the schemas reject documents that differ from the output: the check can fail", async () => {
  await withStore(async ({ store }) => {
    await json(store, "lock", "dc01", "--caller", "json-test");
    const good = JSON.parse((await json(store, "status", "dc01")).stdout);
    assert.equal(problems("status", good), "");
    type Lock = Record<string, unknown> & { holder: Record<string, unknown> };
    type StatusDocument = Record<string, unknown> & {
      hosts: [string, ...string[]];
      locks: [Lock, ...Lock[]];
    };
    const variants: [string, (d: StatusDocument) => void][] = [
      ["no version", (d) => delete d.version],
      ["version 2", (d) => d.version = 2],
      ["another command", (d) => d.command = "history"],
      ["an unknown top-level field", (d) => d.extra = true],
      ["an unknown lock type", (d) => d.locks[0].type = "Exclusive"],
      ["a lock field missing", (d) => delete d.locks[0].expired],
      ["a lock field added", (d) => d.locks[0].owner = "x"],
      ["a date not in ISO form", (d) => d.locks[0].lockedAt = "yesterday"],
      ["a number as string", (d) => d.locks[0].ageSeconds = "3"],
      ["an unknown content state", (d) => d.locks[0].content = "garbled"],
      ["a holder with an extra field", (d) => d.locks[0].holder.user = "root"],
      ["a ref without a lock id", (d) => d.locks[0].ref = "dc01"],
      ["upper-case host", (d) => d.hosts[0] = "DC01"],
    ];
    for (const [what, change] of variants) {
      const bad: StatusDocument = structuredClone(good);
      change(bad);
      assert.notEqual(problems("status", bad), "", `${what} should be rejected`);
    }
    assert.notEqual(
      problems("error", { version: 1, error: { code: "OOPS", message: "x", exitCode: 2 } }),
      "",
    );
    assert.notEqual(
      problems("unlock", {
        version: 1,
        command: "unlock",
        results: [{ ref: "a/Host", status: "lost" }],
      }),
      "",
      "lost without brokenBy",
    );
    assert.notEqual(
      problems("test", { version: 1, command: "test", host: "dc01", locked: "yes" }),
      "",
    );
  });
});

Deno.test("the README's example document matches its schema", async () => {
  const readme = await Deno.readTextFile(join(REPO_ROOT, "README.md"));
  const start = readme.indexOf("\n## JSON output\n");
  assert.ok(start >= 0);
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  const examples = [...section.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1]!));
  assert.ok(examples.length >= 1, "the section shows a document");
  for (const example of examples) {
    assert.equal(problems(example.command ?? "error", example), "", JSON.stringify(example));
  }
});

Deno.test({
  name: "lock --json ended by a signal while it waits prints an INTERRUPTED error document",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withStore(async ({ store }) => {
      const holder = await lockResource("hv01", { store, type: "Host", dependencies: {} });
      await using waiter = await spawnRun(
        ["lock", "hv01", "--no-dependencies", "--wait", "60s", "--json"],
        { env: { RESOURCE_LOCKER_STORE: store } },
      );
      await waiter.stderr.line(/Waiting for/);
      waiter.process.kill("SIGTERM");
      const ended = await waiter.end(15_000);
      const result = { ...ended, stdout: await waiter.stdout!.done };
      const document = assertDocument(result, "error");
      assert.deepEqual(document.error, {
        code: "INTERRUPTED",
        message: "Interrupted by SIGTERM while waiting for the lock: nothing is locked",
        exitCode: 143,
      });
      assert.equal(result.code, 143);
      await holder.release();
      await closeStores();
    });
  },
});
