/**
 * `deno task mutate`: mutation testing of the locking core with StrykerJS
 * (its command runner drives `deno test`), on a copy of the tree, never in
 * the work tree itself. Prints the score and every surviving mutant; a
 * survivor listed in `mutate/equivalent.json` is shown as justified.
 *
 * Usage: deno task mutate [--rev REV [--overlay FILE,…]] [--group G,…] [--mutate SPEC]… [--out DIR]
 * [--since DIR] [--report DIR] [--concurrency N] [--keep]
 *
 * - `--rev REV`: mutate a commit (`git archive REV`) instead of the work tree
 *   (tracked and untracked files, as they are now);
 * - `--overlay FILE,…`: with `--rev`, these files as they are in the work tree
 *   (new tests against the code of a commit);
 * - `--group G,…`: only `core` (the five core files), or some of `dependencies`, `lock_ref`,
 *   `resource_lock`, `lock_file`, `locker`, `cli` (the command line's `exitCodeOf`);
 * - `--mutate SPEC`: only these (Stryker's syntax, e.g. `src/locker.ts:700-760`);
 * - `--out DIR`: write the reports (`<group>.json`, Stryker's JSON format) to DIR;
 * - `--since DIR`: re-test only the survivors of the reports in DIR, for every
 *   file whose source is unchanged since (new tests cannot revive a killed
 *   mutant); a changed file is mutated whole. The score covers every mutant.
 * - `--report DIR`: print the summary of the reports in DIR, testing nothing;
 * - `--concurrency N`: test N mutants at a time (default 1: the machine is
 *   shared, and a test slowed down by its neighbours must not time out);
 * - `--keep`: keep the copy of the tree (its path is printed).
 *
 * Mutators: Stryker's, less string literals, regular expressions, object and
 * array literals (texts and shapes, not locking decisions); string and
 * template literals inside `new …Error(…)` are ignored by
 * `ignore_messages.mjs`.
 *
 * Exit code 0 when every survivor is justified, 1 when some is not, 2 when
 * the run itself failed (the unmutated tests fail, Stryker errs).
 *
 * Not part of CI: a full run (about 1,150 mutants, one at a time) takes one
 * to two hours on two shared cores; `--since` then re-tests only the
 * survivors, in minutes.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const STRYKER = "npm:@stryker-mutator/core@10.1.1/stryker";
const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);

/** One `deno test` run: files, and a filter on test names. */
interface Stage {
  files: string[];
  filter?: string;
}

/**
 * The tests of lock_file_test.ts that go through the locker (the command
 * line writing and reading lock files, PowerShell's among them); the others
 * test lock_file.ts alone.
 */
const LOCK_FILES_THROUGH_THE_CLI = "/PowerShell|lock writes/";

/**
 * Test selection per core file: the tests that exercise the core on the
 * local store (locking, race, lock_file, dependencies), for each file those
 * that reach it, likeliest to fail first (`--fail-fast` stops at the first
 * failure), one stage after the other. `fs_store_contract_test.ts` reaches
 * no core file (it tests the store below) and is left out. A smaller
 * selection can only let more mutants live: the score is a lower bound of
 * the score against every test.
 */
const CORE_GROUPS: { file: string; stages: Stage[] }[] = [
  {
    file: "src/dependencies.ts",
    stages: [
      { files: ["tests/mutants_test.ts", "tests/dependencies_test.ts"] },
      // Dependency maps in every encoding, files that are no maps.
      { files: ["tests/hostile_input_test.ts"], filter: "/dependency map/" },
      // Locking with dependencies: all or nothing, rollback, re-entry.
      {
        files: ["tests/locking_test.ts", "tests/race_test.ts"],
        filter: "/dependenc|rolls back|re-entered|opposite orders/",
      },
    ],
  },
  {
    file: "src/lock_ref.ts",
    stages: [
      { files: ["tests/lock_ref_test.ts", "tests/mutants_test.ts", "tests/locking_test.ts"] },
      { files: ["tests/race_test.ts"] },
      { files: ["tests/dependencies_test.ts"] },
      // Lock objects and refs handed in from untyped JavaScript.
      { files: ["tests/hostile_input_test.ts"], filter: "/untyped JavaScript|lock object/" },
    ],
  },
  {
    file: "src/resource_lock.ts",
    stages: [{ files: ["tests/mutants_test.ts", "tests/locking_test.ts", "tests/race_test.ts"] }],
  },
  {
    file: "src/lock_file.ts",
    stages: [
      { files: ["tests/mutants_test.ts", "tests/lock_file_test.ts"] },
      { files: ["tests/hostile_input_test.ts"], filter: "/dependency map/" },
      { files: ["tests/locking_test.ts", "tests/race_test.ts"] },
    ],
  },
  {
    file: "src/locker.ts",
    stages: [
      { files: ["tests/mutants_test.ts", "tests/locking_test.ts", "tests/race_test.ts"] },
      // Waiting: woken by changes and lease ends, `wait` instead of attempts.
      { files: ["tests/handoff_test.ts"] },
      // Slots of maintenance groups taken with Host locks.
      { files: ["tests/groups_test.ts"] },
      { files: ["tests/lock_file_test.ts"], filter: LOCK_FILES_THROUGH_THE_CLI },
    ],
  },
];
/** The command line's tests of exit codes: the unit test of `exitCodeOf` and the CLI's own. */
const CLI_STAGES: Stage[] = [
  { files: ["tests/mutants_test.ts"], filter: "/exitCodeOf/" },
  { files: ["tests/cli_test.ts"], filter: "/exit code|exits [0-9]/" },
];
const GROUP_NAMES = [...CORE_GROUPS.map((g) => groupName(g.file)), "cli"];

/** `src/lock_file.ts` → `lock_file`. */
function groupName(file: string): string {
  return file.replace(/^.*\//, "").replace(/\.ts$/, "");
}

interface Group {
  name: string;
  mutate: string[];
  command: string;
}

interface Location {
  start: { line: number; column: number };
  end: { line: number; column: number };
}

interface Mutant {
  id: string;
  mutatorName: string;
  replacement?: string;
  status: string;
  statusReason?: string;
  location: Location;
}

interface Report {
  files: Record<string, { source: string; mutants: Mutant[] }>;
}

/** A survivor shown to be equivalent: matched by file, mutator and text, not by line. */
interface Equivalent {
  file: string;
  mutator: string;
  original: string;
  replacement: string;
  /** The whole source line, trimmed, when the same text occurs twice in the file. */
  line?: string;
  why: string;
}

interface Row {
  file: string;
  line: number;
  column: number;
  mutator: string;
  original: string;
  replacement: string;
  sourceLine: string;
  status: string;
}

function usage(message: string): never {
  console.error(`mutate: ${message}`);
  console.error(
    "usage: deno task mutate [--rev REV [--overlay FILE,…]] [--group G,…] [--mutate SPEC]… [--out DIR] [--since DIR] [--report DIR] [--concurrency N] [--keep]",
  );
  Deno.exit(2);
}

function parseArgs(args: string[]) {
  const options = {
    rev: undefined as string | undefined,
    overlay: [] as string[],
    groups: GROUP_NAMES,
    mutate: [] as string[],
    out: undefined as string | undefined,
    since: undefined as string | undefined,
    report: undefined as string | undefined,
    concurrency: 1,
    keep: false,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const value = () => args[++i] ?? usage(`${arg} needs a value`);
    if (arg === "--rev") options.rev = value();
    else if (arg === "--overlay") options.overlay.push(...value().split(","));
    else if (arg === "--group") {
      options.groups = [];
      for (const group of value().split(",")) {
        if (group === "core") options.groups.push(...GROUP_NAMES.filter((g) => g !== "cli"));
        else if (GROUP_NAMES.includes(group)) options.groups.push(group);
        else usage(`unknown group ${group}: core, ${GROUP_NAMES.join(", ")}`);
      }
    } else if (arg === "--mutate") options.mutate.push(value());
    else if (arg === "--out") options.out = value();
    else if (arg === "--since") options.since = value();
    else if (arg === "--report") options.report = value();
    else if (arg === "--concurrency") {
      const n = value();
      if (!/^[1-9][0-9]?$/.test(n)) usage(`--concurrency takes a number from 1 to 99, not ${n}`);
      options.concurrency = Number(n);
    } else if (arg === "--keep") options.keep = true;
    else usage(`unknown argument ${arg}`);
  }
  return options;
}

async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; stdout?: "piped" | "inherit" } = {},
): Promise<{ code: number; stdout: Uint8Array }> {
  const output = await new Deno.Command(cmd, {
    args,
    cwd: options.cwd ?? ROOT,
    stdout: options.stdout ?? "piped",
    stderr: "inherit",
  }).output();
  return {
    code: output.code,
    stdout: options.stdout === "inherit" ? new Uint8Array() : output.stdout,
  };
}

/** Copies the tree (the work tree's files, or a commit) into `dest`; never writes in ROOT. */
async function copyTree(dest: string, rev: string | undefined): Promise<void> {
  if (rev !== undefined) {
    const tar = join(dest, "..", "tree.tar");
    const archive = await run("git", ["archive", "--format=tar", `--output=${tar}`, rev]);
    if (archive.code !== 0) throw new Error(`git archive ${rev} failed`);
    const untar = await run("tar", ["-xf", tar, "-C", dest]);
    if (untar.code !== 0) throw new Error("tar failed");
    await Deno.remove(tar);
    return;
  }
  const listed = await run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"]);
  if (listed.code !== 0) throw new Error("git ls-files failed");
  const files = new TextDecoder().decode(listed.stdout).split("\0").filter((f) => f !== "");
  for (const file of files) {
    const from = join(ROOT, file);
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(from);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue; // deleted, not yet committed
      throw error;
    }
    if (!info.isFile) continue;
    await Deno.mkdir(dirname(join(dest, file)), { recursive: true });
    await Deno.copyFile(from, join(dest, file));
  }
}

/** The command line's file holding `exitCodeOf`. */
const EXIT_CODE_FILE = "cli/errors.ts";

/** Lines of `export function exitCodeOf` in cli/errors.ts, found afresh (the file keeps changing). */
async function exitCodeOfLines(tree: string): Promise<string> {
  const lines = (await Deno.readTextFile(join(tree, EXIT_CODE_FILE))).split("\n");
  const start = lines.findIndex((l) => l.startsWith("export function exitCodeOf("));
  if (start < 0) throw new Error(`${EXIT_CODE_FILE} has no exitCodeOf`);
  const end = lines.findIndex((l, i) => i > start && l === "}");
  return `${EXIT_CODE_FILE}:${start + 1}-${end + 1}`;
}

/** The shell command running `stages` one after the other, stopping at the first failure. */
function testCommand(tree: string, stages: Stage[]): string {
  const exists = (f: string) => {
    try {
      return Deno.statSync(join(tree, f)).isFile;
    } catch {
      return false;
    }
  };
  const deno = Deno.execPath();
  return stages.map((stage) => ({ ...stage, files: stage.files.filter(exists) }))
    .filter((stage) => stage.files.length > 0)
    .map((stage) => {
      const parts = [deno, "test", "--allow-all", "--no-check", "--fail-fast"];
      if (stage.filter) parts.push(`--filter '${stage.filter}'`);
      return [...parts, ...stage.files].join(" ");
    }).join(" && ");
}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 100 ? flat.slice(0, 97) + "..." : flat;
}

function slice(source: string, location: Location): string {
  const lines = source.split("\n");
  const { start, end } = location;
  if (start.line === end.line) {
    return lines[start.line - 1]!.slice(start.column - 1, end.column - 1);
  }
  const parts = [lines[start.line - 1]!.slice(start.column - 1)];
  for (let l = start.line; l < end.line - 1; l++) parts.push(lines[l]!);
  parts.push(lines[end.line - 1]!.slice(0, end.column - 1));
  return parts.join("\n");
}

function rows(report: Report): Row[] {
  const out: Row[] = [];
  for (const [file, { source, mutants }] of Object.entries(report.files)) {
    const lines = source.split("\n");
    for (const m of mutants) {
      out.push({
        file,
        line: m.location.start.line,
        column: m.location.start.column,
        mutator: m.mutatorName,
        original: oneLine(slice(source, m.location)),
        replacement: oneLine(m.replacement ?? ""),
        sourceLine: lines[m.location.start.line - 1]!.trim(),
        status: m.status,
      });
    }
  }
  return out.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
}

function matches(e: Equivalent, r: Row): boolean {
  return e.file === r.file && e.mutator === r.mutator && oneLine(e.original) === r.original &&
    oneLine(e.replacement) === r.replacement && (e.line === undefined || e.line === r.sourceLine);
}

async function readReport(path: string): Promise<Report | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as Report;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

const mutantKey = (m: Mutant) =>
  `${m.mutatorName}|${m.replacement}|${m.location.start.line}:${m.location.start.column}-${m.location.end.line}:${m.location.end.column}`;

/**
 * What to test again after `previous`: the survivors of each file whose
 * source is unchanged (as location ranges), every other file whole.
 */
async function retestSpecs(
  tree: string,
  specs: string[],
  previous: Report,
): Promise<{ specs: string[]; kept: Report }> {
  const out: string[] = [];
  const kept: Report = { files: {} };
  for (const spec of specs) {
    const file = spec.split(":")[0]!;
    const before = previous.files[file];
    const source = await Deno.readTextFile(join(tree, file));
    if (!before || before.source !== source || spec.includes(":")) {
      out.push(spec);
      continue;
    }
    kept.files[file] = before;
    for (const m of before.mutants) {
      if (m.status !== "Survived" && m.status !== "NoCoverage") continue;
      // Report columns count from 1; Stryker's ranges count columns from 0.
      const { start, end } = m.location;
      out.push(`${file}:${start.line}:${start.column - 1}-${end.line}:${end.column}`);
    }
  }
  return { specs: [...new Set(out)], kept };
}

/** `kept` with the results of `fresh` in place of the same mutants; files of `fresh` only, as they are. */
function merge(kept: Report, fresh: Report): Report {
  const out: Report = { files: { ...kept.files } };
  for (const [file, data] of Object.entries(fresh.files)) {
    const before = out.files[file];
    if (!before || before.source !== data.source) {
      out.files[file] = data;
      continue;
    }
    const now = new Map(data.mutants.map((m) => [mutantKey(m), m]));
    out.files[file] = {
      source: data.source,
      mutants: before.mutants.map((m) => now.get(mutantKey(m)) ?? m),
    };
  }
  return out;
}

async function stryker(
  work: string,
  tree: string,
  group: Group,
  mutate: string[],
  concurrency: number,
): Promise<Report | undefined> {
  const reportFile = join(work, `stryker-${group.name}-report.json`);
  const config = {
    testRunner: "command",
    commandRunner: { command: group.command },
    mutate,
    mutator: { excludedMutations: ["StringLiteral", "Regex", "ObjectLiteral", "ArrayDeclaration"] },
    concurrency,
    coverageAnalysis: "off",
    // Generous: other test runs share the machine, and a survivor slowed
    // down by them must not pass for a mutant killed by timeout.
    timeoutMS: 30000,
    timeoutFactor: 2,
    plugins: [join(HERE, "ignore_messages.mjs")],
    ignorers: ["error-messages"],
    reporters: ["json", "progress-append-only"],
    jsonReporter: { fileName: reportFile },
    tempDirName: join(work, `stryker-${group.name}`),
    cleanTempDir: "always",
    ignorePatterns: ["mutate"],
  };
  const configFile = join(work, `stryker-${group.name}.json`);
  await Deno.writeTextFile(configFile, JSON.stringify(config, null, 2));
  console.log(
    `mutate: ${group.name}: ${mutate.length} spec(s): ${mutate.slice(0, 8).join(" ")}${
      mutate.length > 8 ? " …" : ""
    }\nmutate: tests: ${group.command}`,
  );
  const result = await run(Deno.execPath(), [
    "run",
    "--allow-all",
    `--lock=${join(HERE, "deno.lock")}`,
    "--frozen",
    STRYKER,
    "run",
    configFile,
  ], { cwd: tree, stdout: "inherit" });
  if (result.code !== 0) {
    console.error(`mutate: Stryker failed for ${group.name} (exit ${result.code})`);
    return undefined;
  }
  return JSON.parse(await Deno.readTextFile(reportFile)) as Report;
}

/** Prints survivors, justified ones and the score; 0 when every survivor is justified, else 1. */
function summary(all: Row[], equivalents: Equivalent[], complete: boolean): number {
  const detected = all.filter((r) => r.status === "Killed" || r.status === "Timeout");
  const timeouts = all.filter((r) => r.status === "Timeout");
  const survivors = all.filter((r) => r.status === "Survived" || r.status === "NoCoverage");
  const errors = all.filter((r) => r.status === "RuntimeError" || r.status === "CompileError");
  const ignored = all.filter((r) => r.status === "Ignored");
  const justified = survivors.map((r) => ({ r, e: equivalents.find((e) => matches(e, r)) }));
  const open = justified.filter((j) => !j.e);
  const valid = detected.length + survivors.length;
  const pct = (n: number, d: number) => d === 0 ? "n/a" : `${(100 * n / d).toFixed(1)} %`;

  console.log("\n== Surviving mutants ==");
  for (const { r } of open) {
    console.log(
      `${r.file}:${r.line}:${r.column} [${r.mutator}] ${r.original}  →  ${r.replacement}`,
    );
  }
  if (open.length === 0) console.log("(none unjustified)");
  console.log("\n== Survivors justified as equivalent (mutate/equivalent.json) ==");
  for (const { r, e } of justified.filter((j) => j.e)) {
    console.log(
      `${r.file}:${r.line}:${r.column} [${r.mutator}] ${r.original}  →  ${r.replacement}`,
    );
    console.log(`    ${e!.why}`);
  }
  const stale = equivalents.filter((e) => !survivors.some((r) => matches(e, r)));
  if (stale.length > 0 && complete) {
    console.log("\n== Justifications that matched no survivor (stale?) ==");
    for (const e of stale) console.log(`${e.file} [${e.mutator}] ${e.original} → ${e.replacement}`);
  }
  console.log("\n== Score ==");
  for (const file of [...new Set(all.map((r) => r.file))]) {
    const f = all.filter((r) => r.file === file);
    const k = f.filter((r) => r.status === "Killed" || r.status === "Timeout").length;
    const s = f.filter((r) => r.status === "Survived" || r.status === "NoCoverage").length;
    console.log(`${file.padEnd(22)} ${k}/${k + s} killed (${pct(k, k + s)})`);
  }
  console.log(
    `all: ${detected.length}/${valid} mutants killed (${pct(detected.length, valid)}), ` +
      `${timeouts.length} of them by timeout; ${survivors.length} survived, ` +
      `${survivors.length - open.length} of them justified as equivalent; ` +
      `score without the justified: ${
        pct(detected.length, valid - (survivors.length - open.length))
      }`,
  );
  console.log(
    `not counted: ${ignored.length} ignored (error message texts), ${errors.length} errors`,
  );
  return open.length === 0 ? 0 : 1;
}

async function main(): Promise<number> {
  const options = parseArgs(Deno.args);
  const equivalents: Equivalent[] = JSON.parse(
    await Deno.readTextFile(join(HERE, "equivalent.json")),
  );
  if (options.report !== undefined) {
    const all: Row[] = [];
    for (const name of options.groups) {
      const report = await readReport(join(options.report, `${name}.json`));
      if (report) all.push(...rows(report));
    }
    return summary(all, equivalents, options.groups.length === GROUP_NAMES.length);
  }
  const work = await Deno.makeTempDir({ prefix: "resource-locker-mutate-" });
  const tree = join(work, "tree");
  await Deno.mkdir(tree);
  console.log(`mutate: copying ${options.rev ?? "the work tree"} to ${tree}`);
  await copyTree(tree, options.rev);
  for (const file of options.overlay) {
    await Deno.mkdir(dirname(join(tree, file)), { recursive: true });
    await Deno.copyFile(join(ROOT, file), join(tree, file));
  }

  const groups: Group[] = [];
  for (const { file, stages } of CORE_GROUPS) {
    const name = groupName(file);
    if (!options.groups.includes(name)) continue;
    groups.push({ name, mutate: [file], command: testCommand(tree, stages) });
  }
  if (options.groups.includes("cli")) {
    groups.push({
      name: "cli",
      mutate: [await exitCodeOfLines(tree)],
      command: testCommand(tree, CLI_STAGES),
    });
  }

  const all: Row[] = [];
  let failed = false;
  for (const group of groups) {
    let mutate = options.mutate.length === 0
      ? group.mutate
      : options.mutate.filter((spec) =>
        group.mutate.some((m) => spec.split(":")[0] === m.split(":")[0])
      );
    if (mutate.length === 0) continue;
    const previous = options.since === undefined
      ? undefined
      : await readReport(join(options.since, `${group.name}.json`));
    let kept: Report = { files: {} };
    if (previous) {
      const since = await retestSpecs(tree, mutate, previous);
      mutate = since.specs;
      kept = since.kept;
      console.log(
        `mutate: ${group.name}: ${
          Object.keys(kept.files).length
        } file(s) unchanged since ${options.since}: only their survivors are tested again`,
      );
    }
    let fresh: Report = { files: {} };
    if (mutate.length > 0) {
      const result = await stryker(work, tree, group, mutate, options.concurrency);
      if (!result) {
        failed = true;
        continue;
      }
      fresh = result;
    }
    const merged = merge(kept, fresh);
    if (options.out !== undefined) {
      await Deno.mkdir(options.out, { recursive: true });
      await Deno.writeTextFile(join(options.out, `${group.name}.json`), JSON.stringify(merged));
    }
    all.push(...rows(merged));
  }

  const code = summary(
    all,
    equivalents,
    options.mutate.length === 0 && groups.length === GROUP_NAMES.length,
  );
  if (options.keep) console.log(`mutate: kept ${work}`);
  else await Deno.remove(work, { recursive: true });
  return failed ? 2 : code;
}

if (import.meta.main) Deno.exit(await main());
