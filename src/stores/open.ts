/**
 * Chooses and opens the store a folder template names. The SMB and etcd
 * stores are loaded by dynamic import only when used, so the local store
 * starts fast.
 *
 * @module
 */

import type { ResolvedConfig } from "../config.ts";
import type { LockStore } from "../store.ts";
import { openFsStore } from "./fs.ts";
import { parseStoreTemplate } from "./_template.ts";

// Specifiers held in variables: Deno then loads these stores (and their npm
// packages) only when one is used, also for a script that imports mod.ts by
// URL. A string literal would make Deno fetch them up front. `deno compile`
// needs them named with --include (see the compile task).
const SMB_MODULE = new URL("./smb.ts", import.meta.url).href;
const ETCD_MODULE = new URL("./etcd.ts", import.meta.url).href;

/** Store kinds. */
export type StoreKind = LockStore["kind"];

/**
 * Tells which store a folder template selects (the shared parser,
 * `_template.ts`, decides).
 *
 * @param template the folder template
 * @param os the operating system (UNC paths go through the OS on Windows)
 * @returns the store kind
 * @throws {InputError} when the template has no host placeholder, has an
 * unknown scheme, or names a folder that is not absolute on this system
 * (a relative store would depend on the caller's working folder, so two
 * callers would not see each other's locks; `C:\locks\{0}` elsewhere than
 * on Windows would be such a relative folder), or is otherwise unusable
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { storeKindOf } from "./open.ts";
 * assert.ok(storeKindOf("smb://{0}/ResourceLocks") === "smb");
 * assert.ok(storeKindOf("\\\\{0}\\ResourceLocks", "linux") === "smb");
 * assert.ok(storeKindOf("/var/lib/locks/{0}", "linux") === "fs");
 * assert.throws(() => storeKindOf("locks/{0}", "linux"));
 * ```
 */
export function storeKindOf(
  template: string,
  os: string = Deno.build.os,
): StoreKind {
  return parseStoreTemplate(template, os).kind;
}

/**
 * Opens the store for resolved settings.
 *
 * @param config resolved settings
 * @returns the store
 * @throws {InputError} on a bad template
 */
export async function openStore(config: ResolvedConfig): Promise<LockStore> {
  const template = config.folderPathTemplate;
  const kind = storeKindOf(template);
  if (kind === "smb") {
    const { openSmbStore }: typeof import("./smb.ts") = await import(SMB_MODULE);
    return openSmbStore(template, {
      historyFolderName: config.historyFolderName,
      timeoutMs: config.smb.timeoutMs,
      signing: config.smb.signing,
      encrypt: config.smb.encrypt,
      ...config.smb.username !== undefined ? { username: config.smb.username } : {},
      ...config.smb.password !== undefined ? { password: config.smb.password } : {},
      ...config.smb.domain !== undefined ? { domain: config.smb.domain } : {},
      ...config.smb.port !== undefined ? { port: config.smb.port } : {},
    });
  }
  if (kind === "etcd") {
    const { openEtcdStore }: typeof import("./etcd.ts") = await import(ETCD_MODULE);
    return openEtcdStore(template, {
      historyFolderName: config.historyFolderName,
      endpoints: config.etcd.endpoints,
      historyLimit: config.etcd.historyLimit,
      timeoutMs: config.etcd.timeoutMs,
      ...config.etcd.ca !== undefined ? { ca: config.etcd.ca } : {},
      ...config.etcd.cert !== undefined ? { cert: config.etcd.cert } : {},
      ...config.etcd.key !== undefined ? { key: config.etcd.key } : {},
      ...config.etcd.username !== undefined ? { username: config.etcd.username } : {},
      ...config.etcd.password !== undefined ? { password: config.etcd.password } : {},
    });
  }
  return openFsStore(template, {
    historyFolderName: config.historyFolderName,
    createRoot: config.defaultStore,
    watch: config.watch,
  });
}
