/**
 * Reading a small file a user names (a dependency map, a config module)
 * without being hung or flooded by what stands at its path: only a regular
 * file is opened, and at most a fixed number of bytes is read.
 *
 * @module
 */

import { concatBytes } from "./_bytes.ts";

/** What stands at a path when it is not a regular file, for messages. */
function kindOfEntry(info: Deno.FileInfo): string {
  if (info.isDirectory) return "a folder";
  if (info.isFifo) return "a FIFO";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return "not a regular file";
}

/** Why a file could not be read: its size, its kind, or that it is missing. */
export class SmallFileError extends Error {
  /** `missing`, `not-a-file`, `too-large`, or `unreadable` (permissions, I/O). */
  readonly reason: "missing" | "not-a-file" | "too-large" | "unreadable";
  /**
   * @param reason the kind of failure
   * @param message one line, without the path (the caller names the file)
   * @param options cause
   */
  constructor(reason: SmallFileError["reason"], message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SmallFileError";
    this.reason = reason;
  }
}

/**
 * Checks that `path` is a regular file (following links, as a user naming a
 * file expects) of at most `maxBytes`, without opening it.
 *
 * @param path the file
 * @param maxBytes the cap
 * @returns its size
 * @throws {SmallFileError} when it is missing, not a regular file or too large
 */
export async function checkSmallFile(path: string | URL, maxBytes: number): Promise<number> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new SmallFileError("missing", "it does not exist", { cause: error });
    }
    throw new SmallFileError("unreadable", (error as Error).message, { cause: error });
  }
  if (!info.isFile) {
    throw new SmallFileError("not-a-file", `it is ${kindOfEntry(info)}, not a regular file`);
  }
  if (info.size > maxBytes) {
    throw new SmallFileError("too-large", `${info.size} bytes, more than ${maxBytes}`);
  }
  return info.size;
}

/**
 * Reads a small regular file whole. The path is checked before it is
 * opened (a FIFO would block the open itself), the opened handle is checked
 * again (the entry may have been replaced meanwhile), and no more than
 * `maxBytes` are read whatever the file grows to.
 *
 * @param path the file
 * @param maxBytes the cap
 * @returns its bytes
 * @throws {SmallFileError} when it is missing, not a regular file, larger than the cap or unreadable
 */
export async function readSmallFile(path: string | URL, maxBytes: number): Promise<Uint8Array> {
  await checkSmallFile(path, maxBytes);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new SmallFileError("missing", "it does not exist", { cause: error });
    }
    throw new SmallFileError("unreadable", (error as Error).message, { cause: error });
  }
  try {
    const info = await file.stat();
    if (!info.isFile) {
      throw new SmallFileError("not-a-file", `it is ${kindOfEntry(info)}, not a regular file`);
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      total += n;
      if (total > maxBytes) {
        throw new SmallFileError("too-large", `more than ${maxBytes} bytes`);
      }
      chunks.push(buffer.slice(0, n));
    }
    return concatBytes(chunks);
  } catch (error) {
    if (error instanceof SmallFileError) throw error;
    throw new SmallFileError("unreadable", (error as Error).message, { cause: error });
  } finally {
    file.close();
  }
}
