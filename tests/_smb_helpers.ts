/**
 * Shared setup of the SMB tests: the user they log on as, the template of a
 * loopback smbd with one share per host, the command line's credentials, the
 * files on a share read from its folder on disk, not through the tool, the
 * store opened as that user, and pauses at the stores' race seams.
 *
 * @module
 */

import { join } from "node:path";
import { type SeamEvent, setSeamHook } from "../src/_seam.ts";
import type { LockStore } from "../src/store.ts";
import type { SmbStoreOptions } from "../src/stores/smb.ts";
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

/**
 * Writes a file into a share's folder underneath smbd, as another program on
 * the server would. Samba gives a file it did not make (no DOS attributes
 * stored with it) the earliest of its access, change and modification times
 * as its creation time; the first read through SMB moves the access time,
 * and with it that creation time, which the store's versions hold. Setting
 * the access time to the modification time keeps the creation time still.
 * @param path the file's path on disk
 * @param data its content
 * @param options `createNew`: fail when the file exists
 */
export async function writeUnderSmbd(
  path: string,
  data: Uint8Array | string,
  options: { createNew?: boolean } = {},
): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  await Deno.writeFile(path, bytes, options.createNew ? { createNew: true } : {});
  const { mtime } = await Deno.stat(path);
  await Deno.utime(path, mtime!, mtime!);
}

/** Names of the files (not folders) in a share's folder, or in `sub` under it; [] when missing. */
export function filesOn(smbd: Smbd, share: string, sub = ""): Promise<string[]> {
  return fileNames(join(smbd.dir(share), sub));
}

/**
 * Opens an SMB store as {@linkcode SMB_USER} with a 3 s timeout (dynamic
 * import, as the library loads it).
 * @param template folder template, e.g. from {@linkcode smbTemplate}
 * @param options more options, overriding these
 */
export async function openTestSmbStore(
  template: string,
  options: Partial<SmbStoreOptions> = {},
): Promise<LockStore> {
  const { openSmbStore } = await import("../src/stores/smb.ts");
  return openSmbStore(template, {
    username: SMB_USER.name,
    password: SMB_USER.password,
    historyFolderName: "History",
    timeoutMs: 3_000,
    ...options,
  });
}

/** A pause at one race seam (`src/_seam.ts`), see {@linkcode pauseAt}. */
export interface SeamPause extends Disposable {
  /** Resolves when the first matching caller reaches the point (it waits there). */
  readonly reached: Promise<SeamEvent>;
  /** Lets the paused caller go on. */
  release(): void;
}

/**
 * Pauses the first caller that reaches `point` (and matches `match`) until
 * `release()`; every later caller passes. Disposing releases it and removes
 * the hook.
 * @param point e.g. `smb.archive.verified`
 * @param match further condition on the event, e.g. the host
 */
export function pauseAt(
  point: string,
  match: (event: SeamEvent) => boolean = () => true,
): SeamPause {
  const reached = Promise.withResolvers<SeamEvent>();
  const gate = Promise.withResolvers<void>();
  let fired = false;
  const previous = setSeamHook((event) => {
    if (fired || event.point !== point || !match(event)) return undefined;
    fired = true;
    reached.resolve(event);
    return gate.promise;
  });
  return {
    reached: reached.promise,
    release: () => gate.resolve(),
    [Symbol.dispose]() {
      gate.resolve();
      setSeamHook(previous);
    },
  };
}

/** Paths under `dir` that some process (smbd) holds open now. */
export async function heldOpen(dir: string): Promise<string[]> {
  const held: string[] = [];
  for await (const process of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(process.name)) continue;
    try {
      for await (const fd of Deno.readDir(`/proc/${process.name}/fd`)) {
        const target = await Deno.readLink(`/proc/${process.name}/fd/${fd.name}`).catch(() => "");
        if (target.startsWith(dir + "/")) held.push(target);
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return held;
}
