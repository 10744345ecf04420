/**
 * What the README says about the dependency map, the `--json` schemas and
 * the test set-up stays true: its example map gives the dependencies and the
 * mermaid picture it shows, every schema file is linked, and its package
 * list is the one `.ci/run` installs.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT, runCliInProcess } from "./_cli_helpers.ts";
import { CLI_PERMISSIONS, CLI_V8_FLAGS } from "../bench/_measure.ts";

const README = await Deno.readTextFile(join(REPO_ROOT, "README.md"));

/** The text of a `## title` section, up to the next `## `. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `README has no section "${title}"`);
  const end = README.indexOf("\n## ", start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

/** The fenced blocks of a language in a text. */
function blocks(text: string, language: string): string[] {
  return [...text.matchAll(new RegExp("```" + language + "\\n([\\s\\S]*?)```", "g"))].map((m) =>
    m[1]!
  );
}

/** `deps <host>` (list, or another format) over a map written to a temporary file. */
async function deps(map: unknown, host: string, ...args: string[]): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "rl-readme-" });
  try {
    const file = join(dir, "map.json");
    await Deno.writeTextFile(file, typeof map === "string" ? map : JSON.stringify(map));
    const result = await runCliInProcess([
      "deps",
      host,
      "--dependencies-file",
      file,
      "--store",
      join(dir, "{0}"),
      ...args,
    ]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("README: the dependency map points as it says, and its picture is what deps --format mermaid draws", async () => {
  const text = section("The dependency map");
  const prose = text.replace(/\s+/g, " "); // the claims, whatever the line breaks
  // The one-line example: locking vm1 locks hv01; locking hv01 locks nothing else.
  assert.match(prose, /with `\{"hv01": \["vm1"\]\}`, locking vm1 locks hv01 too/);
  assert.match(prose, /locking hv01 locks only hv01, not vm1/);
  assert.equal(await deps({ hv01: ["vm1"] }, "vm1"), "hv01\n");
  assert.equal(await deps({ hv01: ["vm1"] }, "hv01"), "");

  const [example] = blocks(text, "json");
  assert.ok(example, "the section shows a map");
  assert.deepEqual(JSON.parse(example), { hv01: ["vm01", "dc01"], dc01: ["dc02"], dc02: ["dc01"] });
  // Each claim of the paragraph under the example.
  assert.equal(await deps(example, "dc01"), "dc02\nhv01\n");
  assert.equal(await deps(example, "vm01"), "hv01\n");
  assert.equal(await deps(example, "dc02"), "dc01\nhv01\n");
  assert.equal(await deps(example, "hv01"), "");
  assert.match(
    prose,
    /Locking dc01 locks dc02 and hv01; locking vm01 locks hv01; locking dc02 locks dc01, then hv01 through dc01 .*; locking hv01 locks nothing else/,
  );

  const [picture] = blocks(text, "mermaid");
  assert.ok(picture, "the section shows a mermaid picture");
  assert.match(prose, /`deps dc01 --format mermaid` draws/);
  assert.equal(picture, await deps(example, "dc01", "--format", "mermaid"));
});

Deno.test("README: the JSON section links every schema file", async () => {
  const text = section("JSON output");
  const files: string[] = [];
  for await (const entry of Deno.readDir(join(REPO_ROOT, "schemas"))) files.push(entry.name);
  assert.ok(files.length >= 10, files.join());
  for (const file of files) {
    assert.ok(text.includes(`(schemas/${file})`), `README links schemas/${file}`);
  }
});

Deno.test("README: the test set-up installs the packages .ci/run installs", async () => {
  const ci = await Deno.readTextFile(join(REPO_ROOT, ".ci", "run"));
  const fromCi = [...ci.matchAll(/missing\+=\(([\w.+-]+)\)/g)].map((m) => m[1]!).sort();
  assert.ok(fromCi.includes("libnss-wrapper"), ci);
  const line = section("Tests").match(/apt-get install -y ([^\n`]+)/);
  assert.ok(line, "the Tests section has an apt-get install line");
  assert.deepEqual(line[1]!.trim().split(/\s+/).sort(), fromCi);
  const pwsh = ci.match(/PWSH_VERSION=([\d.]+)/)?.[1];
  assert.ok(
    pwsh && section("Tests").includes(`PowerShell --version ${pwsh}`),
    "PowerShell version",
  );
});

Deno.test("the command line runs with the same V8 flags wherever it is launched, the benchmark's included", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(join(REPO_ROOT, "deno.json"))).tasks;
  const installs = blocks(section("Install"), "sh").filter((b) => b.includes("deno install"));
  const launches: [string, string][] = [
    ["the cli task", tasks.cli],
    ["the compile task", tasks.compile],
    ...installs.map((b, i): [string, string] => [`README install command ${i + 1}`, b]),
  ];
  assert.equal(installs.length, 2, "README's two install commands");
  for (const [what, command] of launches) {
    assert.ok(command.includes(CLI_V8_FLAGS), `${what} lacks ${CLI_V8_FLAGS}: ${command}`);
  }
  // the benchmark spawns the command line as the cli task runs it
  for (const flag of CLI_PERMISSIONS) {
    assert.ok(tasks.cli.split(" ").includes(flag), `the cli task lacks ${flag}`);
  }
});

Deno.test("every JSDoc example that deno test --doc runs asserts with node:assert, not console.assert", async () => {
  const offenders: string[] = [];
  const visit = async (dir: string) => {
    for await (const entry of Deno.readDir(join(REPO_ROOT, dir))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await visit(path);
      else if (entry.name.endsWith(".ts")) {
        const text = await Deno.readTextFile(join(REPO_ROOT, path));
        // Examples deno test --doc runs: ```ts blocks inside comments, not ```ts ignore.
        for (const match of text.matchAll(/```ts\n([\s\S]*?)```/g)) {
          if (/console\.assert\s*\(/.test(match[1]!)) offenders.push(path);
        }
      }
    }
  };
  for (const dir of ["src", "cli"]) await visit(dir);
  for (const file of ["mod.ts", "cli.ts"]) {
    if (
      /```ts\n[\s\S]*?console\.assert\s*\(/.test(await Deno.readTextFile(join(REPO_ROOT, file)))
    ) {
      offenders.push(file);
    }
  }
  assert.deepEqual(offenders, []);
});
