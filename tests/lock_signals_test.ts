/**
 * Signals and `lock`: a signal while its Host lock drains, with the ignored
 * signals read late (a slow `grep`), and signals ignored from the start
 * (`nohup`) after the listeners are closed.
 *
 * @module
 */

import { assertEquals, assertOk, assertStringIncludes } from "./_assert.ts";
import { tempStore } from "./_helpers.ts";
import { spawnRun } from "./_run_helpers.ts";
import { closeStores, lockResource } from "../mod.ts";

/** A folder with a `grep` that answers only after `ms`: the ignored signals read late. */
async function slowGrep(ms: number): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir();
  const real = new Deno.Command("sh", { args: ["-c", "command -v grep"], stdout: "piped" })
    .outputSync();
  const grep = new TextDecoder().decode(real.stdout).trim();
  await Deno.writeTextFile(
    `${dir}/grep`,
    `#!/bin/sh\nsleep ${ms / 1000}\nexec ${grep} "$@"\n`,
  );
  await Deno.chmod(`${dir}/grep`, 0o755);
  return {
    path: `${dir}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test({
  name:
    "SIGINT while lock --hard drains, before the ignored signals are read: exit 130, no Host lock left behind",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using t = await tempStore();
    await using grep = await slowGrep(4_000);
    const reader = await lockResource("hv01", { store: t.store, dependencies: {} });
    await using lock = await spawnRun(
      ["lock", "hv01", "--hard", "--drain-timeout", "60s", "--no-dependencies"],
      { env: { RESOURCE_LOCKER_STORE: t.store, PATH: grep.path } },
    );
    await lock.stderr.line(/^\S+Z Draining "hv01"/);
    assertOk((await t.files("hv01")).includes("Host.lock"), "the Host lock was taken");
    lock.process.kill("SIGINT");
    const out = await lock.end(15_000);
    const files = await t.files("hv01");
    assertEquals(files, [`Generic-${reader.sessionId}.lock`], `only the reader's; ${out.stderr}`);
    assertEquals(out.code, 130, out.stderr);
    assertStringIncludes(out.stderr, "nothing is locked");
    await reader.release();
    await closeStores();
  },
});

Deno.test({
  name: "signals ignored from the start (nohup) stay ignored after the listeners are closed",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // A process started with SIGHUP ignored listens while it waits, closes
    // its listeners (lock printed its ref, run's command ended) and is then
    // hung up on before it exits: it must not die of it.
    const script = `
      import { ignoredSignals } from "./cli/process_tree.ts";
      import { RunSignals } from "./cli/run_signals.ts";
      const ignored = await ignoredSignals();
      if (!ignored.has("SIGHUP")) throw new Error("SIGHUP not ignored at start");
      const signals = new RunSignals(ignored);
      signals.close();
      Deno.kill(Deno.pid, "SIGHUP");
      await new Promise((resolve) => setTimeout(resolve, 300));
      console.log("alive");
    `;
    const out = await new Deno.Command("sh", {
      args: ["-c", `trap '' HUP; exec "$@"`, "sh", Deno.execPath(), "eval", script],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(20_000),
    }).output();
    const decoder = new TextDecoder();
    assertEquals(decoder.decode(out.stdout).trim(), "alive", decoder.decode(out.stderr));
    assertEquals(out.code, 0);
  },
});
