/**
 * A hostile SMB store (issue 10): entries planted on the server's disk by
 * someone with access to the share's folder. Samba hides links that leave
 * the share, hangs on FIFOs, serves huge files; whatever is planted, every
 * command ends within its bound with one line and exit 4 naming the entry
 * (or, for entries the server hides from everyone, acts as if they were
 * not there), never advises releasing what it did not make, and nothing
 * outside the store changes (a decoy tree's checksums).
 *
 * Without smbd the suite is skipped with a visible message; under CI its
 * absence is a failure.
 *
 * @module
 */

import { assertEquals, assertOk, assertStringIncludes } from "./_assert.ts";
import { runCli, snapshotTree } from "./_cli_helpers.ts";
import {
  openTestSmbStore,
  SMB_USER,
  smbCredentialsEnv,
  smbTemplate,
  startTestSmbd,
} from "./_smb_helpers.ts";
import { type AnswerAction, type SmbAnswerInfo, startSmbProxy } from "./_smb_proxy.ts";
import { fileSmbd, smbdGate, smbdTest } from "./_smbd.ts";
import { StoreError } from "../src/errors.ts";

const SHARES = Array.from({ length: 8 }, (_, i) => `hostile${i}`);
const gate = smbdGate();
const smbd = await fileSmbd(gate, { shares: SHARES, users: [SMB_USER] });
let next = 0;

/** A share of its own with a host folder hv01, planted; a decoy tree outside. */
async function hostile(
  plant: (hostDir: string, decoy: string) => Promise<void>,
  check: (run: (args: string[]) => ReturnType<typeof runCli>, hostDir: string) => Promise<void>,
) {
  const share = SHARES[next++];
  if (!smbd || !share) throw new Error("no smbd, or more tests than shares");
  const decoy = await Deno.makeTempDir({ prefix: "rl-decoy-" });
  try {
    await Deno.writeTextFile(`${decoy}/secret.txt`, "do not touch\n");
    await Deno.mkdir(`${decoy}/elsewhere`);
    await Deno.writeTextFile(`${decoy}/none.json`, "{}");
    const config = `${decoy}/config.ts`;
    await Deno.writeTextFile(
      config,
      `export default { dependenciesFile: "${decoy}/none.json", timeout: "50ms", retries: 1, smb: { timeout: "3s" } };`,
    );
    const hostDir = `${smbd.dir(share)}/hv01`;
    await Deno.mkdir(hostDir);
    await plant(hostDir, decoy);
    const before = await snapshotTree(decoy);
    const run = (args: string[]) =>
      runCli(args, {
        env: {
          ...smbCredentialsEnv(),
          RESOURCE_LOCKER_STORE: `smb://127.0.0.1:${smbd.port}/${share}/{0}`,
          RESOURCE_LOCKER_CONFIG: config,
        },
        timeoutMs: 20_000,
      });
    await check(run, hostDir);
    assertEquals(await snapshotTree(decoy), before, "nothing outside the store changed");
  } finally {
    await Deno.remove(decoy, { recursive: true });
  }
}

/** One line on stderr, the exit code, the entry named, no advice to release by force. */
function assertRefused(result: { code: number; stderr: string }, code: number, names: string) {
  assertEquals(result.code, code, result.stderr);
  const lines = result.stderr.trim().split("\n");
  assertEquals(lines.length, 1, result.stderr);
  assertStringIncludes(lines[0]!, names);
  assertOk(!lines[0]!.includes("could not release"), lines[0]);
}

const COMMANDS: [string, string[]][] = [
  ["lock", ["lock", "hv01", "--hard"]],
  ["status", ["status", "hv01"]],
  ["unlock --force", ["unlock", "hv01/Host", "--force"]],
  ["break --force", ["break", "hv01/Host", "--force"]],
];

Deno.test({
  name:
    "SMB: a Host.lock linked out of the share is hidden by the server: never followed, never advised on",
  ignore: gate.ignore,
  fn: () =>
    hostile(
      (dir, decoy) => Deno.symlink(`${decoy}/secret.txt`, `${dir}/Host.lock`),
      async (run, dir) => {
        assertRefused(await run(["lock", "hv01", "--hard"]), 4, "Host.lock");
        assertEquals((await run(["status", "hv01"])).code, 0, "status sees no lock");
        assertOk((await Deno.lstat(`${dir}/Host.lock`)).isSymlink, "the link is left alone");
      },
    ),
});

Deno.test({
  name: "SMB: a huge Host.lock is refused with a short line, not read whole nor moved",
  ignore: gate.ignore,
  fn: () =>
    hostile(
      async (dir) => {
        const file = await Deno.open(`${dir}/Host.lock`, { write: true, create: true });
        await file.truncate(50 * 1024 * 1024);
        file.close();
      },
      async (run, dir) => {
        for (const [, args] of COMMANDS) assertRefused(await run(args), 4, "larger than");
        assertEquals((await Deno.stat(`${dir}/Host.lock`)).size, 50 * 1024 * 1024, "left alone");
      },
    ),
});

Deno.test({
  name: "SMB: a folder where a lock file belongs is refused, with no advice to release anything",
  ignore: gate.ignore,
  fn: () =>
    hostile(
      (dir) => Deno.mkdir(`${dir}/Host.lock`),
      async (run) => {
        for (const [, args] of COMMANDS) assertRefused(await run(args), 4, "folder");
      },
    ),
});

Deno.test({
  name: "SMB: a FIFO named like a lock hangs nothing beyond the request time-out",
  ignore: gate.ignore,
  fn: () =>
    hostile(
      async (dir) => {
        const made = await new Deno.Command("mkfifo", { args: [`${dir}/Host.lock`] }).output();
        assertEquals(made.code, 0);
      },
      async (run) => {
        for (const [, args] of COMMANDS) {
          const started = Date.now();
          const result = await run(args);
          assertOk(Date.now() - started < 15_000, `${args.join(" ")} ended in time`);
          // Samba serves a FIFO as an empty file: status may show it as such.
          assertOk([0, 3, 4].includes(result.code), `${args.join(" ")}: ${result.stderr}`);
          assertOk(!result.stderr.includes("could not release"), result.stderr);
        }
      },
    ),
});

Deno.test({
  name: "SMB: a History linked out of the share receives nothing; the lock stays",
  ignore: gate.ignore,
  fn: () =>
    hostile(
      (dir, decoy) => Deno.symlink(`${decoy}/elsewhere`, `${dir}/History`),
      async (run, dir) => {
        const locked = await run(["lock", "hv01", "--hard"]);
        assertEquals(locked.code, 0, locked.stderr);
        assertRefused(await run(["unlock", locked.stdout.trim()]), 4, "History");
        assertOk((await Deno.lstat(`${dir}/Host.lock`)).isFile, "the lock stays where it was");
      },
    ),
});

Deno.test({
  name: "SMB: lock files with odd names count, and their refs release them",
  ignore: gate.ignore,
  fn: () =>
    hostile(
      async (dir) => {
        for (const name of ["Generic-a@b.lock", "Generic-a b.lock"]) {
          await Deno.writeTextFile(`${dir}/${name}`, '{"Caller":"other"}');
        }
      },
      async (run, dir) => {
        const blocked = await run(["lock", "hv01", "--hard", "--drain-timeout", "50ms"]);
        assertEquals(blocked.code, 3, blocked.stderr);
        const status = await run(["status", "hv01", "--json"]);
        const refs: string[] = JSON.parse(status.stdout).locks.map((l: { ref: string }) => l.ref);
        assertEquals(refs.length, 2, status.stdout);
        for (const ref of refs) {
          const result = await run(["unlock", ref, "--force"]);
          assertEquals(result.code, 0, `${ref}: ${result.stderr}`);
        }
        assertEquals([...Deno.readDirSync(dir)].filter((e) => e.isFile), []);
        assertEquals((await run(["lock", "hv01", "--hard"])).code, 0);
      },
    ),
});

smbdTest(
  "SMB: a lock file the server marks as a reparse point (a Windows link) is opened itself and refused, never read or moved",
  async () => {
    await using smbd = await startTestSmbd(["hv01"]);
    // Samba shows no reparse points; a proxy marks Host.lock's CREATE answers
    // as one, as a Windows server answers for a symlink (unsigned session, so
    // the answer may be changed on the way).
    await using proxy = startSmbProxy(smbd.port, {
      answer: (answer: SmbAnswerInfo): AnswerAction =>
        answer.command === 5 && answer.request?.name?.endsWith("Host.lock") ? "reparse" : "pass",
    });
    await Deno.writeTextFile(`${smbd.dir("hv01")}/Host.lock`, '{"Caller":"elsewhere"}');
    const store = await openTestSmbStore(smbTemplate(proxy.port), { signing: "off" });
    try {
      for (
        const act of [
          () => store.read("hv01", "Host.lock"),
          () => store.remove("hv01", "Host.lock", "smb1:any"),
        ]
      ) {
        const error = await act().then(() => undefined, (e) => e as Error);
        assertOk(error instanceof StoreError, String(error));
        assertStringIncludes(error.message, "reparse point");
      }
      assertEquals(
        await Deno.readTextFile(`${smbd.dir("hv01")}/Host.lock`),
        '{"Caller":"elsewhere"}',
        "left alone",
      );
    } finally {
      await store.close();
    }
  },
);
