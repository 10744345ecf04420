/**
 * The `run` and lease tests of issue 4, written once and registered for each
 * store: a holder killed with SIGKILL, a lock broken under `run`, SIGINT
 * forwarding, and `run` loops contending with an independent oracle.
 *
 * @module
 */

import { assertEquals, assertOk, assertStringIncludes } from "./_assert.ts";
import { type CliResult, runCli, spawnCli } from "./_cli_helpers.ts";
import { waitFor } from "./_helpers.ts";

/** A store the suite runs on. */
export interface SuiteStore extends AsyncDisposable {
  /** Folder template. */
  store: string;
  /** Extra environment for the command line (credentials). */
  env?: Record<string, string>;
  /** Lock entries of a host, read independently of the tool (History excluded). */
  files(host: string): Promise<string[]>;
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat); // a zombie is dead
  } catch {
    return false;
  }
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
      await Deno.writeTextFile(
        config,
        `export default { clockSkew: "200ms", lockTimeout: "100ms", dependenciesFilePath: "${dir}/none.json" };`,
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
          ["run", "hv01", "--hard", "--ttl", "1s", "--caller", "doomed", "--", "sleep", "4"],
          { env: env(s, config), stdout: "null", stderr: "null" },
        );
        await waitFor("the Host lock", async () => (await s.files("hv01")).includes("Host.lock"));
        holder.kill("SIGKILL");
        assertEquals((await holder.status).signal, "SIGKILL");
        assertEquals(await s.files("hv01"), ["Host.lock"], "the dead holder's lock is still there");
        const busy = await cli(["lock", "hv01", "--retries", "1"], env(s, config));
        assertEquals(busy.code, 3, busy.stderr);
        const next = await cli([
          "lock",
          "hv01",
          "--hard",
          "--retries",
          "40",
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

  Deno.test({
    name: `[${name}] a lock broken with break --force under run stops the command and run exits 5`,
    ignore,
    fn: () =>
      withConfig(async (config, dir) => {
        await using s = await open();
        const pidFile = `${dir}/child.pid`;
        const run = spawnCli(
          [
            "run",
            "hv01",
            "--hard",
            "--ttl",
            "900ms",
            "--grace",
            "2s",
            "--",
            "sh",
            "-c",
            `echo $$ > ${pidFile}; exec sleep 30`,
          ],
          { env: env(s, config) },
        );
        await waitFor("the child", async () =>
          (await Deno.readTextFile(pidFile).catch(() => "")).trim() !== "");
        const childPid = Number((await Deno.readTextFile(pidFile)).trim());
        const status = JSON.parse((await cli(["status", "hv01", "--json"], env(s, config))).stdout);
        const ref = status.locks[0].ref;
        assertStringIncludes(ref, "hv01/Host@");
        const broken = await cli(["break", ref, "--force", "--reason", "test"], env(s, config));
        assertEquals(broken.code, 0, broken.stderr);
        const timer = setTimeout(() =>
          run.kill("SIGKILL"), 15_000);
        const output = await run.output();
        clearTimeout(timer);
        assertEquals(output.code, 5, new TextDecoder().decode(output.stderr));
        assertStringIncludes(new TextDecoder().decode(output.stderr), "lost");
        await waitFor("the child to be gone", () => Promise.resolve(!alive(childPid)), 5000);
        assertEquals(await s.files("hv01"), []);
      }),
  });

  Deno.test({
    name: `[${name}] SIGINT to run reaches the command and every lock is released`,
    ignore,
    fn: () =>
      withConfig(async (config, dir) => {
        await using s = await open();
        const marker = `${dir}/got-int`;
        const ready = `${dir}/ready`;
        const script =
          `trap 'echo int > ${marker}; exit 130' INT; : > ${ready}; while true; do sleep 0.05; done`;
        const run = spawnCli(["run", "hv01", "--", "sh", "-c", script], { env: env(s, config) });
        await waitFor("the command", async () => (await Deno.stat(ready).then(() =>
          true
        ).catch(() => false)));
        assertEquals((await s.files("hv01")).length, 1);
        run.kill("SIGINT");
        const timer = setTimeout(() => run.kill("SIGKILL"), 15_000);
        const output = await run.output();
        clearTimeout(timer);
        assertEquals(output.code, 130, new TextDecoder().decode(output.stderr));
        assertEquals((await Deno.readTextFile(marker)).trim(), "int");
        assertEquals(await s.files("hv01"), []);
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
