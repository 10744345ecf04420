/**
 * Hostile tests of waiting on the SMB store: what a wait sends when it ends
 * by its time or an abort, and when the server answers its CHANGE_NOTIFY
 * after the wait let go of it. Against a real Samba smbd on loopback,
 * through the counting proxy (`_smb_proxy.ts`).
 *
 * @module
 */

import { assertEquals, assertOk } from "./_assert.ts";
import { sleep, waitFor, within } from "./_helpers.ts";
import { openTestSmbStore, smbTemplate, startTestSmbd } from "./_smb_helpers.ts";
import { startSmbProxy } from "./_smb_proxy.ts";
import { smbdTest } from "./_smbd.ts";

/** SMB2 CLOSE. */
const CLOSE = 6;

smbdTest(
  "a wait that ends by its time closes the folder it watched once: no CLOSE of a FileId closed already",
  async () => {
    await using smbd = await startTestSmbd(["hv01"]);
    let counting = false;
    let closes = 0;
    await using proxy = startSmbProxy(smbd.port, {
      rule: (request) => {
        if (counting && request.command === CLOSE) closes++;
        return "pass";
      },
    });
    const store = await openTestSmbStore(smbTemplate(proxy.port));
    try {
      await store.list("hv01");
      for (const how of ["time", "abort"]) {
        closes = 0;
        counting = true;
        const stop = new AbortController();
        const waiting = store.waitForChange!("hv01", how === "time" ? 100 : 20_000, stop.signal);
        await waitFor("the folder open", async () => (await smbd.status()).openFiles.length === 1);
        if (how === "abort") stop.abort();
        await waiting;
        await waitFor("no open files", async () => (await smbd.status()).openFiles.length === 0);
        // the CANCEL's answer (or the CLOSE's NOTIFY_CLEANUP) comes after the close
        await sleep(300);
        counting = false;
        // A second CLOSE names a FileId the server may have given to another
        // open by then (a lock file's exclusive open): it would close that.
        assertEquals(closes, 1, `a wait ended by its ${how} sent ${closes} CLOSEs`);
      }
    } finally {
      await store.close();
    }
  },
);

smbdTest(
  "a server that goes silent under a wait (no reset) ends the wait within the ECHO probe and the time-out, not at the 10 s re-arm",
  async () => {
    await using smbd = await startTestSmbd(["hv01"]);
    await using proxy = startSmbProxy(smbd.port);
    const store = await openTestSmbStore(smbTemplate(proxy.port), { timeoutMs: 1_000 });
    try {
      await store.list("hv01");
      const started = Date.now();
      const waiting = store.waitForChange!("hv01", 20_000);
      await waitFor("the folder open", async () => (await smbd.status()).openFiles.length === 1);
      // Nothing more either way, the connection left open: a host frozen,
      // a link cut without a reset.
      proxy.freeze();
      const hint = await within(9_000, waiting);
      const tookMs = Date.now() - started;
      assertEquals(hint, undefined, "no change was seen");
      // The probe comes every 3 s; its time-out (1 s) ends the connection;
      // then the wait looks as a poll would (0.5 s). Without it: 10 s.
      assertOk(tookMs < 7_000, `the wait ended after ${tookMs} ms`);
    } finally {
      proxy.thaw();
      await store.close();
    }
  },
);
