/**
 * The command line, spawned as `deno run -A cli.ts …` with `NO_COLOR=1`, a
 * temporary local store and a temporary dependency map: exit codes, stdout
 * and stderr of every command (SPEC §9) and its handling of bad input and
 * faults (SPEC §11).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type CliOptions,
  type CliResult,
  lines,
  listNames,
  parseJsonExact,
  runCli,
  snapshotTree,
} from "./_cli_helpers.ts";

const GUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const MAP = {
  hv01: ["dc01", "vmm01"],
  dc01: ["dc02"],
  dc02: ["dc01"],
};

interface Sandbox {
  /** The temp folder holding everything. */
  tmp: string;
  /** The store root: host folders are `<root>/<host>`. */
  root: string;
  /** The folder template, `<root>/{0}`. */
  store: string;
  /** The dependency map file (`{}` unless a map was given). */
  deps: string;
  /** Runs the command line against this sandbox. */
  cli(args: string[], options?: CliOptions): Promise<CliResult>;
}

async function withSandbox(
  fn: (box: Sandbox) => Promise<void>,
  map?: unknown,
): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "rl-cli-" });
  try {
    const root = join(tmp, "store");
    await Deno.mkdir(root);
    const deps = join(tmp, "deps.json");
    // RESOURCE_LOCKER_DEPENDENCIES names it, so it must exist: {} when no map is given.
    await Deno.writeTextFile(
      deps,
      map === undefined ? "{}" : typeof map === "string" ? map : JSON.stringify(map),
    );
    const store = join(root, "{0}");
    await fn({
      tmp,
      root,
      store,
      deps,
      cli: (args, options = {}) =>
        runCli(args, {
          store,
          dependencies: deps,
          ...options,
          env: { XDG_STATE_HOME: join(tmp, "state"), ...options.env },
        }),
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** Exit code, nothing on stdout, exactly one stderr line starting "Error: ", no stack trace. */
function assertOneLineError(
  result: CliResult,
  code: number,
  ...mentions: string[]
): string {
  const context = `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
  assert.equal(result.code, code, context);
  assert.equal(result.stdout, "", context);
  assert.ok(result.stderr.endsWith("\n"), context);
  const errorLines = result.stderr.slice(0, -1).split("\n");
  assert.equal(errorLines.length, 1, context);
  const line = errorLines[0]!;
  assert.match(line, /^Error: \S/, context);
  assert.doesNotMatch(result.stderr, /\bat .*:\d+:\d+|Stack|Uncaught/, context);
  for (const mention of mentions) {
    assert.ok(line.includes(mention), `${line} should mention ${mention}`);
  }
  return line;
}

/** Lock files (not History) of every host folder under the store root. */
async function lockFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  for (const host of await listNames(root)) {
    for (const name of await listNames(join(root, host))) {
      if (name !== "History") found.push(`${host}/${name}`);
    }
  }
  return found.sort();
}

function session(ref: string): string {
  const match = new RegExp(`^[a-z0-9.-]+/(?:Host@|Generic-|File-)(${GUID})$`).exec(ref);
  assert.ok(match, `not a full ref: ${ref}`);
  return match[1]!;
}

// ---------------------------------------------------------------------------
// lock and unlock

Deno.test("lock prints one full ref per line, the dependencies' first, all of one session", async () => {
  await withSandbox(async ({ cli, root }) => {
    const result = await cli(["lock", "DC01", "--hard", "--caller", "patch"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, "");
    const refs = lines(result.stdout);
    assert.ok(result.stdout.endsWith("\n"));
    const id = session(refs[0]!);
    assert.deepEqual(refs, [`dc02/Host@${id}`, `hv01/Host@${id}`, `dc01/Host@${id}`]);
    assert.deepEqual(await lockFiles(root), ["dc01/Host.lock", "dc02/Host.lock", "hv01/Host.lock"]);

    const shared = await cli([
      "lock",
      "web01",
      "--no-dependencies",
      "--session-id",
      "my-session-1",
    ]);
    assert.equal(shared.code, 0, shared.stderr);
    assert.equal(shared.stdout, "web01/Generic-my-session-1\n");
  }, MAP);
});

Deno.test("lock-file locks the server of a UNC path with a File lock whose description is the path", async () => {
  await withSandbox(async ({ cli, root }) => {
    const path = "\\\\fs01\\images\\win.wim";
    const result = await cli(["lock-file", path, "--caller", "image-release"]);
    assert.equal(result.code, 0, result.stderr);
    const [ref] = lines(result.stdout);
    const id = session(ref!);
    assert.equal(ref, `fs01/File-${id}`);
    const fields = parseJsonExact(
      await Deno.readTextFile(join(root, "fs01", `File-${id}.lock`)),
    ) as Record<string, unknown>;
    assert.equal(fields.Description, path);
    assert.equal(fields.Type, "File");
    assert.equal(fields.Caller, "image-release");
  });
});

Deno.test("lock … | unlock - releases every lock of the session into History", async () => {
  await withSandbox(async ({ cli, root }) => {
    const locked = await cli(["lock", "dc01", "--hard"]);
    assert.equal(locked.code, 0, locked.stderr);
    const refs = lines(locked.stdout);
    assert.equal(refs.length, 3);

    const released = await cli(["unlock", "-"], { stdin: locked.stdout });
    assert.equal(released.code, 0, released.stderr);
    assert.equal(released.stdout, "");
    assert.deepEqual(lines(released.stderr), refs.map((ref) => `Released ${ref}`));
    assert.deepEqual(await lockFiles(root), []);
    for (const host of ["dc01", "dc02", "hv01"]) {
      const history = await listNames(join(root, host, "History"));
      assert.equal(history.length, 1, host);
      const session = refs[0]!.split("@")[1]!;
      assert.match(history[0]!, new RegExp(`^Host\\.lock-${session}\\.${GUID}$`));
      assert.equal((await cli(["test", host])).code, 1);
    }

    // Released again, refs with CRLF as a Windows pipe gives them: a warning per ref, still success.
    const again = await cli(["unlock", "-"], { stdin: locked.stdout.replaceAll("\n", "\r\n") });
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(
      lines(again.stderr),
      refs.map((ref) => `Warning: ${ref} was already released`),
    );
    for (const host of ["dc01", "dc02", "hv01"]) {
      assert.equal((await listNames(join(root, host, "History"))).length, 1);
    }
  }, MAP);
});

Deno.test("unlock of a plain host/Host ref exits 2 without --force and leaves the lock; --force releases it", async () => {
  await withSandbox(async ({ cli, root }) => {
    assert.equal((await cli(["lock", "dc01", "--hard"])).code, 0);
    const refused = await cli(["unlock", "dc01/Host"]);
    assertOneLineError(refused, 2, "dc01/Host", "--force");
    assert.deepEqual(await lockFiles(root), ["dc01/Host.lock"]);

    const forced = await cli(["unlock", "dc01/Host", "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.deepEqual(await lockFiles(root), []);
    assert.equal((await listNames(join(root, "dc01", "History"))).length, 1);
  });
});

Deno.test("unlock of a ref whose lock was replaced by another session exits 3 naming the new holder and keeps its lock", async () => {
  await withSandbox(async ({ cli, root }) => {
    const first = lines((await cli(["lock", "dc01", "--hard", "--caller", "first"])).stdout)[0]!;
    assert.equal((await cli(["unlock", "dc01/Host", "--force"])).code, 0);
    const second = await cli(["lock", "dc01", "--hard", "--caller", "newcomer"]);
    assert.equal(second.code, 0, second.stderr);
    const secondSession = session(lines(second.stdout)[0]!);

    const stale = await cli(["unlock", first]);
    assertOneLineError(stale, 3, first, '"newcomer"');
    const fields = parseJsonExact(
      await Deno.readTextFile(join(root, "dc01", "Host.lock")),
    ) as Record<string, unknown>;
    assert.equal(fields.SessionId, secondSession);
    assert.equal(fields.Caller, "newcomer");
  });
});

Deno.test("unlock without refs, with a bad ref, or with '-' and nothing on stdin exits 2 and releases nothing", async () => {
  await withSandbox(async ({ cli, root }) => {
    const ref = lines((await cli(["lock", "dc01", "--hard"])).stdout)[0]!;
    assertOneLineError(await cli(["unlock"]), 2);
    assertOneLineError(await cli(["unlock", "-"], { stdin: "\n\n" }), 2, "stdin");
    // All refs are checked before anything is released.
    assertOneLineError(await cli(["unlock", ref, "dc01/Nope"]), 2, "dc01/Nope");
    assert.deepEqual(await lockFiles(root), ["dc01/Host.lock"]);
  });
});

// ---------------------------------------------------------------------------
// Waiting, exit codes, --json

Deno.test("waiting for a busy host shows 'attempt k of n' and the holder on stderr, then exits 3 naming the holder", async () => {
  await withSandbox(async ({ cli, root }) => {
    assert.equal((await cli(["lock", "dc01", "--hard", "--caller", "holder-x"])).code, 0);
    const busy = await cli(["lock", "dc01", "--retries", "2", "--timeout", "100ms"]);
    assert.equal(busy.code, 3, busy.stderr);
    assert.equal(busy.stdout, "");
    const [progress, error, ...rest] = lines(busy.stderr);
    assert.deepEqual(rest, []);
    assert.match(
      progress!,
      /^\S+Z Waiting for "dc01": Host lock held by "holder-x" since \S+Z \(attempt 1 of 2, next in \d+ms at the latest\)$/,
    );
    assert.match(
      error!,
      /^Error: Cannot lock "dc01": Host lock held by "holder-x" since \S+Z \(2 attempts\)$/,
    );
    assert.deepEqual(await lockFiles(root), ["dc01/Host.lock"]);

    const quiet = await cli(["lock", "dc01", "--retries", "2", "--timeout", "50ms", "--quiet"]);
    assertOneLineError(quiet, 3, '"holder-x"');

    const json = await cli(["lock", "dc01", "--retries", "2", "--timeout", "50ms", "--json"]);
    assert.equal(json.code, 3);
    const doc = JSON.parse(json.stdout);
    assert.equal(Object.keys(doc)[0], "version");
    assert.deepEqual(
      { ...doc, error: { ...doc.error, message: undefined } },
      { version: 1, error: { code: "LOCK_BUSY", message: undefined, exitCode: 3 } },
    );
    assert.match(json.stderr, /attempt 1 of 2/);
    assert.deepEqual(await lockFiles(root), ["dc01/Host.lock"]);
  });
});

Deno.test("exit codes: 0 done, 1 test finds no lock, 2 bad usage, 3 lock not acquired", async () => {
  await withSandbox(async ({ cli }) => {
    const free = await cli(["test", "dc01"]);
    assert.deepEqual([free.code, free.stdout, free.stderr], [1, "not locked\n", ""]);
    const lock = await cli(["lock", "dc01"]);
    assert.equal(lock.code, 0, lock.stderr);
    const held = await cli(["test", "dc01", "--type", "generic"]);
    assert.deepEqual([held.code, held.stdout], [0, "locked\n"]);
    assert.equal((await cli(["test", "dc01", "--type", "host"])).code, 1);
    assert.equal((await cli(["test", "dc01", "--quiet"])).stdout, "");
    assertOneLineError(await cli(["lock"]), 2, "host");
    assertOneLineError(await cli(["frobnicate"]), 2, "frobnicate");
    assertOneLineError(await cli(["lock", "dc01", "--bogus"]), 2, "--bogus");
    assertOneLineError(await cli(["lock", "dc01", "dc02"]), 2);
    assertOneLineError(await cli(["status", "dc01", "--", "x"]), 2, "--");
    assert.equal((await cli([])).code, 2);
    const busy = await cli(["lock", "dc01", "--hard", "--no-drain", "--retries", "1"]);
    assert.equal(busy.code, 0, "--no-drain takes the Host lock beside a shared lock");
    assertOneLineError(
      await cli(["lock", "dc01", "--retries", "1", "--timeout", "0", "--quiet"]),
      3,
    );
  });
});

Deno.test('--json prints one document with "version": 1 first and nothing else on stdout', async () => {
  await withSandbox(async ({ cli }) => {
    const parse = (result: CliResult, code = 0): Record<string, unknown> => {
      assert.equal(result.code, code, result.stderr);
      const doc = JSON.parse(result.stdout);
      assert.equal(Object.keys(doc)[0], "version");
      assert.equal(doc.version, 1);
      return doc;
    };
    const lock = await cli(["lock", "dc01", "--hard", "--caller", "json", "--json"]);
    assert.equal(lock.stderr, "");
    const locked = parse(lock);
    assert.equal(locked.command, "lock");
    assert.equal(locked.type, "Host");
    const refs = locked.refs as string[];
    assert.deepEqual(refs.map(session), [locked.sessionId, locked.sessionId, locked.sessionId]);
    assert.equal(refs.at(-1), `dc01/Host@${locked.sessionId}`);

    assert.deepEqual(parse(await cli(["test", "dc01", "--json"])), {
      version: 1,
      command: "test",
      host: "dc01",
      locked: true,
    });
    assert.deepEqual(parse(await cli(["test", "web01", "--json"]), 1), {
      version: 1,
      command: "test",
      host: "web01",
      locked: false,
    });
    const status = parse(await cli(["status", "dc01", "hv01", "--json"]));
    const locks = status.locks as Record<string, unknown>[];
    assert.deepEqual(locks.map((l) => [l.host, l.type, l.caller, l.sessionId]), [
      ["dc01", "Host", "json", locked.sessionId],
      ["hv01", "Host", "json", locked.sessionId],
    ]);
    assert.deepEqual(parse(await cli(["deps", "dc01", "--json"])), {
      version: 1,
      command: "deps",
      host: "dc01",
      dependencies: ["dc02", "hv01"],
      groups: [],
    });
    assert.deepEqual(parse(await cli(["id", refs[0]!, "--json"])), {
      version: 1,
      command: "id",
      lockId: "Host",
    });
    const unlock = await cli(["unlock", ...refs, "--json"]);
    assert.equal(unlock.stderr, "");
    assert.deepEqual(parse(unlock).results, refs.map((ref) => ({ ref, status: "released" })));
    const history = parse(await cli(["history", "dc01", "--json"]));
    assert.equal((history.entries as unknown[]).length, 1);
    const error = await cli(["lock", "dc01", "--timeout", "abc", "--json"]);
    const failed = parse(error, 2);
    assert.deepEqual(Object.keys(failed), ["version", "error"]);
    assert.equal((failed.error as Record<string, unknown>).code, "BAD_INPUT");
    assert.equal((failed.error as Record<string, unknown>).exitCode, 2);
    assert.match(error.stderr, /^Error: Invalid timeout "abc"/);
  }, MAP);
});

Deno.test("--json prints an error document even when the arguments themselves are wrong", async () => {
  await withSandbox(async ({ cli }) => {
    for (const args of [["lock", "dc01", "--json", "--bogus"], ["--json", "frobnicate"]]) {
      const result = await cli(args);
      assert.equal(result.code, 2, args.join(" "));
      assert.match(result.stderr, /^Error: /);
      let doc: Record<string, unknown> | undefined;
      try {
        doc = JSON.parse(result.stdout);
      } catch {
        assert.fail(
          `${args.join(" ")}: stdout is not a JSON document: ${JSON.stringify(result.stdout)}`,
        );
      }
      assert.equal(Object.keys(doc!)[0], "version");
      assert.equal(doc!.version, 1);
      assert.equal((doc!.error as Record<string, unknown>).exitCode, 2);
    }
  });
});

// ---------------------------------------------------------------------------
// deps, id, history, status, help

Deno.test("deps prints the original's order as list, json, dot and mermaid, from the map file or --dependencies-file", async () => {
  await withSandbox(async ({ cli, tmp }) => {
    const list = await cli(["deps", "dc01"]);
    assert.deepEqual([list.code, list.stdout, list.stderr], [0, "dc02\nhv01\n", ""]);
    assert.equal((await cli(["deps", "DC02", "--format", "list"])).stdout, "dc01\nhv01\n");
    assert.equal((await cli(["deps", "hv01"])).stdout, "");
    assert.deepEqual(JSON.parse((await cli(["deps", "dc01", "--format", "json"])).stdout), {
      version: 1,
      command: "deps",
      host: "dc01",
      dependencies: ["dc02", "hv01"],
      groups: [],
    });
    assert.equal(
      (await cli(["deps", "dc01", "--format", "dot"])).stdout,
      'digraph dependencies {\n  "dc01" -> "dc02";\n  "dc01" -> "hv01";\n}\n',
    );
    assert.equal(
      (await cli(["deps", "dc01", "--format", "mermaid"])).stdout,
      'graph LR\n  n0["dc01"]\n  n1["dc02"]\n  n2["hv01"]\n  n0 --> n1\n  n0 --> n2\n',
    );
    assertOneLineError(await cli(["deps", "dc01", "--format", "svg"]), 2, "svg");

    const other = join(tmp, "other.json");
    await Deno.writeTextFile(other, JSON.stringify({ "sql01": ["app01"] }));
    assert.equal((await cli(["deps", "app01", "--dependencies-file", other])).stdout, "sql01\n");
  }, MAP);
});

Deno.test("the default dependency map may be absent; a named one that is missing exits 2 and locks nothing", async () => {
  await withSandbox(async ({ cli, root, store, tmp }) => {
    // No RESOURCE_LOCKER_DEPENDENCIES: the default beside the module, absent in the repository.
    const env = { XDG_STATE_HOME: join(tmp, "state") };
    const deps = await runCli(["deps", "dc01"], { store, env });
    assert.deepEqual([deps.code, deps.stdout, deps.stderr], [0, "", ""]);
    const lock = await runCli(["lock", "dc01", "--hard"], { store, env });
    assert.equal(lock.code, 0, lock.stderr);
    assert.equal(lines(lock.stdout).length, 1);
    assert.deepEqual(await lockFiles(root), ["dc01/Host.lock"]);
    const missing = join(tmp, "missing.json");
    assertOneLineError(await cli(["lock", "web01", "--dependencies-file", missing]), 2, missing);
    assertOneLineError(await cli(["deps", "web01"], { dependencies: missing }), 2, missing);
    assert.deepEqual(await lockFiles(root), ["dc01/Host.lock"]);
  });
});

Deno.test("id prints the lock id of a ref or a lock file name, and exits 2 on anything else", async () => {
  await withSandbox(async ({ cli }) => {
    const cases: [string, string][] = [
      ["dc01/Host@3f2a", "Host"],
      ["dc01/Generic-3f2a", "Generic-3f2a"],
      ["\\\\dc01\\ResourceLocks\\File-3f2a.lock", "File-3f2a"],
      ["/var/lib/locks/dc01/Host.lock", "Host"],
    ];
    for (const [input, id] of cases) {
      const result = await cli(["id", input]);
      assert.deepEqual([result.code, result.stdout, result.stderr], [0, `${id}\n`, ""], input);
    }
    assertOneLineError(await cli(["id", "nonsense"]), 2, "nonsense");
    assertOneLineError(await cli(["id"]), 2);
  });
});

Deno.test("history lists released locks newest first, with --limit and --json", async () => {
  await withSandbox(async ({ cli }) => {
    const empty = await cli(["history", "dc01"]);
    assert.deepEqual([empty.code, empty.stdout, empty.stderr], [0, "", 'No history for "dc01"\n']);
    const sessions: string[] = [];
    for (const caller of ["first-caller", "second-caller"]) {
      const lock = await cli([
        "lock",
        "dc01",
        "--hard",
        "--caller",
        caller,
        "--description",
        "why",
      ]);
      sessions.push(session(lines(lock.stdout)[0]!));
      assert.equal((await cli(["unlock", lines(lock.stdout)[0]!])).code, 0);
    }
    const table = await cli(["history", "dc01"]);
    assert.equal(table.code, 0, table.stderr);
    const [header, newest, oldest, ...rest] = lines(table.stdout);
    assert.deepEqual(rest, []);
    assert.match(header!, /^TYPE\s+CALLER\s+DESCRIPTION\s+LOCKED\s+RELEASED/);
    assert.match(newest!, new RegExp(`^Host\\s+second-caller\\s+why\\s.*${sessions[1]}$`));
    assert.match(oldest!, new RegExp(`^Host\\s+first-caller\\s+why\\s.*${sessions[0]}$`));

    const limited = JSON.parse((await cli(["history", "dc01", "--limit", "1", "--json"])).stdout);
    assert.equal(limited.entries.length, 1);
    const [entry] = limited.entries;
    assert.equal(entry.sessionId, sessions[1]);
    assert.equal(entry.caller, "second-caller");
    assert.match(entry.name, new RegExp(`^Host\\.lock-${sessions[1]}\\.${GUID}$`));
    assert.ok(Date.parse(entry.unlockedAt) >= Date.parse(entry.lockedAt));
    assert.equal(entry.brokenBy, null);
    assertOneLineError(await cli(["history", "dc01", "--limit", "0"]), 2, "--limit");
  });
});

Deno.test("status shows type, caller, description, age, expiry and session of each lock of several hosts", async () => {
  await withSandbox(async ({ cli }) => {
    const none = await cli(["status", "dc01"]);
    assert.deepEqual([none.code, none.stdout, none.stderr], [0, "", 'No locks on "dc01"\n']);
    const a = session(
      lines(
        (await cli(["lock", "dc01", "--caller", "deploy", "--description", "rollout"])).stdout,
      )[0]!,
    );
    const b = session(lines((await cli(["lock", "web01", "--hard", "--ttl", "5m"])).stdout)[0]!);
    const status = await cli(["status", "dc01", "WEB01"]);
    assert.equal(status.code, 0, status.stderr);
    const [header, first, second, ...rest] = lines(status.stdout);
    assert.deepEqual(rest, []);
    assert.match(header!, /^HOST\s+TYPE\s+CALLER\s+DESCRIPTION\s+AGE\s+EXPIRES\s+SESSION$/);
    assert.match(
      first!,
      new RegExp(`^dc01\\s+Generic\\s+deploy\\s+rollout\\s+\\d+m?s\\s+never\\s+${a}$`),
    );
    assert.match(
      second!,
      new RegExp(`^web01\\s+Host\\s+-\\s+-\\s+\\d+m?s\\s+in (4m \\d+s|5m)\\s+${b}$`),
    );
  });
});

Deno.test("--help of every command exits 0 with its usage on stdout and nothing on stderr", async () => {
  await withSandbox(async ({ cli }) => {
    const commands = [
      "lock",
      "lock-file",
      "unlock",
      "test",
      "deps",
      "id",
      "status",
      "history",
      "break",
      "run",
    ];
    for (const command of commands) {
      const result = await cli([command, "--help"]);
      assert.equal(result.code, 0, command);
      assert.equal(result.stderr, "", command);
      assert.ok(result.stdout.startsWith(`Usage: resource-locker ${command} `), result.stdout);
      assert.ok(result.stdout.includes("--store"), command);
    }
    const main = await cli(["--help"]);
    assert.equal(main.code, 0);
    for (const command of commands) assert.match(main.stdout, new RegExp(`^  ${command} `, "m"));
    const version = await cli(["--version"]);
    const denoJson = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
    assert.deepEqual([version.code, version.stdout], [0, `${denoJson.version}\n`]);
  });
});

Deno.test("global options may come before the command: --store TEMPLATE lock <host>", async () => {
  await withSandbox(async ({ cli, tmp }) => {
    const other = join(tmp, "other");
    await Deno.mkdir(other);
    const result = await cli(["--store", join(other, "{0}"), "lock", "dc01", "--hard"]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await listNames(join(other, "dc01")), ["Host.lock"]);
    const test = await cli(["--json", "test", "dc01", "--store", join(other, "{0}")]);
    assert.equal(test.code, 0, test.stderr);
  });
});

// ---------------------------------------------------------------------------
// Bad input: one line, exit 2, nothing written anywhere

async function assertRejectsUntouched(
  box: Sandbox,
  args: string[],
  mentions: string[],
  options: CliOptions = {},
): Promise<void> {
  const before = await snapshotTree(box.tmp);
  const result = await box.cli(args, options);
  assertOneLineError(result, 2, ...mentions);
  assert.deepEqual(await snapshotTree(box.tmp), before, `${args.join(" ")} wrote something`);
}

Deno.test("bad host names exit 2 with one line and write nothing, in or outside the store", async () => {
  await withSandbox(async (box) => {
    const long = "a".repeat(300);
    const hosts = ["../x", "a/b", "a\\b", ".", "..", "", long, "..x", "dc01 ", "dc01:445"];
    for (const host of hosts) {
      const mention = host === long ? "300 characters" : "Invalid host name";
      await assertRejectsUntouched(box, ["lock", host, "--hard", "--retries", "1"], [mention]);
      await assertRejectsUntouched(box, ["test", host], [mention]);
      await assertRejectsUntouched(box, ["status", "dc01", host], [mention]);
      await assertRejectsUntouched(box, ["history", host], [mention]);
      await assertRejectsUntouched(box, ["deps", host], [mention]);
      if (host !== "") {
        await assertRejectsUntouched(box, ["unlock", `${host}/Host`, "--force"], []);
        await assertRejectsUntouched(box, ["break", `${host}/Host`, "--force"], []);
      }
    }
    assert.deepEqual(await listNames(box.root), []);
  }, MAP);
});

Deno.test("lock-file with a UNC path whose server name is bad exits 2 and locks nothing, not this machine", async () => {
  await withSandbox(async (box) => {
    for (const path of ["\\\\..\\share\\f", "\\\\dc01 \\share\\f", "\\\\a%b\\share\\f"]) {
      await assertRejectsUntouched(box, ["lock-file", path, "--retries", "1"], []);
    }
  });
});

Deno.test("bad times, counts and lock types exit 2 with one line naming the value and write nothing", async () => {
  await withSandbox(async (box) => {
    const cases: [string[], string[]][] = [
      [["lock", "dc01", "--timeout", "abc"], ['"abc"', "timeout"]],
      [["lock", "dc01", "--timeout", "5 minutes"], ['"5 minutes"']],
      [["lock", "dc01", "--hard", "--drain-timeout", "5x"], ['"5x"']],
      [["lock", "dc01", "--ttl", "1d"], ['"1d"']],
      [["lock", "dc01", "--ttl", "50ms"], ["ttl"]],
      [["lock", "dc01", "--retries", "many"], ['"many"']],
      [["lock", "dc01", "--type", "exclusive"], ['"exclusive"']],
      [["lock", "dc01", "--hard", "--type", "generic"], ["--hard"]],
      [["lock", "dc01", "--hard", "--no-drain", "--drain-timeout", "1s"], ["--no-drain"]],
      [["lock", "dc01", "--session-id", "../evil"], ['"../evil"']],
      [["lock-file", "\\\\fs01\\x", "--type", "host"], ["lock-file"]],
      [["test", "dc01", "--type", "bogus"], ['"bogus"']],
      [["run", "dc01", "--grace", "soon", "--", "true"], ['"soon"']],
      [["history", "dc01", "--limit", "-3"], []],
    ];
    for (const [args, mentions] of cases) await assertRejectsUntouched(box, args, mentions);
  }, MAP);
});

Deno.test("a folder template without a placeholder or with an unknown scheme exits 2 naming it and creates nothing", async () => {
  await withSandbox(async (box) => {
    const flat = join(box.tmp, "x");
    await assertRejectsUntouched(box, ["lock", "dc01", "--store", flat], [flat, "{0}"]);
    await assertRejectsUntouched(box, ["test", "dc01"], [flat], { store: flat });
    await assertRejectsUntouched(box, ["lock", "dc01", "--store", "ftp://{0}/locks"], [
      "ftp://{0}/locks",
    ]);
    await assertRejectsUntouched(box, ["lock", "dc01", "--store", "/tmp/x"], ['"/tmp/x"']);
  });
});

Deno.test("a malformed dependency map exits 2 naming the file and the place, and locks nothing", async () => {
  const maps: [string, string[]][] = [
    ['{ "hv01": ["dc01",', []],
    ['["dc01"]', []],
    ['{ "hv01": ["dc01", 1] }', ['"hv01"[1]']],
    ['{ "hv01": { "dc01": true } }', ['"hv01"']],
    ['{ "../x": ["dc01"] }', ['"../x"']],
    ['{ "hv01": ["dc01", "a/b"] }', ['"hv01"[1]', '"a/b"']],
  ];
  for (const [text, mentions] of maps) {
    await withSandbox(async (box) => {
      await assertRejectsUntouched(box, ["lock", "dc01", "--hard"], [box.deps, ...mentions]);
      await assertRejectsUntouched(box, ["deps", "dc01"], [box.deps, ...mentions]);
      await assertRejectsUntouched(box, ["deps", "dc01", "--dependencies-file", box.deps], [
        box.deps,
      ]);
      assert.deepEqual(await listNames(box.root), []);
    }, text);
  }
});

// ---------------------------------------------------------------------------
// Faults: exit 4

Deno.test("a lock folder whose parent is missing exits 4 naming the folder, and creates nothing", async () => {
  await withSandbox(async (box) => {
    const missing = "/nonexistent-root-xyz";
    await assert.rejects(Deno.stat(missing), Deno.errors.NotFound);
    for (const hard of [["--hard"], []]) {
      const result = await box.cli([
        "lock",
        "dc01",
        ...hard,
        "--retries",
        "1",
        "--store",
        `${missing}/{0}`,
      ]);
      assertOneLineError(result, 4, missing);
    }
    await assert.rejects(Deno.stat(missing), Deno.errors.NotFound);

    const nested = join(box.tmp, "no-such-root", "{0}");
    const before = await snapshotTree(box.tmp);
    assertOneLineError(
      await box.cli(["lock", "dc01", "--store", nested]),
      4,
      join(box.tmp, "no-such-root"),
    );
    assert.deepEqual(await snapshotTree(box.tmp), before);
  });
});

Deno.test("test and status on a store whose root is missing exit 4 naming the folder instead of reporting no lock", async () => {
  await withSandbox(async (box) => {
    const missing = "/nonexistent-root-xyz";
    assertOneLineError(await box.cli(["test", "dc01", "--store", `${missing}/{0}`]), 4, missing);
    assertOneLineError(await box.cli(["status", "dc01", "--store", `${missing}/{0}`]), 4, missing);
  });
});

Deno.test("a folder standing where Host.lock should be exits 4 for lock, test and status", async () => {
  await withSandbox(async ({ cli, root }) => {
    await Deno.mkdir(join(root, "dc01", "Host.lock"), { recursive: true });
    const path = join(root, "dc01", "Host.lock");
    assertOneLineError(await cli(["lock", "dc01", "--hard", "--retries", "1"]), 4, path);
    assertOneLineError(await cli(["test", "dc01"]), 4, path);
    assertOneLineError(await cli(["status", "dc01"]), 4, path);
    assert.deepEqual(await listNames(join(root, "dc01")), ["Host.lock"]);
  });
});

Deno.test("a Generic lock that meets a store fault after creating its file leaves no orphan lock file", async () => {
  await withSandbox(async ({ cli, root }) => {
    await Deno.mkdir(join(root, "dc01", "Host.lock"), { recursive: true });
    assertOneLineError(await cli(["lock", "dc01", "--retries", "1"]), 4, "Host.lock");
    assert.deepEqual(await listNames(join(root, "dc01")), ["Host.lock"]);
  });
});

Deno.test("a Host lock whose drain meets a store fault exits 4 and releases the Host lock it took", async () => {
  await withSandbox(async ({ cli, root }) => {
    await Deno.mkdir(join(root, "dc01", "Generic-abc.lock"), { recursive: true });
    const result = await cli(["lock", "dc01", "--hard", "--retries", "1", "--drain-timeout", "1s"]);
    assertOneLineError(result, 4, "Generic-abc.lock");
    assert.deepEqual(await listNames(join(root, "dc01")), ["Generic-abc.lock"]);
  });
});

// ---------------------------------------------------------------------------
// break

/** Writes a Host.lock as another process would: CRLF JSON, bigints as exact integers. */
async function writeLock(
  root: string,
  host: string,
  fields: Record<string, unknown>,
): Promise<void> {
  await Deno.mkdir(join(root, host), { recursive: true });
  const text = JSON.stringify(
    fields,
    (_key, value) => typeof value === "bigint" ? `bigint:${value}` : value,
    2,
  ).replace(/"bigint:(\d+)"/g, "$1");
  await Deno.writeTextFile(join(root, host, "Host.lock"), text.replace(/\n/g, "\r\n") + "\r\n");
}

Deno.test("break moves an expired lock into History with BrokenBy and BreakReason, keeping its fields", async () => {
  await withSandbox(async ({ cli, root }) => {
    const now = Date.now();
    const original = {
      Caller: "crashed-job",
      LockedAt: 639317187537041237n,
      LockedAtUtc: new Date(now - 3 * 3600_000).toISOString(),
      Type: "Host",
      SessionId: "old-session",
      ExpiresAtUtc: new Date(now - 3600_000).toISOString(),
    };
    await writeLock(root, "dc01", original);
    assert.match(
      await Deno.readTextFile(join(root, "dc01", "Host.lock")),
      /"LockedAt": 639317187537041237,\r\n/,
    );

    assert.equal((await cli(["test", "dc01"])).code, 1, "an expired lock blocks nobody");
    const status = JSON.parse((await cli(["status", "dc01", "--json"])).stdout);
    assert.equal(status.locks[0].expired, true);

    const broken = await cli(["break", "dc01/Host@old-session", "--reason", "job crashed"]);
    assert.equal(broken.code, 0, broken.stderr);
    assert.equal(broken.stdout, "");
    assert.match(broken.stderr, /^Broke dc01\/Host@old-session /);
    assert.deepEqual(await listNames(join(root, "dc01")), ["History"]);
    const [entry] = await listNames(join(root, "dc01", "History"));
    assert.match(entry!, new RegExp(`^Host\\.lock-old-session\\.${GUID}$`));
    const fields = parseJsonExact(
      await Deno.readTextFile(join(root, "dc01", "History", entry!)),
    ) as Record<string, unknown>;
    const { UnlockedAt, UnlockedAtUtc, BrokenAtUtc, BrokenBy, BreakReason, ...kept } = fields;
    assert.deepEqual(kept, original);
    assert.equal(BreakReason, "job crashed");
    assert.equal(typeof BrokenBy, "string");
    assert.ok((BrokenBy as string).includes(Deno.hostname()), String(BrokenBy));
    assert.equal(typeof UnlockedAt, "bigint");
    assert.equal(typeof UnlockedAtUtc, "string");
    assert.equal(typeof BrokenAtUtc, "string");

    const history = JSON.parse((await cli(["history", "dc01", "--json"])).stdout);
    assert.equal(history.entries[0].breakReason, "job crashed");
    assert.equal(history.entries[0].brokenBy, BrokenBy);
  });
});

Deno.test("break refuses a lock that has not expired with exit 3 unless --force", async () => {
  await withSandbox(async ({ cli, root }) => {
    await writeLock(root, "dc01", {
      Caller: "busy-job",
      LockedAtUtc: new Date().toISOString(),
      Type: "Host",
      SessionId: "live-session",
      ExpiresAtUtc: new Date(Date.now() + 3600_000).toISOString(),
    });
    assertOneLineError(await cli(["break", "dc01/Host"]), 3, '"busy-job"', "--force");
    assert.deepEqual(await listNames(join(root, "dc01")), ["Host.lock"]);
    const forced = await cli(["break", "dc01/Host", "--force", "--quiet"]);
    assert.deepEqual([forced.code, forced.stdout, forced.stderr], [0, "", ""]);
    assert.deepEqual(await listNames(join(root, "dc01")), ["History"]);

    // A lock without a lease never expires: it needs --force too.
    const ref = lines((await cli(["lock", "dc01", "--hard", "--caller", "forever"])).stdout)[0]!;
    assertOneLineError(await cli(["break", ref]), 3, '"forever"');
    assert.equal((await cli(["break", ref, "--force"])).code, 0);
    const entries = JSON.parse((await cli(["history", "dc01", "--json"])).stdout).entries;
    assert.equal(entries.length, 2);
    assert.deepEqual(
      entries.map((e: { breakReason: string }) => e.breakReason).sort(),
      ["broken by hand", "broken by hand"],
    );
  });
});
