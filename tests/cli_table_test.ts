/**
 * The command line's one declaration (`cli/commands.ts`) against everything
 * written from it: `--help`, the README's reference, the parser, the shell
 * completions (run in bash, zsh, fish and PowerShell where installed), and
 * the defaults the library really applies. Also the deprecated names, and
 * `deps` graphs with host names that used to collide.
 *
 * `deno task readme` (this file with `-- --update`) rewrites the README's
 * reference from the declaration.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { COMMANDS, GLOBAL_FLAGS } from "../cli/commands.ts";
import type { CommandDeclaration, FlagDeclaration } from "../cli/command.ts";
import { completionScript, SHELLS } from "../cli/completions.ts";
import { dotGraph, mermaidGraph } from "../cli/commands/deps.ts";
import { README_BEGIN, README_END, readmeReference } from "../cli/help.ts";
import { parseArgs } from "../cli/parse.ts";
import { UsageError } from "../cli/errors.ts";
import { getResolvedConfig, getResourceDependence, InputError } from "../mod.ts";
import { CONFIG_DEFAULTS, configWarnings, RENAMED_SETTINGS } from "../src/config.ts";
import { parseDuration } from "../src/duration.ts";
import { lines, REPO_ROOT, runCli, runCliInProcess } from "./_cli_helpers.ts";
import { findPwsh, underCi } from "./_pwsh.ts";

const README = join(REPO_ROOT, "README.md");

/** Flags a command takes: its own, then the global ones. */
function flagsOf(command: CommandDeclaration): FlagDeclaration[] {
  return [...command.flags, ...GLOBAL_FLAGS];
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "rl-cli-table-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------------------
// --help

/** A flag as `--help` shows it. */
interface HelpFlag {
  label: string;
  default: string | undefined;
  setting: string | undefined;
}

/** The flags of one `Options:` or `Global options:` block of a help text, read back from its lines. */
function helpFlags(help: string, heading: string): Map<string, HelpFlag> {
  const all = help.split("\n");
  const start = all.indexOf(heading);
  assert.ok(start >= 0, `no "${heading}" in\n${help}`);
  const flags = new Map<string, HelpFlag>();
  let last: HelpFlag | undefined;
  for (const line of all.slice(start + 1)) {
    if (line === "") break;
    const flag = /^ {2}((?:-\w, )?--([a-z-]+)(?: [A-Z]+)?) {3,}(.*)$/.exec(line);
    const text = flag ? flag[3]! : line.trim();
    if (flag) {
      last = { label: flag[1]!, default: undefined, setting: undefined };
      flags.set(flag[2]!, last);
    }
    assert.ok(last, `a line before any flag: ${line}`);
    const note = /\((?:default: ([^;)]+))?(?:; )?(?:config "(\w+)")?[^)]*\)$/.exec(text);
    if (note?.[1] !== undefined) last.default = note[1];
    if (note?.[2] !== undefined) last.setting = note[2];
  }
  return flags;
}

Deno.test("--help lists every command, and each command's --help exactly its declared flags, defaults and settings", async () => {
  const main = await runCliInProcess(["--help"]);
  assert.equal(main.code, 0);
  const listed = main.stdout.split("\n").flatMap((line) =>
    /^ {2}([a-z][a-z-]*) (?:[<]| {2})/.exec(line)?.[1] ?? []
  );
  assert.deepEqual(listed, COMMANDS.map((c) => c.name));
  assert.deepEqual(
    [...helpFlags(main.stdout, "Global options:").keys()],
    GLOBAL_FLAGS.map((f) => f.name),
  );
  for (const command of COMMANDS) {
    const result = await runCliInProcess([command.name, "--help"]);
    assert.equal(result.code, 0, command.name);
    assert.equal(result.stderr, "", command.name);
    const shown = new Map([
      ...command.flags.length ? helpFlags(result.stdout, "Options:") : [],
      ...helpFlags(result.stdout, "Global options:"),
    ]);
    assert.deepEqual(
      [...shown.keys()],
      flagsOf(command).map((f) => f.name),
      `${command.name}: flags in --help`,
    );
    for (const flag of flagsOf(command)) {
      const help = shown.get(flag.name)!;
      assert.equal(
        help.label.replace(/^-\w, /, ""),
        `--${flag.name}${flag.value ? ` ${flag.value}` : ""}`,
      );
      assert.equal(help.default, flag.default, `${command.name} --${flag.name}: default`);
      assert.equal(help.setting, flag.setting, `${command.name} --${flag.name}: setting`);
    }
    const old = flagsOf(command).flatMap((f) => (f.deprecated ?? []).map((o) => `--${o}`));
    for (const name of old) {
      assert.ok(result.stdout.includes(`${name} (use `), `${command.name}: ${name}`);
    }
  }
});

Deno.test("the defaults --help shows are the ones the library applies", async () => {
  const config = await getResolvedConfig({ store: "/nonexistent/{0}" });
  const flag = (command: string, name: string) =>
    COMMANDS.find((c) => c.name === command)!.flags.find((f) => f.name === name)!;
  assert.equal(parseDuration(flag("lock", "timeout").default!, "t"), config.lockTimeoutMs);
  assert.equal(Number(flag("lock", "retries").default), config.lockRetries);
  assert.equal(parseDuration(flag("lock", "drain-timeout").default!, "t"), config.drainTimeoutMs);
  assert.equal(parseDuration(flag("run", "ttl").default!, "t"), config.runLeaseMs);
  assert.equal(config.leaseMs, undefined, "lock --ttl: none by default");
  // Every flag naming a setting that has a built-in default shows that default.
  for (const command of COMMANDS) {
    for (const f of command.flags) {
      if (f.setting === undefined || !Object.hasOwn(CONFIG_DEFAULTS, f.setting)) continue;
      const value = CONFIG_DEFAULTS[f.setting as keyof typeof CONFIG_DEFAULTS];
      if (typeof value === "boolean") continue; // --no-drain negates it
      assert.ok(f.default !== undefined, `${command.name} --${f.name}`);
      assert.equal(
        f.value === "TIME" ? parseDuration(f.default!, "t") : Number(f.default),
        f.value === "TIME" ? parseDuration(value as string | number, "t") : value,
        `${command.name} --${f.name}`,
      );
    }
  }
});

// ---------------------------------------------------------------------------
// README

/** The README's generated reference: what lies between its markers. */
async function readmeSection(): Promise<{ text: string; before: string; after: string }> {
  const readme = await Deno.readTextFile(README);
  const start = readme.indexOf(README_BEGIN);
  const end = readme.indexOf(README_END);
  assert.ok(start >= 0 && end > start, "the README has no generated command-line reference");
  return {
    text: readme.slice(start, end + README_END.length),
    before: readme.slice(0, start),
    after: readme.slice(end + README_END.length),
  };
}

/** The rows of the first Markdown table after `from` in `text`, cells trimmed, backslash escapes undone. */
function tableRows(text: string, header: string): string[][] {
  const all = text.split("\n");
  const start = all.findIndex((line) => line.startsWith(`| ${header} `));
  assert.ok(start >= 0, `no table "${header}"`);
  const rows: string[][] = [];
  for (const line of all.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    rows.push(
      line.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\(.)/g, "$1")),
    );
  }
  return rows;
}

Deno.test("the README's command-line reference is the one the declaration writes", async () => {
  const expected = readmeReference(COMMANDS, GLOBAL_FLAGS);
  const section = await readmeSection();
  if (Deno.args.includes("--update")) {
    await Deno.writeTextFile(README, section.before + expected + section.after);
    return;
  }
  assert.equal(section.text, expected, "run `deno task readme` to rewrite it");
});

Deno.test("the README lists each command's flags with the defaults and settings --help shows", async () => {
  const { text } = await readmeSection();
  const usages = text.split("\n").flatMap((line) =>
    /^resource-locker ([a-z-]+) /.exec(line)?.[1] ?? []
  );
  assert.deepEqual(usages, COMMANDS.map((c) => c.name));
  const rows = tableRows(text, "option");
  for (const command of COMMANDS) {
    const help = (await runCliInProcess([command.name, "--help"])).stdout;
    const shown = new Map([
      ...command.flags.length ? helpFlags(help, "Options:") : [],
      ...helpFlags(help, "Global options:"),
    ]);
    const mine = rows.filter(([, commands]) =>
      commands === "all" || commands!.split(", ").includes(command.name)
    );
    const names = mine.map(([label]) => /--([a-z-]+)/.exec(label!)![1]!);
    assert.deepEqual(new Set(names), new Set(shown.keys()), `${command.name}: README vs --help`);
    assert.equal(names.length, shown.size, `${command.name}: a flag twice in the README`);
    for (const [label, , , fallback, setting] of mine) {
      const name = /--([a-z-]+)/.exec(label!)![1]!;
      const help = shown.get(name)!;
      assert.equal(label, `\`${help.label}\``, `${command.name} --${name}`);
      assert.equal(fallback || undefined, help.default, `${command.name} --${name}: default`);
      const readmeSetting = /^`(\w+)`(?:,|$)/.exec(setting!)?.[1];
      assert.equal(
        readmeSetting?.startsWith("RESOURCE_") ? undefined : readmeSetting,
        help.setting,
        `${command.name} --${name}: setting`,
      );
    }
  }
  const renamed = tableRows(text, "old name").map(([old, now]) => [old, now]);
  const declared = [
    ...new Set(
      [...GLOBAL_FLAGS, ...COMMANDS.flatMap((c) => c.flags)].flatMap((f) =>
        (f.deprecated ?? []).map((o) => `\`--${o}\`>\`--${f.name}\``)
      ),
    ),
    ...[...RENAMED_SETTINGS].map(([o, n]) => `\`${o}\`>\`${n}\``),
  ];
  assert.deepEqual(renamed.map((r) => r.join(">")), declared);
});

// ---------------------------------------------------------------------------
// The parser

Deno.test("the parser takes every declared flag, by its old names too, and refuses the rest", () => {
  for (const command of COMMANDS) {
    for (const flag of flagsOf(command)) {
      if (flag.name === "help" || flag.name === "version") continue;
      for (const written of [flag.name, ...flag.deprecated ?? []]) {
        const args = [command.name, `--${written}`, ...flag.value ? ["v"] : []];
        const parsed = parseArgs(args, COMMANDS, GLOBAL_FLAGS);
        assert.equal(parsed.command, command);
        assert.equal(parsed.values[flag.name], flag.value ? "v" : true, args.join(" "));
        assert.deepEqual(
          parsed.deprecations,
          written === flag.name ? [] : [`"--${written}" is deprecated: use "--${flag.name}"`],
        );
      }
      if (flag.short) {
        assert.equal(
          parseArgs([command.name, `-${flag.short}`], COMMANDS, GLOBAL_FLAGS).values[flag.name],
          true,
        );
      }
    }
    for (const bad of ["--nope", "--constructor", "--__proto__", "--hasOwnProperty", "-x"]) {
      assert.throws(() => parseArgs([command.name, bad], COMMANDS, GLOBAL_FLAGS), UsageError);
    }
  }
  for (const name of ["constructor", "__proto__", "hasOwnProperty", "toString", "valueOf"]) {
    assert.throws(() => parseArgs([name, "--help"], COMMANDS, GLOBAL_FLAGS), /Unknown command/);
  }
  const other = COMMANDS.find((c) => c.flags.length === 0)!;
  assert.throws(
    () => parseArgs([other.name, "--force"], COMMANDS, GLOBAL_FLAGS),
    /Unknown option "--force"/,
  );
});

Deno.test("hasOwnProperty --help, constructor and __proto__ exit 2 as unknown commands", async () => {
  for (const args of [["hasOwnProperty", "--help"], ["constructor"], ["--json", "__proto__"]]) {
    const result = await runCliInProcess(args);
    assert.equal(result.code, 2, args.join(" "));
    assert.match(result.stderr, /^Error: Unknown command/m);
    assert.doesNotMatch(result.stdout + result.stderr, /function|native code/);
  }
});

// ---------------------------------------------------------------------------
// Deprecated names

Deno.test("old flag names work and print one deprecation line each on stderr", async () => {
  await withTemp(async (dir) => {
    const map = join(dir, "deps.json");
    await Deno.writeTextFile(map, JSON.stringify({ "hv01": ["app01"] }));
    const store = join(dir, "{0}");
    const now = await runCli(["deps", "app01", "--dependencies-file", map]);
    assert.deepEqual([now.code, now.stdout, now.stderr], [0, "hv01\n", ""]);
    const old = await runCli(["deps", "app01", "--file", map]);
    assert.deepEqual([old.code, old.stdout], [0, "hv01\n"]);
    assert.deepEqual(lines(old.stderr), [
      'Warning: "--file" is deprecated: use "--dependencies-file"',
    ]);
    const config = join(dir, "c.ts");
    await Deno.writeTextFile(config, "export default {};");
    const lock = await runCli([
      "--config",
      config,
      "lock",
      "web01",
      "--store",
      store,
      "--session",
      "s-1",
      "--session",
      "s-1",
      "--no-dependencies",
    ]);
    assert.equal(lock.code, 0, lock.stderr);
    assert.equal(lock.stdout, "web01/Generic-s-1\n");
    assert.deepEqual(lines(lock.stderr), [
      'Warning: "--config" is deprecated: use "--config-file"',
      'Warning: "--session" is deprecated: use "--session-id"',
    ]);
    const json = await runCli(["deps", "app01", "--file", map, "--json"]);
    assert.equal(JSON.parse(json.stdout).dependencies[0], "hv01", "--json keeps stdout a document");
    assert.equal(lines(json.stderr).length, 1);
  });
});

Deno.test("old setting names in a config file work and print one deprecation line each, once", async () => {
  await withTemp(async (dir) => {
    const map = join(dir, "deps.json");
    await Deno.writeTextFile(map, JSON.stringify({ "hv01": ["app01"] }));
    const config = join(dir, "old.ts");
    await Deno.writeTextFile(
      config,
      `export default { dependenciesFilePath: ${JSON.stringify(map)}, lockRetries: 1, ` +
        `folderPathTemplate: ${JSON.stringify(join(dir, "{0}"))}, runLease: "5s" };`,
    );
    const lock = await runCli(["lock", "app01", "--config-file", config, "--hard"]);
    assert.equal(lock.code, 0, lock.stderr);
    assert.deepEqual(lines(lock.stdout).map((ref) => ref.split("/")[0]), ["hv01", "app01"]);
    const where = `of config "${config}" is deprecated`;
    assert.deepEqual(lines(lock.stderr), [
      `Warning: Setting "dependenciesFilePath" ${where}: use "dependenciesFile"`,
      `Warning: Setting "lockRetries" ${where}: use "retries"`,
      `Warning: Setting "folderPathTemplate" ${where}: use "store"`,
      `Warning: Setting "runLease" ${where}: use "runTtl"`,
    ]);
    // The old names took effect: one attempt only, on the store they named.
    const busy = await runCli(["lock", "app01", "--config-file", config, "--timeout", "0", "-q"]);
    assert.equal(busy.code, 3, busy.stderr);
    assert.match(busy.stderr, /\(1 attempt\)$/m);
    const both = join(dir, "both.ts");
    await Deno.writeTextFile(both, `export default { lockRetries: 1, retries: 2 };`);
    const refused = await runCli(["status", "app01", "--config-file", both]);
    assert.equal(refused.code, 2);
    assert.deepEqual(lines(refused.stderr), [
      `Error: Invalid config "${both}": "lockRetries" and "retries" are one setting: keep "retries"`,
    ]);
  });
});

Deno.test("the library reports old names through onWarning and ResolvedConfig.warnings, never printing", async () => {
  await withTemp(async (dir) => {
    const map = join(dir, "deps.json");
    await Deno.writeTextFile(map, JSON.stringify({ "hv01": ["app01"] }));
    const warnings: string[] = [];
    const onWarning = (message: string) => warnings.push(message);
    assert.deepEqual(await getResourceDependence("app01", { file: map, onWarning }), ["hv01"]);
    assert.deepEqual(warnings, [
      'Option "file" of getResourceDependence() is deprecated: use "dependenciesFile"',
    ]);
    assert.deepEqual(await getResourceDependence("app01", { dependenciesFile: map }), ["hv01"]);
    await assert.rejects(
      () => getResourceDependence("app01", { file: map, dependenciesFile: map }),
      InputError,
    );
    warnings.length = 0;
    const config = await getResolvedConfig({
      store: join(dir, "{0}"),
      config: { lockRetries: 5, lease: "1m", dependenciesFilePath: map },
      onWarning,
    });
    assert.equal(config.lockRetries, 5);
    assert.equal(config.leaseMs, 60_000);
    assert.equal(config.dependenciesFile, map);
    const expected = [
      'Setting "lockRetries" of the config option is deprecated: use "retries"',
      'Setting "lease" of the config option is deprecated: use "ttl"',
      'Setting "dependenciesFilePath" of the config option is deprecated: use "dependenciesFile"',
    ];
    assert.deepEqual(config.warnings, expected);
    assert.deepEqual(warnings, expected);
    const current = await getResolvedConfig({
      store: join(dir, "{0}"),
      config: { retries: 5, ttl: "1m", dependenciesFile: map },
    });
    assert.deepEqual([current.lockRetries, current.leaseMs, current.warnings], [5, 60_000, []]);
    assert.deepEqual(configWarnings({ retries: 1 }), []);
  });
});

// ---------------------------------------------------------------------------
// deps graphs

/** Reads a Mermaid flowchart back: node ids and labels, edges; fails on any other line. */
function readMermaid(text: string): { labels: Map<string, string>; edges: [string, string][] } {
  const [first, ...rest] = text.trimEnd().split("\n");
  assert.equal(first, "graph LR");
  const labels = new Map<string, string>();
  const edges: [string, string][] = [];
  for (const line of rest) {
    const node = /^ {2}([A-Za-z][A-Za-z0-9]*)\["([^"]*)"\]$/.exec(line);
    const edge = /^ {2}([A-Za-z][A-Za-z0-9]*) --> ([A-Za-z][A-Za-z0-9]*)$/.exec(line);
    if (node) {
      assert.ok(!labels.has(node[1]!), `node ${node[1]} declared twice`);
      labels.set(node[1]!, node[2]!.replaceAll("#quot;", '"'));
    } else if (edge) edges.push([edge[1]!, edge[2]!]);
    else assert.fail(`not a node or an edge: ${line}`);
  }
  return { labels, edges };
}

/** Words Mermaid's flowchart grammar reserves: a node id spelled so breaks the diagram. */
const MERMAID_KEYWORDS = [
  "end",
  "graph",
  "flowchart",
  "subgraph",
  "style",
  "class",
  "click",
  "default",
];

Deno.test("deps --format mermaid keeps hv-01 and hv_01 apart and survives hosts named after keywords", async () => {
  await withTemp(async (dir) => {
    const hosts = ["hv-01", "hv_01", "hv.01", "end", "graph", "subgraph", "default", "class"];
    const map = join(dir, "deps.json");
    await Deno.writeTextFile(
      map,
      JSON.stringify(Object.fromEntries(hosts.map((h) => [h, ["app01"]]))),
    );
    const listed = await runCli(["deps", "app01", "--dependencies-file", map]);
    const expected = lines(listed.stdout);
    assert.deepEqual(new Set(expected), new Set(hosts));
    const result = await runCli([
      "deps",
      "app01",
      "--dependencies-file",
      map,
      "--format",
      "mermaid",
    ]);
    assert.equal(result.code, 0, result.stderr);
    const { labels, edges } = readMermaid(result.stdout);
    assert.equal(labels.size, hosts.length + 1, "one node per host");
    const idOf = new Map([...labels].map(([id, label]) => [label, id]));
    assert.deepEqual(
      [...idOf.keys()].sort(),
      ["app01", ...hosts].sort(),
      "labels show the real names",
    );
    for (const id of labels.keys()) assert.ok(!MERMAID_KEYWORDS.includes(id.toLowerCase()), id);
    assert.deepEqual(
      edges,
      expected.map((host) => [idOf.get("app01"), idOf.get(host)]),
      "an edge from the host to each host locked with it, in order",
    );
  });
});

Deno.test("deps --format dot quotes every name, so keywords and colliding names stay distinct", async () => {
  await withTemp(async (dir) => {
    const hosts = ["hv-01", "hv_01", "node", "edge", "graph", "strict"];
    const map = join(dir, "deps.json");
    await Deno.writeTextFile(
      map,
      JSON.stringify(Object.fromEntries(hosts.map((h) => [h, ["app01"]]))),
    );
    const result = await runCli(["deps", "app01", "--dependencies-file", map, "--format", "dot"]);
    assert.equal(result.code, 0, result.stderr);
    const body = lines(result.stdout);
    assert.equal(body.shift(), "digraph dependencies {");
    assert.equal(body.pop(), "}");
    const targets = body.map((line) => {
      const edge = /^ {2}"app01" -> "((?:[^"\\]|\\.)*)";$/.exec(line);
      assert.ok(edge, line);
      return edge[1]!;
    });
    assert.deepEqual(new Set(targets), new Set(hosts));
    assert.equal(targets.length, hosts.length);
  });
});

Deno.test("dotGraph() and mermaidGraph() escape quotes and backslashes in names, and show a host without dependencies", () => {
  assert.equal(dotGraph('a"b', ["c\\d"]), 'digraph dependencies {\n  "a\\"b" -> "c\\\\d";\n}');
  assert.equal(dotGraph("solo", []), 'digraph dependencies {\n  "solo";\n}');
  const { labels, edges } = readMermaid(mermaidGraph('a"b', ["end", 'x"y']));
  assert.deepEqual([...labels.values()], ['a"b', "end", 'x"y']);
  assert.equal(edges.length, 2);
  assert.deepEqual(readMermaid(mermaidGraph("solo", [])).edges, []);
});

// ---------------------------------------------------------------------------
// Completions

/** The words a command line completes to in each case, from the declarations. */
function expectedFlags(command: CommandDeclaration | undefined, prefix: string): string[] {
  const flags = command ? flagsOf(command) : [...GLOBAL_FLAGS];
  return flags.map((f) => `--${f.name}`).filter((name) => name.startsWith(prefix)).sort();
}

function commandNamed(name: string): CommandDeclaration {
  return COMMANDS.find((c) => c.name === name)!;
}

/** Cases every shell is asked: the words typed (the last one being completed) and what it offers. */
function completionCases(dir: string): { words: string[]; expected: string[] }[] {
  return [
    { words: ["lo"], expected: COMMANDS.map((c) => c.name).filter((n) => n.startsWith("lo")) },
    { words: ["--store", "/locks", "st"], expected: ["status"] },
    { words: ["lock", "h", "--d"], expected: expectedFlags(commandNamed("lock"), "--d") },
    { words: ["lock", "h", "--type", ""], expected: ["file", "generic", "host"] },
    { words: ["test", "h", "--type", ""], expected: ["any", "file", "generic", "host"] },
    { words: ["deps", "h", "--format", "m"], expected: ["mermaid"] },
    { words: ["completions", ""], expected: [...SHELLS].sort() },
    { words: ["lock-file", `${dir}/sub`], expected: [`${dir}/sub-file.txt`] },
    { words: ["constructor", "--"], expected: [] },
  ];
}

/** Runs a shell script; throws with its output when it fails. */
async function shell(
  program: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<string> {
  const output = await new Deno.Command(program, {
    args,
    env: { NO_COLOR: "1", TERM: "dumb", LC_ALL: "C", ...env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const decoder = new TextDecoder();
  const text = decoder.decode(output.stdout);
  assert.equal(output.code, 0, `${program} failed:\n${text}\n${decoder.decode(output.stderr)}`);
  return text;
}

function which(name: string): string | undefined {
  if (name === "pwsh") return findPwsh();
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(join(dir, name)).isFile) return join(dir, name);
    } catch { /* not here */ }
  }
  return undefined;
}

/**
 * A test that needs a shell: skipped with a message when it is missing,
 * except under CI, where its absence fails.
 */
function shellTest(name: string, program: string, fn: (path: string) => Promise<void>): void {
  const path = which(program);
  if (path) {
    Deno.test(name, () => fn(path));
  } else if (underCi()) {
    Deno.test(name, () => {
      throw new Error(`${program} is required under CI (apt-get install ${program})`);
    });
  } else {
    console.warn(`%cSkipping: ${program} is not installed`, "color: yellow");
    Deno.test({ name: `${name} (skipped: no ${program})`, ignore: true, fn() {} });
  }
}

Deno.test("completions <shell> prints the script written from the declaration, and refuses other shells", async () => {
  for (const name of SHELLS) {
    const result = await runCliInProcess(["completions", name]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, completionScript(name, COMMANDS, GLOBAL_FLAGS) + "\n");
    for (const command of COMMANDS) {
      assert.ok(result.stdout.includes(command.name), `${name}: ${command.name}`);
    }
    for (const flag of [...GLOBAL_FLAGS, ...COMMANDS.flatMap((c) => c.flags)]) {
      assert.ok(result.stdout.includes(flag.name), `${name}: --${flag.name}`);
    }
  }
  const bad = await runCliInProcess(["completions", "tcsh"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^Error: Invalid shell "tcsh": expected bash, zsh, fish, powershell$/m);
});

async function writeScript(
  dir: string,
  shellName: typeof SHELLS[number],
  file: string,
): Promise<string> {
  const path = join(dir, file);
  await Deno.writeTextFile(path, completionScript(shellName, COMMANDS, GLOBAL_FLAGS) + "\n");
  await Deno.writeTextFile(join(dir, "sub-file.txt"), "");
  return path;
}

shellTest(
  "bash: the script registers with complete, and completes commands, flags, values and files",
  "bash",
  async (bash) => {
    await withTemp(async (dir) => {
      const script = await writeScript(dir, "bash", "c.bash");
      const cases = completionCases(dir);
      const run = (words: string[]) =>
        `COMP_WORDS=(resource-locker ${words.map((w) => `'${w}'`).join(" ")}); ` +
        `COMP_CWORD=${words.length}; COMPREPLY=(); _resource_locker; ` +
        `printf '%s\\n' "\${COMPREPLY[@]}" | sort; echo '<end>'`;
      const text = await shell(bash, [
        "--norc",
        "--noprofile",
        "-c",
        [
          `source '${script}'`,
          "complete -p resource-locker",
          ...cases.map((c) => run(c.words)),
          run(["run", "h", "--", "ech"]),
          run(["lock", "h", "--file", `${dir}/sub`]),
          run(["lock", "h", "--"]),
        ].join("\n"),
      ]);
      const [registered, ...answers] = text.split("\n");
      assert.equal(registered, "complete -F _resource_locker resource-locker");
      const blocks = answers.join("\n").split("<end>\n").map((b) => b.split("\n").filter(Boolean));
      cases.forEach((c, i) => assert.deepEqual(blocks[i]?.sort(), c.expected, c.words.join(" ")));
      assert.ok(blocks[cases.length]!.includes("echo"), "after run … -- a command");
      assert.deepEqual(
        blocks[cases.length + 1],
        [`${dir}/sub-file.txt`],
        "an old flag name completes as the new",
      );
      const lockFlags = blocks[cases.length + 2]!;
      assert.deepEqual(lockFlags, expectedFlags(commandNamed("lock"), "--"));
      assert.ok(lockFlags.includes("--dependencies-file") && !lockFlags.includes("--file"));
    });
  },
);

shellTest(
  "fish: the script parses, and complete -C offers commands, flags, values and files",
  "fish",
  async (fish) => {
    await withTemp(async (dir) => {
      const script = await writeScript(dir, "fish", "c.fish");
      await shell(fish, ["--no-execute", script]);
      const cases = completionCases(dir).filter((c) => c.words[0] !== "constructor");
      const text = await shell(fish, [
        "--no-config",
        "-c",
        [
          `source '${script}'`,
          ...cases.map((c) =>
            `complete -C ${fishWords(c.words)} | string replace -r '\\t.*' '' | sort; echo '<end>'`
          ),
        ].join("\n"),
      ], { HOME: dir, XDG_CONFIG_HOME: join(dir, "config"), XDG_DATA_HOME: join(dir, "data") });
      const blocks = text.split("<end>\n").map((b) => b.split("\n").filter(Boolean));
      cases.forEach((c, i) => assert.deepEqual(blocks[i]?.sort(), c.expected, c.words.join(" ")));
    });
  },
);

function fishWords(words: string[]): string {
  return `'resource-locker ${words.join(" ").replace(/'/g, "\\'")}'`;
}

shellTest(
  "zsh: the script parses, and loads under compinit as the completion of resource-locker",
  "zsh",
  async (zsh) => {
    await withTemp(async (dir) => {
      const script = await writeScript(dir, "zsh", "c.zsh");
      await shell(zsh, ["-n", script]);
      const text = await shell(zsh, [
        "-f",
        "-c",
        `autoload -U compinit; compinit -u -d '${dir}/zcompdump'; source '${script}'; ` +
        `print -r -- $_comps[resource-locker]; (( $+functions[_resource_locker] )) && print loaded`,
      ], { HOME: dir });
      assert.deepEqual(lines(text), ["_resource_locker", "loaded"]);
      // Structure: one branch per command with its flags, the values of --type and --format.
      const source = await Deno.readTextFile(script);
      for (const command of COMMANDS) {
        const branch = new RegExp(`^ {6}\\(${command.name}\\) _arguments .*$`, "m").exec(source);
        assert.ok(branch, command.name);
        for (const flag of command.flags) {
          assert.ok(branch[0].includes(`--${flag.name}`), `${command.name} --${flag.name}`);
        }
        for (
          const old of command.flags.flatMap((f) => f.deprecated ?? [])
        ) {
          assert.ok(
            !branch[0].includes(`'--${old}[`),
            `${command.name}: old name --${old} offered`,
          );
        }
      }
      assert.match(source, /'--type=\[lock type\]:type:\(host generic file\)'/);
      assert.match(source, /'--format=\[output\]:format:\(list json dot mermaid\)'/);
    });
  },
);

shellTest(
  "PowerShell: the script parses, and TabExpansion2 offers commands, flags and values",
  "pwsh",
  async (pwsh) => {
    await withTemp(async (dir) => {
      const script = await writeScript(dir, "powershell", "c.ps1");
      const cases = completionCases(dir).filter((c) => c.words[0] !== "lock-file"); // files: PowerShell's own
      const lineOf = (words: string[]) => `resource-locker ${words.join(" ")}`;
      const text = await shell(pwsh, [
        "-NoProfile",
        "-NonInteractive",
        "-Command",
        [
          "$errors = $null",
          `$null = [System.Management.Automation.Language.Parser]::ParseFile('${script}', [ref]$null, [ref]$errors)`,
          "'parse errors: ' + $errors.Count",
          `. '${script}'`,
          ...cases.map((c) =>
            `$line = '${lineOf(c.words)}'; ` +
            "(TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches | " +
            "Where-Object { $_.ResultType -ne 'ProviderItem' -and $_.ResultType -ne 'ProviderContainer' } | " +
            "ForEach-Object { $_.CompletionText } | Sort-Object; '<end>'"
          ),
        ].join("\n"),
      ], { HOME: dir, POWERSHELL_TELEMETRY_OPTOUT: "1", DOTNET_CLI_TELEMETRY_OPTOUT: "1" });
      const [first, ...rest] = text.split("\n");
      assert.equal(first, "parse errors: 0");
      const blocks = rest.join("\n").split("<end>\n").map((b) => b.split("\n").filter(Boolean));
      cases.forEach((c, i) => assert.deepEqual(blocks[i]?.sort(), c.expected, c.words.join(" ")));
    });
  },
);

Deno.test("deno task ok lints the docs of every export in deno.json, and they pass", async () => {
  const json = JSON.parse(await Deno.readTextFile(join(REPO_ROOT, "deno.json")));
  const linted = /deno doc --lint ([^&]+)/.exec(json.tasks.ok)?.[1]?.trim().split(/\s+/);
  const exports = Object.values(json.exports as Record<string, string>).map((p) =>
    p.replace(/^\.\//, "")
  );
  assert.deepEqual(linted?.sort(), exports.sort());
  const lint = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--lint", ...exports],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(lint.code, 0, new TextDecoder().decode(lint.stderr));
});
