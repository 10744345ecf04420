/**
 * `run` on the local store: the shared suite (`_run_suite.ts`), then what
 * does not depend on the store: a command under a terminal (a
 * pseudo-terminal made by `script`), a process that left the command's
 * process group, and processes the command leaves behind.
 *
 * @module
 */

import { registerRunSuite } from "./_run_suite.ts";
import { tempStore } from "./_helpers.ts";
import { assertEquals, assertOk, assertStringIncludes } from "./_assert.ts";
import { alive, hasScript, type RunProcess, spawnRun } from "./_run_helpers.ts";
import { listNames } from "./_cli_helpers.ts";

registerRunSuite("local", tempStore);

const noScript = !hasScript();
if (noScript) {
  console.warn("%cSkipping run's terminal tests: no `script` (util-linux)", "color: yellow");
}

/** A local store and a config, for one test. */
async function local(fn: (env: Record<string, string>, dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "rl-run-local-" });
  try {
    await Deno.writeTextFile(`${dir}/deps.json`, "{}");
    await Deno.writeTextFile(
      `${dir}/config.ts`,
      `export default { dependenciesFilePath: "${dir}/deps.json" };`,
    );
    await Deno.mkdir(`${dir}/locks`);
    await fn({
      RESOURCE_LOCKER_STORE: `${dir}/locks/{0}`,
      RESOURCE_LOCKER_CONFIG: `${dir}/config.ts`,
    }, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The value of the first `name=<number>` line the command printed. */
async function number(run: RunProcess, name: string): Promise<number> {
  const line = await (run.stdout ?? run.stderr).line(new RegExp(`^${name}=\\d+$`));
  return Number(line.split("=")[1]);
}

async function type(run: RunProcess, text: string): Promise<void> {
  const writer = run.process.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  writer.releaseLock();
}

Deno.test({
  name:
    "[terminal] the command reads the terminal, gets Ctrl-C once (not again from run), and is killed after --grace",
  ignore: noScript,
  fn: () =>
    local(async (env, dir) => {
      await using run = await spawnRun([
        "run",
        "hv01",
        "--hard",
        "--grace",
        "1s",
        "--",
        "sh",
        "-c",
        `sleep 300 & echo grandchild=$!; read line; echo "got=$line";
         trap 'echo INT >> ${dir}/ints' INT; echo ready; while :; do sleep 0.1; done`,
      ], { env, terminal: true });
      const grandchild = await number(run, "grandchild");
      await type(run, "hello\n");
      await run.stderr.line(/^got=hello$/);
      await run.stderr.line(/^ready$/);
      await type(run, "\x03"); // Ctrl-C: the terminal signals its foreground group
      const out = await run.end();
      assertEquals(out.code, 137, out.stderr); // the shell traps SIGINT: SIGKILL after 1s
      assertStringIncludes(out.stderr, "Received SIGINT");
      assertEquals(await Deno.readTextFile(`${dir}/ints`), "INT\n", "one SIGINT, the terminal's");
      assertOk(!alive(grandchild), "the background child (SIGINT ignored) is killed");
      assertEquals(run.tree(), []);
      assertEquals(await listNames(`${dir}/locks/hv01`), ["History"]);
    }),
});

Deno.test({
  name: "[terminal] SIGTERM to run reaches every process of the tree, the orphaned too",
  ignore: noScript,
  fn: () =>
    local(async (env, dir) => {
      await using run = await spawnRun([
        "run",
        "hv01",
        "--grace",
        "20s",
        "--",
        "sh",
        "-c",
        "sleep 300 & echo grandchild=$!; echo run=$PPID; wait",
      ], { env, terminal: true });
      const grandchild = await number(run, "grandchild");
      const runPid = await number(run, "run");
      const sent = Date.now();
      Deno.kill(runPid, "SIGTERM");
      const out = await run.end();
      assertEquals(out.code, 143, out.stderr);
      assertOk(Date.now() - sent < 10_000, "ended by SIGTERM, not by SIGKILL after 20s");
      assertOk(!alive(grandchild));
      assertEquals(run.tree(), []);
      assertEquals(await listNames(`${dir}/locks/hv01`), ["History"]);
    }),
});

Deno.test(
  "a process that left the command's process group (setsid) and ignores SIGTERM is killed before the release",
  () =>
    local(async (env, dir) => {
      await using run = await spawnRun([
        "run",
        "hv01",
        "--hard",
        "--grace",
        "1s",
        "--",
        "sh",
        "-c",
        `setsid sh -c 'trap "" TERM; echo escaped=$$; exec sleep 300' & wait`,
      ], { env });
      const escaped = await number(run, "escaped");
      run.process.kill("SIGTERM");
      let seen = 0;
      let ended = false;
      const end = run.end().finally(() => ended = true);
      while (!ended) {
        const files = await listNames(`${dir}/locks/hv01`);
        if (alive(escaped)) {
          seen++;
          assertOk(files.includes("Host.lock"), "the lock outlived the escaped process");
        }
        await Promise.race([end, new Promise((resolve) => setTimeout(resolve, 20))]);
      }
      const out = await end;
      assertEquals(out.code, 143, out.stderr);
      await run.stderr.line(/^Still running after 1s: .*; sending SIGKILL$/, 0);
      assertOk(seen > 0, "the escaped process was seen alive while the lock was held");
      assertOk(!alive(escaped));
      assertEquals(run.tree(), []);
      assertEquals(await listNames(`${dir}/locks/hv01`), ["History"]);
    }),
);

Deno.test(
  "processes the command leaves running are stopped before the release; the command's code stands",
  () =>
    local(async (env, dir) => {
      await using run = await spawnRun(
        ["run", "hv01", "--", "sh", "-c", "sleep 300 & echo leftover=$!; exit 3"],
        { env },
      );
      const leftover = await number(run, "leftover");
      const out = await run.end();
      assertEquals(out.code, 3, out.stderr);
      assertStringIncludes(out.stderr, "leaving 1 process");
      assertOk(!alive(leftover));
      assertEquals(run.tree(), []);
      assertEquals(await listNames(`${dir}/locks/hv01`), ["History"]);
    }),
);
