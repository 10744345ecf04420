/**
 * Moves relative to opened folders (`openat` + `renameat`), for the folder
 * store's move of a released lock file into History.
 *
 * A path names a folder only at the moment it is resolved: someone who may
 * write in a host's folder can swap `History` for a link to another folder
 * between a check of the path and a move by path, and the move then lands in
 * the other folder. A folder opened once (without following a link) stays
 * that folder whatever happens to its name afterwards, so a move relative to
 * it cannot be redirected.
 *
 * Deno's file API has no `renameat`, so these are libc's own, through FFI:
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
const ENOENT = 2;
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
} as const;

/** A folder opened without following links; close it when done. */
export interface FolderHandle extends Disposable {
  /** The path it was opened by (for messages only). */
  readonly path: string;
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

  function failure(call: string, path: string, code: number): Error {
    const text = `${call} "${path}" failed (errno ${code})`;
    if (code === ENOENT) return new Deno.errors.NotFound(text);
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

  return {
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
