/**
 * Shared setup of the SMB tests: the user they log on as, the template of a
 * loopback smbd with one share per host, the command line's credentials, and
 * the files on a share read from its folder on disk, not through the tool.
 *
 * @module
 */

import { join } from "node:path";
import { fileNames } from "./_helpers.ts";
import { type Smbd, type SmbdUser, startSmbd, type StartSmbdOptions } from "./_smbd.ts";

/** The user every SMB test logs on as. */
export const SMB_USER: SmbdUser = { name: "alice", password: "Pa55-word-for-alice" };

/**
 * Starts a private smbd with these shares on which {@linkcode SMB_USER} logs on.
 * @param options more settings, e.g. `readOnlyShares`
 */
export function startTestSmbd(
  shares: string[],
  options: Omit<StartSmbdOptions, "shares" | "users"> = {},
): Promise<Smbd> {
  return startSmbd({ shares, users: [SMB_USER], ...options });
}

/**
 * The template of an smbd (or a proxy in front of it) on loopback.
 * @returns `smb://127.0.0.1:<port>/{0}`: one share per host
 */
export function smbTemplate(port: number): string {
  return `smb://127.0.0.1:${port}/{0}`;
}

/** The environment giving the command line {@linkcode SMB_USER}'s credentials. */
export function smbCredentialsEnv(): Record<string, string> {
  return {
    RESOURCE_LOCKER_SMB_USERNAME: SMB_USER.name,
    RESOURCE_LOCKER_SMB_PASSWORD: SMB_USER.password,
  };
}

/** Names of the files (not folders) in a share's folder, or in `sub` under it; [] when missing. */
export function filesOn(smbd: Smbd, share: string, sub = ""): Promise<string[]> {
  return fileNames(join(smbd.dir(share), sub));
}
