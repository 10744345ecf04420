/**
 * The local-folder store: a host's lock folder is a folder on this machine
 * or a mounted share (`/var/lib/locks/{0}`, `C:\locks\{0}`, and on Windows
 * `\\{0}\ResourceLocks` through the OS, as the original).
 *
 * How it keeps the store contract (`../store.ts`):
 * - Create: the content is written to a private temporary file in the host's
 *   folder, which is then hard-linked to the lock's name; `link` never
 *   replaces, so it is the exclusive create, and the lock appears with its
 *   whole content or not at all. Where a file system has no hard links, the
 *   temporary file is renamed into place under the guard below instead (safe
 *   between our callers; a PowerShell caller could slip in between).
 * - Version: the file's identity (device, inode) and its bytes.
 * - Replace, archive, remove: under a per-host guard, an exclusive
 *   `flock` on `.resource-locker.guard` in the host's folder, which the kernel
 *   releases when its holder dies: read the entry, compare with the version
 *   named, then act (rename a new temporary file over it; move it into
 *   History, then write its final content there; delete it). Only our callers
 *   take the guard; PowerShell's `Move-Item` does not, so against PowerShell
 *   callers the original's guarantees hold, not ours.
 * - A process that dies anywhere leaves at most a `.resource-locker-*.tmp`
 *   file, which no lock name matches.
 *
 * @module
 */

import { joinPath as join, parentPath as dirname } from "../path.ts";
import { InputError, StoreError } from "../errors.ts";
import { showField } from "../_text.ts";
import { seam } from "../_seam.ts";
import { waitForFolderChange, type WatchMode } from "./_folder_watch.ts";
import {
  type FolderHandle,
  type FolderHandles,
  folderHandles,
  type OpenedFile,
} from "./_folder_handles.ts";
import type { LockStore, StoreEntry } from "../store.ts";
import { fillHost, hostsRoot, parseFolderTemplate } from "./_template.ts";
import { concatBytes } from "../_bytes.ts";

/** Options for {@linkcode openFsStore}. */
export interface FsStoreOptions {
  /** Name of the history folder inside each host's folder. */
  historyFolderName: string;
  /** Create the folders above a host's folder when missing (the embedded default store). */
  createRoot?: boolean;
  /**
   * How waiters learn that a host's folder changed: `notify` (file-system
   * notifications), `poll` (look every half second), or `auto`: notify,
   * except on network file systems, where other machines' changes are not
   * notified. @default "auto"
   */
  watch?: WatchMode;
}

function fail(what: string, path: string, error: unknown): never {
  throw failure(what, path, error);
}

function failure(
  what: string,
  path: string,
  error: unknown,
  options: { unchanged?: boolean } = {},
): StoreError {
  if (error instanceof StoreError) {
    if (!options.unchanged || error.unchanged) return error;
    return new StoreError(error.location, error.message, {
      cause: error.cause,
      remedies: error.remedies,
      unchanged: true,
    });
  }
  const reason = error instanceof Deno.errors.PermissionDenied
    ? "access denied"
    : error instanceof Deno.errors.NotADirectory
    ? "a file stands where a folder should be"
    : error instanceof Deno.errors.IsADirectory
    ? "a folder stands where a lock file should be"
    : (error as Error).message ?? String(error);
  return new StoreError(path, `Cannot ${what} "${path}": ${reason}`, {
    cause: error,
    ...options,
  });
}

/** Name of the per-host guard file. */
const GUARD = ".resource-locker.guard";
/** Prefix of our temporary files (and of the guard): never a lock name. */
const PRIVATE_PREFIX = ".resource-locker";
/** Largest lock or history file read; anything bigger is an error, not a lock we can judge. */
const MAX_ENTRY_BYTES = 1 << 20;
/** How long a mutation waits for another process's guard. */
const GUARD_WAIT_MS = 15_000;

const latin1 = new TextDecoder("latin1");
/** What a read found when the name pointed at another file by the time it was opened. */
const REPLACED = Symbol("replaced");

function versionOf(info: { dev: number; ino: number | null }, data: Uint8Array): string {
  return `${info.dev}:${info.ino ?? ""}:${latin1.decode(data)}`;
}

function pause(point: string, host: string, name: string): Promise<void> | undefined {
  return seam(`fs.${point}`, host, name);
}

/** Opens without following a link or waiting on a FIFO, where FFI allows (`_folder_handles.ts`). */
function noFollowOpener(): FolderHandles["openFile"] {
  return Deno.build.os === "linux" ? folderHandles()?.openFile : undefined;
}

/** An entry named like a lock file that is something else: reported, never opened. */
function notALockFile(path: string, what: string): StoreError {
  return new StoreError(path, `Cannot read "${path}": it is ${what}, not a lock file; left alone`);
}

/** A guard's name holding something else: reported, never used. */
function notOurGuard(path: string, what: string): StoreError {
  return new StoreError(path, `Cannot use "${path}": it is ${what}, not our guard; left alone`);
}

/**
 * Reads a file through `read` until its end: `size` (from its stat) sizes the
 * first buffer; more than {@linkcode MAX_ENTRY_BYTES} is refused.
 */
function readBounded(path: string, size: number, read: (into: Uint8Array) => number | null) {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const chunk = new Uint8Array(
      total === 0 ? Math.max(512, Math.min(size + 1, MAX_ENTRY_BYTES + 1)) : 65536,
    );
    const n = read(chunk);
    if (n === null || n === 0) break;
    chunks.push(chunk.subarray(0, n));
    total += n;
    if (total > MAX_ENTRY_BYTES) {
      throw new StoreError(
        path,
        `Cannot read "${path}": larger than ${MAX_ENTRY_BYTES} bytes, not a lock file`,
      );
    }
  }
  return concatBytes(chunks);
}

/**
 * Opens the local-folder store for a folder template.
 *
 * @param template absolute folder template with `{0}` or `{host}` for the host
 * @param options history folder name, root creation
 * @returns the store
 * @throws {InputError} when the template is not an absolute folder with a host placeholder
 *
 * @example A store in a temporary folder
 * ```ts
 * import { openFsStore } from "./fs.ts";
 * import { equal } from "node:assert/strict";
 * const root = await Deno.makeTempDir();
 * const store = openFsStore(`${root}/{0}`, { historyFolderName: "History" });
 * const version = await store.create("dc01", "Host.lock", new TextEncoder().encode("{}"));
 * equal(typeof version, "string");
 * equal(await store.create("dc01", "Host.lock", new Uint8Array()), undefined);
 * equal(await store.remove("dc01", "Host.lock", version!), true);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export function openFsStore(
  template: string,
  options: FsStoreOptions,
): LockStore {
  const parsedTemplate = parseFolderTemplate(template);
  const hostFolder = parsedTemplate.folder;
  const folder = (host: string) => fillHost(hostFolder, host);
  const history = (host: string) => join(folder(host), options.historyFolderName);
  const temporary = (dir: string) => join(dir, `${PRIVATE_PREFIX}-${crypto.randomUUID()}.tmp`);
  const ensured = new Set<string>();

  async function ensureFolder(host: string): Promise<void> {
    const path = folder(host);
    if (ensured.has(path)) return;
    try {
      await Deno.mkdir(path, { recursive: options.createRoot === true });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new StoreError(
          path,
          `Cannot create lock folder "${path}": the folder above it, "${
            dirname(path)
          }", does not exist`,
        );
      } else if (!(error instanceof Deno.errors.AlreadyExists)) {
        fail("create lock folder", path, error);
      }
    }
    await realFolder(path); // a file or a link where the host's folder should be is refused
    ensured.add(path);
  }

  /**
   * Reads a file and its identity through one open; undefined when missing.
   * Only a regular file is opened: a symlink, FIFO, socket or device named
   * like a lock is reported and left alone (never followed, never read, so
   * it can neither redirect a change outside the store nor hang a command),
   * and the opened file must be the one looked at.
   */
  async function readEntry(path: string, at?: FolderHandle): Promise<StoreEntry | undefined> {
    // A renewal renames a new file over the lock between our look and our
    // open: read the new one (a few times at most; it only takes a moment).
    for (let round = 0;; round++) {
      const entry = await readOnce(path, at);
      if (entry !== REPLACED) return entry;
      if (round >= 8) {
        throw new StoreError(
          path,
          `Cannot read "${path}": it kept being replaced while being read`,
        );
      }
    }
  }

  async function readOnce(
    path: string,
    at?: FolderHandle,
  ): Promise<StoreEntry | undefined | typeof REPLACED> {
    let seen: Deno.FileInfo;
    try {
      seen = await Deno.lstat(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      fail("read", path, error);
    }
    if (!seen.isFile) {
      if (seen.isDirectory) fail("read", path, new Deno.errors.IsADirectory());
      throw notALockFile(
        path,
        seen.isSymlink ? "a symbolic link" : "not a regular file (a FIFO, socket or device)",
      );
    }
    const p = pause("read.looked", "", path);
    if (p) await p;
    const openFile = noFollowOpener();
    if (openFile) return readOpened(path, seen, openFile, at);
    // Opened for reading and writing (nothing is written): an open for
    // reading alone would block for ever on a FIFO swapped in since the
    // look above; read-write opens of a FIFO return at once, and the check
    // below then finds it is not the file looked at. A reader that may not
    // write (a read-only view of the store) opens for reading.
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, write: true }).catch((error) => {
        if (error instanceof Deno.errors.NotFound) throw error;
        return Deno.open(path, { read: true }); // not ours to write (read-only view or mount)
      });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      fail("read", path, error);
    }
    try {
      const info = file.statSync();
      if (!info.isFile || info.ino !== seen.ino || info.dev !== seen.dev) return REPLACED;
      const data = readBounded(path, info.size, (chunk) => file.readSync(chunk));
      return {
        data,
        version: versionOf(info, data),
        ...info.mtime ? { writtenAt: info.mtime } : {},
      };
    } catch (error) {
      fail("read", path, error);
    } finally {
      file.close();
    }
  }

  /**
   * {@linkcode readOnce} by a no-follow, non-blocking open for reading: a link
   * swapped in since the look is not followed, a FIFO is opened without
   * letting its blocked reader go on, and what was opened is checked before
   * a byte is read.
   */
  function readOpened(
    path: string,
    seen: Deno.FileInfo,
    openFile: NonNullable<FolderHandles["openFile"]>,
    at: FolderHandle | undefined,
  ): StoreEntry | undefined | typeof REPLACED {
    let file: OpenedFile;
    try {
      file = openFile(path, at ? { folder: at } : {});
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      if (error instanceof Deno.errors.FilesystemLoop) throw notALockFile(path, "a symbolic link");
      fail("read", path, error);
    }
    using _file = file;
    try {
      const info = file.stat();
      if (!info.isFile || info.ino !== seen.ino || info.dev !== seen.dev) return REPLACED;
      const data = readBounded(path, info.size, (chunk) => file.read(chunk));
      return { data, version: versionOf(info, data), writtenAt: info.mtime };
    } catch (error) {
      fail("read", path, error);
    }
  }

  async function listFiles(path: string, hostFolder = false): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(path)) {
        if (entry.name.startsWith(PRIVATE_PREFIX)) continue;
        if (entry.isDirectory && entry.name === options.historyFolderName) continue;
        // Anything named like a lock counts as a lock by its name (a folder,
        // a link, a FIFO): reading it then says what it is.
        names.push(entry.name);
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

  /**
   * Writes `data` to a new temporary file in `dir`: one asynchronous call,
   * the open, which is where a slow share waits; the write of a few hundred
   * bytes, the stat and the close are synchronous. (Deno.writeFile would
   * load Deno's streams code on first use: the benchmark's
   * `startup-write-file` against `startup-open-write`.)
   */
  async function writeTemporary(
    dir: string,
    data: Uint8Array,
  ): Promise<{ path: string; info: Deno.FileInfo }> {
    const path = temporary(dir);
    const file = await Deno.open(path, { write: true, createNew: true });
    try {
      let written = 0;
      while (written < data.length) written += file.writeSync(data.subarray(written));
      return { path, info: file.statSync() };
    } catch (error) {
      file.close();
      await Deno.remove(path).catch(() => {});
      throw error;
    } finally {
      try {
        file.close();
      } catch { /* closed above */ }
    }
  }

  /**
   * Runs `fn` holding the host's guard: an exclusive flock that the kernel
   * drops when this process dies, so a crash inside never blocks others.
   */
  async function guarded<T>(host: string, fn: () => Promise<T>): Promise<T> {
    const path = join(folder(host), GUARD);
    await realFolder(folder(host));
    const planted = await Deno.lstat(path).catch(() => undefined);
    if (planted && !planted.isFile) {
      throw notOurGuard(path, planted.isSymlink ? "a symbolic link" : "not a regular file");
    }
    const g = pause("guard.looked", host, GUARD);
    if (g) await g;
    const openFile = noFollowOpener();
    if (openFile) {
      using file = await openGuardNoFollow(path, openFile);
      await lockGuard(host, path, file);
      return await fn(); // the close at the end of this block releases the flock
    }
    const file = await openGuard(path);
    try {
      const timeout = AbortSignal.timeout(GUARD_WAIT_MS);
      await new Promise<void>((resolve, reject) => {
        const onTimeout = () =>
          reject(
            new StoreError(
              path,
              `Cannot change locks in "${
                folder(host)
              }": another process has held "${GUARD}" for more than ${GUARD_WAIT_MS / 1000}s`,
            ),
          );
        timeout.addEventListener("abort", onTimeout, { once: true });
        file.lock(true).then(() => {
          timeout.removeEventListener("abort", onTimeout);
          resolve();
        }, reject);
      });
      return await fn();
    } finally {
      file.close(); // releases the flock (a late lock() releases it when it returns)
    }
  }

  /**
   * Opens the guard file without following a link planted in its place: an
   * existing one is opened, else a new one made with an exclusive create
   * (which never follows a link); either way it must then be the regular
   * file the name holds.
   */
  async function openGuard(path: string): Promise<Deno.FsFile> {
    for (let round = 0; round < 3; round++) {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(path, { read: true, write: true });
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) fail("open the guard", path, error);
        try {
          file = await Deno.open(path, { read: true, write: true, createNew: true });
        } catch (error) {
          if (error instanceof Deno.errors.AlreadyExists) continue;
          fail("open the guard", path, error);
        }
      }
      const opened = file.statSync();
      const named = await Deno.lstat(path).catch(() => undefined);
      if (opened.isFile && named?.isFile && named.ino === opened.ino && named.dev === opened.dev) {
        return file;
      }
      file.close();
      if (named && !named.isFile) {
        throw notOurGuard(path, named.isSymlink ? "a symbolic link" : "not a regular file");
      }
    }
    throw new StoreError(path, `Cannot use "${path}": it kept changing while being opened`);
  }

  /**
   * {@linkcode openGuard} by no-follow, non-blocking opens: an existing guard
   * is opened for reading and checked to be a regular file before it is
   * opened for writing (a FIFO's blocked reader stays blocked); a new one is
   * made with an exclusive create. It must still be the file the name holds.
   */
  async function openGuardNoFollow(
    path: string,
    openFile: NonNullable<FolderHandles["openFile"]>,
  ): Promise<OpenedFile> {
    for (let round = 0; round < 3; round++) {
      let file: OpenedFile;
      try {
        file = openFile(path, { write: true });
      } catch (error) {
        if (error instanceof Deno.errors.FilesystemLoop) throw notOurGuard(path, "a symbolic link");
        if (!(error instanceof Deno.errors.NotFound)) fail("open the guard", path, error);
        try {
          file = openFile(path, { createNew: true });
        } catch (error) {
          if (error instanceof Deno.errors.AlreadyExists) continue;
          fail("open the guard", path, error);
        }
      }
      try {
        const opened = file.stat();
        if (!opened.isFile) throw notOurGuard(path, "not a regular file");
        const named = await Deno.lstat(path).catch(() => undefined);
        if (named?.isFile && named.ino === opened.ino && named.dev === opened.dev) return file;
        if (named && !named.isFile) {
          throw notOurGuard(path, named.isSymlink ? "a symbolic link" : "not a regular file");
        }
      } catch (error) {
        file[Symbol.dispose]();
        fail("open the guard", path, error);
      }
      file[Symbol.dispose]();
    }
    throw new StoreError(path, `Cannot use "${path}": it kept changing while being opened`);
  }

  /**
   * Takes the guard's flock: tries without waiting, then again after a short
   * pause that doubles up to 50 ms, for at most {@linkcode GUARD_WAIT_MS}.
   * (A blocking flock would hold one of Deno's threads, and could not be
   * given up at the time limit.)
   */
  async function lockGuard(host: string, path: string, file: OpenedFile): Promise<void> {
    const deadline = Date.now() + GUARD_WAIT_MS;
    for (let delay = 1;; delay = Math.min(delay * 2, 50)) {
      let locked: boolean;
      try {
        locked = file.tryLock();
      } catch (error) {
        fail("lock the guard", path, error);
      }
      if (locked) return;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new StoreError(
          path,
          `Cannot change locks in "${
            folder(host)
          }": another process has held "${GUARD}" for more than ${GUARD_WAIT_MS / 1000}s`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, left)));
    }
  }

  /** Under the guard: the entry at `path` when it still is `version`. */
  async function check(path: string, version: string): Promise<boolean> {
    return (await readEntry(path))?.version === version;
  }

  /** A folder that must be a real folder, not a link to somewhere else (host folder, History). */
  async function realFolder(path: string): Promise<boolean> {
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return false;
      fail("open", path, error);
    }
    if (!info.isDirectory) {
      throw new StoreError(
        path,
        `Cannot use "${path}": it is ${
          info.isSymlink ? "a symbolic link" : "not a folder"
        }, not a lock folder; left alone`,
      );
    }
    return true;
  }

  async function ensureHistory(host: string): Promise<void> {
    if (await realFolder(history(host))) return;
    try {
      await Deno.mkdir(history(host));
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) {
        fail("create history folder", history(host), error);
      }
      await realFolder(history(host));
    }
  }

  /**
   * The move into History relative to the opened host folder and History (see
   * `_folder_handles.ts`): once History is open, swapping its name for a link
   * redirects nothing. The final content is written beside the lock, under a
   * private name, and moved over the record the same way.
   */
  async function archiveByHandles(
    handles: FolderHandles,
    host: string,
    { name, path }: { name: string; path: string },
    { name: historyName, target }: { name: string; target: string },
    data: Uint8Array,
  ): Promise<void> {
    const dir = folder(host);
    using opened = openHistory(handles, host);
    const { host: hostFolder, history: historyFolder } = opened;
    const h = pause("archive.historyChecked", host, name);
    if (h) await h;
    try {
      handles.rename(hostFolder, name, historyFolder, historyName);
    } catch (error) {
      fail("move to history", path, error);
    }
    const q = pause("archive.moved", host, name);
    if (q) await q;
    // The lock is released; its final content (who, when) is a record.
    let written: { path: string };
    try {
      written = await writeTemporary(dir, data);
    } catch (error) {
      fail("write history entry", target, error);
    }
    try {
      // Handles exist on Linux only: "/" is the separator.
      const temporaryName = written.path.slice(written.path.lastIndexOf("/") + 1);
      handles.rename(hostFolder, temporaryName, historyFolder, historyName);
    } catch (error) {
      await Deno.remove(written.path).catch(() => {});
      fail("write history entry", target, error);
    }
  }

  /**
   * Opens a host's folder, then its History in it, never following a link.
   *
   * @throws {StoreError} when either is missing, a link or not a folder
   */
  function openHistory(
    handles: FolderHandles,
    host: string,
  ): Disposable & { host: FolderHandle; history: FolderHandle } {
    const dir = folder(host);
    let hostFolder: FolderHandle;
    try {
      hostFolder = handles.open(dir);
    } catch (error) {
      fail("open", dir, error);
    }
    let historyFolder: FolderHandle;
    try {
      historyFolder = handles.open(history(host), hostFolder, options.historyFolderName);
    } catch (error) {
      hostFolder[Symbol.dispose]();
      if (!(error instanceof Deno.errors.NotADirectory)) fail("open", history(host), error);
      throw new StoreError(
        history(host),
        `Cannot use "${
          history(host)
        }": it is a symbolic link or not a folder, not a lock folder; left alone`,
      );
    }
    return {
      host: hostFolder,
      history: historyFolder,
      [Symbol.dispose]() {
        historyFolder[Symbol.dispose]();
        hostFolder[Symbol.dispose]();
      },
    };
  }

  async function createEntry(
    host: string,
    name: string,
    data: Uint8Array,
  ): Promise<string | undefined> {
    const dir = folder(host);
    const path = entryPath(dir, name);
    const known = ensured.has(dir);
    await ensureFolder(host);
    let written: { path: string; info: Deno.FileInfo };
    try {
      written = await writeTemporary(dir, data);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) fail("create lock file", path, error);
      ensured.delete(dir);
      // The folder was made (or found) by an earlier call and removed since
      // (an admin clearing a stale lock with the whole folder while a waiter
      // waits): made again once, as a first call would.
      if (!known) fail("create lock file", path, error);
      await ensureFolder(host);
      try {
        written = await writeTemporary(dir, data);
      } catch (again) {
        if (again instanceof Deno.errors.NotFound) ensured.delete(dir);
        fail("create lock file", path, again);
      }
    }
    try {
      const p = pause("create.written", host, name);
      if (p) await p;
      try {
        await Deno.link(written.path, path);
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) return undefined;
        if (!linkUnsupported(error)) fail("create lock file", path, error);
        // No hard links here: rename into place under the guard.
        const made = await guarded(host, async () => {
          if (await Deno.lstat(path).then(() => true, () => false)) return false;
          await Deno.rename(written.path, path);
          return true;
        });
        if (!made) return undefined;
      }
      const q = pause("create.linked", host, name);
      if (q) await q;
      return versionOf(written.info, data);
    } finally {
      await Deno.remove(written.path).catch(() => {});
    }
  }

  /** The folders under the root of a template ending in the host (`/var/lib/locks/{0}`). */
  async function listHosts(root: string): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(root)) {
        // A link is listed too, so that reading it reports it instead of skipping it unseen.
        if (entry.name.startsWith(PRIVATE_PREFIX)) continue;
        if (entry.isDirectory || entry.isSymlink) names.push(entry.name);
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) fail("list the hosts in", root, error);
      if (options.createRoot === true) return []; // the default store, before its first lock
      throw new StoreError(root, `Cannot list the hosts in "${root}": it does not exist`);
    }
    return names;
  }

  const root = hostsRoot(parsedTemplate);
  return {
    kind: "fs",
    describe: folder,
    ...root !== undefined ? { listHosts: () => listHosts(root) } : {},
    async create(host, name, data) {
      try {
        return await createEntry(host, name, data);
      } catch (error) {
        // Until the link (or rename) succeeds nothing is in place, and after
        // it nothing can fail: a failed create changed nothing.
        if (error instanceof InputError) throw error;
        throw failure("create lock file", join(folder(host), name), error, { unchanged: true });
      }
    },
    // async: a refused host name rejects, as every other failure does.
    // A host's folder that is a link is refused by reads too, as by changes:
    // else status and test would report (and a Host lock drain on) locks
    // read from wherever the link points.
    list: async (host) => {
      await realFolder(folder(host));
      return await listFiles(folder(host), true);
    },
    read: async (host, name) => {
      const path = entryPath(folder(host), name);
      await realFolder(folder(host));
      return await readEntry(path);
    },
    replace: (host, name, version, data) =>
      guarded(host, async () => {
        const path = entryPath(folder(host), name);
        if (!(await check(path, version))) return undefined;
        const p = pause("replace.verified", host, name);
        if (p) await p;
        const written = await writeTemporary(folder(host), data).catch((e) =>
          fail("write", path, e)
        );
        try {
          await Deno.rename(written.path, path);
        } catch (error) {
          await Deno.remove(written.path).catch(() => {});
          fail("write", path, error);
        }
        return versionOf(written.info, data);
      }),
    archive: (host, name, version, historyName, data) =>
      guarded(host, async () => {
        const path = entryPath(folder(host), name);
        if (!(await check(path, version))) return false;
        const p = pause("archive.verified", host, name);
        if (p) await p;
        await ensureHistory(host);
        const target = entryPath(history(host), historyName);
        const handles = options.historyFolderName.includes("/") ? undefined : folderHandles();
        if (handles) {
          await archiveByHandles(
            handles,
            host,
            { name, path },
            { name: historyName, target },
            data,
          );
          return true;
        }
        const h = pause("archive.historyChecked", host, name);
        if (h) await h;
        try {
          await Deno.rename(path, target);
        } catch (error) {
          fail("move to history", path, error);
        }
        const q = pause("archive.moved", host, name);
        if (q) await q;
        // The lock is released; its final content (who, when) is a record.
        try {
          const written = await writeTemporary(history(host), data);
          await Deno.rename(written.path, target).catch(async (error) => {
            await Deno.remove(written.path).catch(() => {});
            throw error;
          });
        } catch (error) {
          fail("write history entry", target, error);
        }
        return true;
      }),
    remove: (host, name, version) =>
      guarded(host, async () => {
        const path = entryPath(folder(host), name);
        if (!(await check(path, version))) return false;
        const p = pause("remove.verified", host, name);
        if (p) await p;
        try {
          await Deno.remove(path);
          return true;
        } catch (error) {
          if (error instanceof Deno.errors.NotFound) return false;
          fail("remove", path, error);
        }
      }),
    listHistory: async (host) =>
      (await realFolder(folder(host))) && (await realFolder(history(host)))
        ? await listFiles(history(host))
        : [],
    readHistory: async (host, name) => {
      const path = entryPath(history(host), name);
      await realFolder(folder(host));
      if (!(await realFolder(history(host)))) return undefined;
      // History lies in the host's folder, where a link may replace it after
      // the check: the record is opened in the opened History, where FFI allows.
      const handles = options.historyFolderName.includes("/") ? undefined : folderHandles();
      if (!handles?.openFile) return (await readEntry(path))?.data;
      using opened = openHistory(handles, host);
      return (await readEntry(path, opened.history))?.data;
    },
    waitForChange: async (host, ms, signal) =>
      await waitForFolderChange(folder(host), ms, {
        mode: options.watch ?? "auto",
        ignorePrefix: PRIVATE_PREFIX,
        signal,
      }),
    close: () => Promise.resolve(),
  };
}

/**
 * The path of an entry in a host's folder or its History. The locker only
 * passes names it made or listed, but a lock id from a ref may carry any
 * character a lock file written by someone else had: the name must stay one
 * entry of that folder, never a path.
 */
function entryPath(dir: string, name: string): string {
  const separators = Deno.build.os === "windows" ? /[\\/:]/ : /\//;
  if (
    name === "" || name === "." || name === ".." || name.includes("\0") || separators.test(name)
  ) {
    throw new InputError(`Bad lock entry name "${showField(name)}": not one name in a folder`);
  }
  return join(dir, name);
}

/** A link that failed because the file system has no hard links (FAT, some mounts). */
function linkUnsupported(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return error instanceof Deno.errors.NotSupported || code === "EPERM" || code === "ENOTSUP" ||
    code === "EOPNOTSUPP" || code === "EXDEV" || code === "EMLINK";
}
