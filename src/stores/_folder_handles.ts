/**
 * Moves relative to opened folders (`openat` + `renameat`), for the folder
 * store's move of a released lock file into History; and opens of lock files
 * and of the guard that never follow a link nor wait on a FIFO.
 *
 * A path names a folder only at the moment it is resolved: someone who may
 * write in a host's folder can swap `History` for a link to another folder
 * between a check of the path and a move by path, and the move then lands in
 * the other folder. A folder opened once (without following a link) stays
 * that folder whatever happens to its name afterwards, so a move relative to
 * it cannot be redirected.
 *
 * The same holds for a file: a look at a name (`lstat`) and an open by that
 * name are two steps, and a link or a FIFO swapped in between is opened.
 * Opening has effects even if nothing is read (a reader blocked on a FIFO
 * goes on). {@linkcode FolderHandles.openFile} opens without following a link
 * (`O_NOFOLLOW`), without waiting (`O_NONBLOCK`) and for reading only, so a
 * FIFO's blocked reader stays blocked; its caller then checks what it opened
 * (`fstat`) before reading a byte.
 *
 * Deno's file API has no `renameat`, no `O_NOFOLLOW` and no `fstat` of a
 * descriptor it did not open, so these are libc's own, through FFI:
 * available on Linux (x86-64 and arm64, whose flag values differ) when the
 * process may use FFI (`--allow-ffi`; never prompted for). Elsewhere
 * {@linkcode folderHandles} returns `undefined` and the store falls back to
 * checking the path just before the move (the README's Limits).
 *
 * @module
 */

/** Flag values of `open(2)` that differ between Linux architectures. */
const LINUX_FLAGS = {
  x86_64: { directory: 0o200000, noFollow: 0o400000 },
  aarch64: { directory: 0o40000, noFollow: 0o100000 },
} as const;
const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;
const O_RDONLY = 0;
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_NONBLOCK = 0o4000;
const AT_EMPTY_PATH = 0x1000;
const STATX_BASIC_STATS = 0x7ff;
const LOCK_EX = 2;
const LOCK_NB = 4;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const ENOENT = 2;
const EINTR = 4;
const EAGAIN = 11;
const ENOTDIR = 20;
const ELOOP = 40;
const EEXIST = 17;
const EACCES = 13;
const EPERM = 1;

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  renameat: { parameters: ["i32", "buffer", "i32", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  // Optional: without them (an old libc) folders still open, files do not.
  read: { parameters: ["i32", "buffer", "usize"], result: "isize", optional: true },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32", optional: true },
  flock: { parameters: ["i32", "i32"], result: "i32", optional: true },
} as const;

/** A folder opened without following links; close it when done. */
export interface FolderHandle extends Disposable {
  /** The path it was opened by (for messages only). */
  readonly path: string;
}

/** What `fstat` says of an opened file: the fields the folder store uses. */
export interface OpenedFileInfo {
  /** A regular file (not a folder, link, FIFO, socket or device). */
  isFile: boolean;
  /** A folder. */
  isDirectory: boolean;
  /** Device number, as `Deno.FileInfo.dev`. */
  dev: number;
  /** Inode number, as `Deno.FileInfo.ino`. */
  ino: number;
  /** Size in bytes. */
  size: number;
  /** Last modification. */
  mtime: Date;
}

/** A file opened without following a link; close it when done. */
export interface OpenedFile extends Disposable {
  /** The path it was opened by (for messages only). */
  readonly path: string;
  /** What the opened file is (`fstat`), whatever its name holds by now. */
  stat(): OpenedFileInfo;
  /** Reads into `buffer` from the current position; 0 at the end. */
  read(buffer: Uint8Array): number;
  /**
   * Takes an exclusive `flock` without waiting (the kernel drops it when the
   * file is closed or the process dies).
   *
   * @returns false when another open file holds it
   */
  tryLock(): boolean;
}

/** Options for {@linkcode FolderHandles.openFile}. */
export interface OpenFileOptions {
  /**
   * Open an existing regular file for reading and writing. It is opened for
   * reading first, and reopened for writing (through `/proc/self/fd`) only
   * once it is known to be a regular file: opening a FIFO for writing would
   * let its blocked reader go on. Anything else stays opened for reading,
   * for the caller's check to refuse. @default false
   */
  write?: boolean;
  /** Create a new file (for reading and writing); fails when the name exists. @default false */
  createNew?: boolean;
  /**
   * Open the last name of `path` in this opened folder (`openat`), whatever
   * the folder's own name points at by now. @default the path as it stands
   */
  folder?: FolderHandle;
}

/** Folder operations relative to opened folders. */
export interface FolderHandles {
  /**
   * Opens the folder at `path`, or the folder `name` inside `parent`, refusing a
   * link (or anything but a folder) as the last step.
   *
   * @throws {Deno.errors.NotFound} when it does not exist
   * @throws {Deno.errors.NotADirectory} when it is a link or not a folder
   */
  open(path: string, parent?: FolderHandle, name?: string): FolderHandle;
  /**
   * Renames `fromName` in folder `from` to `toName` in folder `to` (replacing
   * a file of that name there), whatever the folders' names point at by now.
   */
  rename(from: FolderHandle, fromName: string, to: FolderHandle, toName: string): void;
  /**
   * Opens the file at `path` without following a link as its last step and
   * without waiting (a FIFO opens at once), for reading unless `options` say
   * otherwise. Undefined where this libc lacks `statx`, `read` or `flock`.
   *
   * @throws {Deno.errors.NotFound} when it does not exist
   * @throws {Deno.errors.FilesystemLoop} when it is a symbolic link
   * @throws {Deno.errors.AlreadyExists} with `createNew`, when the name exists
   */
  openFile?: (path: string, options?: OpenFileOptions) => OpenedFile;
}

const encoder = new TextEncoder();
const cString = (text: string) => encoder.encode(`${text}\0`);

let loaded: FolderHandles | null | undefined;

/**
 * The folder handles of this platform, or `undefined` where they cannot be
 * had (not Linux, no `--allow-ffi`, no libc).
 *
 * @example
 * ```ts
 * import { folderHandles } from "./_folder_handles.ts";
 * import { equal } from "node:assert/strict";
 * const handles = folderHandles();
 * if (handles) {
 *   const dir = await Deno.makeTempDir();
 *   await Deno.mkdir(`${dir}/History`);
 *   await Deno.writeTextFile(`${dir}/a.lock`, "x");
 *   using host = handles.open(dir);
 *   using history = handles.open(`${dir}/History`, host, "History");
 *   handles.rename(host, "a.lock", history, "b.lock");
 *   equal(await Deno.readTextFile(`${dir}/History/b.lock`), "x");
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export function folderHandles(): FolderHandles | undefined {
  if (loaded === undefined) loaded = load() ?? null;
  return loaded ?? undefined;
}

function load(): FolderHandles | undefined {
  if (Deno.build.os !== "linux") return undefined;
  const arch = Deno.build.arch as string;
  if (arch !== "x86_64" && arch !== "aarch64") return undefined;
  const flags = LINUX_FLAGS[arch];
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
  } catch {
    return undefined;
  }
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen("libc.so.6", SYMBOLS);
  } catch {
    return undefined;
  }
  const c = lib.symbols;
  const errno = () => {
    const at = c.__errno_location();
    return at === null ? 0 : new Deno.UnsafePointerView(at).getInt32();
  };
  const openFlags = O_PATH | O_CLOEXEC | flags.directory | flags.noFollow;

  function failure(call: string, path: string, code: number, file = false): Error {
    const text = `${call} "${path}" failed (errno ${code})`;
    if (code === ENOENT) return new Deno.errors.NotFound(text);
    if (file && code === ELOOP) return new Deno.errors.FilesystemLoop(text);
    if (code === ENOTDIR || code === ELOOP) return new Deno.errors.NotADirectory(text);
    if (code === EEXIST) return new Deno.errors.AlreadyExists(text);
    if (code === EACCES || code === EPERM) return new Deno.errors.PermissionDenied(text);
    return new Error(text);
  }

  function handle(path: string, fd: number): FolderHandle & { fd: number } {
    let open = true;
    return {
      path,
      fd,
      [Symbol.dispose]() {
        if (open) c.close(fd);
        open = false;
      },
    };
  }
  const fdOf = (h: FolderHandle) => (h as FolderHandle & { fd: number }).fd;

  const { read, statx, flock } = c;
  const openFile = read && statx && flock
    ? (path: string, options: OpenFileOptions = {}): OpenedFile => {
      const base = O_CLOEXEC | O_NONBLOCK | flags.noFollow;
      const fileFlags = options.createNew ? base | O_RDWR | O_CREAT | O_EXCL : base | O_RDONLY;
      const at = options.folder;
      let fd = at === undefined
        ? c.open(cString(path), fileFlags, 0o666)
        : c.openat(fdOf(at), cString(path.slice(path.lastIndexOf("/") + 1)), fileFlags, 0o666);
      if (fd < 0) throw failure("open", path, errno(), true);
      const statBuffer = new Uint8Array(256);
      const stat = (): OpenedFileInfo => {
        if (statx(fd, cString(""), AT_EMPTY_PATH, STATX_BASIC_STATS, statBuffer) !== 0) {
          throw failure("stat", path, errno(), true);
        }
        return infoOf(new DataView(statBuffer.buffer));
      };
      let open = true;
      const close = () => {
        if (open) c.close(fd);
        open = false;
      };
      if (options.write && !options.createNew) {
        try {
          if (stat().isFile) {
            // The same file, not its name: nothing swapped in can be opened here.
            // Without /proc it stays opened for reading (enough for a local flock).
            const again = c.open(cString(`/proc/self/fd/${fd}`), O_CLOEXEC | O_RDWR, 0);
            const code = again < 0 ? errno() : 0;
            if (again < 0 && code !== ENOENT) throw failure("open", path, code, true);
            if (again >= 0) {
              c.close(fd);
              fd = again;
            }
          }
        } catch (error) {
          close();
          throw error;
        }
      }
      return {
        path,
        stat,
        read(buffer) {
          for (;;) {
            const n = Number(read(fd, buffer, BigInt(buffer.length)));
            if (n >= 0) return n;
            const code = errno();
            if (code !== EINTR) throw failure("read", path, code, true);
          }
        },
        tryLock() {
          for (;;) {
            if (flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
            const code = errno();
            if (code === EAGAIN) return false;
            if (code !== EINTR) throw failure("lock", path, code, true);
          }
        },
        [Symbol.dispose]: close,
      };
    }
    : undefined;

  return {
    ...openFile ? { openFile } : {},
    open(path, parent, name) {
      if (parent !== undefined && (!name || name.includes("/") || name.includes("\0"))) {
        throw new Deno.errors.InvalidData(`"${name}" is not one name in a folder`);
      }
      const fd = parent === undefined
        ? c.open(cString(path), openFlags, 0)
        : c.openat(fdOf(parent), cString(name ?? ""), openFlags, 0);
      if (fd < 0) throw failure("open", path, errno());
      return handle(path, fd);
    },
    rename(from, fromName, to, toName) {
      for (const name of [fromName, toName]) {
        if (name === "" || name.includes("/") || name.includes("\0")) {
          throw new Deno.errors.InvalidData(`"${name}" is not one name in a folder`);
        }
      }
      if (c.renameat(fdOf(from), cString(fromName), fdOf(to), cString(toName)) !== 0) {
        throw failure("rename", `${from.path}/${fromName}`, errno());
      }
    },
  };
}

/** `Deno.FileInfo`'s fields from a `struct statx` (one layout on every Linux architecture). */
function infoOf(view: DataView): OpenedFileInfo {
  const kind = view.getUint16(28, true) & S_IFMT;
  const major = view.getUint32(136, true);
  const minor = view.getUint32(140, true);
  return {
    isFile: kind === S_IFREG,
    isDirectory: kind === S_IFDIR,
    // glibc's makedev(), as Deno (Rust's std) reports `dev`.
    dev: (major >>> 12) * 2 ** 44 + (major & 0xfff) * 2 ** 8 + (minor >>> 8) * 2 ** 20 +
      (minor & 0xff),
    ino: Number(view.getBigUint64(32, true)),
    size: Number(view.getBigUint64(40, true)),
    mtime: new Date(
      Number(view.getBigInt64(112, true)) * 1000 + Math.floor(view.getUint32(120, true) / 1e6),
    ),
  };
}
