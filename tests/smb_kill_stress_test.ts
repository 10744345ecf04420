/**
 * The crash-and-race stress test (tests/_kill_stress.ts) on the SMB store,
 * against a private Samba smbd with one share per host. The oracle reads the
 * share's folder on disk, underneath smbd, not through the tool.
 *
 * Two allowances, both from reading underneath smbd and from the server's
 * clock: a file a compound CREATE + WRITE + CLOSE is making is empty on disk
 * for a moment no SMB client can see (it is open without sharing), so a bad
 * entry counts only when it stays 250 ms; and each process measures the
 * server's clock offset from its NEGOTIATE answer (half a round trip of
 * error), so overlaps up to 50 ms are forgiven.
 *
 * Without smbd the test is skipped with a message; under CI (CI set and not
 * "false" or "0") a missing smbd fails.
 *
 * @module
 */

import { join } from "node:path";
import {
  folderEntries,
  type KillStressStore,
  registerKillStressSuite,
  underCi,
} from "./_kill_stress.ts";
import { smbCredentialsEnv, smbTemplate, startTestSmbd, writeUnderSmbd } from "./_smb_helpers.ts";
import { smbdMissing } from "./_smbd.ts";

const HOST = "hv01";
const missing = smbdMissing();
if (missing !== undefined) {
  if (underCi()) {
    Deno.test("[smb] kill stress: smbd is installed (required under CI)", () => {
      throw new Error(`smbd is required under CI: ${missing}`);
    });
  } else console.warn(`%cSkipping the SMB kill stress test: ${missing}`, "color: yellow");
}

async function openSmb(): Promise<KillStressStore> {
  const smbd = await startTestSmbd([HOST]);
  const folder = (host: string) => smbd.dir(host);
  return {
    store: smbTemplate(smbd.port),
    env: smbCredentialsEnv(),
    entries: (host) => folderEntries(folder(host)),
    history: async (host) =>
      (await folderEntries(join(folder(host), "History"))).map((e) => e.data),
    removeEntry: (host, name) => Deno.remove(join(folder(host), name)).catch(() => {}),
    createEntry: (host, name, data) =>
      writeUnderSmbd(join(folder(host), name), data, { createNew: true }).then(
        () => true,
        () => false,
      ),
    [Symbol.asyncDispose]: () => smbd.close(),
  };
}

registerKillStressSuite("smb", openSmb, {
  ignore: missing !== undefined,
  host: HOST,
  toleranceMs: 50,
  badEntryGraceMs: 250,
  // A worker process costs a second or more of CPU to load the SMB client on
  // a busy two-core machine: fewer kills and fewer processes waiting warm.
  killEveryMs: [500, 1300],
  epochMs: 3500,
  seamSlots: 2,
  spares: 1,
  seams: {
    required: {
      creation: ["smb.create.before", "smb.create.sent"],
      renewal: ["smb.replace.verified", "smb.replace.written", "locker.renew.checked"],
      release: ["smb.archive.verified", "smb.archive.moved", "locker.release.checked"],
    },
    optional: ["smb.remove.verified", "locker.break.judged"],
  },
});
