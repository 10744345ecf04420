/**
 * Hostile input (issue 10): what a user, a config file, a dependency map or
 * a lock file's content can do to the command line and the library. Each
 * case asserts the exit code, one line on stderr without a stack trace, and
 * that nothing was written; library calls from untyped JavaScript assert the
 * error class. Commands run in-process through `main(args, io)` unless the
 * case is about the process itself.
 */

import assert from "node:assert/strict";
import { RAW_CONTROL } from "./_assert.ts";
import { join } from "node:path";
import { main } from "../cli.ts";
import type { Clock } from "../src/clock.ts";
import {
  breakResourceLock,
  getFleetStatus,
  getGroupStatus,
  getMaintenanceGroups,
  getResolvedConfig,
  getResourceDependence,
  getResourceLockHistory,
  getResourceLockId,
  getResourceLockStatus,
  InputError,
  lockFileResource,
  lockHostResource,
  lockResource,
  ResourceLock,
  testHostResourceLock,
  tryLockResource,
  unlockResource,
} from "../mod.ts";
import { validateConfig } from "../src/config.ts";
import { parentPath } from "../src/path.ts";
import { runCli, snapshotTree } from "./_cli_helpers.ts";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the command line in-process; a run longer than `limitMs` fails the test (a hang). */
async function cli(args: string[], limitMs = 10_000): Promise<Result> {
  let stdout = "";
  let stderr = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const code = await Promise.race([
    main(args, {
      out: (text) => void (stdout += text + "\n"),
      err: (text) => void (stderr += text + "\n"),
      stdin: () => Promise.resolve(""),
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${args.join(" ")} did not finish in ${limitMs}ms`)),
        limitMs,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  return { code, stdout, stderr };
}

/** Exit code, nothing on stdout, exactly one stderr line starting "Error: ", no stack trace. */
function assertOneLineError(result: Result, code: number, ...mentions: string[]): string {
  const context = `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
  assert.equal(result.code, code, context);
  assert.equal(result.stdout, "", context);
  const errorLines = result.stderr.split("\n").filter(Boolean);
  assert.equal(errorLines.length, 1, context);
  const line = errorLines[0]!;
  assert.match(line, /^Error: \S/, context);
  assert.doesNotMatch(result.stderr, /\bat .*:\d+:\d+|Stack|Uncaught/, context);
  for (const mention of mentions) {
    assert.ok(line.includes(mention), `${line}\nshould mention ${mention}`);
  }
  return line;
}

/** Raw bytes a terminal acts on: C0 controls but newline, DEL, C1, bidi overrides, line separators. */

const STORE_ENV = [
  "RESOURCE_LOCKER_STORE",
  "RESOURCE_LOCKER_CONFIG",
  "RESOURCE_LOCKER_DEPENDENCIES",
  "RESOURCE_LOCKER_SMB_USERNAME",
  "RESOURCE_LOCKER_SMB_PASSWORD",
  "RESOURCE_LOCKER_SMB_DOMAIN",
  "RESOURCE_LOCKER_ETCD_ENDPOINTS",
  "HOME",
  "XDG_STATE_HOME",
];

interface Box {
  /** Temporary folder holding everything. */
  tmp: string;
  /** Store root. */
  root: string;
  /** Folder template `<root>/{0}`. */
  store: string;
  /** An empty dependency map. */
  deps: string;
}

/**
 * A temporary store and dependency map, the process's `RESOURCE_LOCKER_*`
 * variables cleared, the working folder moved into a scratch folder (so a
 * relative path would land where the test can see it), all restored after.
 */
async function withBox(
  fn: (box: Box) => Promise<void>,
  env: Record<string, string | undefined> = {},
): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "rl-hostile-input-" });
  const saved = new Map(STORE_ENV.map((name) => [name, Deno.env.get(name)]));
  const cwd = Deno.cwd();
  try {
    const root = join(tmp, "store");
    await Deno.mkdir(root);
    await Deno.mkdir(join(tmp, "cwd"));
    const deps = join(tmp, "deps.json");
    await Deno.writeTextFile(deps, "{}");
    for (const name of STORE_ENV) {
      if (name !== "HOME" && name !== "XDG_STATE_HOME") Deno.env.delete(name);
    }
    Deno.env.set("XDG_STATE_HOME", join(tmp, "state"));
    for (const [name, value] of Object.entries(env)) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
    Deno.chdir(join(tmp, "cwd"));
    await fn({ tmp, root, store: join(root, "{0}"), deps });
  } finally {
    Deno.chdir(cwd);
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
    await Deno.remove(tmp, { recursive: true });
  }
}

// ---------------------------------------------------------------------------
// 3. Templates absolute or refused

Deno.test("a relative or foreign folder template exits 2 saying why, and creates nothing anywhere", async () => {
  await withBox(async ({ tmp }) => {
    const cases: [string, string][] = [
      ["{0}", "not an absolute path"],
      ["./{0}", "not an absolute path"],
      ["locks/{0}", "not an absolute path"],
      ["../locks/{0}", "not an absolute path"],
      ["{host}/x", "not an absolute path"],
    ];
    if (Deno.build.os !== "windows") {
      cases.push(
        ["C:\\locks\\{0}", "a Windows path"],
        ["C:/locks/{0}", "a Windows path"],
        ["locks\\{0}", "a Windows path"],
      );
    }
    const before = await snapshotTree(tmp);
    for (const [template, why] of cases) {
      for (const args of [["lock", "hv01"], ["status", "hv01"], ["test", "hv01"]]) {
        assertOneLineError(await cli([...args, "--store", template]), 2, why, "absolute");
      }
      Deno.env.set("RESOURCE_LOCKER_STORE", template);
      assertOneLineError(await cli(["lock", "hv01", "--hard"]), 2, why);
      Deno.env.delete("RESOURCE_LOCKER_STORE");
    }
    assert.deepEqual(
      await snapshotTree(tmp),
      before,
      "nothing created in the working folder or elsewhere",
    );
  });
});

Deno.test("the default store without a usable absolute state folder exits 2 saying what to set", async () => {
  if (Deno.build.os === "windows") return; // HOME and XDG_STATE_HOME are the Unix rules
  const cases: [Record<string, string | undefined>, string[]][] = [
    [{ HOME: "", XDG_STATE_HOME: undefined }, ["HOME", "XDG_STATE_HOME", "--store"]],
    [{ HOME: undefined, XDG_STATE_HOME: undefined }, ["HOME", "--store"]],
    [{ XDG_STATE_HOME: "state" }, ['XDG_STATE_HOME "state"', "absolute"]],
    [{ XDG_STATE_HOME: undefined, HOME: "home/me" }, ['HOME "home/me"', "absolute"]],
  ];
  for (const [env, mentions] of cases) {
    await withBox(async ({ tmp }) => {
      for (const [name, value] of Object.entries(env)) {
        if (value === undefined) Deno.env.delete(name);
        else Deno.env.set(name, value);
      }
      const before = await snapshotTree(tmp);
      assertOneLineError(await cli(["lock", "hv01", "--hard"]), 2, ...mentions);
      assertOneLineError(await cli(["status", "hv01"]), 2, ...mentions);
      assert.deepEqual(await snapshotTree(tmp), before);
    });
  }
});

// ---------------------------------------------------------------------------
// 5. Own properties only

Deno.test("inherited names are no commands, flags, lock types or settings", async () => {
  await withBox(async ({ store, tmp }) => {
    for (const name of ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"]) {
      assertOneLineError(await cli([name]), 2, "Unknown command");
      const help = await cli([name, "--help"]);
      assertOneLineError(help, 2, "Unknown command");
      assert.doesNotMatch(help.stdout + help.stderr, /native code|function/);
      assertOneLineError(
        await cli(["lock", "hv01", "--store", store, `--${name}`]),
        2,
        "Unknown option",
      );
      assertOneLineError(
        await cli([`--${name}`, "status", "hv01", "--store", store]),
        2,
        "Unknown option",
      );
      assertOneLineError(
        await cli(["lock", "hv01", "--store", store, `-${name}`]),
        2,
        "Unknown option",
      );
      assertOneLineError(
        await cli(["lock", "hv01", "--store", store, "--type", name]),
        2,
        "Invalid lock type",
      );
      assertOneLineError(
        await cli(["test", "hv01", "--store", store, "--type", name]),
        2,
        "Invalid lock type",
      );
    }
    const before = await snapshotTree(tmp);
    for (const key of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      const file = join(tmp, `own-${key.replace(/_/g, "u")}.json.ts`);
      const json = JSON.stringify({ [key]: { lockRetries: 9 } });
      await Deno.writeTextFile(file, `export default JSON.parse(${JSON.stringify(json)});`);
      assertOneLineError(
        await cli(["status", "hv01", "--store", store, "--config-file", file]),
        2,
        `unknown setting "${key}"`,
        file,
      );
      assert.throws(() => validateConfig(JSON.parse(json), "c.ts"), InputError);
      assert.throws(
        () => validateConfig({ smb: JSON.parse(json) }, "c.ts"),
        /unknown setting "smb\./,
      );
      await Deno.remove(file);
    }
    assert.deepEqual(await snapshotTree(tmp), before);
  });
});

Deno.test("options inherited from a prototype are no options: no inherited force, store or session", async () => {
  await withBox(async ({ store, tmp }) => {
    const mine = await lockResource("hv01", { store, type: "Host", dependencies: {} });
    const ref = mine.refs[0]!.replace(/@.*/, ""); // no session: only force releases it
    const force = Object.assign(Object.create({ force: true }), { store });
    await assert.rejects(() => unlockResource(ref, force), /force/);
    assert.equal((await getResourceLockStatus("hv01", { store }))[0]?.sessionId, mine.sessionId);
    // an inherited store or session is not used either
    const elsewhere = join(tmp, "elsewhere", "{0}");
    const inherited = Object.assign(Object.create({ store: elsewhere, sessionId: "s-inh" }), {
      store,
      dependencies: {},
    });
    const shared = await lockResource("vm01", inherited);
    assert.notEqual(shared.sessionId, "s-inh");
    await shared.release();
    await assert.rejects(() => Deno.stat(join(tmp, "elsewhere")), Deno.errors.NotFound);
    await mine.release();
  });
});

Deno.test("a clock that gives no time or no offset is an InputError naming it, and nothing is locked", async () => {
  await withBox(async ({ store, root }) => {
    const real = { now: Date.now, utcOffsetMinutes: () => 0 };
    const clock = (now: () => unknown, utcOffsetMinutes: () => unknown = real.utcOffsetMinutes) =>
      ({
        now,
        utcOffsetMinutes,
        sleep: (ms: number) =>
          new Promise<void>((resolve) => setTimeout(resolve, Math.min(ms, 10))),
        schedule: () => () => {},
      }) as unknown as Clock;
    for (
      const [what, bad] of [
        ["now() NaN", clock(() => NaN)],
        ["now() beyond a Date", clock(() => 1e300)],
        ["now() a string", clock(() => "2026-12-03")],
        ["an offset NaN", clock(real.now, () => NaN)],
        ["an offset of half a minute", clock(real.now, () => 0.5)],
      ] as const
    ) {
      await assert.rejects(
        () => lockResource("hv01", { store, type: "Host", dependencies: {}, clock: bad }),
        (error: Error) =>
          error instanceof InputError && /^The clock's \w+\(\) gave /.test(error.message),
        what,
      );
    }
    await assert.rejects(() => Deno.stat(join(root, "hv01", "Host.lock")), Deno.errors.NotFound);
  });
});

Deno.test("a dependency map with the host names constructor, __proto__ and toString works", async () => {
  await withBox(async ({ tmp, store, root }) => {
    const file = join(tmp, "proto.json");
    await Deno.writeTextFile(
      file,
      '{"constructor": ["hv01"], "__proto__": ["hv01"], "toString": "constructor", "hv01": []}',
    );
    const deps = await cli(["deps", "hv01", "--dependencies-file", file]);
    // The original's order: names as .NET sorts them ignoring case (`_` after letters).
    assert.deepEqual(deps, { code: 0, stdout: "constructor\n__proto__\ntostring\n", stderr: "" });
    const lock = await cli([
      "lock",
      "hv01",
      "--dependencies-file",
      file,
      "--store",
      store,
      "--hard",
    ]);
    assert.equal(lock.code, 0, lock.stderr);
    assert.equal(lock.stdout.split("\n").filter(Boolean).length, 4);
    for (const host of ["__proto__", "constructor", "tostring", "hv01"]) {
      await Deno.stat(join(root, host, "Host.lock"));
    }
    assert.deepEqual(
      await getResourceDependence("hv01", {
        dependencies: JSON.parse(await Deno.readTextFile(file)),
      }),
      ["constructor", "__proto__", "tostring"],
    );
  });
});

Deno.test("host names the store keeps for itself are refused, so no lock hides from status --all", async () => {
  await withBox(async ({ tmp, root, store }) => {
    const config = join(tmp, "groups.ts");
    await Deno.writeTextFile(
      config,
      'export default { groups: [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }] };',
    );
    const map = join(tmp, "reserved.json");
    await Deno.writeTextFile(map, '{"_group-hv-a": ["hv01"]}');
    // A Host lock taken on "_group-hv-a" landed in the group's slot folder,
    // which the fleet view skips: a lock nobody saw. Same for our own prefix.
    for (const host of ["_group-hv-a", "_GROUP-hv-a", ".resource-locker-x"]) {
      assertOneLineError(
        await cli(["--config-file", config, "lock", host, "--store", store, "--hard"]),
        2,
        "Invalid host name",
        "kept for",
      );
      await assert.rejects(
        lockResource(host, { store, dependencies: {} }),
        (error) => error instanceof InputError && /kept for/.test(error.message),
      );
    }
    assertOneLineError(
      await cli(["lock", "hv01", "--store", store, "--dependencies-file", map]),
      2,
      "_group-hv-a",
      "kept for",
    );
    assert.deepEqual([...Deno.readDirSync(root)], []);
    const ok = await cli(["--config-file", config, "lock", "_g", "--store", store]);
    assert.equal(ok.code, 0, ok.stderr);
  });
});

Deno.test("a dependency map of one long chain of hosts is resolved at once, not in its size squared", async () => {
  await withBox(async ({ tmp }) => {
    // 20,000 hosts, each listed by the next: about 500 KB, far under the
    // map's cap. Looking up who lists each host by a scan of the whole map
    // took minutes here (the command hung); one pass over it takes well
    // under a second.
    const hosts = 20_000;
    const map: Record<string, string[]> = {};
    for (let i = 1; i < hosts; i++) map[`h${i}`] = [`h${i - 1}`];
    const file = join(tmp, "chain.json");
    await Deno.writeTextFile(file, JSON.stringify(map));
    const started = Date.now();
    const result = await cli(["deps", "h0", "--dependencies-file", file], 8_000);
    // The resolution is synchronous: the limit above cannot cut it short.
    assert.ok(Date.now() - started < 8_000, `took ${Date.now() - started}ms`);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.split("\n").filter(Boolean);
    assert.equal(lines.length, hosts - 1);
    assert.deepEqual(lines.slice(0, 3), ["h1", "h2", "h3"]);
    assert.equal(lines.at(-1), `h${hosts - 1}`);
  });
});

// ---------------------------------------------------------------------------
// 6. Dependency maps

Deno.test("a dependency map named by --file, the environment or the config that is missing exits 2 and locks nothing", async () => {
  await withBox(async ({ tmp, store, root }) => {
    const missing = join(tmp, "no-such-map.json");
    assertOneLineError(
      await cli(["lock", "hv01", "--store", store, "--dependencies-file", missing]),
      2,
      missing,
      "does not exist",
    );
    assertOneLineError(await cli(["deps", "hv01", "--dependencies-file", missing]), 2, missing);
    const config = join(tmp, "config.ts");
    await Deno.writeTextFile(
      config,
      `export default { dependenciesFile: ${JSON.stringify(missing)} };`,
    );
    assertOneLineError(
      await cli(["lock", "hv01", "--store", store, "--config-file", config]),
      2,
      missing,
    );
    Deno.env.set("RESOURCE_LOCKER_DEPENDENCIES", missing);
    assertOneLineError(await cli(["lock", "hv01", "--store", store]), 2, missing);
    assertOneLineError(await cli(["deps", "hv01"]), 2, missing);
    Deno.env.delete("RESOURCE_LOCKER_DEPENDENCIES");
    assert.deepEqual([...Deno.readDirSync(root)], [], "nothing locked");
    // A relative path in a config file is taken from the config's folder, not the working folder.
    await Deno.writeTextFile(join(tmp, "beside.json"), '{"app01": ["hv01"]}');
    const relative = join(tmp, "relative.ts"); // a new module: the one above is cached
    await Deno.writeTextFile(relative, `export default { dependenciesFile: "./beside.json" };`);
    assert.deepEqual(await cli(["deps", "hv01", "--config-file", relative]), {
      code: 0,
      stdout: "app01\n",
      stderr: "",
    });
  });
});

Deno.test("a dependency map that is a folder, FIFO, device or too large exits 2 at once, never hangs", async () => {
  if (Deno.build.os === "windows") return;
  await withBox(async ({ tmp, store, root }) => {
    const fifo = join(tmp, "fifo.json");
    const mkfifo = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.ok(mkfifo.success);
    const zeroLink = join(tmp, "zero.json");
    await Deno.symlink("/dev/zero", zeroLink);
    const huge = join(tmp, "huge.json");
    const file = await Deno.create(huge);
    await file.truncate(17 * 1024 * 1024); // sparse: 17 MiB of zeros, above the 16 MiB cap
    file.close();
    const cases: [string, string][] = [
      [tmp, "folder"],
      [fifo, "FIFO"],
      ["/dev/zero", "character device"],
      [zeroLink, "character device"],
      [huge, "more than"],
    ];
    for (const [path, why] of cases) {
      const started = Date.now();
      assertOneLineError(
        await cli(["deps", "hv01", "--dependencies-file", path], 5_000),
        2,
        path,
        why,
      );
      assertOneLineError(
        await cli(["lock", "hv01", "--store", store, "--dependencies-file", path], 5_000),
        2,
        why,
      );
      assert.ok(Date.now() - started < 5_000, `${path} took ${Date.now() - started}ms`);
    }
    assert.deepEqual([...Deno.readDirSync(root)], []);
  });
});

function utf16(text: string, bigEndian: boolean): Uint8Array {
  const bytes = new Uint8Array(2 + text.length * 2);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, 0xfeff, !bigEndian);
  for (let i = 0; i < text.length; i++) view.setUint16(2 + i * 2, text.charCodeAt(i), !bigEndian);
  return bytes;
}

function utf32(text: string, bigEndian: boolean): Uint8Array {
  const points = [0xfeff, ...Array.from(text, (c) => c.codePointAt(0)!)];
  const bytes = new Uint8Array(points.length * 4);
  const view = new DataView(bytes.buffer);
  points.forEach((point, i) => view.setUint32(i * 4, point, !bigEndian));
  return bytes;
}

Deno.test("dependency maps are read in every encoding PowerShell writes", async () => {
  await withBox(async ({ tmp }) => {
    // Windows PowerShell 5.1's ConvertTo-Json layout, CRLF.
    const text =
      '{\r\n    "hv01":  [\r\n                 "dc01",\r\n                 "vmm01"\r\n             ],\r\n    "app01":  "dc01"\r\n}\r\n';
    const utf8 = new TextEncoder().encode(text);
    const encodings: [string, Uint8Array][] = [
      ["UTF-8 without BOM (PowerShell 7)", utf8],
      ["UTF-8 with BOM (-Encoding UTF8)", new Uint8Array([0xef, 0xbb, 0xbf, ...utf8])],
      ["UTF-16 LE with BOM (Out-File, -Encoding Unicode)", utf16(text, false)],
      ["UTF-16 BE with BOM (-Encoding BigEndianUnicode)", utf16(text, true)],
      ["UTF-32 LE with BOM (-Encoding UTF32)", utf32(text, false)],
      ["ANSI (-Encoding Default)", utf8],
    ];
    for (const [name, bytes] of encodings) {
      const file = join(tmp, "map.json");
      await Deno.writeFile(file, bytes);
      assert.deepEqual(
        await cli(["deps", "dc01", "--dependencies-file", file]),
        { code: 0, stdout: "app01\nhv01\n", stderr: "" },
        name,
      );
    }
    // ANSI is read as Windows-1252, not as broken UTF-8: the é shows in the message.
    const file = join(tmp, "ansi.json");
    await Deno.writeFile(
      file,
      new Uint8Array([
        ...new TextEncoder().encode('{"caf'),
        0xe9,
        ...new TextEncoder().encode('": []}'),
      ]),
    );
    assertOneLineError(await cli(["deps", "dc01", "--dependencies-file", file]), 2, '"café"');
  });
});

// ---------------------------------------------------------------------------
// 7. Config files

Deno.test("any failure of a config file exits 2 naming it, in one line, without a stack trace", async () => {
  await withBox(async ({ tmp, store, root }) => {
    const cases: [string, string, string][] = [
      ["getter.ts", 'export default { get lockRetries() { throw new Error("boom"); } };', "boom"],
      [
        "proxy.ts",
        'export default new Proxy({}, { ownKeys() { throw new Error("no keys"); } });',
        "no keys",
      ],
      ["syntax.ts", "export default {", "config"],
      ["throws.ts", 'throw new Error("broken at load");\nexport default {};', "broken at load"],
      ["throws-value.ts", "throw 42;\nexport default {};", "42"],
      ["number.ts", "export default 42;", "expected an object"],
      ["none.ts", "export const x = 1;", "expected an object"],
      ["lease.ts", 'export default { lease: "0ms" };', '"lease"'],
      ["run-lease.ts", "export default { runLease: 0 };", '"runLease"'],
      ["bigint.ts", "export default { lockRetries: 10n };", '"lockRetries"'],
      [
        "cycle.ts",
        "const a: Record<string, unknown> = {}; a.a = a; export default { lockTimeout: a };",
        '"lockTimeout"',
      ],
    ];
    for (const [name, source, mention] of cases) {
      const file = join(tmp, name);
      await Deno.writeTextFile(file, source);
      for (const command of [["lock", "hv01"], ["status", "hv01"], ["deps", "hv01"]]) {
        assertOneLineError(
          await cli([...command, "--store", store, "--config-file", file]),
          2,
          file,
          mention,
        );
      }
    }
    const missing = join(tmp, "missing.ts");
    assertOneLineError(
      await cli(["status", "hv01", "--config-file", missing]),
      2,
      missing,
      "does not exist",
    );
    assertOneLineError(await cli(["status", "hv01", "--config-file", tmp]), 2, tmp, "folder");
    assert.deepEqual([...Deno.readDirSync(root)], []);
  });
});

Deno.test("a config file that is a FIFO or a device exits 2 at once", async () => {
  if (Deno.build.os === "windows") return;
  await withBox(async ({ tmp }) => {
    const fifo = join(tmp, "config.ts");
    assert.ok((await new Deno.Command("mkfifo", { args: [fifo] }).output()).success);
    assertOneLineError(
      await cli(["status", "hv01", "--config-file", fifo], 5_000),
      2,
      fifo,
      "FIFO",
    );
    assertOneLineError(
      await cli(["status", "hv01", "--config-file", "/dev/zero"], 5_000),
      2,
      "character device",
    );
  });
});

Deno.test("the command line with a config whose top-level await never settles exits 2 naming it, within the load bound", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "stuck.ts");
    await Deno.writeTextFile(file, "await new Promise(() => {});\nexport default {};");
    const result = await runCli([
      "status",
      "hv01",
      "--store",
      join(dir, "{0}"),
      "--config-file",
      file,
    ], {
      timeoutMs: 30_000,
    });
    assertOneLineError(result, 2, file, "did not finish loading");
    assert.ok(result.ms < 20_000, `took ${result.ms}ms`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------
// 4. The library from untyped JavaScript

/** An array whose length throws when read (a hostile proxy), as from untyped JavaScript. */
function throwingList(items: string[]): string[] {
  return new Proxy(items, {
    get(target, key) {
      if (key === "length") throw new Error("length");
      return Reflect.get(target, key);
    },
  });
}

Deno.test("library calls from untyped JavaScript are InputErrors naming what is wrong, and touch nothing", async () => {
  await withBox(async ({ tmp, store }) => {
    // A decoy where "../../../decoy" would land from a store three folders deep.
    const deepStore = join(tmp, "a", "b", "c", "{0}");
    await Deno.mkdir(join(tmp, "a", "b", "c"), { recursive: true });
    await Deno.mkdir(join(tmp, "decoy"));
    await Deno.writeTextFile(join(tmp, "decoy", "Host.lock"), "do not touch\n");
    const before = await snapshotTree(tmp);
    // deno-lint-ignore no-explicit-any
    const js = (fn: (...args: any[]) => unknown) => fn as (...args: unknown[]) => Promise<unknown>;
    const cases: [string, () => unknown, RegExp][] = [
      [
        "unlock ../ host",
        () =>
          js(unlockResource)({ host: "../../../decoy", lockId: "Host", type: "Host" }, {
            store: deepStore,
            force: true,
          }),
        /Invalid lock object: Invalid host name/,
      ],
      [
        "unlock ../ host in a list",
        () =>
          js(unlockResource)(["dc01/Host@s1", { host: "../../../decoy", lockId: "Host" }], {
            store: deepStore,
            force: true,
          }),
        /Invalid host name/,
      ],
      [
        "unlock lock id with a path",
        () =>
          js(unlockResource)({ host: "dc01", lockId: "Generic-a/../../../decoy/Host" }, {
            store: deepStore,
            force: true,
          }),
        /Invalid lock object: .*session/,
      ],
      [
        "unlock type mismatch",
        () => js(unlockResource)({ host: "dc01", lockId: "Host", type: "Generic" }, { store }),
        /type "Generic" does not match/,
      ],
      [
        "unlock two sessions",
        () =>
          js(unlockResource)({ host: "dc01", lockId: "Generic-s1", sessionId: "s2" }, { store }),
        /does not match the session/,
      ],
      [
        "unlock numeric session",
        () => js(unlockResource)({ host: "dc01", lockId: "Host", sessionId: 42 }, { store }),
        /sessionId: expected a string, got a number/,
      ],
      [
        "unlock 42",
        () => js(unlockResource)(42, { store }),
        /Invalid lock: expected a lock object or a ref.*got a number/,
      ],
      ["unlock null", () => js(unlockResource)(null, { store }), /got null/],
      ["unlock undefined", () => js(unlockResource)(undefined, { store }), /got undefined/],
      ["unlock [42]", () => js(unlockResource)([42], { store }), /got a number/],
      [
        "unlock null options",
        () => js(unlockResource)("dc01/Host@s1", null),
        /Invalid options of unlockResource\(\): expected an object, got null/,
      ],
      [
        "unlock force 'yes'",
        () => js(unlockResource)("dc01/Host", { store, force: "yes" }),
        /Invalid option "force"/,
      ],
      [
        "lock numeric session",
        () => js(lockResource)("dc01", { store, sessionId: 42, dependencies: {} }),
        /Invalid option "sessionId" of lockResource\(\): expected a string, got a number/,
      ],
      [
        "lock null options",
        () => js(lockResource)("dc01", null),
        /Invalid options of lockResource\(\)/,
      ],
      [
        "lock host 42",
        () => js(lockResource)(42, { store }),
        /Invalid host name: expected a string, got a number/,
      ],
      ["lock host ../x", () => js(lockResource)("../x", { store }), /Invalid host name/],
      ["lock caller 42", () => js(lockResource)("dc01", { store, caller: 42 }), /"caller"/],
      [
        // Written into the lock file: a lock too large to be read back could never be released.
        "lock caller of 2 MB",
        () => js(lockResource)("dc01", { store, caller: "x".repeat(2_000_000), dependencies: {} }),
        /"caller" of lockResource\(\): expected a string of at most 10000 characters, got 2000000/,
      ],
      [
        "lock description of 10001 characters",
        () =>
          js(lockResource)("dc01", { store, description: "d".repeat(10_001), dependencies: {} }),
        /"description"/,
      ],
      [
        "lockFile path of 20000 characters",
        () => js(lockFileResource)(`\\\\fs01\\share\\${"p".repeat(20_000)}`, { store }),
        /"description"/,
      ],
      [
        "lock type host",
        () => js(lockResource)("dc01", { store, type: "host" }),
        /Invalid lock type/,
      ],
      ["lock ttl object", () => js(lockResource)("dc01", { store, ttl: {} }), /"ttl"/],
      ["lock retries '3'", () => js(lockResource)("dc01", { store, retries: "3" }), /"retries"/],
      ["lock signal", () => js(lockResource)("dc01", { store, signal: "stop" }), /"signal"/],
      ["lock onProgress", () => js(lockResource)("dc01", { store, onProgress: 1 }), /"onProgress"/],
      [
        "lock dependencies array",
        () => js(lockResource)("dc01", { store, dependencies: [] }),
        /"dependencies"/,
      ],
      [
        "lock dependencies null",
        () => js(lockResource)("dc01", { store, dependencies: null }),
        /"dependencies"/,
      ],
      ["lock store 42", () => js(lockResource)("dc01", { store: 42 }), /"store"/],
      ["lock clock", () => js(lockResource)("dc01", { store, clock: {} }), /"clock"/],
      ["lock config null", () => js(lockResource)("dc01", { store, config: null }), /"config"/],
      ["lock config getter", () =>
        js(lockResource)("dc01", {
          store,
          config: {
            get lockRetries() {
              throw new Error("boom");
            },
          },
        }), /boom/],
      ["tryLock null options", () => js(tryLockResource)("dc01", null), /tryLockResource/],
      ["lockHost null options", () => js(lockHostResource)("dc01", null), /lockHostResource/],
      ["lockHost hard 'yes'", () => js(lockHostResource)("dc01", { store, hard: "yes" }), /"hard"/],
      [
        "lockFile 42",
        () => js(lockFileResource)(42, { store }),
        /Invalid file path: expected a string/,
      ],
      ["test type 42", () => js(testHostResourceLock)("dc01", { store, type: 42 }), /"type"/],
      ["test type [42]", () => js(testHostResourceLock)("dc01", { store, type: [42] }), /"type"/],
      ["test host null", () => js(testHostResourceLock)(null, { store }), /got null/],
      ["status 42", () => js(getResourceLockStatus)(42, { store }), /Invalid hosts/],
      [
        "status [42]",
        () => js(getResourceLockStatus)([42], { store }),
        /Invalid host name: expected a string/,
      ],
      [
        "status null options",
        () => js(getResourceLockStatus)("dc01", null),
        /getResourceLockStatus/,
      ],
      [
        "history limit '5'",
        () => js(getResourceLockHistory)("dc01", { store, limit: "5" }),
        /"limit"/,
      ],
      ["break 42", () => js(breakResourceLock)(42, { store, force: true }), /got a number/],
      [
        "break ../ host",
        () =>
          js(breakResourceLock)({ host: "../../../decoy", lockId: "Host" }, {
            store: deepStore,
            force: true,
          }),
        /Invalid host name/,
      ],
      [
        "break reason of 2 MB",
        () => js(breakResourceLock)("dc01/Host", { store, reason: "r".repeat(2_000_000) }),
        /"reason"/,
      ],
      [
        "break reason 42",
        () => js(breakResourceLock)("dc01/Host", { store, reason: 42 }),
        /"reason"/,
      ],
      [
        "deps map null",
        () => js(getResourceDependence)("dc01", { dependencies: null }),
        /"dependencies"/,
      ],
      [
        "deps map of numbers",
        () => js(getResourceDependence)("dc01", { dependencies: { hv01: [1] } }),
        /expected a host name string, got a number/,
      ],
      ["id null", () => js(getResourceLockId)(null), /got null/],
      ["id 42", () => js(getResourceLockId)(42), /got a number/],
      ["config null options", () => js(getResolvedConfig)(null), /getResolvedConfig/],
      ["fleet null options", () => js(getFleetStatus)(null), /getFleetStatus/],
      ["fleet hosts '42'", () => js(getFleetStatus)({ store, hosts: "dc01" }), /"hosts"/],
      ["fleet hosts [42]", () => js(getFleetStatus)({ store, hosts: [42] }), /"hosts"/],
      ["fleet hosts ../x", () => js(getFleetStatus)({ store, hosts: ["../x"] }), /host name/],
      ["fleet hostsFile 42", () => js(getFleetStatus)({ store, hostsFile: 42 }), /"hostsFile"/],
      ["group name 42", () => js(getGroupStatus)(42, { store }), /Invalid group name/],
      ["group null options", () => js(getGroupStatus)("g", null), /getGroupStatus/],
      ["group unknown", () => js(getGroupStatus)("nope", { store }), /Unknown maintenance group/],
      ["groups host 42", () => js(getMaintenanceGroups)({ host: 42 }), /"host"/],
      [
        "groups config max '1'",
        () =>
          js(getMaintenanceGroups)({
            config: { groups: [{ name: "g", members: ["h"], max: "1" }] },
          }),
        /group "g" max: expected a whole number >= 1, got a string/,
      ],
      [
        "groups config members null",
        () =>
          js(getMaintenanceGroups)({ config: { groups: [{ name: "g", members: null, max: 1 }] } }),
        /members: expected an array of host names, got null/,
      ],
      // Getters and proxies of untyped JavaScript: read once, and what
      // they throw is bad input, never a raw error from deep inside.
      [
        "options with a throwing getter",
        () =>
          js(testHostResourceLock)("dc01", {
            get store() {
              throw new Error("vault down");
            },
          }),
        /Invalid options of testHostResourceLock\(\): reading them failed: vault down/,
      ],
      [
        "options a proxy whose keys throw",
        () =>
          js(unlockResource)(
            "dc01/Host@s1",
            new Proxy({}, {
              ownKeys() {
                throw new RangeError("no keys");
              },
            }),
          ),
        /Invalid options of unlockResource\(\): reading them failed: no keys/,
      ],
      [
        "type list whose length throws",
        () => js(testHostResourceLock)("dc01", { store, type: throwingList(["Host"]) }),
        /reading them failed: length/,
      ],
      [
        "dependency list whose length throws",
        () => js(getResourceDependence)("dc01", { dependencies: { dc01: throwingList(["a"]) } }),
        /at "dc01": cannot be read: length/,
      ],
      [
        "lock object with a throwing getter",
        () =>
          js(unlockResource)({
            host: "dc01",
            lockId: "Host",
            get sessionId() {
              throw new Error("no session");
            },
          }, { store }),
        /Invalid lock object: reading it failed: no session/,
      ],
      [
        "id of a lock object with a throwing getter",
        () =>
          js(getResourceLockId)({
            get host() {
              throw new Error("no host");
            },
          }),
        /Invalid lock object: reading it failed: no host/,
      ],
      [
        "unlock a list whose length throws",
        () => js(unlockResource)(throwingList(["dc01/Host@s1"]), { store }),
        /Invalid locks of unlockResource\(\): reading them failed: length/,
      ],
      [
        "unlock an object made on ResourceLock's prototype",
        () => js(unlockResource)(Object.create(ResourceLock.prototype, { locks: { value: [] } })),
        /Invalid lock object/,
      ],
      [
        "id of an object made on ResourceLock's prototype",
        () =>
          js(getResourceLockId)(Object.create(ResourceLock.prototype, { locks: { value: [] } })),
        /Invalid lock object/,
      ],
      [
        "a session id of 100000 characters is cut in the message",
        () => js(lockResource)("dc01", { store, dependencies: {}, sessionId: "a".repeat(100_000) }),
        /^Invalid session id "a{80}… \(100000 characters\)": use letters/,
      ],
    ];
    for (const [name, call, message] of cases) {
      let error: unknown;
      try {
        await call();
      } catch (caught) {
        error = caught;
      }
      assert.ok(error instanceof InputError, `${name}: expected InputError, got ${error}`);
      assert.match(error.message, message, name);
      assert.ok(!error.message.includes("\n"), name);
    }
    assert.deepEqual(await snapshotTree(tmp), before, "nothing changed, in the store or out of it");
  });
});

Deno.test("a lock with the longest caller and description allowed is released, and so is its break record", async () => {
  await withBox(async ({ store }) => {
    // The worst case for size: every character escaped as \uXXXX in the file.
    const caller = "\u2028".repeat(10_000);
    const description = "\u00e9".repeat(10_000);
    const lock = await lockResource("dc01", { store, dependencies: {}, caller, description });
    const [status] = await getResourceLockStatus("dc01", { store });
    assert.equal(status?.caller, caller);
    await breakResourceLock(lock.refs[0]!, { store, force: true, reason: "\u2029".repeat(10_000) });
    const [record] = await getResourceLockHistory("dc01", { store });
    assert.equal(record?.description, description);
    assert.deepEqual(await getResourceLockStatus("dc01", { store }), []);
  });
});

Deno.test("id of a ref whose session has a dot is that ref's lock id, not a file name's stem", async () => {
  // Sessions may hold ".": "lock --session-id a.b" prints hv01/Generic-a.b,
  // which id read as a file name with the extension ".b" ("Generic-a").
  assert.equal(getResourceLockId("hv01/Generic-a.b"), "Generic-a.b");
  assert.equal(getResourceLockId("hv01/Generic-a.b@a.b"), "Generic-a.b");
  assert.equal(getResourceLockId("hv01/File-1.2.3"), "File-1.2.3");
  assert.deepEqual(await cli(["id", "hv01/Generic-a.b"]), {
    code: 0,
    stdout: "Generic-a.b\n",
    stderr: "",
  });
  // File names and paths keep the original's rule: the name without its extension.
  assert.equal(getResourceLockId("hv01/Generic-a.b.lock"), "Generic-a.b");
  assert.equal(getResourceLockId("Generic-a.b"), "Generic-a");
  assert.equal(getResourceLockId("dir/Host.txt"), "Host");
  assert.equal(getResourceLockId("\\\\dc01\\ResourceLocks\\Generic-abc.lock"), "Generic-abc");
});

Deno.test("a lock object read back from JSON is released like a ref; a tampered one is refused", async () => {
  await withBox(async ({ store }) => {
    const lock = await lockResource("dc01", { store, dependencies: {}, type: "Host" });
    const copy = JSON.parse(JSON.stringify(lock.locks[0]));
    await assert.rejects(
      unlockResource({ ...copy, host: "../dc01" }, { store }),
      InputError,
    );
    const [result] = await unlockResource(copy, { store });
    assert.equal(result!.status, "released");
    assert.equal(lock.released, false); // the object itself did not release; the store did
    await lock.release();
  });
});

// ---------------------------------------------------------------------------
// 1. Output escaping

const EVIL = "evil\x1b]0;pwned\x07\x1b[31mred\u009b2J\u202egnp.exe\nError: fake line\r" +
  "x".repeat(5000);

Deno.test("store content reaches the terminal escaped and cut; --json keeps it exact", async () => {
  await withBox(async ({ store, root, deps }) => {
    const lock = await lockResource("hv01", {
      store,
      dependencies: {},
      type: "Host",
      caller: EVIL,
      description: EVIL,
    });
    // A planted lock file whose very name carries escape sequences.
    await Deno.writeTextFile(join(root, "hv01", "Generic-a\x1b]0;x\x07.lock"), "");
    const outputs: Result[] = [];
    const checkText = (result: Result, what: string) => {
      outputs.push(result);
      for (const channel of [result.stdout, result.stderr]) {
        assert.doesNotMatch(channel, RAW_CONTROL, `${what}: a raw control character`);
        assert.ok(!channel.includes("x".repeat(1001)), `${what}: a value was not cut`);
        for (const line of channel.split("\n")) {
          assert.ok(!line.startsWith("Error: fake"), `${what}: a forged line`);
        }
      }
    };

    const status = await cli(["status", "hv01", "--store", store]);
    checkText(status, "status");
    assert.equal(status.code, 0, status.stderr);
    assert.match(
      status.stdout,
      /evil\\x1b\]0;pwned\\x07\\x1b\[31mred\\x9b2J\\u\{202e\}gnp\.exe\\nError: fake line\\rx+… \(5\d{3} characters\)/,
    );

    const busy = await cli([
      "lock",
      "hv01",
      "--store",
      store,
      "--dependencies-file",
      deps,
      "--retries",
      "2",
      "--timeout",
      "10ms",
    ]);
    checkText(busy, "lock");
    assert.equal(busy.code, 3);
    assert.match(busy.stderr, /^\S+Z Waiting for "hv01": .*evil\\x1b\]0;pwned.*attempt 1 of 2/m);
    assert.match(busy.stderr, /^Error: .*evil\\x1b\]0;pwned.*$/m);

    const json = await cli(["status", "hv01", "--store", store, "--json"]);
    assert.doesNotMatch(json.stdout, RAW_CONTROL, "--json is terminal-safe too");
    const document = JSON.parse(json.stdout);
    const host = document.locks.find((l: { lockId: string }) => l.lockId === "Host");
    assert.equal(host.caller, EVIL, "--json keeps the exact value");
    assert.equal(host.description, EVIL);

    const ref = lock.refs[0]!;
    const broke = await cli(["break", ref, "--force", "--reason", EVIL, "--store", store]);
    checkText(broke, "break");
    assert.equal(broke.code, 0, broke.stderr);
    assert.match(broke.stderr, /^Broke .*evil\\x1b/);

    const unlock = await cli(["unlock", ref, "--store", store]);
    checkText(unlock, "unlock");
    assert.equal(unlock.code, 5);
    assert.match(unlock.stderr, /^Lost: .*\(evil\\x1b\]0;pwned/);

    const history = await cli(["history", "hv01", "--store", store]);
    checkText(history, "history");
    assert.match(history.stdout, /evil\\x1b/);
    const historyJson = JSON.parse(
      (await cli(["history", "hv01", "--store", store, "--json"])).stdout,
    );
    assert.equal(historyJson.entries[0].breakReason, EVIL);
    assert.equal(historyJson.entries[0].caller, EVIL);
    await lock.release().catch(() => {});
    assert.ok(outputs.length >= 5);
  });
});

Deno.test("user input echoed in messages is escaped and cut too", async () => {
  await withBox(async ({ store }) => {
    for (
      const args of [
        [`bad\x1b[2Jcommand${"y".repeat(3000)}`],
        ["lock", `h\x1b]0;x\x07`, "--store", store],
        ["lock", "hv01", "--store", store, `--\x1b[31m`],
        ["id", "\x1b[2J.lock"],
        ["lock", "hv01", "--store", `/tmp/\x1b]0;t\x07`],
      ]
    ) {
      const result = await cli(args);
      assert.doesNotMatch(result.stdout + result.stderr, RAW_CONTROL, args.join(" "));
      assert.ok(result.stderr.split("\n").every((line) => line.length < 1100), "lines are cut");
    }
  });
});

Deno.test("the folder above a path with a long run of separators is found at once", () => {
  // It was found with /[\\/]+$/, which scans a run of separators again from
  // each one when the run does not end the path: 200000 took most of a minute.
  const path = `/tmp/${"/".repeat(200_000)}missing`;
  const started = Date.now();
  assert.equal(parentPath(path), `/tmp${"/".repeat(200_000)}`);
  assert.equal(parentPath("/var/lib/locks/dc01///"), "/var/lib/locks");
  const ms = Date.now() - started;
  assert.ok(ms < 1_000, `took ${ms} ms`);
});
