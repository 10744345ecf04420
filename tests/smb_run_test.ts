/**
 * The `run` and lease suite of issue 4 (`_run_suite.ts`) on the SMB store,
 * against a private Samba smbd (`_smbd.ts`): one smbd per test, one share per
 * host, the command line logging on with the credentials from the
 * environment. The suite's checks read the share's folder on disk, not
 * through the tool.
 *
 * Without smbd the suite is skipped with a visible message; under `CI=true`
 * its absence fails every test of the suite.
 *
 * @module
 */

import { registerRunSuite, type SuiteStore } from "./_run_suite.ts";
import { filesOn, smbCredentialsEnv, smbTemplate, startTestSmbd } from "./_smb_helpers.ts";
import { smbdMissing } from "./_smbd.ts";

/** Every host the suite locks. */
const HOSTS = ["hv01"];

const missing = smbdMissing();
const required = Deno.env.get("CI") === "true";
if (missing !== undefined && !required) {
  console.warn(`%cSkipping SMB run tests: ${missing}`, "color: yellow");
}

async function openSmbSuiteStore(): Promise<SuiteStore> {
  if (missing !== undefined) {
    throw new Error(`smbd is required under CI=true: ${missing}`);
  }
  const smbd = await startTestSmbd(HOSTS);
  return {
    store: smbTemplate(smbd.port),
    env: smbCredentialsEnv(),
    files: (host) => filesOn(smbd, host),
    [Symbol.asyncDispose]: () => smbd.close(),
  };
}

registerRunSuite("smb", openSmbSuiteStore, { ignore: missing !== undefined && !required });
