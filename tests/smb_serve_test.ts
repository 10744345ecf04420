/**
 * The serve suite (`_serve_suite.ts`) on the SMB store, against one private
 * smbd for the file, each test on a share of its own. Without smbd the
 * suite is skipped with a visible message; under CI its absence is a failure.
 *
 * @module
 */

import { registerServeSuite } from "./_serve_suite.ts";
import { SMB_USER } from "./_smb_helpers.ts";
import { fileSmbd, smbdGate } from "./_smbd.ts";

const SHARES = Array.from({ length: 5 }, (_, i) => `serve${i}`);
const gate = smbdGate();
const smbd = await fileSmbd(gate, { shares: SHARES, users: [SMB_USER] });
let next = 0;

registerServeSuite("smb", () => {
  const share = SHARES[next++];
  if (!smbd || !share) throw new Error("no smbd, or more tests than shares");
  return Promise.resolve({
    store: `smb://127.0.0.1:${smbd.port}/${share}/{0}`,
    config: { smb: { username: SMB_USER.name, password: SMB_USER.password } },
    [Symbol.asyncDispose]: () => Promise.resolve(),
  });
}, gate);
