/**
 * Waiting and handoff on the local store under hostile conditions: a waiter
 * interrupted from the keyboard, a host's folder removed under a waiter, a
 * slot of a full group freed in another folder, odd `--wait` values. Each
 * test forces its moment (a progress report, a line on stderr), never a
 * sleep that hopes to hit a window, and bounds every wait.
 *
 * @module
 */

import { assertEquals, assertOk, assertRejects, assertStringIncludes } from "./_assert.ts";
import { fileNames, tempStore, waitFor } from "./_helpers.ts";
import { runCliInProcess } from "./_cli_helpers.ts";
import { spawnRun } from "./_run_helpers.ts";
import {
  breakResourceLock,
  closeStores,
  LockLostError,
  lockResource,
  type LockResourceOptions,
  type MaintenanceGroup,
} from "../mod.ts";

Deno.test({
  name: "SIGINT while lock --hard drains shared locks: exit 130, no Host lock left behind",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using t = await tempStore();
    const reader = await lockResource("hv01", { store: t.store, dependencies: {} });
    await using lock = await spawnRun(
      ["lock", "hv01", "--hard", "--drain-timeout", "60s", "--no-dependencies"],
      { env: { RESOURCE_LOCKER_STORE: t.store } },
    );
    // The Host lock is in place once the drain is reported.
    await lock.stderr.line(/^\S+Z Draining "hv01"/);
    assertOk((await t.files("hv01")).includes("Host.lock"), "the Host lock was taken");
    lock.process.kill("SIGINT");
    const out = await lock.end(15_000);
    assertEquals(out.code, 130, out.stderr);
    assertStringIncludes(out.stderr, "nothing is locked");
    assertEquals(await t.files("hv01"), [`Generic-${reader.sessionId}.lock`], "only the reader's");
    await reader.release();
    await closeStores();
  },
});

Deno.test({
  name: "a waiter whose host's folder is removed while it waits takes the host, not a store error",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using t = await tempStore();
    // A stale Host lock of a dead session, never expiring: an admin clears it
    // by removing the host's folder while a waiter waits.
    await Deno.mkdir(`${t.root}/hv01`);
    await Deno.writeTextFile(
      `${t.root}/hv01/Host.lock`,
      JSON.stringify({ Caller: "dead", SessionId: "gone" }),
    );
    let removed = false;
    const lock = await lockResource("hv01", {
      ...waitingHost(t.store),
      wait: "10s",
      // Reported after the first attempt made (and remembered) the folder.
      onProgress: () => {
        if (removed) return;
        removed = true;
        Deno.removeSync(`${t.root}/hv01`, { recursive: true });
      },
    });
    assertOk(removed, "the folder was removed while the waiter waited");
    assertEquals(await t.files("hv01"), ["Host.lock"]);
    await lock.release();
    await closeStores();
  },
});

/** A Host lock on the local store that waits, woken by file-system notifications. */
function waitingHost(store: string): LockResourceOptions {
  return { store, dependencies: {}, type: "Host", config: { watch: "notify" } };
}

const HV_A: MaintenanceGroup = { name: "hv-a", members: ["hv01", "hv02"], max: 1 };

function groupOptions(store: string, extra: LockResourceOptions = {}): LockResourceOptions {
  return {
    store,
    type: "Host",
    dependencies: {},
    config: { groups: [HV_A], clockSkew: 0, watch: "notify" },
    ...extra,
  };
}

Deno.test({
  name:
    "a waiter for a full group wakes when the slot's member loses its Host lock (a break), not at its next look",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using t = await tempStore();
    const holder = await lockResource("hv01", groupOptions(t.store));
    let waiting = false;
    // Without a wake-up the waiter looks again only when its wait ends (8 s).
    const waiter = lockResource(
      "hv02",
      groupOptions(t.store, { wait: "8s", onProgress: () => (waiting = true) }),
    );
    await waitFor("the waiter's first attempt", () => waiting);
    const brokenAt = Date.now();
    // The member's Host lock goes (in hv01's folder); its slot, in the
    // group's folder, stays behind as left over, free for the next taker.
    await breakResourceLock(holder.refs[0]!, { store: t.store, force: true });
    const lock = await waiter;
    const tookMs = Date.now() - brokenAt;
    assertOk(tookMs < 4_000, `taken ${tookMs} ms after the break`);
    assertEquals(await fileNames(`${t.root}/_group-hv-a`), ["Group-hv-a.slot-1"]);
    await lock.release();
    await closeStores();
  },
});

Deno.test("--wait takes forever in any case; a bad value's error names forever too", async () => {
  await using t = await tempStore();
  const bad = await runCliInProcess([
    "lock",
    "hv01",
    "--wait",
    "sometimes",
    "--store",
    t.store,
    "--no-dependencies",
  ]);
  assertEquals(bad.code, 2, bad.stderr);
  assertStringIncludes(bad.stderr, "forever");
  const upper = await runCliInProcess([
    "lock",
    "hv01",
    "--wait",
    "Forever",
    "--store",
    t.store,
    "--no-dependencies",
  ]);
  assertEquals(upper.code, 0, upper.stderr);
  const unlocked = await runCliInProcess(["unlock", upper.stdout.trim(), "--store", t.store]);
  assertEquals(unlocked.code, 0, unlocked.stderr);
});

Deno.test({
  name:
    "a Host lock without a session (PowerShell's) that changes hands while a waiter waits is reported at once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using t = await tempStore();
    const folder = `${t.root}/hv01`;
    await Deno.mkdir(folder);
    const psLock = (caller: string) =>
      JSON.stringify({ Caller: caller, LockedAtUtc: new Date().toISOString() });
    await Deno.writeTextFile(`${folder}/Host.lock`, psLock("ps-one"));
    const seen: string[] = [];
    const waiter = lockResource("hv01", {
      ...waitingHost(t.store),
      wait: "20s",
      onProgress: (progress) => {
        seen.push(progress.holders.map((h) => h.caller).join(","));
        if (seen.length > 1) return;
        // Another PowerShell script took the host meanwhile: a new file renamed over the old.
        Deno.writeTextFileSync(`${t.root}/next`, psLock("ps-two"));
        Deno.renameSync(`${t.root}/next`, `${folder}/Host.lock`);
      },
    });
    await waitFor("the new holder reported", () => seen.includes("ps-two"), 5_000);
    assertEquals(seen, ["ps-one", "ps-two"]);
    await Deno.remove(`${folder}/Host.lock`);
    await (await waiter).release();
    await closeStores();
  },
});

for (const how of ["removed", "taken by another session"] as const) {
  Deno.test({
    name:
      `a Host lock ${how} while its shared locks drain: the drain ends with LockLostError, not a lock it does not hold`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      await using t = await tempStore();
      const reader = await lockResource("hv01", { store: t.store, dependencies: {} });
      let struck = false;
      const writer = lockResource("hv01", {
        ...waitingHost(t.store),
        drainTimeout: "20s",
        onProgress: (p) => {
          if (p.phase !== "drain" || struck) return;
          struck = true;
          // An admin's break (or force unlock), then maybe another taker.
          Deno.removeSync(`${t.root}/hv01/Host.lock`);
          if (how !== "removed") {
            Deno.writeTextFileSync(
              `${t.root}/hv01/Host.lock`,
              JSON.stringify({ SessionId: "other", Caller: "someone else" }),
            );
          }
          void reader.release();
        },
      });
      const error = await assertRejects(() => writer, LockLostError);
      assertStringIncludes(error.message, "was lost while shared locks drained");
      assertOk(struck, "struck during the drain");
      assertEquals(
        await t.files("hv01"),
        how === "removed" ? [] : ["Host.lock"],
        "the other session's Host lock is left as it is",
      );
      if (how !== "removed") {
        assertStringIncludes(await Deno.readTextFile(`${t.root}/hv01/Host.lock`), '"other"');
      }
      await closeStores();
    },
  });
}
