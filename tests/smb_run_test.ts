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
import { smbdMissing, startSmbd } from "./_smbd.ts";

const USER = { name: "runner", password: "Run-suite-pa55word" };
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
  const smbd = await startSmbd({ shares: HOSTS, users: [USER] });
  return {
    store: `smb://${smbd.hostname}:${smbd.port}/{0}`,
    env: {
      RESOURCE_LOCKER_SMB_USERNAME: USER.name,
      RESOURCE_LOCKER_SMB_PASSWORD: USER.password,
    },
    async files(host: string): Promise<string[]> {
      const names: string[] = [];
      for await (const entry of Deno.readDir(smbd.dir(host))) {
        if (entry.isFile) names.push(entry.name);
      }
      return names.sort();
    },
    [Symbol.asyncDispose]: () => smbd.close(),
  };
}

registerRunSuite("smb", openSmbSuiteStore, { ignore: missing !== undefined && !required });
