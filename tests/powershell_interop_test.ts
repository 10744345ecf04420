/**
 * A mixed fleet, proven against the real thing (issue 13): the original
 * PowerShell module ResourceLocker, run by PowerShell 7, and this port share
 * one local store. Every PowerShell step is the module's own code in one
 * `pwsh -NoProfile -NonInteractive -Command …` process (see `_pwsh.ts`);
 * every step of ours is the command line (`cli.ts`, spawned, or its `main`
 * in-process where hundreds of calls are needed).
 *
 * Where PowerShell and we differ on purpose, or the difference is a known
 * one (README, "Lock files and compatibility"), the test asserts what each
 * side does, so a change on either side shows.
 *
 * Needs `pwsh` and the module (`RESOURCE_LOCKER_PS_MODULE`, else
 * `../shared/reference/ResourceLocker`); without them the tests skip with a
 * message, and fail under CI.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { getResourceLockStatus, lockResource } from "../mod.ts";
import {
  expectedLocalTicks,
  lines,
  parseJsonExact,
  runCli,
  runCliInProcess,
  TEST_TZ,
  TEST_TZ_OFFSET_MINUTES,
} from "./_cli_helpers.ts";
import { GUARD_FILE, seededRandom as random } from "./_helpers.ts";
import {
  installPsModule,
  psModuleSource,
  psQuote,
  type PwshSession,
  pwshTest,
  sharedPwsh,
} from "./_pwsh.ts";

// Helpers ------------------------------------------------------------------

const assertEquals = (actual: unknown, expected: unknown, message?: string) =>
  assert.deepStrictEqual(actual, expected, message);
const assertMatch = (actual: string, pattern: RegExp, message?: string) =>
  assert.match(actual, pattern, message);

/** One test's world: a store both sides use and the module pointed at it. */
interface World {
  root: string;
  /** `<root>/store/{0}`. */
  store: string;
  /** An empty dependency map, for steps that must not pick one up. */
  noDeps: string;
  ps: PwshSession;
  /** A host's folder in the store (made, as the original does not make them). */
  host(name: string): Promise<string>;
  /** Our command line, spawned, with the world's store and `TZ` as PowerShell's. */
  cli(args: string[], options?: { dependencies?: string; store?: string }): Promise<Cli>;
  /** Our command line's `main`, in this process. */
  inProcess(args: string[]): Promise<Cli>;
}

interface Cli {
  code: number;
  stdout: string;
  stderr: string;
}

async function withWorld(fn: (world: World) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "rl-ps-interop-" });
  const ps = await sharedPwsh({ TZ: TEST_TZ });
  try {
    await Deno.mkdir(join(root, "store"));
    const store = join(root, "store", "{0}");
    const noDeps = join(root, "no-deps.json");
    await Deno.writeTextFile(noDeps, "{}");
    const manifest = await installPsModule(join(root, "ps"), {
      store,
      dependencies: join(root, "deps.json"),
    });
    await ps.importModule(manifest);
    const world: World = {
      root,
      store,
      noDeps,
      ps,
      async host(name) {
        const path = join(root, "store", name);
        await Deno.mkdir(path, { recursive: true });
        return path;
      },
      async cli(args, options = {}) {
        const result = await runCli([...args, "--store", options.store ?? store], {
          dependencies: options.dependencies ?? noDeps,
          env: { TZ: TEST_TZ },
          timeoutMs: 30_000,
        });
        return { code: result.code, stdout: result.stdout, stderr: result.stderr };
      },
      inProcess: (args) => runCliInProcess([...args, "--store", store]),
    };
    await fn(world);
  } finally {
    await ps.run("Get-PSBreakpoint | Remove-PSBreakpoint").catch(() => {});
    await Deno.remove(root, { recursive: true });
  }
}

/** A value as a PowerShell expression: JSON in a verbatim here-string, parsed by PowerShell. */
function psData(value: unknown): string {
  return `(@'\n${JSON.stringify(value)}\n'@ | ConvertFrom-Json)`;
}

/** Lock files in a host's folder: names ending in `.lock` (what the original counts). */
async function lockNames(folder: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(folder)) {
      if (entry.isFile && entry.name.endsWith(".lock")) names.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names.sort();
}

/** Names of every entry of a folder, sorted. */
async function entries(folder: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(folder)) names.push(entry.name);
  return names.sort();
}

const ISO_DATE = /^\d{4}-\d\d-\d\dT\d\d:\d\d/;

/**
 * Every field of `original` is in `after` with its value; a date string may
 * come back in another form of the same instant (PowerShell 7 rewrites them).
 */
function assertFieldsKept(
  original: Record<string, unknown>,
  after: Record<string, unknown>,
  what: string,
): void {
  for (const [key, value] of Object.entries(original)) {
    if (typeof value === "string" && ISO_DATE.test(value)) {
      assertEquals(
        Date.parse(String(after[key])),
        Date.parse(value),
        `${what}: ${key} is the same instant`,
      );
    } else assertEquals(after[key], value, `${what}: ${key} kept`);
  }
}

function json(result: Cli): Record<string, unknown> {
  assertEquals(result.code, 0, `expected success: ${result.stderr}`);
  return parseJsonExact(result.stdout) as Record<string, unknown>;
}

const LOCK_TYPES = ["Host", "Generic", "File"] as const;
type Type = typeof LOCK_TYPES[number];

/** Fails fast where a refused lock would otherwise wait. */
const NO_WAIT = ["--retries", "1", "--timeout", "0"];

function guidOf(path: string): string {
  return /Generic-([0-9a-f-]{36})\.lock$/.exec(path)![1]!;
}

// 1. Host locks exclude across the two ---------------------------------------

pwshTest("interop: PowerShell's Host lock blocks ours; ours block Lock-HostResource", async () => {
  await withWorld(async (w) => {
    for (const h of ["ps-host", "ps-shared", "our-host", "our-shared", "casehost"]) {
      await w.host(h);
    }
    const taken = await w.ps.run(`
Lock-HostResource -ComputerName 'ps-host' -Hard -CallerName 'PS-Maintenance'
Lock-HostResource -ComputerName 'ps-shared' -CallerName 'PS-Backup'`);
    assertEquals(taken.length, 2);
    assertMatch(String(taken[0]), /\/ps-host\/Host\.lock$/);
    assertMatch(String(taken[1]), /\/ps-shared\/Generic-[0-9a-f-]{36}\.lock$/);

    // PowerShell's Host lock: every lock of ours is refused, naming its holder.
    for (const type of ["host", "generic", "file"]) {
      const refused = await w.cli(["lock", "ps-host", "--type", type, ...NO_WAIT]);
      assertEquals(
        refused.code,
        3,
        `our ${type} lock beside PowerShell's Host lock: ${refused.stderr}`,
      );
      assertMatch(refused.stderr, /PS-Maintenance/);
    }
    assertEquals((await w.cli(["test", "ps-host", "--type", "host"])).code, 0);
    assertEquals(await lockNames(join(w.root, "store", "ps-host")), ["Host.lock"]);

    // PowerShell's shared lock: our Host lock waits for it to drain (here: gives up),
    // our shared lock goes beside it, and --no-drain takes the Host lock at once (the original's way).
    const drained = await w.cli([
      "lock",
      "ps-shared",
      "--hard",
      ...NO_WAIT,
      "--drain-timeout",
      "0.3",
    ]);
    assertEquals(drained.code, 3, drained.stderr);
    assertMatch(drained.stderr, /drain/i);
    assertEquals(
      (await lockNames(join(w.root, "store", "ps-shared"))).length,
      1,
      "drain removed its Host lock",
    );
    assertEquals((await w.cli(["lock", "ps-shared", ...NO_WAIT])).code, 0);

    // Our locks.
    const ourHost = await w.cli(["lock", "our-host", "--hard", "--caller", "Ours-Maintenance"]);
    assertEquals(ourHost.code, 0, ourHost.stderr);
    assertEquals((await w.cli(["lock", "our-shared", "--caller", "Ours-Backup"])).code, 0);
    assertEquals((await w.cli(["lock", "casehost", "--hard"])).code, 0);

    const answers = await w.ps.run(`
foreach ($try in @(
  { Lock-HostResource -ComputerName 'our-host' -Hard },
  { Lock-HostResource -ComputerName 'our-host' },
  { Lock-Resource -ComputerName 'our-host' -Type File }
)) {
  try { $null = & $try; 'locked' } catch { $_.Exception.Message }
}
Test-HostResourceLock -ComputerName 'our-host' -Type Host
Test-HostResourceLock -ComputerName 'casehost'
Test-HostResourceLock -ComputerName 'CaseHost'
Lock-HostResource -ComputerName 'our-shared' -Hard -CallerName 'PS-Reboot'`);
    for (const answer of answers.slice(0, 3)) {
      assertMatch(String(answer), /because the host itself is locked/);
    }
    assertEquals(answers.slice(3, 6), [true, true, false]);
    // Known difference: the original takes a Host lock beside shared locks (no drain).
    assertMatch(String(answers[6]), /\/our-shared\/Host\.lock$/);
    const shared = json(await w.cli(["status", "our-shared", "--json"])).locks as {
      type: string;
      caller: string;
    }[];
    assertEquals(shared.map((l) => `${l.type}:${l.caller}`), [
      "Host:PS-Reboot",
      "Generic:Ours-Backup",
    ]);
    assertEquals((await w.cli(["lock", "our-shared", ...NO_WAIT])).code, 3);
    assertEquals(await lockNames(join(w.root, "store", "our-host")), ["Host.lock"]);
  });
});

// 2. Test-HostResourceLock and our test/status agree --------------------------

pwshTest(
  "interop: Test-HostResourceLock -Type and our test/status agree on every combination",
  async () => {
    await withWorld(async (w) => {
      // One host per set of lock types held (a mask of Host 1, Generic 2, File 4);
      // the two sides take turns at creating a host's locks, shared ones first.
      const has = (mask: number, type: Type) => (mask & (1 << LOCK_TYPES.indexOf(type))) !== 0;
      const creator = (mask: number, type: Type) =>
        (mask + LOCK_TYPES.indexOf(type)) % 2 === 0 ? "ps" : "ours";
      const hosts = [0, 1, 2, 3, 4, 5, 6, 7].map((mask) => ({ name: `mask-${mask}`, mask }));
      for (const h of hosts) {
        const folder = await w.host(h.name);
        // What our store leaves in a host folder: its guard, and transient files
        // (here one holding a Host lock's content) that no lock name matches.
        await Deno.writeTextFile(join(folder, GUARD_FILE), "");
        await Deno.writeTextFile(
          join(folder, ".resource-locker-0123456789abcdef.tmp"),
          '{\r\n  "LockedAt": 639000000000000000,\r\n  "Type": "Host"\r\n}\r\n',
        );
      }
      const locks = (types: readonly Type[], who: "ps" | "ours") =>
        hosts.flatMap((h) =>
          types.filter((type) => has(h.mask, type) && creator(h.mask, type) === who).map((
            type,
          ) => ({ host: h.name, type }))
        );
      const ours = async (list: { host: string; type: Type }[]) => {
        for (const { host, type } of list) {
          await lockResource(host, {
            type,
            store: w.store,
            dependencies: {},
            drain: false,
            retries: 1,
            timeout: 0,
            caller: "ours",
          });
        }
      };
      const psLock = (list: { host: string; type: Type }[]) =>
        `foreach ($l in ${
          psData(list)
        }) { $null = Lock-Resource -ComputerName $l.host -Type $l.type -CallerName 'ps' -NoDependencies }`;
      await ours(locks(["Generic", "File"], "ours"));
      await w.ps.run(psLock(locks(["Generic", "File"], "ps")));
      await ours(locks(["Host"], "ours")); // beside the shared locks: no drain
      const typeSets = [
        ["Any"],
        ...[1, 2, 3, 4, 5, 6, 7].map((set) => LOCK_TYPES.filter((_, i) => set & (1 << i))),
      ];
      const psAnswers = await w.ps.run(`
${psLock(locks(["Host"], "ps"))}
foreach ($h in ${psData(hosts.map((h) => h.name))}) {
  foreach ($types in ${psData(typeSets)}) {
    [bool](Test-HostResourceLock -ComputerName $h -Type ([string[]]$types))
  }
}`);
      assertEquals(psAnswers.length, hosts.length * typeSets.length);

      const status = json(await w.cli(["status", ...hosts.map((h) => h.name), "--json"])).locks as {
        host: string;
        type: Type;
      }[];
      let n = 0;
      const spawned: Promise<void>[] = [];
      for (const h of hosts) {
        const held = LOCK_TYPES.filter((type) => has(h.mask, type));
        assertEquals(
          status.filter((l) => l.host === h.name).map((l) => l.type).sort(),
          [...held].sort(),
          `status of ${h.name}`,
        );
        for (const [i, types] of typeSets.entries()) {
          const expected = types[0] === "Any"
            ? h.mask !== 0
            : types.some((type) => has(h.mask, type as Type));
          const label = `${h.name} -Type ${types.join(",")}`;
          assertEquals(psAnswers[n++], expected, `Test-HostResourceLock ${label}`);
          const args = ["test", h.name, "--type", types.join(",").toLowerCase()];
          const ours = await w.inProcess(args);
          assertEquals(ours.code, expected ? 0 : 1, `our test ${label}`);
          // The spawned command line too, for one type set per host.
          if (i === hosts.indexOf(h)) {
            spawned.push(
              w.cli(args).then((r) => assertEquals(r.code, expected ? 0 : 1, `cli test ${label}`)),
            );
          }
        }
      }
      await Promise.all(spawned);
    });
  },
);

// 3. Each side releases the other's locks; both History formats ------------

interface HistoryJson {
  name: string;
  type: string;
  caller: string | null;
  description: string | null;
  sessionId: string | null;
  lockedAt: string | null;
  unlockedAt: string | null;
  expiresAt: string | null;
  brokenBy: string | null;
}

async function history(w: World, host: string): Promise<HistoryJson[]> {
  return json(await w.cli(["history", host, "--json"])).entries as HistoryJson[];
}

function within(at: string | null, from: number, to: number, what: string): void {
  assert(at !== null, `${what}: missing`);
  const ms = Date.parse(at!);
  // Ticks are cut to whole milliseconds when read: allow one.
  assert(
    ms >= from - 1 && ms <= to + 1,
    `${what}: ${at} not within ${new Date(from).toISOString()}..${new Date(to).toISOString()}`,
  );
}

function ticksWithin(value: unknown, from: number, to: number, what: string): void {
  assert(typeof value === "bigint", `${what}: expected .NET ticks, got ${String(value)}`);
  const ticks = value as bigint;
  assert(
    ticks >= expectedLocalTicks(from, TEST_TZ_OFFSET_MINUTES) - 10_000n &&
      ticks <= expectedLocalTicks(to, TEST_TZ_OFFSET_MINUTES) + 10_000n,
    `${what}: ticks ${ticks} not local ticks (${TEST_TZ}) of ${from}..${to}`,
  );
}

pwshTest(
  "interop: Unlock-Resource releases our locks, our unlock releases PowerShell's; history reads both",
  async () => {
    await withWorld(async (w) => {
      const store = (h: string, ...rest: string[]) => join(w.root, "store", h, ...rest);

      // Ours, released by PowerShell.
      const session = crypto.randomUUID();
      const ourHost = await w.cli([
        "lock",
        "ours-h",
        "--hard",
        "--caller",
        "Gérard\\Ops",
        "--description",
        "Patch – reboot",
        "--session-id",
        session,
      ]);
      assertEquals(ourHost.code, 0, ourHost.stderr);
      const ourShared = await w.cli([
        "lock",
        "ours-g",
        "--caller",
        "Ours-Backup",
        "--session-id",
        session,
      ]);
      assertEquals(ourShared.code, 0, ourShared.stderr);
      const before = {
        host: parseJsonExact(await Deno.readTextFile(store("ours-h", "Host.lock"))) as Record<
          string,
          unknown
        >,
        shared: parseJsonExact(
          await Deno.readTextFile(store("ours-g", `Generic-${session}.lock`)),
        ) as Record<string, unknown>,
      };
      const t0 = Date.now();
      await w.ps.run(
        `Get-Item -LiteralPath ${psQuote(store("ours-h", "Host.lock"))}, ${
          psQuote(store("ours-g", `Generic-${session}.lock`))
        } | Unlock-Resource`,
      );
      const t1 = Date.now();
      assertEquals(await lockNames(store("ours-h")), []);
      assertEquals(await lockNames(store("ours-g")), []);
      const [hostEntry] = await entries(store("ours-h", "History"));
      assertMatch(hostEntry!, /^Host\.lock-[0-9a-f-]{36}$/);
      for (
        const [file, original] of [
          [store("ours-h", "History", hostEntry!), before.host],
          [store("ours-g", "History", `Generic-${session}.lock`), before.shared],
        ] as const
      ) {
        const after = parseJsonExact(await Deno.readTextFile(file)) as Record<string, unknown>;
        // Every field of ours is kept, with its value; PowerShell adds UnlockedAt.
        assertFieldsKept(original, after, file);
        assertEquals(Object.keys(after).sort(), [...Object.keys(original), "UnlockedAt"].sort());
        ticksWithin(after.UnlockedAt, t0, t1, `${file}: UnlockedAt`);
      }
      const [hostHistory] = await history(w, "ours-h");
      assertEquals(hostHistory!.name, hostEntry);
      assertEquals(
        [hostHistory!.type, hostHistory!.caller, hostHistory!.description, hostHistory!.sessionId],
        ["Host", "Gérard\\Ops", "Patch – reboot", session],
      );
      assertEquals(hostHistory!.lockedAt, before.host.LockedAtUtc);
      within(hostHistory!.unlockedAt, t0, t1, "history ours-h: unlockedAt from PowerShell's ticks");
      const [sharedHistory] = await history(w, "ours-g");
      assertEquals([sharedHistory!.type, sharedHistory!.caller, sharedHistory!.sessionId], [
        "Generic",
        "Ours-Backup",
        session,
      ]);
      within(sharedHistory!.unlockedAt, t0, t1, "history ours-g: unlockedAt");
      // Our unlock afterwards: already released (a warning), not lost.
      const again = await w.cli(["unlock", `ours-h/Host@${session}`, `ours-g/Generic-${session}`]);
      assertEquals(again.code, 0, again.stderr);
      assertEquals(
        lines(again.stderr).filter((l) => /already released/.test(l)).length,
        2,
        again.stderr,
      );

      // Known: a session that locks a host again reuses its shared lock's name, which
      // History already holds; the original's Move-Item will not replace it, so its
      // Unlock-Resource fails after rewriting the file, and the lock stays.
      assertEquals((await w.cli(["lock", "ours-g", "--session-id", session])).code, 0);
      const collided = await w.ps.try(
        `Get-Item -LiteralPath ${
          psQuote(store("ours-g", `Generic-${session}.lock`))
        } | Unlock-Resource`,
      );
      assert(!collided.ok, "Unlock-Resource with History holding the name");
      assertMatch(collided.ok ? "" : collided.error, /already exists/);
      assertEquals(await lockNames(store("ours-g")), [`Generic-${session}.lock`]);
      assertMatch(
        await Deno.readTextFile(store("ours-g", `Generic-${session}.lock`)),
        /"UnlockedAt"/,
      );
      assertEquals((await w.cli(["test", "ours-g"])).code, 0, "still a lock to us");
      const cleared = await w.cli(["unlock", `ours-g/Generic-${session}`]);
      assertEquals(cleared.code, 0, cleared.stderr);
      assertMatch(cleared.stderr, /^Released/);

      // PowerShell's, released by us; and one PowerShell releases itself.
      for (const h of ["ps-h", "ps-g", "ps-own"]) await w.host(h);
      const p0 = Date.now();
      const psLocks = await w.ps.run(`
Lock-HostResource -ComputerName 'ps-h' -Hard -CallerName 'PS\\Maint'
Lock-Resource -ComputerName 'ps-g' -Type Generic -CallerName 'PS-Backup' -Description 'nightly \\\\fs01\\backup'
Lock-HostResource -ComputerName 'ps-own' -Hard -CallerName 'PS-Self' | Unlock-Resource`);
      const p1 = Date.now();
      assertEquals(psLocks.length, 2);
      const psGuid = guidOf(String(psLocks[1]));
      const psHostBytes = await Deno.readTextFile(store("ps-h", "Host.lock"));

      const refused = await w.cli(["unlock", "ps-h/Host"]);
      assertEquals(refused.code, 2, "a PowerShell Host lock names no session: --force needed");
      assertMatch(refused.stderr, /--force/);
      assertEquals(await lockNames(store("ps-h")), ["Host.lock"]);
      const u0 = Date.now();
      const released = await w.cli(["unlock", "ps-h/Host", "--force"]);
      assertEquals(released.code, 0, released.stderr);
      const byRef = await w.cli(["unlock", `ps-g/Generic-${psGuid}`]);
      assertEquals(byRef.code, 0, `a shared lock's ref names its session: ${byRef.stderr}`);
      const u1 = Date.now();
      assertEquals(
        await w.ps.run(
          `Test-HostResourceLock -ComputerName 'ps-h'; Test-HostResourceLock -ComputerName 'ps-g'`,
        ),
        [false, false],
      );

      // Our History entry of PowerShell's lock keeps its fields exactly.
      const psHostBefore = parseJsonExact(psHostBytes) as Record<string, unknown>;
      const historyNames = await entries(store("ps-h", "History"));
      const ourEntry = parseJsonExact(
        await Deno.readTextFile(store("ps-h", "History", historyNames[0]!)),
      ) as Record<string, unknown>;
      for (const [key, value] of Object.entries(psHostBefore)) {
        assertEquals(ourEntry[key], value, key);
      }

      const [psH] = await history(w, "ps-h");
      assertEquals(
        [psH!.type, psH!.caller, psH!.sessionId],
        ["Host", "PS_Maint", null],
        "the original writes \\ as _",
      );
      within(psH!.lockedAt, p0, p1, "history ps-h: lockedAt from PowerShell's ticks");
      within(psH!.unlockedAt, u0, u1, "history ps-h: unlockedAt");
      const [psG] = await history(w, "ps-g");
      assertEquals([psG!.type, psG!.caller, psG!.description, psG!.sessionId], [
        "Generic",
        "PS-Backup",
        "nightly __fs01_backup",
        psGuid,
      ]);
      within(psG!.lockedAt, p0, p1, "history ps-g: lockedAt");
      within(psG!.unlockedAt, u0, u1, "history ps-g: unlockedAt");
      // PowerShell's own History format.
      const [own] = await history(w, "ps-own");
      assertMatch(own!.name, /^Host\.lock-[0-9a-f-]{36}$/);
      assertEquals([own!.type, own!.caller, own!.sessionId], ["Host", "PS-Self", null]);
      within(own!.lockedAt, p0, p1, "history ps-own: lockedAt");
      within(own!.unlockedAt, p0, p1, "history ps-own: unlockedAt");
      assert(Date.parse(own!.lockedAt!) <= Date.parse(own!.unlockedAt!));
    });
  },
);

// 4. What PowerShell 7's rewrite does to our fields ----------------------------

pwshTest(
  "interop: PowerShell 7's rewrite of our fields on unlock (dates, numbers) reads back: status and history",
  async () => {
    await withWorld(async (w) => {
      const store = (h: string, ...rest: string[]) => join(w.root, "store", h, ...rest);
      await w.host("rw-h");
      // A lease with a fractional TTL; a caller and a description that look like
      // dates (ConvertFrom-Json turns whole ISO strings into dates).
      const locked = await w.cli([
        "lock",
        "rw-h",
        "--hard",
        "--ttl",
        "5400.5",
        "--caller",
        "2024-05-01T10:00:00.000Z",
        "--description",
        "2024-05-01T15:30:00.000+05:30",
      ]);
      assertEquals(locked.code, 0, locked.stderr);
      const ref = lines(locked.stdout)[0]!;
      // A renewed lease: RenewedAtUtc too.
      await w.host("rw-r");
      const renewed = await lockResource("rw-r", {
        store: w.store,
        dependencies: {},
        ttl: "2h",
        caller: "renewer",
      });
      await renewed.renew();
      const originals = {
        h: parseJsonExact(await Deno.readTextFile(store("rw-h", "Host.lock"))) as Record<
          string,
          unknown
        >,
        r: parseJsonExact(
          await Deno.readTextFile(store("rw-r", `Generic-${renewed.sessionId}.lock`)),
        ) as Record<string, unknown>,
      };
      assert(typeof originals.r.RenewedAtUtc === "string");
      assertEquals(originals.h.TtlSeconds, 5400.5);

      // Paused after PowerShell rewrote the file, before it moves it: still a lock,
      // read by status with our fields.
      const midUnlock: { file: string; status: Record<string, unknown>[]; test: number }[] = [];
      let pauses = 0;
      await w.ps.run(
        `$null = Set-PSBreakpoint -Command Rename-Item, Move-Item -Action { Wait-Interop 'moving' }
Get-Item -LiteralPath ${psQuote(store("rw-h", "Host.lock"))}, ${
          psQuote(store("rw-r", `Generic-${renewed.sessionId}.lock`))
        } | Unlock-Resource
Get-PSBreakpoint | Remove-PSBreakpoint`,
        {
          onPause: async () => {
            // Host.lock: Rename-Item (checked), then Move-Item of Host.lock-<guid>; then the shared lock's Move-Item.
            const host = ["rw-h", undefined, "rw-r"][pauses++];
            if (host === undefined) return;
            const [file] = await lockNames(store(host));
            assert(file !== undefined, `${host}: the lock file is still there mid-unlock`);
            const status = json(await w.cli(["status", host, "--json"])).locks as Record<
              string,
              unknown
            >[];
            midUnlock.push({
              file: await Deno.readTextFile(store(host, file!)),
              status,
              test: (await w.cli(["test", host])).code,
            });
          },
        },
      );
      assertEquals([midUnlock.length, pauses], [2, 3]);
      for (const [i, original] of [originals.h, originals.r].entries()) {
        const { file, status, test } = midUnlock[i]!;
        assertMatch(file, /"UnlockedAt": \d+/, "PowerShell's rewrite is in place");
        assertEquals(test, 0, "locked mid-unlock");
        assertEquals(status.length, 1);
        const lock = status[0]!;
        assertEquals(lock.content, "ok");
        assertEquals(lock.sessionId, original.SessionId);
        // The date-like caller is already in PowerShell's form (see below).
        assertEquals(lock.caller, i === 0 ? "2024-05-01T10:00:00Z" : original.Caller);
        assertEquals(
          lock.expiresAt,
          original.ExpiresAtUtc,
          "ExpiresAtUtc read back as the same instant",
        );
        assertEquals(lock.expired, false);
        assertEquals(lock.lockedAt, original.LockedAtUtc);
        assertEquals(
          (lock.holder as { pid: number }).pid,
          (original.Holder as { Pid: number }).Pid,
        );
      }

      // What PowerShell 7 did to each field, exactly.
      const [hostEntry] = await history(w, "rw-h");
      const rewritten = parseJsonExact(
        await Deno.readTextFile(store("rw-h", "History", hostEntry!.name)),
      ) as Record<string, unknown>;
      const rewrittenR = parseJsonExact(
        await Deno.readTextFile(store("rw-r", "History", `Generic-${renewed.sessionId}.lock`)),
      ) as Record<string, unknown>;
      assertFieldsKept(originals.h, rewritten, "rw-h");
      assertFieldsKept(originals.r, rewrittenR, "rw-r");
      // Known: whole-string ISO dates are re-formatted by PowerShell 7 (".000" dropped, offsets kept).
      assertEquals(rewritten.Caller, "2024-05-01T10:00:00Z");
      assertEquals(rewritten.Description, "2024-05-01T15:30:00+05:30");
      assertEquals(rewritten.TtlSeconds, 5400.5);
      assertEquals(rewritten.LockedAt, originals.h.LockedAt);

      assertEquals(hostEntry!.caller, "2024-05-01T10:00:00Z");
      assertEquals(hostEntry!.sessionId, originals.h.SessionId);
      assertEquals(Date.parse(hostEntry!.lockedAt!), Date.parse(String(originals.h.LockedAtUtc)));
      assertEquals(Date.parse(hostEntry!.expiresAt!), Date.parse(String(originals.h.ExpiresAtUtc)));
      assert(hostEntry!.unlockedAt !== null);
      const [renewedEntry] = await history(w, "rw-r");
      assertEquals(
        Date.parse(renewedEntry!.expiresAt!),
        Date.parse(String(originals.r.ExpiresAtUtc)),
      );
      assertEquals(renewedEntry!.sessionId, renewed.sessionId);

      // Our holders learn it is gone: already released, not lost.
      assertEquals((await w.cli(["unlock", ref])).code, 0);
      await renewed.release();
    });
  },
);

// 5. Dependency maps ------------------------------------------------------------

type RawMap = Record<string, string | string[]>;

/** Same text ignoring case, as PowerShell's -in, -notin and -ne compare. */
const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

function listOf(map: RawMap, key: string): string[] {
  const value = map[key];
  return typeof value === "string" ? [value] : value ?? [];
}

/** .NET's StringComparison.OrdinalIgnoreCase on ASCII names (Get-Member sorts so). */
function ordinalIgnoreCase(a: string, b: string): number {
  const x = a.toUpperCase();
  const y = b.toUpperCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * What `Get-ResourceDependence` returns, as observed (a model to pin the
 * difference down, not used by the library): keys sorted by Get-Member
 * (ordinal, ignoring case); the first level is every key whose list holds the
 * host (the host itself included when it lists itself); each further level
 * goes through the previous hosts in order, and for each through the keys in
 * order.
 */
function powerShellModel(map: RawMap, host: string): string[] {
  const names = Object.keys(map).sort(ordinalIgnoreCase);
  const holds = (name: string, item: string) => listOf(map, name).some((v) => same(v, item));
  const result = names.filter((name) => holds(name, host));
  for (;;) {
    const next: string[] = [];
    for (const item of result) {
      for (const name of names) {
        if (
          holds(name, item) && !result.some((r) => same(r, name)) && !same(name, host) &&
          !next.some((r) => same(r, name))
        ) next.push(name);
      }
    }
    if (next.length === 0) return result;
    result.push(...next);
  }
}

/** Our documented order (src/dependencies.ts): never the host itself; level by level, each level by lower-case name. */
/** .NET's ordinal ignore-case order, as PowerShell sorts member names. */
function byNameIgnoringCase(a: string, b: string): number {
  const x = a.toUpperCase();
  const y = b.toUpperCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

function documentedOrder(map: RawMap, host: string): string[] {
  const lower: Record<string, string[]> = {};
  for (const key of Object.keys(map)) {
    (lower[key.toLowerCase()] ??= []).push(...listOf(map, key).map((v) => v.toLowerCase()));
  }
  const seen = new Set([host.toLowerCase()]);
  const result: string[] = [];
  let level = [host.toLowerCase()];
  while (level.length) {
    const next = new Set<string>();
    for (const item of level) {
      for (const name of Object.keys(lower).sort(byNameIgnoringCase)) {
        if (lower[name]!.includes(item) && !seen.has(name)) next.add(name);
      }
    }
    level = [...next];
    level.forEach((name) => seen.add(name));
    result.push(...level);
  }
  return result;
}

const POOL = ["hv01", "hv02", "dc01", "dc_02", "ab", "a_b", "fs-01", "vm.01", "z9", "q"];

interface GeneratedMap {
  file: string;
  map: RawMap;
  /** Two keys differ only in case (PowerShell 7's ConvertFrom-Json refuses the map). */
  caseDuplicates: boolean;
  queries: string[];
}

function generateMaps(dir: string, count: number, seed: number): GeneratedMap[] {
  const next = random(seed);
  const pick = <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]!;
  const recase = (name: string) =>
    [...name].map((c) => (next() < 0.3 ? c.toUpperCase() : c)).join("");
  const maps: GeneratedMap[] = [];
  for (let i = 0; i < count; i++) {
    const caseDuplicates = i % 25 === 24;
    const keys = POOL.filter(() => next() < 0.6);
    if (keys.length === 0) keys.push(pick(POOL));
    const map: RawMap = {};
    for (const key of keys) {
      const list = POOL.filter(() => next() < 0.25).map(recase);
      if (i === 0 || next() < 0.08) list.push(recase(key)); // a self-reference
      map[recase(key)] = list.length === 1 && next() < 0.5 ? list[0]! : next() < 0.05 ? [] : list;
    }
    if (caseDuplicates) {
      const key = Object.keys(map)[0]!;
      map[key.toUpperCase() === key ? key.toLowerCase() : key.toUpperCase()] = [pick(POOL)];
    }
    const mapKeys = Object.keys(map);
    const queries = [
      recase(
        i === 0 ? mapKeys.find((k) => listOf(map, k).some((v) => same(v, k)))! : pick(mapKeys),
      ),
    ];
    maps.push({
      file: join(dir, `map-${String(i).padStart(3, "0")}.json`),
      map,
      caseDuplicates,
      queries,
    });
  }
  return maps;
}

const EXAMPLE_HOSTS = ["hv01", "hv02", "dc01", "dc02", "vmm01", "vmmlib01", "fs01", "nothere"];

pwshTest(
  "interop: Get-ResourceDependence and our deps: the example map and generated maps",
  async () => {
    await withWorld(async (w) => {
      const example = join(w.root, "example.json");
      await Deno.copyFile(
        join(psModuleSource(), "ResourceLocker-Dependencies-Example.json"),
        example,
      );

      // The example map: the same hosts in the same order, through the spawned command line.
      const psExample = await w.ps.run(`
foreach ($h in ${
        psData(EXAMPLE_HOSTS)
      }) { @{ deps = @(Get-ResourceDependence -ResourceName $h -FilePath ${psQuote(example)}) } }`)
        .then((out) => (out as { deps: string[] }[]).map((o) => o.deps));
      for (const [i, host] of EXAMPLE_HOSTS.entries()) {
        const ours =
          json(await w.cli(["deps", host, "--dependencies-file", example, "--json"])).dependencies;
        assertEquals(ours, (psExample[i] as string[]).map((h) => h.toLowerCase()), `deps ${host}`);
      }
      // Known difference: a null list is no dependencies to the original; our map check refuses it.
      const nullMap = join(w.root, "null.json");
      await Deno.writeTextFile(nullMap, '{ "a": null, "b": ["x"], "c": [] }');
      assertEquals(
        await w.ps.run(
          `(Get-ResourceDependence -ResourceName 'x' -FilePath ${psQuote(nullMap)}) -join ','`,
        ),
        ["b"],
      );
      const refused = await w.cli(["deps", "x", "--dependencies-file", nullMap]);
      assertEquals(refused.code, 2);
      assertMatch(refused.stderr, /at "a": expected an array of host names, got null/);

      // Generated maps: cycles, self-references, case differences, single strings, empty lists.
      const dir = join(w.root, "maps");
      await Deno.mkdir(dir);
      const maps = generateMaps(dir, 200, 13);
      for (const m of maps) await Deno.writeTextFile(m.file, JSON.stringify(m.map, null, 2));
      const jobs = maps.flatMap((m) => m.queries.map((host) => ({ file: m.file, host })));
      await Deno.writeTextFile(join(w.root, "jobs.json"), JSON.stringify(jobs));
      const psAnswers = await w.ps.run(`
foreach ($j in (Get-Content -Raw -LiteralPath ${
        psQuote(join(w.root, "jobs.json"))
      } | ConvertFrom-Json)) {
  try { [ordered]@{ ok = $true; deps = @(Get-ResourceDependence -ResourceName $j.host -FilePath $j.file) } }
  catch { [ordered]@{ ok = $false; error = $_.Exception.Message } }
}`) as ({ ok: true; deps: string[] } | { ok: false; error: string })[];
      assertEquals(psAnswers.length, jobs.length);

      const tally = { queries: 0, exact: 0, selfReference: 0, refused: 0 };
      let n = 0;
      const lockCases: { map: GeneratedMap; host: string; deps: string[] }[] = [];
      let selfCase: { map: GeneratedMap; host: string; deps: string[] } | undefined;
      for (const m of maps) {
        for (const host of m.queries) {
          tally.queries++;
          const ps = psAnswers[n++]!;
          const ours = await runCliInProcess([
            "deps",
            host,
            "--dependencies-file",
            m.file,
            "--json",
          ]);
          const what = `${m.file} (${JSON.stringify(m.map)}) deps ${host}`;
          assertEquals(ours.code, 0, `${what}: ${ours.stderr}`);
          const oursList = (JSON.parse(ours.stdout) as { dependencies: string[] }).dependencies;
          if (m.caseDuplicates) {
            // Known difference: PowerShell 7 refuses keys that differ only in case; we merge them.
            if (ps.ok) assert.fail(`${what}: PowerShell accepted keys differing in case`);
            assertMatch(ps.error, /different casing/);
            tally.refused++;
            assertEquals(oursList, documentedOrder(m.map, host), what);
            continue;
          }
          if (!ps.ok) assert.fail(`${what}: PowerShell failed: ${ps.error}`);
          assertEquals(
            ps.deps,
            powerShellModel(m.map, host),
            `${what}: Get-ResourceDependence as modelled`,
          );
          const psLower = ps.deps.map((h) => h.toLowerCase());
          const selfListed = psLower.includes(host.toLowerCase());
          assertEquals(
            selfListed,
            listOf(m.map, Object.keys(m.map).find((k) => same(k, host)) ?? "").some((v) =>
              same(v, host)
            ),
          );
          if (selfListed) tally.selfReference++;
          const psWithoutSelf = psLower.filter((h) => h !== host.toLowerCase());
          // The same hosts, always.
          assertEquals([...oursList].sort(), [...psWithoutSelf].sort(), `${what}: the same hosts`);
          // Our order is PowerShell's, less the host itself.
          assertEquals(oursList, psWithoutSelf, `${what}: PowerShell's order`);
          assertEquals(oursList, documentedOrder(m.map, host), `${what}: our documented order`);
          tally.exact++;
          if (!selfListed && oursList.length > 0 && lockCases.length < 4) {
            lockCases.push({ map: m, host, deps: ps.deps });
          }
          if (selfListed && oursList.length > 0 && !selfCase) {
            // Named as its key is written: on a case-sensitive store another case is another folder.
            selfCase = {
              map: m,
              host: Object.keys(m.map).find((k) => same(k, host))!,
              deps: ps.deps,
            };
          }
        }
      }
      console.log(
        `deps: ${tally.queries} queries on ${maps.length} maps: ${tally.exact} in PowerShell's order, ${tally.selfReference} where PowerShell lists the host itself, ${tally.refused} maps PowerShell 7 refuses (keys differing in case)`,
      );
      assert(tally.selfReference > 0 && tally.refused > 0 && tally.exact > 0);

      // Lock-HostResource and our lock over the same map take the same set of lock files.
      const cases = [
        { file: example, host: "dc01", hard: true, psDeps: psExample[2] as string[] },
        { file: example, host: "vmm01", hard: false, psDeps: psExample[4] as string[] },
        ...lockCases.map((c, i) => ({
          file: c.map.file,
          host: c.host,
          hard: i % 2 === 0,
          psDeps: c.deps,
        })),
        ...(selfCase
          ? [{ file: selfCase.map.file, host: selfCase.host, hard: true, psDeps: selfCase.deps }]
          : []),
      ].map((c, i) => ({
        ...c,
        psStore: join(w.root, `lk-ps-${i}`),
        ourStore: join(w.root, `lk-ours-${i}`),
      }));
      for (const c of cases) {
        // The original makes no host folders: make the ones it will use, in its case.
        for (const h of [c.host, ...c.psDeps]) {
          await Deno.mkdir(join(c.psStore, h), { recursive: true });
        }
        await Deno.mkdir(c.ourStore);
      }
      const psLocked = await w.ps.run(`
$m = Get-Module ResourceLocker
$saved = & $m { $ModuleWideLockFolderPathTemplate, $ModuleWideResourceDependenciesFilePath }
foreach ($c in ${
        psData(
          cases.map((c) => ({
            store: join(c.psStore, "{0}"),
            file: c.file,
            host: c.host,
            hard: c.hard,
          })),
        )
      }) {
  & $m { param($s, $d) $script:ModuleWideLockFolderPathTemplate = $s; $script:ModuleWideResourceDependenciesFilePath = $d } $c.store $c.file
  try { $null = Lock-HostResource -ComputerName $c.host -Hard:$c.hard -CallerName 'PS-Deps'; 'ok' } catch { $_.Exception.Message }
}
& $m { param($s, $d) $script:ModuleWideLockFolderPathTemplate = $s; $script:ModuleWideResourceDependenciesFilePath = $d } $saved[0] $saved[1]`);
      const taken = async (root: string) => {
        const out: string[] = [];
        for await (const entry of Deno.readDir(root)) {
          for (const name of await lockNames(join(root, entry.name))) {
            out.push(`${entry.name.toLowerCase()}/${name.replace(/^Generic-.*/, "Generic")}`);
          }
        }
        return out.sort();
      };
      for (const [i, c] of cases.entries()) {
        const ours = await w.cli(
          [
            "lock",
            c.host,
            ...(c.hard ? ["--hard"] : []),
            "--dependencies-file",
            c.file,
            ...NO_WAIT,
          ],
          { store: join(c.ourStore, "{0}") },
        );
        assertEquals(ours.code, 0, ours.stderr);
        const kind = c.hard ? "Host.lock" : "Generic";
        const expected = [
          c.host,
          ...c.psDeps.filter((h) => !same(h, c.host)),
        ].map((h) => `${h.toLowerCase()}/${kind}`).sort();
        assertEquals(await taken(c.ourStore), expected, `our lock ${c.host} over ${c.file}`);
        if (selfCase && i === cases.length - 1) {
          // Known: the original cannot lock a host that lists itself: it locks the host as
          // its own dependency first, then finds it locked, and leaves those locks behind.
          assertMatch(String(psLocked[i]), /host itself is locked/);
          assertEquals(
            await taken(c.psStore),
            [...new Set(c.psDeps.map((h) => `${h.toLowerCase()}/${kind}`))].sort(),
          );
        } else {
          assertEquals(psLocked[i], "ok", `Lock-HostResource ${c.host} over ${c.file}`);
          assertEquals(
            await taken(c.psStore),
            expected,
            `Lock-HostResource ${c.host} over ${c.file}`,
          );
        }
      }
    });
  },
);

// 6. The original's two-step write, and its unlock, seen from our side -----------

pwshTest(
  "interop: PowerShell's two-step writes and its unlock are locks to us at every step",
  async () => {
    await withWorld(async (w) => {
      const store = (h: string, ...rest: string[]) => join(w.root, "store", h, ...rest);
      for (const h of ["two-host", "two-shared", "churn"]) await w.host(h);
      // At every pause, each lock file of either host is looked at from our side
      // (once per distinct state): a lock to our test and status, and it refuses
      // our conflicting lock.
      const hosts = { "two-host": "Host", "two-shared": "Generic" } as const;
      const seen = new Map<string, string>();
      const check = async (host: keyof typeof hosts) => {
        const type = hosts[host];
        const names = await entries(store(host));
        const renamed = names.find((n) => /^Host\.lock-[0-9a-f-]{36}$/.test(n));
        if (renamed) {
          // The original renames Host.lock to Host.lock-<guid> in the host's folder, then moves it.
          if (!seen.has(`${host} renamed`)) {
            assertEquals(
              (await w.cli(["test", host])).code,
              1,
              `${host}: Host.lock-<guid> is no lock`,
            );
            seen.set(
              `${host} renamed`,
              "Host.lock-<guid> in the folder: no lock to either side (the original's own release)",
            );
          }
          return;
        }
        const [file] = await lockNames(store(host));
        if (file === undefined) return;
        const bytes = await Deno.readFile(store(host, file));
        const text = new TextDecoder().decode(bytes);
        const state = bytes.length === 0
          ? "empty"
          : !text.trimStart().startsWith("{")
          ? "caller only"
          : /"UnlockedAt"/.test(text)
          ? "rewritten with UnlockedAt"
          : "JSON";
        const key = `${host} ${state}`;
        if (seen.has(key)) return;
        const test = await w.cli(["test", host, "--type", type.toLowerCase()]);
        assertEquals(test.code, 0, `${key}: our test says locked`);
        const [lock] = json(await w.cli(["status", host, "--json"])).locks as Record<
          string,
          unknown
        >[];
        assertEquals(lock?.type, type, `${key}: status shows it`);
        if (state === "caller only") {
          assertEquals([lock!.content, lock!.caller, text], [
            "partial",
            "PS-TwoStep",
            "PS-TwoStep",
          ]);
        }
        if (state === "empty") assertEquals(lock!.content, "empty");
        if (state.startsWith("JSON") || state.startsWith("rewritten")) {
          assertEquals(lock!.content, "ok");
        }
        const other = type === "Host"
          ? await w.cli(["lock", host, ...NO_WAIT])
          : await w.cli(["lock", host, "--hard", ...NO_WAIT, "--drain-timeout", "0.2"]);
        assertEquals(other.code, 3, `${key}: our conflicting lock is refused: ${other.stderr}`);
        assertEquals(await lockNames(store(host)), [file], `${key}: our refused lock left nothing`);
        seen.set(
          key,
          `status: ${lock!.content}${lock!.caller ? ` "${lock!.caller}"` : ""}; test: locked; our ${
            type === "Host" ? "Generic" : "Host"
          } lock refused`,
        );
      };
      let pauses = 0;
      await w.ps.run(
        `$null = Set-PSBreakpoint -Command Set-ResourceLockContent, Rename-Item, Move-Item -Action { Wait-Interop $_.Command }
$a = Lock-HostResource -ComputerName 'two-host' -Hard -CallerName 'PS-TwoStep'
$b = Lock-Resource -ComputerName 'two-shared' -Type Generic
$a, $b | Unlock-Resource
Get-PSBreakpoint | Remove-PSBreakpoint`,
        {
          onPause: async () => {
            pauses++;
            await check("two-host");
            await check("two-shared");
          },
        },
      );
      console.log(
        `two-step, ${pauses} pauses:\n  ${[...seen].map(([k, v]) => `${k}: ${v}`).join("\n  ")}`,
      );
      assertEquals([...seen.keys()].sort(), [
        "two-host JSON",
        "two-host caller only",
        "two-host renamed",
        "two-host rewritten with UnlockedAt",
        "two-shared JSON",
        "two-shared empty",
        "two-shared rewritten with UnlockedAt",
      ]);

      // Churn: PowerShell locks and unlocks while we read the folder as fast as we can.
      const observed = new Map<string, number>();
      let stop = false;
      const poller = (async () => {
        while (!stop) {
          for (const lock of await getResourceLockStatus(["churn"], { store: w.store })) {
            const key = `${lock.type}:${lock.state}`;
            observed.set(key, (observed.get(key) ?? 0) + 1);
          }
        }
      })();
      try {
        await w.ps.run(
          `for ($i = 0; $i -lt 15; $i++) { Lock-HostResource -ComputerName 'churn' -Hard -CallerName 'PS-Churn' | Unlock-Resource }`,
        );
      } finally {
        stop = true;
        await poller;
      }
      for (const key of observed.keys()) {
        assertMatch(key, /^Host:(ok|partial|empty|unreadable)$/);
      }
      console.log(`churn: status saw ${JSON.stringify(Object.fromEntries(observed))}`);
    });
  },
);

// 7. Maintenance groups (issue 16) -------------------------------------------

pwshTest(
  "interop: a map with the @groups section reads the same to the original; a slot kept in a member's folder is no lock to it",
  async () => {
    await withWorld(async (w) => {
      const example = join(psModuleSource(), "ResourceLocker-Dependencies-Example.json");
      const withGroups = join(w.root, "with-groups.json");
      await Deno.writeTextFile(
        withGroups,
        JSON.stringify(
          {
            ...JSON.parse(await Deno.readTextFile(example)),
            "@groups": [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }],
          },
          null,
          2,
        ),
      );
      const psDeps = (file: string) =>
        w.ps.run(`
foreach ($h in ${
          psData(EXAMPLE_HOSTS)
        }) { @{ deps = @(Get-ResourceDependence -ResourceName $h -FilePath ${psQuote(file)}) } }`)
          .then((out) => (out as { deps: string[] }[]).map((o) => o.deps));
      const plain = await psDeps(example);
      assertEquals(await psDeps(withGroups), plain, "the section changes nothing for the original");
      for (const [i, host] of EXAMPLE_HOSTS.entries()) {
        const ours = json(
          await w.inProcess(["deps", host, "--dependencies-file", withGroups, "--json"]),
        );
        assertEquals(
          ours.dependencies,
          plain[i]!.map((h) => h.toLowerCase()),
          `deps ${host} with @groups`,
        );
      }

      // A template where each host has its own folder tree: the slot lives in
      // the home host's (hv01's) folder, beside where its own locks would be.
      const store = join(w.root, "trees", "{0}", "locks");
      for (const host of ["hv01", "hv02"]) {
        await Deno.mkdir(join(w.root, "trees", host, "locks"), { recursive: true });
      }
      await w.ps.importModule(
        await installPsModule(join(w.root, "ps-trees"), { store, dependencies: w.noDeps }),
      );
      const hv01 = join(w.root, "trees", "hv01", "locks");
      const locked = await w.cli([
        "lock",
        "hv02",
        "--hard",
        "--caller",
        "ours",
        "--dependencies-file",
        withGroups,
      ], {
        store,
      });
      assertEquals(locked.code, 0, locked.stderr);
      assertEquals(await entries(hv01), ["Group-hv-a.slot-1"]);
      assertEquals(
        await w.ps.run(
          `Test-HostResourceLock -ComputerName 'hv01'; Test-HostResourceLock -ComputerName 'hv01' -Type Host`,
        ),
        [false, false],
        "the slot is no lock of hv01 to the original",
      );
      // The original knows no groups: its Host lock on hv01 is taken beside the slot.
      assertEquals(
        await w.ps.run(
          `$l = Lock-HostResource -ComputerName 'hv01' -Hard -CallerName 'PS'; (Split-Path -Leaf $l.FullName); Unlock-Resource -LockObject $l`,
        ),
        ["Host.lock"],
      );
      // Ours is refused by the group, naming who is in maintenance.
      const refused = await w.cli([
        "lock",
        "hv01",
        "--hard",
        ...NO_WAIT,
        "--dependencies-file",
        withGroups,
      ], {
        store,
      });
      assertEquals(refused.code, 3);
      assertMatch(refused.stderr, /group "hv-a": 1 of 1 in maintenance: hv02 by "ours" since /);
      const unlocked = await w.cli(["unlock", ...lines(locked.stdout)], {
        store,
        dependencies: withGroups,
      });
      assertEquals(unlocked.code, 0, unlocked.stderr);
      assertEquals((await entries(hv01)).filter((n) => !n.startsWith(".resource-locker")), [
        "History",
      ]);
    });
  },
);
