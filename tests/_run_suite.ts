/**
 * The `run` tests, written once and registered for each store: a holder
 * killed with SIGKILL, the run contract (environment, exit codes), a lock
 * lost under `run` (broken, retaken, found only at release), SIGTERM and
 * SIGINT to `run` stopping the command's whole process tree before the
 * release, interruptions while waiting, and `run` loops contending with an
 * independent oracle.
 *
 * `run` is started in a session of its own (no controlling terminal, see
 * `_run_helpers.ts`), so these tests see the same behaviour from a terminal
 * and from CI; the terminal case is in run_test.ts. Every wait is for an
 * event (a line the command prints, a line `run` prints, the end of a
 * process) with a deadline.
 *
 * @module
 */

import { assertEquals, assertOk, assertStringIncludes } from "./_assert.ts";
import { type CliResult, lines, runCli, spawnCli } from "./_cli_helpers.ts";
import { waitFor } from "./_helpers.ts";
import { alive, type RunProcess, spawnRun } from "./_run_helpers.ts";

/** A store the suite runs on. */
export interface SuiteStore extends AsyncDisposable {
  /** Folder template. */
  store: string;
  /** Extra environment for the command line (credentials). */
  env?: Record<string, string>;
  /** Lock entries of a host, read independently of the tool (History excluded). */
  files(host: string): Promise<string[]>;
}

/**
 * Registers the suite.
 *
 * @param name store name shown in test names
 * @param open opens a fresh store
 * @param options `ignore`: skip the suite (its server is not installed and CI
 * is not set); `expiryLeavesHistory`: false for stores whose native leases
 * delete an expired lock by themselves (etcd), so no break is recorded
 */
export function registerRunSuite(
  name: string,
  open: () => Promise<SuiteStore>,
  options: { ignore?: boolean; expiryLeavesHistory?: boolean } = {},
): void {
  const ignore = options.ignore ?? false;
  const env = (s: SuiteStore, config: string) => ({
    RESOURCE_LOCKER_STORE: s.store,
    RESOURCE_LOCKER_CONFIG: config,
    ...s.env,
  });
  /** Runs `cli.ts` to the end, killed after `timeoutMs`. */
  const cli = (
    args: string[],
    environment: Record<string, string>,
    timeoutMs = 30_000,
  ): Promise<CliResult> => runCli(args, { env: environment, timeoutMs });
  const withConfig = async (fn: (config: string, dir: string) => Promise<void>) => {
    const dir = await Deno.makeTempDir({ prefix: "rl-run-" });
    try {
      const config = `${dir}/config.ts`;
      await Deno.writeTextFile(`${dir}/none.json`, "{}");
      await Deno.writeTextFile(
        config,
        `export default { clockSkew: "200ms", timeout: "100ms", dependenciesFile: "${dir}/none.json" };`,
      );
      await fn(config, dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  };

  Deno.test({
    name: `[${name}] a run killed with SIGKILL frees its host once lease and skew have passed`,
    ignore,
    fn: () =>
      withConfig(async (config) => {
        await using s = await open();
        const holder = spawnCli(
          // A lease long enough that the check below, one command start
          // away, runs well before it ends even on a loaded machine.
          ["run", "hv01", "--hard", "--ttl", "4s", "--caller", "doomed", "--", "sleep", "10"],
          { env: env(s, config), stdout: "null", stderr: "null" },
        );
        await waitFor("the Host lock", async () => (await s.files("hv01")).includes("Host.lock"));
        holder.kill("SIGKILL");
        assertEquals((await holder.status).signal, "SIGKILL");
        // (killed between a create's link and its unlink of the temporary
        // name, it also leaves that private file, which no lock name matches)
        assertEquals(
          (await s.files("hv01")).filter((name) => !name.startsWith(".resource-locker-")),
          ["Host.lock"],
          "the dead holder's lock is still there",
        );
        const busy = await cli(["lock", "hv01", "--retries", "1"], env(s, config));
        assertEquals(busy.code, 3, busy.stderr);
        const next = await cli([
          "lock",
          "hv01",
          "--hard",
          "--retries",
          "100",
          "--timeout",
          "100ms",
          "--quiet",
        ], env(s, config));
        assertEquals(next.code, 0, next.stderr);
        if (options.expiryLeavesHistory ?? true) {
          const history = await cli(["history", "hv01", "--json"], env(s, config));
          const entries = JSON.parse(history.stdout).entries;
          assertEquals(entries[0].caller, "doomed");
          assertEquals(entries[0].breakReason, "lease expired");
          assertOk(entries[0].brokenBy);
        }
        assertEquals((await cli(["unlock", next.stdout.trim()], env(s, config))).code, 0);
      }),
  });

  /** The ref of the one lock on `host`, read with `status`. */
  const refOn = async (host: string, environment: Record<string, string>) => {
    const status = await cli(["status", host, "--json"], environment);
    assertEquals(status.code, 0, status.stderr);
    const locks = JSON.parse(status.stdout).locks;
    assertEquals(locks.length, 1, status.stdout);
    return locks[0].ref as string;
  };
  /**
   * `break --force`, again when it fails: the holder renews every 300 ms,
   * and a break that meets a renewal fails ("released meanwhile", "replaced
   * while being read") though the lock is still there.
   */
  const breakForce = async (ref: string, environment: Record<string, string>) => {
    for (let attempt = 1;; attempt++) {
      const broken = await cli(["break", ref, "--force", "--reason", "test"], environment);
      if (broken.code === 0) return;
      if (attempt === 20) throw new Error(`break failed: ${broken.stderr}`);
    }
  };
  /** Lines of `run`'s stderr that tell of a lost lock. */
  const lossLines = (stderr: string) => lines(stderr).filter((line) => /\blost\b/i.test(line));
  /**
   * Watches, until `run` ends, that its lock is there whenever a process of
   * its tree is alive: the lock entries are read first, the tree after, so
   * a live process seen after the read was alive during it.
   *
   * @returns how many times a live tree was seen
   */
  const watchLockOutlivesTree = async (run: RunProcess, s: SuiteStore, lock: string) => {
    let ended = false;
    const end = run.end().finally(() => ended = true);
    let seen = 0;
    while (!ended) {
      const files = await s.files("hv01");
      if (run.tree().length > 0) {
        seen++;
        assertOk(files.includes(lock), `a process of the tree outlived the lock: ${files}`);
      }
      await Promise.race([end, new Promise((resolve) => setTimeout(resolve, 20))]);
    }
    return seen;
  };

  Deno.test({
    name: `[${name}] run gives the command its session and refs and exits with its code`,
    ignore,
    fn: () =>
      withConfig(async (config) => {
        await using s = await open();
        await using run = await spawnRun([
          "run",
          "hv01",
          "--hard",
          "--",
          "sh",
          "-c",
          'printf "session=%s\\n" "$RESOURCE_LOCKER_SESSION"; printf "refs=%s\\n" "$RESOURCE_LOCKER_REFS"; exit 7',
        ], { env: env(s, config) });
        const out = await run.end();
        assertEquals(out.code, 7, out.stderr);
        const stdout = await run.stdout!.done;
        const session = /^session=(.+)$/m.exec(stdout)?.[1];
        assertOk(session, stdout);
        assertEquals(lines(stdout), [`session=${session}`, `refs=hv01/Host@${session}`]);
        assertEquals(await s.files("hv01"), [], "released");
      }),
  });

  Deno.test({
    name: `[${name}] run exits 127 for a command that does not exist and leaves nothing locked`,
    ignore,
    fn: () =>
      withConfig(async (config) => {
        await using s = await open();
        const out = await cli(["run", "hv01", "--", "/nonexistent/command"], env(s, config));
        assertEquals(out.code, 127, out.stderr);
        assertStringIncludes(out.stderr, "not found");
        assertEquals(await s.files("hv01"), []);
      }),
  });

  Deno.test({
    name:
      `[${name}] a lock broken and retaken under run: exit 5, one line, the whole tree stopped, the new lock untouched`,
    ignore,
    fn: () =>
      withConfig(async (config) => {
        await using s = await open();
        const e = env(s, config);
        await using run = await spawnRun([
          "run",
          "hv01",
          "--hard",
          "--ttl",
          "900ms",
          "--grace",
          "5s",
          "--",
          "sh",
          "-c",
          "sleep 300 & echo grandchild=$!; wait",
        ], { env: e });
        const grandchild = Number((await run.stdout!.line(/^grandchild=\d+$/)).split("=")[1]);
        await breakForce(await refOn("hv01", e), e);
        const thief = await cli(
          ["lock", "hv01", "--hard", "--caller", "thief", "--retries", "1"],
          e,
        );
        assertEquals(thief.code, 0, thief.stderr);
        const out = await run.end();
        assertEquals(out.code, 5, out.stderr);
        const loss = lossLines(out.stderr);
        assertEquals(loss.length, 1, out.stderr);
        assertOk(/^\d{4}-\d\d-\d\dT[\d:.]+Z: /.test(loss[0]!), `says when: ${loss[0]}`);
        assertOk(/thief|broken by/.test(loss[0]!), `says who: ${loss[0]}`);
        assertOk(!alive(grandchild), "the grandchild is stopped");
        assertEquals(run.tree(), [], "no process of the command is left");
        assertEquals(await s.files("hv01"), ["Host.lock"], "the new holder's lock stays");
        assertEquals(await refOn("hv01", e), thief.stdout.trim());
        assertEquals((await cli(["unlock", thief.stdout.trim()], e)).code, 0);
      }),
  });

  Deno.test({
    name:
      `[${name}] a lock broken and retaken between two renewals is found at the release: exit 5, not 3`,
    ignore,
    fn: () =>
      withConfig(async (config) => {
        await using s = await open();
        const e = env(s, config);
        await using run = await spawnRun(
          ["run", "hv01", "--hard", "--ttl", "60s", "--", "sh", "-c", "echo ready; read line"],
          { env: e, stdin: true },
        );
        await run.stdout!.line(/^ready$/);
        await breakForce(await refOn("hv01", e), e);
        const thief = await cli(
          ["lock", "hv01", "--hard", "--caller", "thief", "--retries", "1"],
          e,
        );
        assertEquals(thief.code, 0, thief.stderr);
        const writer = run.process.stdin.getWriter();
        await writer.write(new TextEncoder().encode("go\n"));
        await writer.close();
        const out = await run.end();
        assertEquals(out.code, 5, out.stderr);
        assertEquals(lossLines(out.stderr).length, 1, out.stderr);
        assertStringIncludes(lossLines(out.stderr)[0]!, "thief");
        assertStringIncludes(lossLines(out.stderr)[0]!, "(the command had ended with 0)");
        assertEquals(await refOn("hv01", e), thief.stdout.trim(), "the new holder's lock stays");
        assertEquals((await cli(["unlock", thief.stdout.trim()], e)).code, 0);
      }),
  });

  Deno.test({
    name:
      `[${name}] SIGTERM to run stops the whole tree, SIGKILLs a grandchild that ignores it after --grace, then releases`,
    ignore,
    fn: () =>
      withConfig(async (config) => {
        await using s = await open();
        await using run = await spawnRun([
          "run",
          "hv01",
          "--hard",
          "--grace",
          "1500ms",
          "--",
          "sh",
          "-c",
          `sh -c 'trap "" TERM; echo grandchild=$$; exec sleep 300' & wait`,
        ], { env: env(s, config) });
        const grandchild = Number((await run.stdout!.line(/^grandchild=\d+$/)).split("=")[1]);
        run.process.kill("SIGTERM");
        const seen = await watchLockOutlivesTree(run, s, "Host.lock");
        const out = await run.end();
        assertEquals(out.code, 143, out.stderr);
        await run.stderr.line(/^Still running after 1500ms: .*; sending SIGKILL$/, 0);
        assertOk(seen > 0, "the lock was seen held while the grandchild lived");
        assertOk(!alive(grandchild), "the grandchild is killed");
        assertEquals(run.tree(), []);
        assertEquals(await s.files("hv01"), []);
      }),
  });

  Deno.test({
    name:
      `[${name}] SIGINT to run alone ends a command that ignores it within --grace, and releases`,
    ignore,
    fn: () =>
      withConfig(async (config) => {
        await using s = await open();
        await using run = await spawnRun([
          "run",
          "hv01",
          "--grace",
          "1s",
          "--",
          "sh",
          "-c",
          `trap '' INT; echo ready; sleep 300`,
        ], { env: env(s, config) });
        await run.stdout!.line(/^ready$/);
        const sent = Date.now();
        run.process.kill("SIGINT");
        const out = await run.end();
        assertEquals(out.code, 137, out.stderr);
        assertOk(Date.now() - sent < 8_000, `took ${Date.now() - sent} ms`);
        assertEquals(run.tree(), []);
        assertEquals(await s.files("hv01"), []);
      }),
  });

  Deno.test({
    name: `[${name}] SIGINT to run reaches the command and every lock is released`,
    ignore,
    fn: () =>
      withConfig(async (config) => {
        await using s = await open();
        await using run = await spawnRun([
          "run",
          "hv01",
          "--",
          "sh",
          "-c",
          `trap 'echo got-int; exit 130' INT; echo ready; while true; do sleep 0.05; done`,
        ], { env: env(s, config) });
        await run.stdout!.line(/^ready$/);
        assertEquals((await s.files("hv01")).length, 1);
        run.process.kill("SIGINT");
        const out = await run.end();
        assertEquals(out.code, 130, out.stderr);
        await run.stdout!.line(/^got-int$/, 0);
        assertEquals(await s.files("hv01"), []);
      }),
  });

  Deno.test({
    name: `[${name}] SIGINT while run waits for a busy host: exit 130, nothing of ours locked`,
    ignore,
    fn: () =>
      withConfig(async (config) => {
        await using s = await open();
        const e = env(s, config);
        const holder = await cli(["lock", "hv01", "--hard", "--caller", "holder"], e);
        assertEquals(holder.code, 0, holder.stderr);
        await using run = await spawnRun(
          ["run", "hv01", "--hard", "--retries", "1000", "--timeout", "100ms", "--", "true"],
          { env: e },
        );
        await run.stderr.line(/^\S+Z Waiting for "hv01"/);
        run.process.kill("SIGINT");
        const out = await run.end();
        assertEquals(out.code, 130, out.stderr);
        assertStringIncludes(out.stderr, "nothing is locked");
        assertEquals(await refOn("hv01", e), holder.stdout.trim());
        assertEquals((await cli(["unlock", holder.stdout.trim()], e)).code, 0);
      }),
  });

  Deno.test({
    name: `[${name}] SIGHUP while run drains shared locks: exit 129, no Host lock left behind`,
    ignore,
    fn: () =>
      withConfig(async (config) => {
        await using s = await open();
        const e = env(s, config);
        const reader = await cli(["lock", "hv01", "--type", "generic", "--caller", "reader"], e);
        assertEquals(reader.code, 0, reader.stderr);
        await using run = await spawnRun(
          ["run", "hv01", "--hard", "--drain-timeout", "60s", "--", "true"],
          { env: e },
        );
        await run.stderr.line(/^\S+Z Draining "hv01"/);
        run.process.kill("SIGHUP");
        const out = await run.end();
        assertEquals(out.code, 129, out.stderr);
        assertStringIncludes(out.stderr, "nothing is locked");
        assertEquals(await refOn("hv01", e), reader.stdout.trim(), "only the shared lock");
        assertEquals((await cli(["unlock", reader.stdout.trim()], e)).code, 0);
      }),
  });

  Deno.test({
    name:
      `[${name}] four processes looping run never overlap a Host lock, every round accounted for`,
    ignore,
    fn: () =>
      withConfig(async (config, dir) => {
        await using s = await open();
        const oracle = `${dir}/oracle`;
        const violations = `${dir}/violations`;
        await Deno.mkdir(oracle);
        const workers = 4;
        const rounds = 8;
        // The command checks the oracle: marker files made with noclobber, listed with ls.
        const script =
          `set -C; m="${oracle}/$1"; : > "$m" || exit 90; others=$(ls "${oracle}" | grep -vx "$1");
if [ "\${1%%-*}" = H ] && [ -n "$others" ]; then echo "$1 beside $others" >> ${violations}; fi
if [ "\${1%%-*}" = G ] && echo "$others" | grep -q '^H-'; then echo "$1 beside $others" >> ${violations}; fi
sleep 0.02; rm -f "$m"`;
        const codes: number[] = [];
        await Promise.all(Array.from({ length: workers }, async (_, worker) => {
          for (let round = 0; round < rounds; round++) {
            const host = (round + worker) % 2 === 0;
            const tag = `${host ? "H" : "G"}-${worker}-${round}`;
            const result = await cli(
              [
                "run",
                "hv01",
                ...(host ? ["--hard"] : []),
                "--retries",
                "100000",
                "--timeout",
                "20ms",
                "--quiet",
                "--",
                "sh",
                "-c",
                script,
                "sh",
                tag,
              ],
              env(s, config),
              60_000,
            );
            codes.push(result.code);
            if (result.code !== 0) console.error(result.stderr);
          }
        }));
        assertEquals(codes.length, workers * rounds);
        assertEquals(codes.filter((c) => c !== 0), [], "every round ran its command");
        assertEquals(
          await Deno.readTextFile(violations).catch(() => ""),
          "",
          "the oracle saw no overlap",
        );
        assertEquals([...Deno.readDirSync(oracle)], [], "every command finished its round");
        assertEquals(await s.files("hv01"), [], "no lock left");
      }),
  });
}
