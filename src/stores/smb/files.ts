/**
 * The file operations the SMB store needs, over one connected share: opens
 * with only the rights they need, compound requests (open, work, close in
 * one round trip), reads and listings of any size, and the exclusive open
 * that is the store's critical section.
 *
 * Requests are `wire.ts` bodies; the connection (`connection.ts`) numbers,
 * signs or seals them and matches the answers.
 *
 * @module
 */

import { concatBytes } from "../../_bytes.ts";
import {
  type Reply,
  type Request,
  type SmbConnection,
  SmbFailure,
  statusFailure,
  type Watch,
} from "./connection.ts";
import {
  Access,
  Command,
  CreateOption,
  type CreateRequest,
  type CreateResponse,
  decodeChangeNotify,
  decodeCreate,
  decodeQueryDirectory,
  decodeRead,
  DELETE_ON_CLOSE,
  type DirectoryEntry,
  Disposition,
  encodeChangeNotify,
  encodeClose,
  encodeCreate,
  encodeQueryDirectory,
  encodeRead,
  encodeSetInfo,
  encodeWrite,
  endOfFileInformation,
  InfoClass,
  NO_FILE_ID,
  NotifyAction,
  NotifyFilter,
  Status,
} from "./wire.ts";

/** Largest read or write in one request (SMB 2.0.2 allows 64 KiB). */
export const CHUNK = 0x10000 - 0x80;
/**
 * How long an open that another open refuses (STATUS_SHARING_VIOLATION) is
 * retried: many times the longest critical section (two round trips). The
 * waits between tries are short and jittered (1 to 16 ms), so that readers
 * that keep the file open now and then do not starve a compare-and-act.
 */
export const BUSY_WAIT_MS = 1_000;

/** The FileId of a related request that follows a CREATE: "the file just opened". */
export const RELATED_FILE_ID = NO_FILE_ID;

/** A file opened: its FileId and what the CREATE answer said. */
export type Handle = CreateResponse;

// --- requests ----------------------------------------------------------------

/** A CREATE (open) request. */
export function createRequest(request: CreateRequest): Request {
  return { command: Command.CREATE, body: encodeCreate(request) };
}

/** A CLOSE request. */
export function closeRequest(fileId: Uint8Array): Request {
  return { command: Command.CLOSE, body: encodeClose(fileId) };
}

/** A READ request of `length` bytes at `offset`. */
export function readRequest(fileId: Uint8Array, length: number, offset: number): Request {
  return { command: Command.READ, body: encodeRead(fileId, length, offset) };
}

/** A SET_INFO request of file information. */
export function setInfoRequest(fileId: Uint8Array, infoClass: number, buffer: Uint8Array): Request {
  return { command: Command.SET_INFO, body: encodeSetInfo(fileId, infoClass, buffer) };
}

/** Marks the open file for deletion when it is closed. */
export function deleteRequest(fileId: Uint8Array): Request {
  return setInfoRequest(fileId, InfoClass.FileDispositionInformation, DELETE_ON_CLOSE);
}

function queryRequest(fileId: Uint8Array): Request {
  return { command: Command.QUERY_DIRECTORY, body: encodeQueryDirectory(fileId) };
}

/**
 * WRITE requests for `data` from offset 0, then (with `setLength`) its
 * length as end of file, so that a shorter rewrite truncates.
 */
export function writeRequests(fileId: Uint8Array, data: Uint8Array, setLength: boolean): Request[] {
  const requests: Request[] = [];
  for (let offset = 0; offset < data.length; offset += CHUNK) {
    const chunk = data.subarray(offset, offset + CHUNK);
    requests.push({ command: Command.WRITE, body: encodeWrite(fileId, offset, chunk) });
  }
  if (setLength) {
    requests.push(
      setInfoRequest(fileId, InfoClass.FileEndOfFileInformation, endOfFileInformation(data.length)),
    );
  }
  return requests;
}

// --- statuses ----------------------------------------------------------------

/** Whether a status says the file or its folder is not there (or going). */
export function missing(status: number): boolean {
  return status === Status.OBJECT_NAME_NOT_FOUND ||
    status === Status.OBJECT_PATH_NOT_FOUND ||
    status === Status.NO_SUCH_FILE ||
    status === Status.DELETE_PENDING;
}

/** Throws the failure a reply's status stands for, unless it succeeded. */
export function expectSuccess(reply: Reply): void {
  if (reply.status !== Status.SUCCESS) throw statusFailure(reply.status);
}

/** The failure of a mutation refused for longer than {@linkcode BUSY_WAIT_MS}. */
export function busyFailure(): SmbFailure {
  return new SmbFailure(
    `the file stayed in use by another client for more than ${BUSY_WAIT_MS} ms ` +
      "(STATUS_SHARING_VIOLATION)",
    Status.SHARING_VIOLATION,
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Access of a compare-and-act open: read to compare, and what the act needs. */
const EXCLUSIVE_READ = Access.FILE_READ_DATA | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE;

/** A lock file opened with no sharing, its content read through that very handle. */
export interface Exclusive {
  /** The open file. */
  handle: Handle;
  /** Its content. */
  data: Uint8Array;
}

// --- the share ---------------------------------------------------------------

/** File operations on the share of one connection. */
/** FILE_ATTRIBUTE_REPARSE_POINT. */
const REPARSE_POINT = 0x400;

/** Room for the names of the changes a CHANGE_NOTIFY answer gives (more: no names, only "changed"). */
const NOTIFY_OUTPUT = 4096;

/** A CHANGE_NOTIFY on an open folder for lock files made, removed, renamed or written. */
function notifyRequest(fileId: Uint8Array): Request {
  return {
    command: Command.CHANGE_NOTIFY,
    body: encodeChangeNotify(
      fileId,
      NotifyFilter.FILE_NAME | NotifyFilter.LAST_WRITE | NotifyFilter.SIZE,
      NOTIFY_OUTPUT,
    ),
  };
}

/** Whether a CHANGE_NOTIFY's final answer says the folder changed. */
function changed(status: number): boolean {
  return status === Status.SUCCESS || status === Status.NOTIFY_ENUM_DIR;
}

/** The names a CHANGE_NOTIFY answer says were removed or renamed away; [] when it names none. */
function removedIn(reply: Reply): string[] {
  if (reply.status !== Status.SUCCESS) return [];
  try {
    return decodeChangeNotify(reply.message)
      .filter((c) =>
        c.action === NotifyAction.REMOVED || c.action === NotifyAction.RENAMED_OLD_NAME
      )
      .map((c) => c.name);
  } catch {
    return []; // only a hint: the caller looks again
  }
}

/** Largest lock or history file read, as in the folder store. */
const MAX_ENTRY_BYTES = 1 << 20;

export class SmbShare {
  /** The folder watches open now, by path: one per folder, shared by its waits. */
  readonly #folderWatches = new Map<string, FolderWatch>();
  /** The connection, its session set up and its share connected. */
  readonly connection: SmbConnection;

  /** @param connection a connection whose session and tree are set up */
  constructor(connection: SmbConnection) {
    this.connection = connection;
  }

  /** Sends requests as one compound and waits for every answer. */
  send(requests: readonly Request[]): Promise<Reply[]> {
    return this.connection.send(requests);
  }

  /** Sends one request and waits for its answer. */
  request(request: Request): Promise<Reply> {
    return this.connection.request(request);
  }

  /** What a successful CREATE answer says about the file. */
  handle(reply: Reply): Handle {
    return decodeCreate(reply.message);
  }

  /** CLOSE of an open file (nothing when the connection is gone). */
  async closeHandle(handle: Handle): Promise<void> {
    if (!this.connection.usable) return;
    await this.request(closeRequest(handle.fileId));
  }

  /**
   * Closes the file `opened` opened when the CLOSE sent for it in a compound
   * did not succeed (a server may fail the rest of a compound after an error)
   * or was not sent. Never throws.
   */
  async closeLeft(opened: Reply, closed: Reply | undefined): Promise<void> {
    if (opened.status !== Status.SUCCESS || closed?.status === Status.SUCCESS) return;
    await this.closeHandle(this.handle(opened)).catch(() => {});
  }

  /**
   * Opens `path` and runs `then` on the file in the same compound request:
   * one round trip. `then` gets the FileId to use ({@linkcode RELATED_FILE_ID}).
   * An open that another client's share mode refuses (a critical section of
   * another caller, a moment long) is retried for {@linkcode BUSY_WAIT_MS};
   * the last answer is returned, still STATUS_SHARING_VIOLATION then.
   * `settle` sees the answers of every attempt (to close what it opened).
   * @returns the CREATE's answer first, then one answer per request of `then`
   */
  async openThen(
    request: CreateRequest,
    then: (fileId: Uint8Array) => Request[],
    settle?: (replies: Reply[]) => Promise<void>,
  ): Promise<Reply[]> {
    const chain = [createRequest(request), ...then(RELATED_FILE_ID)];
    const deadline = Date.now() + BUSY_WAIT_MS;
    for (let attempt = 0;; attempt++) {
      const replies = await this.send(chain);
      await settle?.(replies);
      const left = deadline - Date.now();
      if (replies[0]!.status !== Status.SHARING_VIOLATION || left <= 0) return replies;
      await sleep(Math.min(left, 2 ** Math.min(attempt, 4) * (0.5 + Math.random())));
    }
  }

  /** Reads through an open handle from `offset` to its end of file as it was opened. */
  async readFrom(handle: Handle, offset: number): Promise<Uint8Array[]> {
    const chunks: Uint8Array[] = [];
    while (offset < handle.size) {
      const reply = await this.request(
        readRequest(handle.fileId, Math.min(CHUNK, handle.size - offset), offset),
      );
      if (reply.status === Status.END_OF_FILE) break;
      expectSuccess(reply);
      const data = decodeRead(reply.message);
      if (data.length === 0) break;
      chunks.push(data.slice());
      offset += data.length;
    }
    return chunks;
  }

  /** The whole content of an open file: the first READ's answer, and the rest when larger. */
  async contentOf(handle: Handle, first: Reply): Promise<Uint8Array> {
    if (handle.attributes & REPARSE_POINT) {
      // A link (a Windows server's symlink or junction), opened itself:
      // never followed, never read, left alone.
      throw new SmbFailure("it is a reparse point (a symbolic link or junction), not a lock file");
    }
    if (handle.size > MAX_ENTRY_BYTES) {
      // Anyone with access to the share may plant one: never read whole.
      throw new SmbFailure(
        `it is larger than 1 MiB (${handle.size} bytes): no lock file this tool reads`,
      );
    }
    if (first.status === Status.END_OF_FILE) return new Uint8Array();
    expectSuccess(first);
    const data = decodeRead(first.message);
    if (data.length === 0 || data.length >= handle.size) return data.slice();
    const rest = await this.readFrom(handle, data.length);
    return rest.length === 0 ? data.slice() : concatBytes([data, ...rest]);
  }

  /**
   * Entries of a folder, undefined when it is missing. One round trip
   * (open, two queries, close in one compound) unless the folder holds more
   * than one answer's worth of entries.
   */
  async listFolder(path: string): Promise<DirectoryEntry[] | undefined> {
    const listed = await this.listedIn(await this.send(listChain(path, true)));
    // More than two answers' worth: list again, one query at a time.
    return listed === "more" ? await this.#listFolderStepwise(listRequest(path)) : listed;
  }

  /**
   * The entries in the answers to a {@linkcode listChain}; closes what it
   * left open.
   * @returns undefined when the folder does not exist, "more" when it holds
   * more than the chain's two queries returned
   */
  async listedIn(replies: readonly Reply[]): Promise<DirectoryEntry[] | "more" | undefined> {
    const [opened, first, second, closed] = replies;
    if (missing(opened!.status)) return undefined;
    expectSuccess(opened!);
    await this.closeLeft(opened!, closed);
    const entries: DirectoryEntry[] = [];
    for (const answer of [first!, second!]) {
      if (answer.status === Status.NO_MORE_FILES) return withoutDots(entries);
      expectSuccess(answer);
      entries.push(...decodeQueryDirectory(answer.message));
    }
    return "more";
  }

  async #listFolderStepwise(request: CreateRequest): Promise<DirectoryEntry[] | undefined> {
    const reply = await this.request(createRequest(request));
    if (missing(reply.status)) return undefined;
    expectSuccess(reply);
    const handle = this.handle(reply);
    try {
      const entries: DirectoryEntry[] = [];
      for (;;) {
        const answer = await this.request(queryRequest(handle.fileId));
        if (answer.status === Status.NO_MORE_FILES) break;
        expectSuccess(answer);
        entries.push(...decodeQueryDirectory(answer.message));
      }
      return withoutDots(entries);
    } finally {
      await this.closeHandle(handle).catch(() => {});
    }
  }

  /**
   * Waits until the folder `path` may have changed (a file made, removed,
   * renamed, written or resized in it), at most `ms`, or until `signal`
   * aborts: one CHANGE_NOTIFY (MS-SMB2 2.2.35) sent in a compound with the
   * folder's open, shared by every wait on the folder at that time (one
   * open and one request however many wait). The compound is on its way
   * when this returns to the caller's first await (when the connection has
   * the credits), or was already, so a change made after a look the caller
   * starts next is not missed. Once the last wait ends by time-out or abort,
   * the request is cancelled (SMB2 CANCEL) and the folder closed, without
   * waiting for either; an answer wakes every wait and closes the folder.
   * @returns the names the server says were removed or renamed away (empty
   *   when it named none) when it said the folder changed, "refused" when it
   *   does not watch the folder (no such folder, no notifications: poll
   *   instead), "waited" on time-out or abort
   * @param onChange given the server's answer in the turn it is read,
   *   before the wait resolves and before any clean-up
   */
  waitForChange(
    path: string,
    ms: number,
    signal?: AbortSignal,
    onChange?: (outcome: FolderOutcome) => void,
  ): Promise<string[] | "refused" | "waited"> {
    if (signal?.aborted) return Promise.resolve("waited");
    const shared = this.#folderWatches.get(path) ?? this.#watchFolder(path);
    return new Promise((resolve) => {
      let over = false;
      const cleanUp = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", leave);
      };
      // The server's answer: the woken caller first, the clean-up (slow in a
      // process just woken from idle) after the request the wake-up is for.
      const wake = (outcome: FolderOutcome) => {
        if (over) return;
        over = true;
        shared.waiters.delete(wake);
        onChange?.(outcome);
        resolve(outcome);
        setTimeout(cleanUp, 0);
      };
      const leave = () => {
        if (over) return;
        over = true;
        shared.waiters.delete(wake);
        cleanUp();
        resolve("waited");
        if (shared.waiters.size > 0 || this.#folderWatches.get(path) !== shared) return;
        this.#folderWatches.delete(path);
        shared.watch.cancel();
        void shared.close();
      };
      const timer = setTimeout(leave, ms);
      signal?.addEventListener("abort", leave, { once: true });
      shared.waiters.add(wake);
    });
  }

  /** Opens `path` with a CHANGE_NOTIFY for the waits on it; its answer wakes them all. */
  #watchFolder(path: string): FolderWatch {
    const watch = this.connection.watch([
      createRequest({
        path,
        access: Access.FILE_READ_DATA | Access.SYNCHRONIZE,
        disposition: Disposition.FILE_OPEN,
        options: CreateOption.FILE_DIRECTORY_FILE,
      }),
      notifyRequest(RELATED_FILE_ID),
    ]);
    // Closed once: after the close, the server may give its FileId to
    // another open (a lock file's exclusive open), which a second CLOSE
    // (when the answer to a cancelled watch comes) would close.
    let closing: Promise<void> | undefined;
    const shared: FolderWatch = {
      watch,
      waiters: new Set(),
      close: () => closing ??= this.#closeWatched(watch.first),
    };
    this.#folderWatches.set(path, shared);
    watch.last.then(
      (reply) => changed(reply.status) ? removedIn(reply) : "refused" as const,
      () => "refused" as const,
    ).then((outcome) => {
      if (this.#folderWatches.get(path) === shared) this.#folderWatches.delete(path);
      for (const wake of [...shared.waiters]) wake(outcome);
      // After the woken waits' next requests went out: a CLOSE sent first
      // would delay them.
      setTimeout(() => void shared.close(), 0);
    });
    return shared;
  }

  /** Closes the folder a {@linkcode waitForChange} opened. Never throws. */
  async #closeWatched(first: Promise<Reply[]>): Promise<void> {
    const opened = (await first.catch(() => undefined))?.[0];
    if (opened?.status !== Status.SUCCESS) return;
    await this.closeHandle(this.handle(opened)).catch(() => {});
  }

  /**
   * Opens `path` with ShareAccess 0 and reads it through that handle, in one
   * compound request. While the handle is open nobody else can open the file
   * to read, write, rename or delete it, and the server closes the handle
   * when our connection ends: a critical section that a crash cannot leave
   * held.
   *
   * The same compound opens the path once more for its attributes only
   * (which no share mode refuses): Samba can grant an open on a file that
   * another client's delete-on-close unlinks in that very moment, and only
   * the name tells. Once our open is granted nobody else can rename or
   * delete the file, so when the path still is this file, it stays so until
   * we close it. The caller closes the handle.
   * @returns undefined when the file does not exist (any more)
   * @throws {SmbFailure} when it stays busy, or on any other failure
   */
  async openExclusive(path: string, access: number): Promise<Exclusive | undefined> {
    const [opened, read, named] = await this.openThen(
      {
        path,
        access: EXCLUSIVE_READ | access,
        disposition: Disposition.FILE_OPEN,
        options: CreateOption.FILE_NON_DIRECTORY_FILE | CreateOption.FILE_OPEN_REPARSE_POINT,
        share: 0,
      },
      (id) => [
        readRequest(id, CHUNK, 0),
        {
          ...createRequest({
            path,
            access: Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
            disposition: Disposition.FILE_OPEN,
            options: CreateOption.FILE_NON_DIRECTORY_FILE,
          }),
          // Unrelated: Samba 4.17 on SMB 3.x panics on a CREATE related to
          // an open it has already counted (smb2_server.c,
          // "op->request_count > 0") and drops the connection.
          related: false,
        },
        closeRequest(RELATED_FILE_ID),
      ],
      // A failed first CREATE may fail the CLOSE of the second open too.
      (replies) => this.closeLeft(replies[2]!, replies[3]),
    );
    if (missing(opened!.status)) return undefined;
    if (opened!.status === Status.SHARING_VIOLATION) throw busyFailure();
    expectSuccess(opened!);
    const handle = this.handle(opened!);
    try {
      if (named!.status !== Status.SUCCESS || this.handle(named!).creation !== handle.creation) {
        // Unlinked under us (and maybe made anew since): not the entry any more.
        if (missing(named!.status) || named!.status === Status.SUCCESS) {
          await this.closeHandle(handle).catch(() => {});
          return undefined;
        }
        expectSuccess(named!);
      }
      return { handle, data: await this.contentOf(handle, read!) };
    } catch (error) {
      await this.closeHandle(handle).catch(() => {});
      throw error;
    }
  }

  /**
   * Deletes the file at `path` if it still is the incarnation created at
   * `creation` (whatever it holds), through an exclusive open.
   * @returns true when that incarnation is gone
   */
  async removeIncarnation(path: string, creation: string): Promise<boolean> {
    const held = await this.openExclusive(path, Access.DELETE);
    if (held === undefined) return true;
    let closed = false;
    try {
      if (held.handle.creation !== creation) return true;
      const [deleted, close] = await this.send([
        deleteRequest(held.handle.fileId),
        closeRequest(held.handle.fileId),
      ]);
      closed = close!.status === Status.SUCCESS;
      return deleted!.status === Status.SUCCESS;
    } finally {
      if (!closed) await this.closeHandle(held.handle).catch(() => {});
    }
  }
}

/** What a folder watch's answer tells its waits. */
type FolderOutcome = string[] | "refused";

/** One CHANGE_NOTIFY on a folder and the waits it will wake. */
interface FolderWatch {
  watch: Watch;
  waiters: Set<(outcome: FolderOutcome) => void>;
  /** Closes the folder, once however often called. Never throws. */
  close(): Promise<void>;
}

/** Opening a folder to list it. */
function listRequest(path: string): CreateRequest {
  return {
    path,
    access: Access.FILE_READ_DATA | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
    disposition: Disposition.FILE_OPEN,
    options: CreateOption.FILE_DIRECTORY_FILE,
  };
}

/**
 * Lists a folder in one compound (or at the end of one: `first` false makes
 * its CREATE unrelated to the requests before it): open, two queries,
 * close. {@linkcode SmbShare.listedIn} reads the answers.
 */
export function listChain(path: string, first: boolean): Request[] {
  return [
    { ...createRequest(listRequest(path)), ...first ? {} : { related: false } },
    queryRequest(RELATED_FILE_ID),
    queryRequest(RELATED_FILE_ID),
    closeRequest(RELATED_FILE_ID),
  ];
}

function withoutDots(entries: DirectoryEntry[]): DirectoryEntry[] {
  return entries.filter((entry) => entry.name !== "." && entry.name !== "..");
}
