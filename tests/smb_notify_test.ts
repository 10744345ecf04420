/**
 * Instant handoff on the SMB store (issue 12): a waiter asks the server for
 * an SMB2 CHANGE_NOTIFY on the host's folder and wakes when the holder's
 * lock file goes, not at its next look. The waiter talks through a counting
 * proxy (`_smb_proxy.ts`): while the holder holds, it sends nothing at all
 * (a waiter that polls would look every 500 ms), and it still gets the host
 * within seconds of the release, far below the 30 s between its attempts
 * (and the locker's 30 s re-check): only a notification wakes it that soon.
 * A folder the server cannot watch falls back to looking; an aborted wait
 * leaves nothing open. Against a real Samba smbd on loopback.
 *
 * @module
 */

import { closeStores, lockResource, type LockResourceOptions } from "../mod.ts";
import { assertEquals, assertOk } from "./_assert.ts";
import { waitFor } from "./_helpers.ts";
import { join } from "node:path";
import { openTestSmbStore, SMB_USER, smbTemplate, startTestSmbd } from "./_smb_helpers.ts";
import { startSmbProxy } from "./_smb_proxy.ts";
import { type Smbd, smbdTest } from "./_smbd.ts";

/** A retry every 30 s: a waiter that only slept between attempts would take that long. */
const SLOW = { timeout: "30s", retries: 3 };
/** How long the holder keeps the host while the waiter's requests are counted. */
const HOLD_MS = 1_500;

function options(port: number, extra: LockResourceOptions = {}): LockResourceOptions {
  return {
    store: smbTemplate(port),
    type: "Host",
    config: { smb: { username: SMB_USER.name, password: SMB_USER.password, timeout: "5s" } },
    dependencies: {},
    ...extra,
  };
}

/**
 * The holder (straight to smbd) takes hv01, the waiter (through a counting
 * proxy) waits for it, the holder keeps it {@linkcode HOLD_MS}, then lets go.
 * @returns the waiter's request frames during the hold and the handoff time
 */
async function handoff(smbd: Smbd): Promise<{ framesWhileHeld: number; tookMs: number }> {
  const port = smbd.port;
  let frames = 0;
  await using proxy = startSmbProxy(port, {
    rule: () => {
      frames++;
      return "pass";
    },
  });
  const holder = await lockResource("hv01", options(port));
  let waiting = false;
  const waiter = lockResource(
    "hv01",
    options(proxy.port, { ...SLOW, onProgress: () => (waiting = true) }),
  );
  try {
    await waitFor("the waiter's first attempt", () => waiting);
    // Its first look after the attempt, and the notification armed.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const before = frames;
    await new Promise((resolve) => setTimeout(resolve, HOLD_MS));
    const framesWhileHeld = frames - before;
    const releasedAt = Date.now();
    await holder.release();
    const lock = await waiter;
    const tookMs = Date.now() - releasedAt;
    await lock.release();
    // The folder the waiter watched is closed again, its connection still up.
    await waitFor("no open files", async () => (await smbd.status()).openFiles.length === 0);
    return { framesWhileHeld, tookMs };
  } finally {
    await holder.release().catch(() => {});
    await waiter.then((lock) => lock.release()).catch(() => {});
    await closeStores();
  }
}

smbdTest(
  "a waiter on the SMB store is woken by a change notification, not by looking",
  async () => {
    await using smbd = await startTestSmbd(["hv01"]);
    for (let round = 0; round < 3; round++) {
      const { framesWhileHeld, tookMs } = await handoff(smbd);
      assertEquals(framesWhileHeld, 0, `round ${round}: the waiter sent nothing while blocked`);
      assertOk(tookMs < 5_000, `round ${round}: handed over in ${tookMs} ms`);
    }
  },
);

smbdTest(
  "a folder the server cannot watch (missing): the wait falls back to half a second",
  async () => {
    await using smbd = await startTestSmbd(["hv01"]);
    const store = await openTestSmbStore(`smb://127.0.0.1:${smbd.port}/{0}/Missing`);
    try {
      assertEquals(await store.list("hv01"), []);
      const started = Date.now();
      await store.waitForChange!("hv01", 20_000);
      const waitedMs = Date.now() - started;
      assertOk(waitedMs < 5_000, `waited ${waitedMs} ms of 20 s`);
    } finally {
      await store.close();
    }
  },
);

smbdTest(
  "an aborted wait cancels its notification and closes the folder; the connection goes on",
  async () => {
    await using smbd = await startTestSmbd(["hv01"]);
    const store = await openTestSmbStore(smbTemplate(smbd.port));
    try {
      assertEquals(await store.list("hv01"), []);
      const stop = new AbortController();
      const waiting = store.waitForChange!("hv01", 20_000, stop.signal);
      await waitFor("the folder open", async () => (await smbd.status()).openFiles.length === 1);
      const started = Date.now();
      stop.abort();
      await waiting;
      assertOk(Date.now() - started < 1_000, "the wait ended at the abort");
      await waitFor("no open files", async () => (await smbd.status()).openFiles.length === 0);
      // The same connection still answers, and a new wait still hears a change.
      const again = store.waitForChange!("hv01", 20_000);
      await waitFor("the folder open", async () => (await smbd.status()).openFiles.length === 1);
      const wrote = Date.now();
      await Deno.writeTextFile(join(smbd.dir("hv01"), "Other.lock"), "{}");
      await again;
      assertOk(Date.now() - wrote < 5_000, "woken by the file written");
      assertEquals(await store.list("hv01"), ["Other.lock"]);
    } finally {
      await store.close();
    }
  },
);

smbdTest(
  "waits of one process on one folder share one open and one notification; each ends by itself",
  async () => {
    await using smbd = await startTestSmbd(["hv01"]);
    const store = await openTestSmbStore(smbTemplate(smbd.port));
    const open = async () => (await smbd.status()).openFiles.length;
    try {
      assertEquals(await store.list("hv01"), []);
      // five waits, one of them stopped early: one folder open throughout
      const stop = new AbortController();
      const early = store.waitForChange!("hv01", 20_000, stop.signal);
      const waits = Array.from({ length: 4 }, () => store.waitForChange!("hv01", 20_000));
      await waitFor("the folder open", async () => (await open()) === 1);
      stop.abort();
      await early;
      const short = store.waitForChange!("hv01", 50);
      await short; // its time-out ends it alone
      assertEquals(await open(), 1, "the others still wait on the one notification");
      // one change wakes them all, and the folder is closed
      const wrote = Date.now();
      await Deno.writeTextFile(join(smbd.dir("hv01"), "Other.lock"), "{}");
      await Promise.all(waits);
      assertOk(Date.now() - wrote < 5_000, "all woken by the file written");
      await waitFor("no open files", async () => (await open()) === 0);
      // waits that all stop leave nothing open either
      const stops = Array.from({ length: 3 }, () => new AbortController());
      const later = stops.map((s) => store.waitForChange!("hv01", 20_000, s.signal));
      await waitFor("the folder open", async () => (await open()) === 1);
      for (const s of stops) s.abort();
      await Promise.all(later);
      await waitFor("no open files", async () => (await open()) === 0);
    } finally {
      await store.close();
    }
  },
);

smbdTest(
  "a notification names the lock file removed (the waiter's hint); a file made names none",
  async () => {
    await using smbd = await startTestSmbd(["hv01"]);
    const store = await openTestSmbStore(smbTemplate(smbd.port));
    try {
      assertEquals(await store.list("hv01"), []);
      // the hint also goes to onHint as the answer is read, before the wait resolves
      const early: { hint: unknown; resolvedBefore: boolean }[] = [];
      let resolved = false;
      const onHint = (hint: unknown) => void early.push({ hint, resolvedBefore: resolved });
      const made = store.waitForChange!("hv01", 20_000, undefined, onHint)
        .finally(() => resolved = true);
      await waitFor("the folder open", async () => (await smbd.status()).openFiles.length === 1);
      const path = join(smbd.dir("hv01"), "Host.lock");
      await Deno.writeTextFile(path, "{}");
      assertEquals(await made, undefined, "a file made is no removal");
      assertEquals(early, [], "a file made was handed on as a removal");
      await waitFor("the folder closed", async () => (await smbd.status()).openFiles.length === 0);
      resolved = false;
      const removed = store.waitForChange!("hv01", 20_000, undefined, onHint)
        .finally(() => resolved = true);
      await waitFor("the folder open", async () => (await smbd.status()).openFiles.length === 1);
      await Deno.remove(path);
      assertEquals(await removed, { removed: ["Host.lock"] });
      assertEquals(early, [{ hint: { removed: ["Host.lock"] }, resolvedBefore: false }]);
    } finally {
      await store.close();
    }
  },
);
