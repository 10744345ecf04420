/**
 * The local-folder store: a host's lock folder is a folder on this machine
 * or a mounted share (`/var/lib/locks/{0}`, `C:\locks\{0}`, and on Windows
 * `\\{0}\ResourceLocks` through the OS, as the original).
 *
 * @module
 */

import { joinPath as join, parentPath as dirname } from "../path.ts";
import { StoreError } from "../errors.ts";
import type { LockStore } from "../store.ts";

/** Options for {@linkcode openFsStore}. */
export interface FsStoreOptions {
  /** Name of the history folder inside each host's folder. */
  historyFolderName: string;
  /** Create the folders above a host's folder when missing (the embedded default store). */
  createRoot?: boolean;
}

function fail(what: string, path: string, error: unknown): never {
  if (error instanceof StoreError) throw error;
  const reason = error instanceof Deno.errors.PermissionDenied
    ? "access denied"
    : error instanceof Deno.errors.NotADirectory
    ? "a file stands where a folder should be"
    : error instanceof Deno.errors.IsADirectory
    ? "a folder stands where a lock file should be"
    : (error as Error).message ?? String(error);
  throw new StoreError(path, `Cannot ${what} "${path}": ${reason}`, {
    cause: error,
  });
}

/**
 * Opens the local-folder store for a folder template.
 *
 * @param template folder template with `{0}` or `{host}` for the host
 * @param options history folder name, root creation
 * @returns the store
 *
 * @example A store in a temporary folder
 * ```ts
 * import { openFsStore } from "./fs.ts";
 * const root = await Deno.makeTempDir();
 * const store = openFsStore(`${root}/{0}`, { historyFolderName: "History" });
 * console.assert(await store.create("dc01", "Host.lock", new Uint8Array()));
 * console.assert(!(await store.create("dc01", "Host.lock", new Uint8Array())));
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export function openFsStore(
  template: string,
  options: FsStoreOptions,
): LockStore {
  const folder = (host: string) => template.replaceAll("{0}", host).replaceAll("{host}", host);
  const history = (host: string) => join(folder(host), options.historyFolderName);
  const ensured = new Set<string>();

  async function ensureFolder(host: string): Promise<void> {
    const path = folder(host);
    if (ensured.has(path)) return;
    try {
      await Deno.mkdir(path, { recursive: options.createRoot === true });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) {
        const info = await Deno.stat(path).catch((e) => fail("open lock folder", path, e));
        if (!info.isDirectory) {
          throw new StoreError(
            path,
            `Cannot use lock folder "${path}": it is a file`,
          );
        }
      } else if (error instanceof Deno.errors.NotFound) {
        throw new StoreError(
          path,
          `Cannot create lock folder "${path}": the folder above it, "${
            dirname(path)
          }", does not exist`,
        );
      } else fail("create lock folder", path, error);
    }
    ensured.add(path);
  }

  async function readFile(path: string): Promise<Uint8Array | undefined> {
    try {
      return await Deno.readFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      fail("read", path, error);
    }
  }

  async function listFiles(path: string, hostFolder = false): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(path)) {
        if (entry.isFile || entry.isSymlink) names.push(entry.name);
        else if (
          entry.isDirectory && entry.name !== options.historyFolderName
        ) {
          // A folder named like a lock still counts as a lock by its name.
          names.push(entry.name);
        }
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) fail("list", path, error);
      // No folder for this host yet means no locks, but only where the folder
      // above it exists: a mistyped root must not read as "not locked".
      if (hostFolder && options.createRoot !== true) {
        const parent = dirname(path);
        const info = await Deno.stat(parent).catch(() => undefined);
        if (!info?.isDirectory) {
          throw new StoreError(
            path,
            `Cannot list "${path}": the folder above it, "${parent}", does not exist`,
          );
        }
      }
      return [];
    }
    return names;
  }

  // One asynchronous call each: the open, which is where a slow share
  // waits; the write of a few hundred bytes and the close are synchronous.
  // (Deno.writeFile would load Deno's streams code on first use: 2 ms of a
  // command's start.)
  async function writeTo(path: string, data: Uint8Array, options: Deno.OpenOptions): Promise<void> {
    const file = await Deno.open(path, options);
    try {
      let written = 0;
      while (written < data.length) written += file.writeSync(data.subarray(written));
    } finally {
      file.close();
    }
  }

  async function writeExisting(path: string, data: Uint8Array): Promise<boolean> {
    try {
      await writeTo(path, data, { write: true, truncate: true });
      return true;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return false;
      fail("write", path, error);
    }
  }

  return {
    kind: "fs",
    describe: folder,
    async create(host, name, data) {
      await ensureFolder(host);
      const path = join(folder(host), name);
      try {
        await writeTo(path, data, { write: true, createNew: true });
        return true;
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) return false;
        if (error instanceof Deno.errors.NotFound) ensured.delete(folder(host));
        // Created but not written: take it back rather than leave half a lock.
        else await Deno.remove(path).catch(() => {});
        fail("create lock file", path, error);
      }
    },
    list: (host) => listFiles(folder(host), true),
    read: (host, name) => readFile(join(folder(host), name)),
    replace: (host, name, data) => writeExisting(join(folder(host), name), data),
    async archive(host, name, historyName, data) {
      const path = join(folder(host), name);
      if (!(await writeExisting(path, data))) return false;
      const target = join(history(host), historyName);
      try {
        await Deno.rename(path, target);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) {
          fail("move to history", path, error);
        }
        try {
          await Deno.mkdir(history(host));
        } catch (mkdirError) {
          if (!(mkdirError instanceof Deno.errors.AlreadyExists)) {
            fail("create history folder", history(host), mkdirError);
          }
        }
        try {
          await Deno.rename(path, target);
        } catch (retryError) {
          if (retryError instanceof Deno.errors.NotFound) return false;
          fail("move to history", path, retryError);
        }
      }
      return true;
    },
    async remove(host, name) {
      const path = join(folder(host), name);
      try {
        await Deno.remove(path);
        return true;
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return false;
        fail("remove", path, error);
      }
    },
    listHistory: (host) => listFiles(history(host)),
    readHistory: (host, name) => readFile(join(history(host), name)),
    close: () => Promise.resolve(),
  };
}
