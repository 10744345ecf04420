/**
 * Hostile tests of waiting on the SMB store: what a wait sends when it ends
 * by its time or an abort, and when the server answers its CHANGE_NOTIFY
 * after the wait let go of it. Against a real Samba smbd on loopback,
 * through the counting proxy (`_smb_proxy.ts`).
 *
 * @module
 */

import { assertEquals } from "./_assert.ts";
import { sleep, waitFor } from "./_helpers.ts";
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
