/**
 * The maintenance-group contention test, written once and registered per
 * store (issue 16): six processes each lock, work and unlock random members
 * of a four-host group with `max` 2, checked by an oracle outside the tool
 * (marker files made with O_EXCL, see `_group_contender.ts`): never more
 * than two members in maintenance, never two Host locks on one member. At
 * the end no slot is left, read straight from the store underneath. Then
 * two holders are SIGKILLed holding both slots: the group stays full for a
 * new taker until their leases run out, and is free after.
 *
 * @module
 */

import { assertEquals, assertOk } from "./_assert.ts";
import { closeStores, lockResource, type MaintenanceGroup, tryLockResource } from "../mod.ts";
import { waitFor, within } from "./_helpers.ts";

/** A store the suite runs on. */
export interface GroupStore extends AsyncDisposable {
  /** Folder template. */
  store: string;
  /** Environment of the worker processes (credentials). */
  env?: Record<string, string>;
  /** Settings of this process's own calls (credentials). */
  config?: Record<string, unknown>;
  /** Names of the group's slot entries, read underneath the tool. */
  slotEntries(): Promise<string[]>;
  /** Names of the live lock entries of a member, read underneath the tool. */
  hostEntries(member: string): Promise<string[]>;
}

/** How the suite runs. */
export interface GroupSuiteOptions {
  /** Skip (the server is missing here). */
  ignore: boolean;
  /** The group's name; its members are `<prefix>1` … `<prefix>4`. */
  prefix?: string;
  /** Rounds per process. @default 6 */
  rounds?: number;
}

const WORKER = new URL("./_group_contender.ts", import.meta.url).pathname;
const WORKERS = 6;
/** Lease of the workers' locks: renewed every third of it while held. */
const TTL_MS = 3_000;
/** Lease of the holders that are killed. */
const KILL_TTL_MS = 6_000;

function spawn(
  options: Record<string, unknown>,
  env: Record<string, string>,
  signal: AbortSignal,
  output: "piped" | "null",
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", WORKER, JSON.stringify(options)],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: output,
    stderr: output,
    signal,
  }).spawn();
}

/**
 * Registers the suite for one store.
 *
 * @param name store name, in the test names
 * @param open starts the store (a server) and says how to read it underneath
 * @param options skip, rounds
 */
export function registerGroupContentionSuite(
  name: string,
  open: () => Promise<GroupStore>,
  options: GroupSuiteOptions,
): void {
  const prefix = options.prefix ?? "gm";
  const group: MaintenanceGroup = {
    name: `${prefix}-cluster`,
    members: [1, 2, 3, 4].map((n) => `${prefix}${n}`),
    max: 2,
  };
  Deno.test({
    name:
      `[${name}] group contention: 6 processes on a 4-host group with max 2 never put 3 members in maintenance, and a killed holder's slot is freed after its lease`,
    ignore: options.ignore,
    // The workers' child processes are awaited; the SMB and etcd clients of
    // this process are closed at the end.
    async fn() {
      await using store = await open();
      const oracle = await Deno.makeTempDir({ prefix: "rl-group-oracle-" });
      const abort = new AbortController();
      const env = store.env ?? {};
      try {
        // 1. Contention.
        const workers = Array.from({ length: WORKERS }, (_, worker) =>
          spawn(
            {
              mode: "work",
              store: store.store,
              group,
              oracle,
              ttl: `${TTL_MS}ms`,
              skew: "0s",
              worker,
              rounds: options.rounds ?? 6,
              holdMs: 15,
              seed: 1000 + worker,
            },
            env,
            abort.signal,
            "piped",
          ));
        const outputs = await within(
          90_000,
          Promise.all(workers.map((w) => w.output())),
          () => abort.abort(),
        );
        const violations: string[] = [];
        let acquired = 0;
        for (const output of outputs) {
          const text = new TextDecoder().decode(output.stdout).trim().split("\n").pop() ?? "";
          if (output.code !== 0 || !text.startsWith("{")) {
            violations.push(
              `worker exited ${output.code}: ${
                new TextDecoder().decode(output.stderr).slice(-600)
              }`,
            );
            continue;
          }
          const report = JSON.parse(text) as { acquired: number; violations: string[] };
          acquired += report.acquired;
          violations.push(...report.violations);
        }
        assertEquals(violations, []);
        assertEquals(acquired, WORKERS * (options.rounds ?? 6), "every round locked");
        assertEquals(await store.slotEntries(), [], "every slot freed at the end");
        for (const member of group.members) {
          assertEquals(await store.hostEntries(member), [], `no lock left on ${member}`);
        }

        // 2. Two holders take both slots and are killed.
        const holders = group.members.slice(0, 2).map((member) =>
          spawn(
            {
              mode: "hold",
              store: store.store,
              group,
              oracle,
              ttl: `${KILL_TTL_MS}ms`,
              skew: "0s",
              member,
            },
            env,
            abort.signal,
            "null",
          )
        );
        const held: number[] = [];
        try {
          for (const member of group.members.slice(0, 2)) {
            await waitFor(
              `holder of ${member}`,
              () => Deno.stat(`${oracle}/held-${member}`).then(() => true, () => false),
              45_000,
            );
            held.push(
              (JSON.parse(await Deno.readTextFile(`${oracle}/held-${member}`)) as {
                before: number;
              }).before,
            );
          }
        } finally {
          for (const holder of holders) {
            try {
              holder.kill("SIGKILL");
            } catch { /* already gone */ }
          }
          await Promise.all(holders.map((h) => h.status));
        }
        const config = { ...store.config, groups: [group], clockSkew: "0s" };
        const ask = { store: store.store, type: "Host" as const, dependencies: {}, config };
        const early = await tryLockResource(group.members[2]!, ask);
        // Before the leases could have run out the group is full.
        if (Date.now() < Math.min(...held) + KILL_TTL_MS) {
          assertEquals(early, undefined, "the dead holders' slots still count");
        } else {
          await early?.release();
          console.warn("the machine was too slow to see the group full before the leases ran out");
        }
        const taken = await within(
          45_000,
          Promise.all(
            group.members.slice(2).map((member) =>
              lockResource(member, { ...ask, wait: "40s", caller: "after-kill" })
            ),
          ),
        );
        const takenAt = Date.now();
        // A lease runs out no earlier than its taking plus its length (100 ms
        // for the SMB server's clock offset, measured over the network).
        assertOk(
          takenAt >= Math.max(...held) + KILL_TTL_MS - 100,
          `taken ${
            takenAt - Math.max(...held)
          } ms after the holders asked, lease ${KILL_TTL_MS} ms`,
        );
        assertEquals(
          (await store.slotEntries()).length,
          2,
          "the dead holders' slots were freed and taken again",
        );
        for (const lock of taken) await lock.release();
        assertEquals(await store.slotEntries(), [], "every slot freed at the end");
      } finally {
        abort.abort();
        await closeStores();
        await Deno.remove(oracle, { recursive: true });
      }
    },
  });
}
