/**
 * `run` on the local store: the shared suite (`_run_suite.ts`), then what
 * does not depend on the store: a command under a terminal (a
 * pseudo-terminal made by `script`), a process that left the command's
 * process group, and processes the command leaves behind.
 *
 * @module
 */

import { registerRunSuite } from "./_run_suite.ts";
import { tempStore, waitFor } from "./_helpers.ts";
import { assertEquals, assertOk, assertStringIncludes } from "./_assert.ts";
import { alive, hasScript, type RunProcess, spawnRun } from "./_run_helpers.ts";
import { listNames, runCli } from "./_cli_helpers.ts";

/** Whether process `pid` ignores SIGINT (`SigIgn` in `/proc/<pid>/status`, bit 2 = signal 2). */
async function ignoresSigint(pid: number): Promise<boolean> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
  const mask = /^SigIgn:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return mask !== undefined && (BigInt(`0x${mask}`) & 2n) !== 0n;
}

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
      `export default { dependenciesFile: "${dir}/deps.json" };`,
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
    "[terminal] the command reads the terminal, Ctrl-C is left to it, SIGTERM to run stops the whole tree",
  ignore: noScript,
  fn: () =>
    local(async (env, dir) => {
      await using run = await spawnRun([
        "run",
        "hv01",
        "--hard",
        "--grace",
        "20s",
        "--verbose",
        "--",
        "sh",
        "-c",
        `sleep 300 & echo grandchild=$!; echo run=$PPID; read line; echo "got=$line";
         trap 'echo INT >> ${dir}/ints; echo trapped' INT; echo ready; while :; do sleep 0.1; done`,
      ], { env, terminal: true });
      const grandchild = await number(run, "grandchild");
      const runPid = await number(run, "run");
      await type(run, "hello\n");
      await run.stderr.line(/^got=hello$/);
      await run.stderr.line(/^ready$/);
      await waitFor("the background child ignoring SIGINT", () => ignoresSigint(grandchild));
      await type(run, "\x03"); // Ctrl-C: the terminal signals its foreground group
      await run.stderr.line(/SIGINT from the terminal: left to the command$/);
      await run.stderr.line(/trapped$/);
      const held = await listNames(`${dir}/locks/hv01`);
      assertOk(held.includes("Host.lock"), `still held: ${held}`);
      const sent = Date.now();
      Deno.kill(runPid, "SIGTERM");
      const out = await run.end();
      assertEquals(out.code, 143, out.stderr);
      assertOk(Date.now() - sent < 10_000, "SIGTERM reached every process, not SIGKILL after 20s");
      assertEquals(await Deno.readTextFile(`${dir}/ints`), "INT\n", "one SIGINT, the terminal's");
      assertOk(!alive(grandchild), "the background child (orphaned when sh died) is stopped");
      assertEquals(run.tree(), []);
      assertEquals(await listNames(`${dir}/locks/hv01`), ["History"]);
    }),
});

Deno.test({
  name:
    "[terminal] Ctrl-C ends a script; the background child it leaves is stopped before the release",
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
        "sleep 300 & echo grandchild=$!; echo ready; wait",
      ], { env, terminal: true });
      const grandchild = await number(run, "grandchild");
      await run.stderr.line(/^ready$/);
      // The shell prints before its background child ran: a Ctrl-C before
      // the child ignores SIGINT (as POSIX has it) would end it, leaving
      // nothing behind to stop. Type it once the child ignores it.
      await waitFor("the background child ignoring SIGINT", () => ignoresSigint(grandchild));
      await type(run, "\x03");
      const out = await run.end();
      assertEquals(out.code, 130, out.stderr); // sh died of SIGINT; its code stands
      assertStringIncludes(out.stderr, "leaving 1 process");
      assertOk(!alive(grandchild), "the background child ignores SIGINT (POSIX) yet is stopped");
      assertEquals(run.tree(), []);
      assertEquals(await listNames(`${dir}/locks/hv01`), ["History"]);
    }),
});

Deno.test("a run started with SIGHUP ignored (nohup) ignores it, and so does its command", () =>
  local(async (env) => {
    const holder = await runCli(["lock", "hv01", "--hard"], { env });
    assertEquals(holder.code, 0, holder.stderr);
    await using run = await spawnRun(
      [
        "run",
        "hv01",
        "--hard",
        "--timeout",
        "100ms",
        "--retries",
        "1000",
        "--",
        "sh",
        "-c",
        `
        grep '^SigIgn:' /proc/$$/status`,
      ],
      { env, ignoreHup: true },
    );
    await run.stderr.line(/^\S+Z Waiting for "hv01"/);
    run.process.kill("SIGHUP"); // while waiting: a SIGHUP listened to would end run with 129
    assertEquals((await runCli(["unlock", holder.stdout.trim()], { env })).code, 0);
    const out = await run.end();
    assertEquals(out.code, 0, out.stderr);
    const mask = /^SigIgn:\s*([0-9a-f]+)$/m.exec(await run.stdout!.done)?.[1];
    assertOk(mask !== undefined && (BigInt(`0x${mask}`) & 1n) === 1n, `command's SigIgn: ${mask}`);
  }));

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

Deno.test(
  "a process the command moved out of its group (setsid, set -m) is stopped before the release",
  () =>
    local(async (env, dir) => {
      for (
        const script of [
          "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo leftover=$!; sleep 0.2; exit 0",
          "set -m; sleep 300 </dev/null >/dev/null 2>&1 & echo leftover=$!; exit 0",
        ]
      ) {
        await using run = await spawnRun(["run", "hv01", "--", "bash", "-c", script], { env });
        const leftover = await number(run, "leftover");
        const out = await run.end();
        assertEquals(out.code, 0, out.stderr);
        assertStringIncludes(out.stderr, "leaving 1 process");
        assertOk(!alive(leftover), `${script}: the escaped process is gone`);
        assertEquals(run.tree(), []);
        assertEquals(await listNames(`${dir}/locks/hv01`), ["History"]);
      }
    }),
);
