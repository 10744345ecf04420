/**
 * The `run` suite (`_run_suite.ts`) on the SMB store, against one private
 * Samba smbd for the file (`fileSmbd`), each test on a share of its own
 * (`smb://127.0.0.1:<port>/<share>/{0}`), the command line logging on with
 * the credentials from the environment. The suite's checks read the share's
 * folder on disk, not through the tool.
 *
 * Without smbd the suite is skipped with a visible message; under CI (any
 * `CI` but "", "false" or "0") its absence is a failure.
 *
 * @module
 */

import { registerRunSuite, type SuiteStore } from "./_run_suite.ts";
import { filesOn, SMB_USER, smbCredentialsEnv } from "./_smb_helpers.ts";
import { fileSmbd, smbdGate } from "./_smbd.ts";

/** Shares, one per test of the suite (more than it has). */
const SHARES = Array.from({ length: 16 }, (_, i) => `run${i}`);

const gate = smbdGate();
const smbd = await fileSmbd(gate, { shares: SHARES, users: [SMB_USER] });
let next = 0;

function openSmbSuiteStore(): Promise<SuiteStore> {
  const share = SHARES[next++];
  if (!smbd || !share) throw new Error("no smbd, or more tests than shares");
  return Promise.resolve({
    store: `smb://127.0.0.1:${smbd.port}/${share}/{0}`,
    env: smbCredentialsEnv(),
    files: (host) => filesOn(smbd, share, host),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  });
}

registerRunSuite("smb", openSmbSuiteStore, gate);
