/**
 * What every command loads before it runs: the modules `cli.ts` imports
 * statically. The SMB and etcd stores and the `serve` server are loaded when
 * first used (dynamic imports), and no Node module is loaded at start-up:
 * Node's crypto module alone cost every command 20 ms of start-up when the
 * command table imported the server.
 *
 * @module
 */

import assert from "node:assert/strict";
import { REPO_ROOT } from "./_cli_helpers.ts";

interface Dependency {
  code?: { specifier?: string };
  isDynamic?: boolean;
}

/** The modules reachable from `root` through static (not dynamic, not type-only) imports. */
async function staticGraph(root: string): Promise<string[]> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", root],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const info = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    roots: string[];
    modules: { specifier: string; dependencies?: Dependency[] }[];
  };
  const modules = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const visit = (specifier: string) => {
    if (seen.has(specifier)) return;
    seen.add(specifier);
    for (const dependency of modules.get(specifier)?.dependencies ?? []) {
      const next = dependency.code?.specifier;
      if (next !== undefined && !dependency.isDynamic) visit(next);
    }
  };
  visit(info.roots[0]!);
  const base = new URL("../", import.meta.url).href;
  return [...seen].map((s) => s.startsWith(base) ? s.slice(base.length) : s);
}

Deno.test("a command's start loads no Node module, nor the SMB or etcd store or the serve server", async () => {
  const loaded = await staticGraph("cli.ts");
  assert.ok(loaded.includes("cli/commands/serve.ts"), loaded.join(", "));
  const heavy = loaded.filter((m) =>
    m.startsWith("node:") || m.startsWith("npm:") || m.startsWith("src/stores/smb") ||
    m.startsWith("src/stores/etcd") || m === "src/serve/server.ts" || m === "src/serve/auth.ts"
  );
  assert.deepEqual(heavy, []);
});
