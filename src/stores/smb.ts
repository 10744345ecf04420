/**
 * The SMB store: each host's lock folder on an SMB share, reached with the
 * userland client `@marsaud/smb2` (SMB 2.0.2 and 2.1, no signing), logging on
 * with NTLMv2 (see `_smb_ntlm.ts`).
 *
 * Templates: `smb://{0}/ResourceLocks`, `smb://fileserver:4445/{0}`,
 * `smb://fileserver/Locks/{0}` and, off Windows, `\\{0}\ResourceLocks`. The
 * first path segment is the share; the rest is the folder in it. `{0}` or
 * `{host}` stands for the host, in the server, the share or the folder.
 *
 * smb2 is used at its message level: its high-level calls have no timeouts,
 * open files with rights a "Modify" permission does not grant (WRITE_DAC),
 * deny other clients while a file is open, take interim STATUS_PENDING answers
 * for errors and cannot tell a folder from an empty file. Here every request
 * has a timeout, every open asks only for the rights it needs (reads share
 * everything; creates and compare-and-act opens share nothing, below), and
 * whatever smb2 throws from its socket handlers ends the connection and
 * rejects the waiting calls.
 *
 * Requests are encoded and answers read here, with smb2's message
 * definitions: its encoder allocates 64 KiB buffers per message, and its
 * reader knows no compound answers. Calls are compound requests (open, work,
 * close) where the protocol allows.
 *
 * How it keeps the store contract (`../store.ts`):
 * - Version: the file's CreationTime from the CREATE answer (this
 *   incarnation) and its bytes, in one opaque string. A file made again with
 *   the very same bytes within one tick of the server's clock (4 ms on Linux
 *   at HZ=250) shares the version: it is the same lock.
 * - Create: one compound writes a private `.resource-locker-*.tmp` file
 *   (opened with ShareAccess 0), hard-links it to the lock's name without
 *   replacing (SET_INFO FileLinkInformation: the exclusive create), deletes
 *   the temporary name and closes. The server runs the whole compound once
 *   it has it, also if we die after sending it: a lock file is never seen
 *   empty or half written. (A CREATE of the lock's name itself is not
 *   atomic on Samba: it makes the file before it records the share mode.)
 *   Needs a share that makes hard links (NTFS; Samba on Linux file systems).
 * - Replace, archive, remove: open the file with ShareAccess 0 and READ it
 *   through that handle (one compound), compare with the version named; if
 *   it differs or is gone, CLOSE and do nothing; else act on that handle:
 *   WRITE + end of file (replace), rename into History then write the final
 *   content (archive), delete disposition (remove), then CLOSE. While the
 *   handle is open nobody else can open the file, and the server closes it
 *   when our connection ends: a critical section that survives our crash.
 *   The same compound checks that the name still is this file (Samba can
 *   grant an open on a file being deleted that moment).
 * - Opens refused by such a section (STATUS_SHARING_VIOLATION) are retried
 *   for a second. A read still refused then returns the lock as unreadable
 *   (empty) with a version no mutation accepts (see `read` below); a mutation
 *   still refused is a StoreError.
 * - Round trips: create 1, list 1, read 1, remove 2, replace 3, archive 3:
 *   six for a Host lock and its release, as before.
 * - PowerShell's original acts by name with ordinary opens: against it the
 *   original's guarantees hold, not these, and its opens may meet a sharing
 *   violation during one of our critical sections.
 *
 * Load this module with a dynamic `import()`: nothing of smb2 loads for the
 * local store.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Socket } from "node:net";
import SMB2 from "npm:@marsaud/smb2@0.18.0";
import SMB2Message from "npm:@marsaud/smb2@0.18.0/lib/tools/smb2-message.js";
import msErref from "npm:@marsaud/smb2@0.18.0/lib/tools/ms_erref.js";
import negotiateMessage from "npm:@marsaud/smb2@0.18.0/lib/messages/negotiate.js";
import sessionSetup1Message from "npm:@marsaud/smb2@0.18.0/lib/messages/session_setup_step1.js";
import sessionSetup2Message from "npm:@marsaud/smb2@0.18.0/lib/messages/session_setup_step2.js";
import treeConnectMessage from "npm:@marsaud/smb2@0.18.0/lib/messages/tree_connect.js";
import closeMessage from "npm:@marsaud/smb2@0.18.0/lib/messages/close.js";
import queryDirectoryMessage from "npm:@marsaud/smb2@0.18.0/lib/messages/query_directory.js";
import readMessage from "npm:@marsaud/smb2@0.18.0/lib/messages/read.js";
import writeMessage from "npm:@marsaud/smb2@0.18.0/lib/messages/write.js";
import setInfoMessage from "npm:@marsaud/smb2@0.18.0/lib/messages/set_info.js";
import { InputError, StoreError } from "../errors.ts";
import { seam } from "../_seam.ts";
import type { CreateOptions, LockStore, StoreEntry } from "../store.ts";
import { installNtlmV2, isNtlmV2Type1 } from "./_smb_ntlm.ts";
import { fillHost, parseSmbTemplate } from "./_template.ts";

/** Options for {@linkcode openSmbStore}. */
export interface SmbStoreOptions {
  /** User name to log on with (config or `RESOURCE_LOCKER_SMB_USERNAME`). */
  username?: string;
  /**
   * Password (config or `RESOURCE_LOCKER_SMB_PASSWORD`); never shown in
   * messages. @default ""
   */
  password?: string;
  /**
   * Logon domain (config or `RESOURCE_LOCKER_SMB_DOMAIN`).
   * @default the domain the server names
   */
  domain?: string;
  /** TCP port when the template names none. @default 445 */
  port?: number;
  /** Name of the history folder beside the lock files, e.g. "History". */
  historyFolderName: string;
  /** Time limit for connecting and for every request, in ms. @default 10000 */
  timeoutMs?: number;
}

const DEFAULT_PORT = 445;
const DEFAULT_TIMEOUT_MS = 10_000;
/** Largest read or write in one request (SMB 2.0.2 allows 64 KiB). */
const CHUNK = 0x10000 - 0x80;
/**
 * How long an open that another open refuses (STATUS_SHARING_VIOLATION) is
 * retried: many times the longest critical section (two round trips). The
 * waits between tries are short and jittered (1 to 16 ms), so that readers
 * that keep the file open now and then do not starve a compare-and-act.
 */
const BUSY_WAIT_MS = 1_000;

// NTSTATUS values the store acts on.
const STATUS_SUCCESS = 0x00000000;
const STATUS_PENDING = 0x00000103;
const STATUS_NO_MORE_FILES = 0x80000006;
const STATUS_END_OF_FILE = 0xc0000011;
const STATUS_NO_SUCH_FILE = 0xc000000f;
const STATUS_MORE_PROCESSING_REQUIRED = 0xc0000016;
const STATUS_ACCESS_DENIED = 0xc0000022;
const STATUS_OBJECT_NAME_NOT_FOUND = 0xc0000034;
const STATUS_OBJECT_NAME_COLLISION = 0xc0000035;
const STATUS_OBJECT_PATH_NOT_FOUND = 0xc000003a;
const STATUS_SHARING_VIOLATION = 0xc0000043;
const STATUS_DELETE_PENDING = 0xc0000056;
const STATUS_LOGON_FAILURE = 0xc000006d;
const STATUS_ACCOUNT_RESTRICTION = 0xc000006e;
const STATUS_PASSWORD_EXPIRED = 0xc0000071;
const STATUS_ACCOUNT_DISABLED = 0xc0000072;
const STATUS_MEDIA_WRITE_PROTECTED = 0xc00000a2;
const STATUS_FILE_IS_A_DIRECTORY = 0xc00000ba;
const STATUS_NOT_SUPPORTED = 0xc00000bb;
const STATUS_NETWORK_NAME_DELETED = 0xc00000c9;
const STATUS_BAD_NETWORK_NAME = 0xc00000cc;
const STATUS_NOT_A_DIRECTORY = 0xc0000103;
const STATUS_USER_SESSION_DELETED = 0xc0000203;
const STATUS_ACCOUNT_LOCKED_OUT = 0xc0000234;
const STATUS_NETWORK_SESSION_EXPIRED = 0xc000035c;

// Access rights, share modes, dispositions and options of SMB2 CREATE.
const FILE_READ_DATA = 0x0001; // also FILE_LIST_DIRECTORY
const FILE_WRITE_DATA = 0x0002;
const FILE_READ_ATTRIBUTES = 0x0080;
const DELETE = 0x00010000;
const SYNCHRONIZE = 0x00100000;
const FILE_SHARE_ALL = 0x7; // read, write, delete
const FILE_OPEN = 1;
const FILE_CREATE = 2;
const FILE_DIRECTORY_FILE = 0x01;
const FILE_NON_DIRECTORY_FILE = 0x40;
const FILE_ATTRIBUTE_DIRECTORY = 0x10;
const FILE_ATTRIBUTE_NORMAL = 0x80;
const SIGNING_REQUIRED = 0x2;

// ---------------------------------------------------------------------------
// Templates

/** A template split into its parts, placeholders still in. */
interface SmbTemplate {
  server: string;
  port: number;
  share: string;
  folder: string[];
}

/** Where one host's folder is. */
interface SmbTarget {
  server: string;
  port: number;
  share: string;
  /** Folder segments inside the share; [] for the share root. */
  folder: string[];
}

/** The template's parts (the shared parser, `_template.ts`), the port defaulted. */
function parseTemplate(template: string, defaultPort: number): SmbTemplate {
  const { server, port, share, folder } = parseSmbTemplate(template);
  return { server, port: port ?? defaultPort, share, folder };
}

function fill(part: string, host: string): string {
  return fillHost(part, host);
}

// ---------------------------------------------------------------------------
// smb2's message layer, typed as far as it is used here

/** One field of an smb2 message structure: name, byte length or name of the length field, default. */
type Smb2Field = [key: string, length: number | string, defaultValue?: unknown];

interface Smb2Message {
  getHeaders(): Record<string, unknown>;
  getResponse(): Record<string, Buffer>;
  parseBuffer(bytes: Buffer): void;
  headers: Record<string, unknown>;
  request: Record<string, unknown>;
  structure: { request: Smb2Field[] };
}

interface Smb2MessageModule {
  generate(client: Smb2Client, params?: unknown): Smb2Message;
  onSuccess?(client: Smb2Client, response: Smb2Message): void;
  parseResponse?(response: Smb2Message): unknown;
}

/** The fields of an smb2 connection object that its messages read and write. */
interface Smb2Client {
  socket: Socket;
  messageId: number;
  SessionId: unknown;
  TreeId: unknown;
  ProcessId: Buffer;
}

interface DirectoryEntry {
  Filename: string;
  FileAttributes: number;
}

const Smb2Connection = SMB2 as unknown as new (options: {
  share: string;
  port: number;
  username: string;
  password: string;
  domain: string | undefined;
  autoCloseTimeout: number;
}) => Smb2Client;
const Message = SMB2Message as unknown as new (
  options?: { headers: Record<string, unknown>; request: Record<string, unknown> },
) => Smb2Message;
const messages = {
  negotiate: negotiateMessage as Smb2MessageModule,
  sessionSetup1: sessionSetup1Message as Smb2MessageModule,
  sessionSetup2: sessionSetup2Message as Smb2MessageModule,
  treeConnect: treeConnectMessage as Smb2MessageModule,
  close: closeMessage as Smb2MessageModule,
  queryDirectory: queryDirectoryMessage as Smb2MessageModule,
  read: readMessage as Smb2MessageModule,
  write: writeMessage as Smb2MessageModule,
  setInfo: setInfoMessage as Smb2MessageModule,
};

// ---------------------------------------------------------------------------
// Encoding: smb2's own encoder allocates two or three 64 KiB buffers per
// message, which made it the client's largest cost. This one writes the same
// bytes as smb2's encoder (byte for byte) into a buffer of the right
// size, and chains messages into compound requests (MS-SMB2 3.2.4.1.4).

const SMB2_HEADER_SIZE = 64;
const FLAG_RELATED_OPERATIONS = 0x4;
const COMMAND_CODES: Record<string, number> = {
  NEGOTIATE: 0x00,
  SESSION_SETUP: 0x01,
  TREE_CONNECT: 0x03,
  CREATE: 0x05,
  CLOSE: 0x06,
  READ: 0x08,
  WRITE: 0x09,
  QUERY_DIRECTORY: 0x0e,
  SET_INFO: 0x11,
};
/** The FileId of a related request that follows a CREATE: "the file just opened". */
const RELATED_FILE_ID = Buffer.alloc(16, 0xff);

/** Writes a field as smb2 does: buffers as they are, strings as UTF-8, numbers little-endian. */
function writeField(buffer: Buffer, offset: number, value: unknown, length: number): void {
  if (Buffer.isBuffer(value)) {
    value.copy(buffer, offset, 0, Math.min(value.length, length));
  } else if (typeof value === "string") {
    Buffer.from(value).copy(buffer, offset, 0, length);
  } else {
    // smb2's own arithmetic, quirks included: numbers wider than 32 bits repeat.
    for (let i = 0; i < length; i++) buffer[offset + i] = 0xff & (Number(value) >> (i * 8));
  }
}

/** The body of a request as smb2 lays it out, variable-length fields sized from their data. */
function encodeBody(
  message: Smb2Message,
): { size: number; write(buffer: Buffer, at: number): void } {
  const request = message.request;
  const fields = message.structure.request;
  let size = 0;
  const lengths: number[] = [];
  for (const [key, length, defaultValue] of fields) {
    if (typeof length === "string") {
      request[key] = request[key] || "";
      request[length] = (request[key] as { length: number }).length;
    } else {
      request[key] = request[key] || defaultValue || 0;
    }
  }
  for (const [, length] of fields) {
    const bytes = typeof length === "string" ? (request[length] as number) : length;
    lengths.push(bytes);
    size += bytes;
  }
  return {
    size,
    write(buffer: Buffer, at: number): void {
      let offset = at;
      fields.forEach(([key], i) => {
        writeField(buffer, offset, request[key], lengths[i]!);
        offset += lengths[i]!;
      });
    },
  };
}

/** The 64-byte sync header of an SMB2 request. */
function writeHeader(
  buffer: Buffer,
  at: number,
  message: Smb2Message,
  messageId: number,
  flags: number,
  nextCommand: number,
): void {
  const headers = message.headers;
  const command = COMMAND_CODES[headers.Command as string];
  if (command === undefined) throw new Error(`unknown SMB2 command ${String(headers.Command)}`);
  buffer.writeUInt32BE(0xfe534d42, at); // ProtocolId: 0xFE 'S' 'M' 'B'
  buffer.writeUInt16LE(SMB2_HEADER_SIZE, at + 4);
  buffer.writeUInt16LE(command, at + 12);
  buffer.writeUInt16LE(126, at + 14); // credits asked for, as smb2
  buffer.writeUInt32LE(flags, at + 16);
  buffer.writeUInt32LE(nextCommand, at + 20);
  buffer.writeUInt32LE(messageId >>> 0, at + 24);
  writeField(buffer, at + 32, headers.ProcessId || 0, 4);
  writeField(buffer, at + 36, headers.TreeId || 0, 4);
  writeField(buffer, at + 40, headers.SessionId || 0, 8);
}

/**
 * One NetBIOS frame holding `chain`: a single request, or a compound whose
 * later requests are related to the one before (they share its file).
 */
function encodeFrame(chain: readonly Smb2Message[], firstMessageId: number): Buffer {
  const bodies = chain.map(encodeBody);
  const sizes = bodies.map((body, i) => {
    const size = SMB2_HEADER_SIZE + body.size;
    return i < chain.length - 1 ? (size + 7) & ~7 : size; // 8-byte aligned within a compound
  });
  const length = sizes.reduce((a, b) => a + b, 0);
  if (length > 0xffffff) throw new Error(`SMB2 request of ${length} bytes is too large`);
  const frame = Buffer.alloc(4 + length);
  frame.writeUInt32BE(length);
  let at = 4;
  chain.forEach((message, i) => {
    const next = i < chain.length - 1 ? sizes[i]! : 0;
    const flags = i > 0 ? FLAG_RELATED_OPERATIONS : 0;
    writeHeader(frame, at, message, firstMessageId + i, flags, next);
    bodies[i]!.write(frame, at + SMB2_HEADER_SIZE);
    at += sizes[i]!;
  });
  return frame;
}

const statusNames = msErref as unknown as {
  getStatus(code: number): { code: string };
};

function statusName(status: number): string {
  if (status === STATUS_NETWORK_SESSION_EXPIRED) {
    return "STATUS_NETWORK_SESSION_EXPIRED";
  }
  const name = statusNames.getStatus(status).code;
  return name === "ERROR_UNRECOGNIZED" ? `0x${status.toString(16).padStart(8, "0")}` : name;
}

function uint32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value >>> 0);
  return buffer;
}

function uint64(value: number): Buffer {
  const buffer = Buffer.alloc(8);
  buffer.writeBigUInt64LE(BigInt(value));
  return buffer;
}

// ---------------------------------------------------------------------------
// Failures, turned into StoreError by the store with the operation's words

/** A failure of one SMB step; `detail` is the text after "Cannot … : ". */
class SmbFailure extends Error {
  constructor(
    readonly detail: string,
    readonly status?: number,
    options?: ErrorOptions,
  ) {
    super(detail, options);
    this.name = "SmbFailure";
  }
}

/** The server dropped our session or tree: a fresh connection may succeed. */
function sessionLost(error: unknown): boolean {
  return error instanceof SmbFailure && (
    error.status === STATUS_USER_SESSION_DELETED ||
    error.status === STATUS_NETWORK_SESSION_EXPIRED ||
    error.status === STATUS_NETWORK_NAME_DELETED
  );
}

interface Reply {
  status: number;
  message: Smb2Message;
}

/** A request (or compound) on the wire, waiting for its answers. */
interface Pending {
  reject(error: Error): void;
}

/** A request to build when it is sent: it needs the connection's session and tree. */
type Build = (client: Smb2Client) => Smb2Message;

interface Credentials {
  username: string;
  password: string;
  domain: string | undefined;
}

/** Parameters of one SMB2 CREATE (open). */
interface OpenRequest {
  access: number;
  disposition: number;
  options: number;
  attributes?: number;
  /** ShareAccess: what other opens may do meanwhile. @default FILE_SHARE_ALL */
  share?: number;
}

interface Handle {
  fileId: Buffer;
  size: number;
  attributes: number;
  /** CreationTime (FILETIME) as 16 hex digits: names this incarnation of the file. */
  creation: string;
}

// ---------------------------------------------------------------------------
// One connection: server + port + share + user

class SmbConnection {
  readonly #client: Smb2Client;
  readonly #target: SmbTarget;
  readonly #server: string;
  readonly #share: string;
  readonly #user: string;
  readonly #timeoutMs: number;
  /** Requests on the wire, to reject when the connection fails. */
  readonly #pending = new Set<Pending>();
  /** Who waits for the answer to a message id (its low 32 bits). */
  readonly #waiting = new Map<number, (answer: Smb2Message, status: number) => void>();
  /** Bytes of a frame not complete yet. */
  #inbox: Buffer = Buffer.alloc(0);
  #failure: SmbFailure | undefined;
  #closed: Promise<void>;
  /** The server's clock minus ours, from NEGOTIATE's SystemTime. */
  clockOffsetMs = 0;

  constructor(
    target: SmbTarget,
    credentials: Credentials,
    timeoutMs: number,
  ) {
    this.#server = target.server.includes(":")
      ? `[${target.server}]:${target.port}`
      : `${target.server}:${target.port}`;
    this.#share = target.share;
    this.#user = credentials.domain
      ? `${credentials.domain}\\${credentials.username}`
      : credentials.username;
    this.#timeoutMs = timeoutMs;
    this.#target = target;
    const client = new Smb2Connection({
      share: `\\\\${target.server}\\${target.share}`,
      port: target.port,
      username: credentials.username,
      password: credentials.password,
      domain: credentials.domain,
      autoCloseTimeout: 0,
    });
    this.#client = client;
    client.messageId = 0;
    client.SessionId = 0;
    const socket = client.socket;
    socket.setNoDelay(true);
    // Answers are read here, not by smb2's parser (which handles no compound
    // answers and throws from inside the socket's data event).
    socket.removeAllListeners("data");
    socket.on("data", (chunk: Buffer) => {
      try {
        this.#receive(chunk);
      } catch (error) {
        this.#fail(
          new SmbFailure(
            `SMB server "${this.#server}" sent an answer this client cannot read`,
            undefined,
            { cause: error },
          ),
        );
      }
    });
    socket.on("error", (error: Error & { code?: string }) => {
      this.#fail(this.#socketFailure(error));
    });
    socket.on("end", () => {
      this.#fail(
        new SmbFailure(`SMB server "${this.#server}" closed the connection`),
      );
    });
    this.#closed = new Promise((resolve) => socket.once("close", resolve));
    socket.on("close", () => {
      this.#fail(
        new SmbFailure(`SMB server "${this.#server}" closed the connection`),
      );
    });
    socket.unref();
  }

  /** Whether the connection can take requests. */
  get usable(): boolean {
    return this.#failure === undefined;
  }

  #socketFailure(error: Error & { code?: string }): SmbFailure {
    const code = error.code ?? "";
    const text: Record<string, string> = {
      ECONNREFUSED: `SMB server "${this.#server}" refused the connection`,
      ECONNRESET: `SMB server "${this.#server}" reset the connection`,
      EPIPE: `SMB server "${this.#server}" closed the connection`,
      ENOTFOUND: `SMB server "${this.#server}" not found`,
      EAI_AGAIN: `SMB server "${this.#server}" not found (name lookup failed)`,
      EHOSTUNREACH: `SMB server "${this.#server}" is unreachable`,
      ENETUNREACH: `SMB server "${this.#server}" is unreachable`,
      ETIMEDOUT: `SMB server "${this.#server}" did not answer`,
    };
    return new SmbFailure(
      text[code] ??
        `connection to SMB server "${this.#server}" failed (${code || error.message})`,
      undefined,
      { cause: error },
    );
  }

  #fail(failure: SmbFailure): void {
    if (this.#failure !== undefined) return;
    this.#failure = failure;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const { reject } of pending) reject(failure);
    this.#waiting.clear();
    this.#inbox = Buffer.alloc(0);
    this.#client.socket.destroy();
  }

  /** Splits what arrives into frames, frames into answers, and hands each to its waiter. */
  #receive(chunk: Buffer): void {
    this.#inbox = this.#inbox.length === 0 ? chunk : Buffer.concat([this.#inbox, chunk]);
    while (this.#inbox.length >= 4) {
      const length = this.#inbox.readUInt32BE(0) & 0xffffff;
      if (this.#inbox.length < 4 + length) break;
      // A copy: the answers keep views into it after the socket's buffer is reused.
      const frame = Buffer.from(this.#inbox.subarray(4, 4 + length));
      this.#inbox = this.#inbox.subarray(4 + length);
      // A compound answer chains its messages with NextCommand.
      for (let offset = 0;;) {
        if (frame.length - offset < SMB2_HEADER_SIZE || frame.readUInt32BE(offset) !== 0xfe534d42) {
          throw new Error("not an SMB2 message");
        }
        const next = frame.readUInt32LE(offset + 20);
        const end = next > 0 ? offset + next : frame.length;
        if (end > frame.length || end <= offset) throw new Error("bad SMB2 compound answer");
        this.#dispatch(frame.subarray(offset, end));
        if (next === 0) break;
        offset = end;
      }
    }
  }

  #dispatch(bytes: Buffer): void {
    const answer = new Message();
    answer.parseBuffer(bytes);
    const status = bytes.readUInt32LE(8);
    const id = bytes.readUInt32LE(24);
    const waiter = this.#waiting.get(id);
    // An interim answer: the real one follows with the same id.
    if (status === STATUS_PENDING) return;
    if (waiter === undefined) return; // an answer nobody waits for (an oplock break)
    this.#waiting.delete(id);
    waiter(answer, status);
  }

  /** Sends one message and waits, bounded, for its final answer. */
  async request(build: Build, timeoutMs = this.#timeoutMs): Promise<Reply> {
    return (await this.send([build], timeoutMs))[0]!;
  }

  /**
   * Sends messages in one compound request, each after the first related to
   * the one before (MS-SMB2 3.2.4.1.4): the server runs them in order, and a
   * request that follows a CREATE works on the file it opened when its FileId
   * is {@linkcode RELATED_FILE_ID}. Waits, bounded, for every final answer.
   */
  send(chain: readonly Build[], timeoutMs = this.#timeoutMs): Promise<Reply[]> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const client = this.#client;
    let frame: Buffer;
    const first = client.messageId;
    try {
      frame = encodeFrame(chain.map((build) => build(client)), first);
    } catch (error) {
      return Promise.reject(
        new SmbFailure(
          `cannot build SMB request: ${(error as Error).message}`,
          undefined,
          { cause: error },
        ),
      );
    }
    client.messageId += chain.length;

    return new Promise<Reply[]>((resolve, reject) => {
      const replies: Reply[] = new Array(chain.length);
      let left = chain.length;
      const timer = setTimeout(() => {
        this.#fail(
          new SmbFailure(
            `SMB server "${this.#server}" did not answer within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const pending: Pending = {
        reject: (error) => {
          settle();
          reject(error);
        },
      };
      const settle = () => {
        clearTimeout(timer);
        this.#pending.delete(pending);
        if (this.#pending.size === 0) client.socket.unref();
      };
      this.#pending.add(pending);
      chain.forEach((_, i) => {
        this.#waiting.set((first + i) >>> 0, (message, status) => {
          replies[i] = { status, message };
          if (
            status === STATUS_USER_SESSION_DELETED || status === STATUS_NETWORK_SESSION_EXPIRED ||
            status === STATUS_NETWORK_NAME_DELETED
          ) {
            // The server ended our session or tree: no more requests here; the
            // store retries once on a new connection.
            this.#fail(statusFailure(status));
            return;
          }
          if (--left === 0) {
            settle();
            resolve(replies);
          }
        });
      });
      client.socket.ref();
      client.socket.write(frame);
    });
  }

  /** Negotiates, logs on (NTLMv2) and connects the share, all bounded. */
  async connect(): Promise<void> {
    const deadline = Date.now() + this.#timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const client = this.#client;
    client.socket.connect(this.#target.port, this.#target.server);

    const sentAt = Date.now();
    const negotiate = await this.request(
      (c) => {
        // smb2 sends an all-zero client GUID; Samba takes connections with
        // one GUID for one client and hands them to one process, which
        // stalls when several connect at once. Each connection is its own client.
        const message = messages.negotiate.generate(c);
        message.request.ClientGuid = Buffer.from(crypto.getRandomValues(new Uint8Array(16)));
        return message;
      },
      left(),
    );
    if (negotiate.status !== STATUS_SUCCESS) {
      throw new SmbFailure(
        negotiate.status === STATUS_NOT_SUPPORTED
          ? `SMB server "${this.#server}" speaks neither SMB 2.0.2 nor 2.1 (STATUS_NOT_SUPPORTED)`
          : `SMB server "${this.#server}" refused to negotiate (${statusName(negotiate.status)})`,
        negotiate.status,
      );
    }
    const response = negotiate.message.getResponse();
    const systemTime = response.SystemTime as Buffer | undefined;
    if (systemTime && systemTime.length === 8) {
      // FILETIME: 100 ns since 1601-01-01 UTC; compare with the middle of the round trip.
      const serverMs = Number(systemTime.readBigUInt64LE(0) / 10_000n) - 11_644_473_600_000;
      if (serverMs > 0) this.clockOffsetMs = serverMs - (sentAt + Date.now()) / 2;
    }
    const securityMode = response.SecurityMode;
    if (securityMode && (securityMode.readUInt16LE(0) & SIGNING_REQUIRED)) {
      throw new SmbFailure(
        `SMB server "${this.#server}" requires signing, which this client cannot do`,
      );
    }

    const step1 = await this.request((c) => {
      const message = messages.sessionSetup1.generate(c);
      if (!isNtlmV2Type1(message.request.Buffer)) {
        throw new Error(
          "NTLMv2 did not reach @marsaud/smb2: two copies of npm:ntlm are loaded",
        );
      }
      return message;
    }, left());
    if (step1.status !== STATUS_MORE_PROCESSING_REQUIRED) {
      throw new SmbFailure(
        `SMB server "${this.#server}" refused NTLM logon (${statusName(step1.status)})`,
        step1.status,
      );
    }
    try {
      messages.sessionSetup1.onSuccess!(client, step1.message);
    } catch (error) {
      throw new SmbFailure(
        `cannot log on to SMB server "${this.#server}": ${(error as Error).message}`,
        undefined,
        { cause: error },
      );
    }

    const step2 = await this.request(
      (c) => messages.sessionSetup2.generate(c),
      left(),
    );
    if (step2.status !== STATUS_SUCCESS) {
      const refused = [
        STATUS_LOGON_FAILURE,
        STATUS_ACCOUNT_RESTRICTION,
        STATUS_PASSWORD_EXPIRED,
        STATUS_ACCOUNT_DISABLED,
        STATUS_ACCOUNT_LOCKED_OUT,
      ].includes(step2.status);
      throw new SmbFailure(
        step2.status === STATUS_LOGON_FAILURE
          ? `logon as "${this.#user}" refused by SMB server "${this.#server}": wrong user name or password (STATUS_LOGON_FAILURE)`
          : refused
          ? `logon as "${this.#user}" refused by SMB server "${this.#server}" (${
            statusName(step2.status)
          })`
          : `logon as "${this.#user}" to SMB server "${this.#server}" failed (${
            statusName(step2.status)
          })`,
        step2.status,
      );
    }

    const tree = await this.request(
      (c) => messages.treeConnect.generate(c),
      left(),
    );
    if (tree.status !== STATUS_SUCCESS) {
      throw new SmbFailure(
        tree.status === STATUS_BAD_NETWORK_NAME
          ? `share "${this.#share}" does not exist on SMB server "${this.#server}" (STATUS_BAD_NETWORK_NAME)`
          : tree.status === STATUS_ACCESS_DENIED
          ? `access to share "${this.#share}" on SMB server "${this.#server}" denied for "${this.#user}" (STATUS_ACCESS_DENIED)`
          : `cannot connect share "${this.#share}" on SMB server "${this.#server}" (${
            statusName(tree.status)
          })`,
        tree.status,
      );
    }
    messages.treeConnect.onSuccess!(client, tree.message);
  }

  /** Ends the connection after waiting at most 1 s for the socket to close. */
  async close(): Promise<void> {
    const socket = this.#client.socket;
    this.#fail(new SmbFailure("the SMB store is closed"));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#closed,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 1_000);
      }),
    ]);
    clearTimeout(timer);
    socket.destroy();
  }

  // --- file operations -----------------------------------------------------

  /** SMB2 CREATE alone; throws SmbFailure for transport problems only. */
  async open(path: string, request: OpenRequest): Promise<Reply> {
    return await this.request(createBuild(path, request));
  }

  handle(reply: Reply): Handle {
    const response = reply.message.getResponse();
    return {
      fileId: response.FileId!,
      size: Number(response.EndofFile!.readBigUInt64LE(0)),
      attributes: response.FileAttributes!.readUInt32LE(0),
      creation: response.CreationTime!.toString("hex"),
    };
  }

  async closeHandle(handle: Handle): Promise<void> {
    if (!this.usable) return;
    await this.request(closeBuild(handle.fileId));
  }

  /**
   * Closes the file `opened` opened when the CLOSE sent for it in a compound
   * did not succeed (a server may fail the rest of a compound after an error)
   * or was not sent. Never throws.
   */
  async closeLeft(opened: Reply, closed: Reply | undefined): Promise<void> {
    if (opened.status !== STATUS_SUCCESS || closed?.status === STATUS_SUCCESS) return;
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
    path: string,
    request: OpenRequest,
    then: (fileId: Buffer) => Build[],
    settle?: (replies: Reply[]) => Promise<void>,
  ): Promise<Reply[]> {
    const chain = [createBuild(path, request), ...then(RELATED_FILE_ID)];
    const deadline = Date.now() + BUSY_WAIT_MS;
    for (let attempt = 0;; attempt++) {
      const replies = await this.send(chain);
      await settle?.(replies);
      const left = deadline - Date.now();
      if (replies[0]!.status !== STATUS_SHARING_VIOLATION || left <= 0) return replies;
      await sleep(Math.min(left, 2 ** Math.min(attempt, 4) * (0.5 + Math.random())));
    }
  }

  /** Reads through an open handle from `offset` to its end of file as it was opened. */
  async readFrom(handle: Handle, offset: number): Promise<Buffer[]> {
    const chunks: Buffer[] = [];
    while (offset < handle.size) {
      const reply = await this.request(
        readBuild(handle.fileId, Math.min(CHUNK, handle.size - offset), offset),
      );
      if (reply.status === STATUS_END_OF_FILE) break;
      expectSuccess(reply);
      const data = reply.message.getResponse().Buffer!;
      if (data.length === 0) break;
      chunks.push(Buffer.from(data));
      offset += data.length;
    }
    return chunks;
  }

  /**
   * Entries of a folder, undefined when it is missing. One round trip
   * (open, two queries, close in one compound) unless the folder holds more
   * than one answer's worth of entries.
   */
  async listFolder(path: string): Promise<DirectoryEntry[] | undefined> {
    const request = {
      access: FILE_READ_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
      disposition: FILE_OPEN,
      options: FILE_DIRECTORY_FILE,
    };
    const [opened, first, second, closed] = await this.send([
      createBuild(path, request),
      queryBuild(RELATED_FILE_ID),
      queryBuild(RELATED_FILE_ID),
      closeBuild(RELATED_FILE_ID),
    ]);
    if (missing(opened!.status)) return undefined;
    expectSuccess(opened!);
    await this.closeLeft(opened!, closed);
    const entries: DirectoryEntry[] = [];
    for (const answer of [first!, second!]) {
      if (answer.status === STATUS_NO_MORE_FILES) return withoutDots(entries);
      expectSuccess(answer);
      entries.push(...messages.queryDirectory.parseResponse!(answer.message) as DirectoryEntry[]);
    }
    // More than two answers' worth: list again, one query at a time.
    return await this.#listFolderStepwise(path, request);
  }

  async #listFolderStepwise(
    path: string,
    request: OpenRequest,
  ): Promise<DirectoryEntry[] | undefined> {
    const reply = await this.open(path, request);
    if (missing(reply.status)) return undefined;
    expectSuccess(reply);
    const handle = this.handle(reply);
    try {
      const entries: DirectoryEntry[] = [];
      for (;;) {
        const answer = await this.request(queryBuild(handle.fileId));
        if (answer.status === STATUS_NO_MORE_FILES) break;
        expectSuccess(answer);
        entries.push(...messages.queryDirectory.parseResponse!(answer.message) as DirectoryEntry[]);
      }
      return withoutDots(entries);
    } finally {
      await this.closeHandle(handle).catch(() => {});
    }
  }
}

function withoutDots(entries: DirectoryEntry[]): DirectoryEntry[] {
  return entries.filter((entry) => entry.Filename !== "." && entry.Filename !== "..");
}

// --- requests, built when sent ----------------------------------------------

function createBuild(path: string, request: OpenRequest): Build {
  const name = Buffer.from(path, "utf16le");
  return (c) =>
    new Message({
      headers: {
        Command: "CREATE",
        SessionId: c.SessionId,
        TreeId: c.TreeId,
        ProcessId: c.ProcessId,
      },
      request: {
        Buffer: name,
        DesiredAccess: request.access,
        FileAttributes: request.attributes ?? 0,
        // As buffers: the encoder puts a field's default in place of a 0.
        ShareAccess: uint32(request.share ?? FILE_SHARE_ALL),
        CreateDisposition: request.disposition,
        CreateOptions: uint32(request.options),
        NameOffset: 0x78,
        CreateContextsOffset: 0x7a + name.length,
      },
    });
}

function closeBuild(fileId: Buffer): Build {
  return (c) => messages.close.generate(c, { FileId: fileId });
}

function readBuild(fileId: Buffer, length: number, offset: number): Build {
  return (c) =>
    messages.read.generate(c, { FileId: fileId, Length: length, Offset: uint64(offset) });
}

/** WRITE requests for `data` from offset 0, then its length as end of file (a shorter rewrite truncates). */
function writeBuilds(fileId: Buffer, data: Uint8Array, setLength: boolean): Build[] {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const builds: Build[] = [];
  for (let offset = 0; offset < bytes.length; offset += CHUNK) {
    const chunk = bytes.subarray(offset, offset + CHUNK);
    builds.push((c) =>
      messages.write.generate(c, { FileId: fileId, Offset: uint64(offset), Buffer: chunk })
    );
  }
  if (setLength) {
    builds.push(setInfoBuild(fileId, "FileEndOfFileInformation", uint64(bytes.length)));
  }
  return builds;
}

function setInfoBuild(fileId: Buffer, infoClass: string, buffer: Buffer): Build {
  return (c) =>
    messages.setInfo.generate(c, { FileId: fileId, FileInfoClass: infoClass, Buffer: buffer });
}

function queryBuild(fileId: Buffer): Build {
  return (c) => messages.queryDirectory.generate(c, { FileId: fileId });
}

// --- versions and compare-and-act ---------------------------------------------

/** Prefix of the store's temporary files: no lock name starts so; left out of listings. */
const PRIVATE_PREFIX = ".resource-locker-";
/** Prefix of every version this store makes. */
const VERSION_PREFIX = "smb1:";
/** Prefix of the version of an entry that stayed busy: no version of a real read starts so. */
const BUSY_PREFIX = "smb-busy:";

/** The version of an incarnation (its CreationTime) holding `data`; the bytes go in as latin1. */
function versionOf(creation: string, data: Uint8Array): string {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return `${VERSION_PREFIX}${creation}:${bytes.toString("latin1")}`;
}

/** Access of a compare-and-act open: read to compare, and what the act needs. */
const EXCLUSIVE_READ = FILE_READ_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE;

/** A lock file opened with no sharing, its content read through that very handle. */
interface Exclusive {
  handle: Handle;
  data: Uint8Array;
  version: string;
}

function busyFailure(): SmbFailure {
  return new SmbFailure(
    `the file stayed in use by another client for more than ${BUSY_WAIT_MS} ms ` +
      "(STATUS_SHARING_VIOLATION)",
    STATUS_SHARING_VIOLATION,
  );
}

/**
 * Opens `path` with ShareAccess 0 and reads it through that handle, in one
 * compound request. While the handle is open nobody else can open the file
 * to read, write, rename or delete it, and the server closes the handle when
 * our connection ends: a critical section that a crash cannot leave held.
 *
 * The same compound opens the path once more for its attributes only (which
 * no share mode refuses): Samba can grant an open on a file that another
 * client's delete-on-close unlinks in that very moment, and only the name
 * tells. Once our open is granted nobody else can rename or delete the file,
 * so when the path still is this file, it stays so until we close it.
 * The caller closes the handle.
 * @returns undefined when the file does not exist (any more)
 * @throws {SmbFailure} when it stays busy, or on any other failure
 */
async function openExclusive(
  connection: SmbConnection,
  path: string,
  access: number,
): Promise<Exclusive | undefined> {
  const [opened, read, named] = await connection.openThen(
    path,
    {
      access: EXCLUSIVE_READ | access,
      disposition: FILE_OPEN,
      options: FILE_NON_DIRECTORY_FILE,
      share: 0,
    },
    (id) => [
      readBuild(id, CHUNK, 0),
      createBuild(path, {
        access: FILE_READ_ATTRIBUTES | SYNCHRONIZE,
        disposition: FILE_OPEN,
        options: FILE_NON_DIRECTORY_FILE,
      }),
      closeBuild(RELATED_FILE_ID),
    ],
    // A failed first CREATE may fail the CLOSE of the second open too.
    (replies) => connection.closeLeft(replies[2]!, replies[3]),
  );
  if (missing(opened!.status)) return undefined;
  if (opened!.status === STATUS_SHARING_VIOLATION) throw busyFailure();
  expectSuccess(opened!);
  const handle = connection.handle(opened!);
  try {
    if (
      named!.status !== STATUS_SUCCESS || connection.handle(named!).creation !== handle.creation
    ) {
      // Unlinked under us (and maybe made anew since): not the entry any more.
      if (missing(named!.status) || named!.status === STATUS_SUCCESS) {
        await connection.closeHandle(handle).catch(() => {});
        return undefined;
      }
      expectSuccess(named!);
    }
    const data = await contentOf(connection, handle, read!);
    return { handle, data, version: versionOf(handle.creation, data) };
  } catch (error) {
    await connection.closeHandle(handle).catch(() => {});
    throw error;
  }
}

/**
 * Deletes the file at `path` if it still is the incarnation created at
 * `creation` (whatever it holds), through an exclusive open.
 * @returns true when that incarnation is gone
 */
async function removeIncarnation(
  connection: SmbConnection,
  path: string,
  creation: string,
): Promise<boolean> {
  const held = await openExclusive(connection, path, DELETE);
  if (held === undefined) return true;
  let closed = false;
  try {
    if (held.handle.creation !== creation) return true;
    const [deleted, close] = await connection.send([
      setInfoBuild(held.handle.fileId, "FileDispositionInformation", Buffer.from([1])),
      closeBuild(held.handle.fileId),
    ]);
    closed = close!.status === STATUS_SUCCESS;
    return deleted!.status === STATUS_SUCCESS;
  } finally {
    if (!closed) await connection.closeHandle(held.handle).catch(() => {});
  }
}

/** The whole content of an open file: the first READ's answer, and the rest when larger. */
async function contentOf(
  connection: SmbConnection,
  handle: Handle,
  first: Reply,
): Promise<Uint8Array> {
  if (first.status === STATUS_END_OF_FILE) return new Uint8Array();
  expectSuccess(first);
  const data = first.message.getResponse().Buffer!;
  if (data.length === 0 || data.length >= handle.size) return new Uint8Array(data);
  const rest = await connection.readFrom(handle, data.length);
  return new Uint8Array(Buffer.concat([data, ...rest]));
}

function missing(status: number): boolean {
  return status === STATUS_OBJECT_NAME_NOT_FOUND ||
    status === STATUS_OBJECT_PATH_NOT_FOUND ||
    status === STATUS_NO_SUCH_FILE ||
    status === STATUS_DELETE_PENDING;
}

function expectSuccess(reply: Reply): void {
  if (reply.status !== STATUS_SUCCESS) throw statusFailure(reply.status);
}

function statusFailure(status: number): SmbFailure {
  const name = statusName(status);
  switch (status) {
    case STATUS_ACCESS_DENIED:
      return new SmbFailure(
        `access denied: the share is read-only or the user lacks the permission (${name})`,
        status,
      );
    case STATUS_MEDIA_WRITE_PROTECTED:
      return new SmbFailure(`the share is read-only (${name})`, status);
    case STATUS_FILE_IS_A_DIRECTORY:
      return new SmbFailure(
        `it is a folder where a lock file should be (${name})`,
        status,
      );
    case STATUS_NOT_A_DIRECTORY:
      return new SmbFailure(
        `a file is in the way where a folder should be (${name})`,
        status,
      );
    case STATUS_SHARING_VIOLATION:
      return new SmbFailure(`the file is in use by another client (${name})`, status);
    case STATUS_USER_SESSION_DELETED:
    case STATUS_NETWORK_SESSION_EXPIRED:
    case STATUS_NETWORK_NAME_DELETED:
      return new SmbFailure(`the SMB session ended (${name})`, status);
    default:
      return new SmbFailure(`SMB error ${name}`, status);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// The store

const NOT_IN_NAMES = /[\\/:*?"<>|]/;

function checkName(name: string): void {
  const control = [...name].some((char) => char.charCodeAt(0) < 0x20);
  if (
    name === "" || name === "." || name === ".." || control ||
    NOT_IN_NAMES.test(name)
  ) {
    throw new InputError(`Bad lock entry name "${name}"`);
  }
}

class SmbStore implements LockStore {
  readonly kind = "smb" as const;
  readonly #template: SmbTemplate;
  readonly #credentials: Credentials;
  readonly #history: string;
  readonly #timeoutMs: number;
  readonly #connections = new Map<string, Promise<SmbConnection>>();
  #closed = false;

  constructor(template: SmbTemplate, options: SmbStoreOptions) {
    this.#template = template;
    this.#credentials = {
      username: options.username ?? "",
      password: options.password ?? "",
      domain: options.domain === "" ? undefined : options.domain,
    };
    this.#history = options.historyFolderName;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  #target(host: string): SmbTarget {
    const t = this.#template;
    return {
      server: fill(t.server, host),
      port: t.port,
      share: fill(t.share, host),
      folder: t.folder.map((segment) => fill(segment, host)),
    };
  }

  #url(target: SmbTarget, ...names: string[]): string {
    const server = target.server.includes(":") ? `[${target.server}]` : target.server;
    const port = target.port === DEFAULT_PORT ? "" : `:${target.port}`;
    return `smb://${server}${port}/${[target.share, ...target.folder, ...names].join("/")}`;
  }

  describe(host: string): string {
    return this.#url(this.#target(host));
  }

  async #connection(target: SmbTarget): Promise<SmbConnection> {
    if (this.#closed) throw new SmbFailure("the SMB store is closed");
    const key = [
      target.server.toLowerCase(),
      target.port,
      target.share.toLowerCase(),
      this.#credentials.domain ?? "",
      this.#credentials.username,
    ].join("\u0000");
    const existing = this.#connections.get(key);
    if (existing !== undefined) {
      const connection = await existing.catch(() => undefined);
      if (connection?.usable) return connection;
      if (this.#connections.get(key) === existing) {
        this.#connections.delete(key);
      }
      const again = this.#connections.get(key);
      if (again !== undefined) return await again;
    }
    const connecting = (async () => {
      const connection = new SmbConnection(
        target,
        this.#credentials,
        this.#timeoutMs,
      );
      try {
        await connection.connect();
        return connection;
      } catch (error) {
        await connection.close();
        throw error;
      }
    })();
    this.#connections.set(key, connecting);
    connecting.catch(() => {
      if (this.#connections.get(key) === connecting) {
        this.#connections.delete(key);
      }
    });
    return await connecting;
  }

  /** Runs `work` on the host's connection; one retry when the session ended. */
  async #run<T>(
    verb: string,
    host: string,
    names: string[],
    work: (connection: SmbConnection, target: SmbTarget) => Promise<T>,
  ): Promise<T> {
    const target = this.#target(host);
    try {
      try {
        return await work(await this.#connection(target), target);
      } catch (error) {
        if (!sessionLost(error)) throw error;
        return await work(await this.#connection(target), target);
      }
    } catch (error) {
      if (error instanceof StoreError || error instanceof InputError) {
        throw error;
      }
      const location = this.#url(target, ...names);
      const detail = error instanceof SmbFailure
        ? error.detail
        : `unexpected SMB client error: ${String((error as Error)?.message)}`;
      throw new StoreError(location, `Cannot ${verb} "${location}": ${detail}`, {
        cause: error,
      });
    }
  }

  /** The host's SMB server clock minus this machine's, measured when connecting. */
  async clockOffsetMs(host: string): Promise<number> {
    const target = this.#target(host);
    return await this.#run(
      "read the clock of",
      host,
      [],
      async () => (await this.#connection(target)).clockOffsetMs,
    );
  }

  #path(target: SmbTarget, ...names: string[]): string {
    return [...target.folder, ...names].join("\\");
  }

  /** Creates the last folder segment when the folder above it exists. */
  async #makeFolder(
    connection: SmbConnection,
    target: SmbTarget,
    segments: string[],
  ): Promise<void> {
    const path = segments.join("\\");
    const [made, closed] = await connection.openThen(path, {
      access: FILE_READ_ATTRIBUTES | SYNCHRONIZE,
      disposition: FILE_CREATE,
      options: FILE_DIRECTORY_FILE,
      attributes: FILE_ATTRIBUTE_DIRECTORY,
    }, (id) => [closeBuild(id)]);
    await connection.closeLeft(made!, closed);
    if (made!.status === STATUS_OBJECT_NAME_COLLISION) {
      // There already; a file of that name is in the way, though.
      const [existing, closedToo] = await connection.openThen(path, {
        access: FILE_READ_ATTRIBUTES | SYNCHRONIZE,
        disposition: FILE_OPEN,
        options: FILE_DIRECTORY_FILE,
      }, (id) => [closeBuild(id)]);
      await connection.closeLeft(existing!, closedToo);
      if (existing!.status === STATUS_NOT_A_DIRECTORY) {
        throw new SmbFailure(
          `a file is in the way where folder "${
            this.#url({ ...target, folder: segments })
          }" should be (STATUS_NOT_A_DIRECTORY)`,
          existing!.status,
        );
      }
      return;
    }
    if (made!.status === STATUS_OBJECT_PATH_NOT_FOUND) {
      const parent = this.#url({ ...target, folder: segments.slice(0, -1) });
      throw new SmbFailure(
        `folder "${parent}" does not exist (STATUS_OBJECT_PATH_NOT_FOUND)`,
        made!.status,
      );
    }
    expectSuccess(made!);
  }

  /**
   * One round trip, one compound: CREATE a private temporary file (no
   * sharing), WRITE the content, SET_INFO FileLinkInformation to the lock's
   * name without replacing (a hard link: the name appears with the whole
   * content, or the link fails because the name exists), mark the temporary
   * name for deletion, CLOSE. The server runs the whole compound once it has
   * it, also if we die after sending it.
   *
   * Not CREATE on the lock's name itself: Samba makes the file before it
   * records the open's share mode, and a reader in that moment sees it empty
   * (and the CREATE then fails, leaving the empty file behind).
   */
  async create(
    host: string,
    name: string,
    data: Uint8Array,
    _options?: CreateOptions,
  ): Promise<string | undefined> {
    checkName(name);
    return await this.#run("create", host, [name], async (connection, target) => {
      const path = this.#path(target, name);
      const temporary = this.#path(target, `${PRIVATE_PREFIX}${crypto.randomUUID()}.tmp`);
      const chain = [
        createBuild(temporary, {
          access: FILE_WRITE_DATA | DELETE | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
          disposition: FILE_CREATE,
          options: FILE_NON_DIRECTORY_FILE,
          attributes: FILE_ATTRIBUTE_NORMAL,
          share: 0,
        }),
        ...writeBuilds(RELATED_FILE_ID, data, false),
        setInfoBuild(RELATED_FILE_ID, "FileLinkInformation", renameInformation(path, false)),
        setInfoBuild(RELATED_FILE_ID, "FileDispositionInformation", Buffer.from([1])),
        closeBuild(RELATED_FILE_ID),
      ];
      let replies = await this.#sendCreate(connection, chain, host, name);
      if (replies[0]!.status === STATUS_OBJECT_PATH_NOT_FOUND && target.folder.length > 0) {
        await this.#makeFolder(connection, target, target.folder);
        replies = await this.#sendCreate(connection, chain, host, name);
      }
      const created = replies[0]!;
      expectSuccess(created);
      const handle = connection.handle(created);
      const [linked, deleted, closed] = replies.slice(-3) as [Reply, Reply, Reply];
      await connection.closeLeft(created, closed);
      if (deleted.status !== STATUS_SUCCESS) {
        // Only clutter (no lock name matches it), but take it away.
        await removeIncarnation(connection, temporary, handle.creation).catch(() => false);
      }
      if (
        linked.status === STATUS_OBJECT_NAME_COLLISION || linked.status === STATUS_DELETE_PENDING
      ) {
        await this.#refuseFolder(connection, path);
        return undefined;
      }
      if (linked.status !== STATUS_SUCCESS) {
        // The temporary file is gone with its CLOSE; nothing was made.
        throw new SmbFailure(
          linked.status === STATUS_NOT_SUPPORTED
            ? "the share cannot make hard links (STATUS_NOT_SUPPORTED), which the SMB store " +
              "needs to create a lock file with its content at once"
            : `linking the new lock file into place failed: ${statusFailure(linked.status).detail}`,
          linked.status,
        );
      }
      const failed = replies.slice(1, -3).find((reply) => reply.status !== STATUS_SUCCESS);
      if (failed !== undefined) {
        // Requests after a successful CREATE run even when one of them fails
        // (only a failed CREATE stops a compound): the link made the short
        // file visible. Delete this incarnation.
        const removed = await removeIncarnation(connection, path, handle.creation)
          .catch(() => false);
        const cause = statusFailure(failed.status);
        throw new SmbFailure(
          `${cause.detail} while writing the new lock file; ${
            removed ? "it was deleted again" : "it may be left behind, empty or half written"
          }`,
          failed.status,
          { cause },
        );
      }
      return versionOf(handle.creation, data);
    });
  }

  /** Sends a create's compound; the seams are before it goes and once it has gone. */
  async #sendCreate(
    connection: SmbConnection,
    chain: Build[],
    host: string,
    name: string,
  ): Promise<Reply[]> {
    const p = seam("smb.create.before", host, name);
    if (p) await p;
    const sending = connection.send(chain);
    const q = seam("smb.create.sent", host, name);
    if (q) {
      sending.catch(() => {}); // awaited below
      await q;
    }
    return await sending;
  }

  /** A create collided: fine for a file, an error for a folder of that name. */
  async #refuseFolder(connection: SmbConnection, path: string): Promise<void> {
    const [opened, closed] = await connection.openThen(path, {
      access: FILE_READ_ATTRIBUTES | SYNCHRONIZE,
      disposition: FILE_OPEN,
      options: 0,
    }, (id) => [closeBuild(id)]);
    if (opened!.status !== STATUS_SUCCESS) return;
    await connection.closeLeft(opened!, closed);
    if (connection.handle(opened!).attributes & FILE_ATTRIBUTE_DIRECTORY) {
      throw statusFailure(STATUS_FILE_IS_A_DIRECTORY);
    }
  }

  async #list(
    verb: string,
    host: string,
    sub: string[],
  ): Promise<string[]> {
    return await this.#run(verb, host, sub, async (connection, target) => {
      const entries = await connection.listFolder(this.#path(target, ...sub));
      // A folder named like a lock still counts by its name (as in the
      // local-folder store); reading it is the error. History is no entry.
      return (entries ?? [])
        .filter((entry) =>
          !entry.Filename.startsWith(PRIVATE_PREFIX) &&
          (!(entry.FileAttributes & FILE_ATTRIBUTE_DIRECTORY) ||
            entry.Filename.toLowerCase() !== this.#history.toLowerCase())
        )
        .map((entry) => entry.Filename)
        .sort();
    });
  }

  list(host: string): Promise<string[]> {
    return this.#list("list", host, []);
  }

  listHistory(host: string): Promise<string[]> {
    return this.#list("list the history of", host, [this.#history]);
  }

  /**
   * One round trip (open, read, close in one compound) for a file up to 64
   * KiB. The open shares everything, but a compare-and-act holds the file
   * without sharing: then the open is retried for a second.
   * @returns the entry, or `busy` when the file stayed held
   */
  async #readEntry(
    host: string,
    names: string[],
  ): Promise<StoreEntry | "busy" | undefined> {
    names.forEach(checkName);
    return await this.#run("read", host, names, async (connection, target) => {
      const path = this.#path(target, ...names);
      const request = {
        access: FILE_READ_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
        disposition: FILE_OPEN,
        options: FILE_NON_DIRECTORY_FILE,
      };
      const [opened, read, closed] = await connection.openThen(
        path,
        request,
        (id) => [readBuild(id, CHUNK, 0), closeBuild(id)],
      );
      if (missing(opened!.status)) return undefined;
      if (opened!.status === STATUS_SHARING_VIOLATION) return "busy";
      expectSuccess(opened!);
      await connection.closeLeft(opened!, closed);
      const handle = connection.handle(opened!);
      if (
        read!.status !== STATUS_SUCCESS || read!.message.getResponse().Buffer!.length >= handle.size
      ) {
        const data = await contentOf(connection, handle, read!);
        return { data, version: versionOf(handle.creation, data) };
      }
      // Larger than one read: open it again and read it all through that handle.
      const [again, first] = await connection.openThen(
        path,
        request,
        (id) => [readBuild(id, CHUNK, 0)],
      );
      if (missing(again!.status)) return undefined;
      if (again!.status === STATUS_SHARING_VIOLATION) return "busy";
      expectSuccess(again!);
      const whole = connection.handle(again!);
      try {
        const data = await contentOf(connection, whole, first!);
        return { data, version: versionOf(whole.creation, data) };
      } finally {
        await connection.closeHandle(whole).catch(() => {});
      }
    });
  }

  /**
   * Content and version of a lock file. A file that another caller keeps
   * open without sharing for longer than the retries (a client that hangs
   * inside a compare-and-act, until its server notices) is returned as
   * unreadable: empty, with a version that no mutation accepts. The locker
   * takes such a lock for one held by an unknown holder that has not expired,
   * never breaks or releases it, and reads it again on its next attempt. (A
   * StoreError would instead fail every caller of the host meanwhile.)
   */
  async read(host: string, name: string): Promise<StoreEntry | undefined> {
    const entry = await this.#readEntry(host, [name]);
    if (entry !== "busy") return entry;
    return { data: new Uint8Array(), version: `${BUSY_PREFIX}${crypto.randomUUID()}` };
  }

  async readHistory(host: string, name: string): Promise<Uint8Array | undefined> {
    const entry = await this.#readEntry(host, [this.#history, name]);
    if (entry === "busy") {
      throw new StoreError(
        this.#url(this.#target(host), this.#history, name),
        `Cannot read "${
          this.#url(this.#target(host), this.#history, name)
        }": ${busyFailure().detail}`,
      );
    }
    return entry?.data;
  }

  /**
   * Opens the entry with no sharing and reads it (one round trip); when it
   * still is `version`, runs `act` on that handle, else closes it. The handle
   * is closed in the end whatever happens, unless `act` closed it.
   * @returns what `act` returned, or undefined when the entry is gone or changed
   */
  async #compareAndAct<T>(
    verb: string,
    host: string,
    name: string,
    version: string,
    access: number,
    act: (
      connection: SmbConnection,
      target: SmbTarget,
      held: Exclusive,
      closed: () => void,
    ) => Promise<T>,
  ): Promise<T | undefined> {
    checkName(name);
    // A busy entry's version, or none of ours: no incarnation is that version.
    if (!version.startsWith(VERSION_PREFIX)) return undefined;
    return await this.#run(verb, host, [name], async (connection, target) => {
      const held = await openExclusive(connection, this.#path(target, name), access);
      if (held === undefined) return undefined;
      let open = true;
      try {
        if (held.version !== version) return undefined;
        return await act(connection, target, held, () => {
          open = false;
        });
      } finally {
        if (open) await connection.closeHandle(held.handle).catch(() => {});
      }
    });
  }

  /**
   * Three round trips: open without sharing and read; WRITE and set the end
   * of file through that handle; CLOSE. Nobody can open the file meanwhile,
   * so nobody sees it half written; a WRITE that fails is undone (the old
   * bytes written back) before the CLOSE.
   */
  async replace(
    host: string,
    name: string,
    version: string,
    data: Uint8Array,
  ): Promise<string | undefined> {
    return await this.#compareAndAct(
      "rewrite",
      host,
      name,
      version,
      FILE_WRITE_DATA,
      async (connection, _target, held, closed) => {
        const p = seam("smb.replace.verified", host, name);
        if (p) await p;
        const fileId = held.handle.fileId;
        const failed = (await connection.send(writeBuilds(fileId, data, true)))
          .find((reply) => reply.status !== STATUS_SUCCESS);
        if (failed !== undefined) {
          const undone = (await connection.send(writeBuilds(fileId, held.data, true)))
            .every((reply) => reply.status === STATUS_SUCCESS);
          const cause = statusFailure(failed.status);
          throw new SmbFailure(
            `${cause.detail}; ${undone ? "the old content is kept" : "the content may be damaged"}`,
            failed.status,
            { cause },
          );
        }
        const q = seam("smb.replace.written", host, name);
        if (q) await q;
        const close = await connection.request(closeBuild(fileId));
        if (close.status === STATUS_SUCCESS) closed();
        return versionOf(held.handle.creation, data);
      },
    );
  }

  /**
   * Three round trips: open without sharing and read; rename that handle
   * into History (SET_INFO FileRenameInformation); write the final content
   * through it and CLOSE. The rename goes first so that nothing is written
   * into a lock that then could not be moved; a crash after it leaves the
   * lock released with its old content as the record.
   */
  async archive(
    host: string,
    name: string,
    version: string,
    historyName: string,
    data: Uint8Array,
  ): Promise<boolean> {
    checkName(historyName);
    const archived = await this.#compareAndAct(
      "archive",
      host,
      name,
      version,
      FILE_WRITE_DATA | DELETE,
      async (connection, target, held, closed) => {
        const p = seam("smb.archive.verified", host, name);
        if (p) await p;
        await this.#moveToHistory(connection, target, held.handle, historyName);
        const q = seam("smb.archive.moved", host, name);
        if (q) await q;
        const replies = await connection.send([
          ...writeBuilds(held.handle.fileId, data, true),
          closeBuild(held.handle.fileId),
        ]);
        if (replies.at(-1)!.status === STATUS_SUCCESS) closed();
        const failed = replies.slice(0, -1).find((reply) => reply.status !== STATUS_SUCCESS);
        if (failed !== undefined) {
          const cause = statusFailure(failed.status);
          throw new SmbFailure(
            `the lock was moved into History, but its final content could not be written: ${cause.detail}`,
            failed.status,
            { cause },
          );
        }
        return true;
      },
    );
    return archived ?? false;
  }

  /**
   * Renames an open file into History as `historyName`: never over another
   * entry at first (ReplaceIfExists 0); History is made when missing, and an
   * older record of the same name is replaced only when there is one (as
   * the local store's rename does), so that a release never fails for it.
   */
  async #moveToHistory(
    connection: SmbConnection,
    target: SmbTarget,
    handle: Handle,
    historyName: string,
  ): Promise<void> {
    const destination = this.#path(target, this.#history, historyName);
    let replace = false;
    let made = false;
    for (;;) {
      const reply = await connection.request(
        setInfoBuild(
          handle.fileId,
          "FileRenameInformation",
          renameInformation(destination, replace),
        ),
      );
      if (reply.status === STATUS_SUCCESS) return;
      if (reply.status === STATUS_OBJECT_PATH_NOT_FOUND && !made) {
        // The first release on this host: make History, then move the file.
        made = true;
        await this.#makeFolder(connection, target, [...target.folder, this.#history]);
      } else if (reply.status === STATUS_OBJECT_NAME_COLLISION && !replace) {
        replace = true;
      } else {
        throw statusFailure(reply.status);
      }
    }
  }

  /** Two round trips: open without sharing and read; mark for deletion and CLOSE. */
  async remove(host: string, name: string, version: string): Promise<boolean> {
    const removed = await this.#compareAndAct(
      "remove",
      host,
      name,
      version,
      DELETE,
      async (connection, _target, held, closed) => {
        const p = seam("smb.remove.verified", host, name);
        if (p) await p;
        const [deleted, close] = await connection.send([
          setInfoBuild(held.handle.fileId, "FileDispositionInformation", Buffer.from([1])),
          closeBuild(held.handle.fileId),
        ]);
        if (close!.status === STATUS_SUCCESS) closed();
        expectSuccess(deleted!);
        return true;
      },
    );
    return removed ?? false;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const connections = [...this.#connections.values()];
    this.#connections.clear();
    await Promise.all(connections.map(async (connecting) => {
      const connection = await connecting.catch(() => undefined);
      await connection?.close();
    }));
  }
}

/**
 * FILE_RENAME_INFORMATION (SMB2 type 2), also the layout of
 * FILE_LINK_INFORMATION: ReplaceIfExists, the new share-relative path.
 */
function renameInformation(path: string, replaceIfExists: boolean): Buffer {
  const name = Buffer.from(path, "utf16le");
  const buffer = Buffer.alloc(20 + name.length);
  buffer.writeUInt8(replaceIfExists ? 1 : 0, 0);
  buffer.writeUInt32LE(name.length, 16);
  name.copy(buffer, 20);
  return buffer;
}

/**
 * Opens the SMB store for a folder template. Nothing connects until the
 * first call; connections (one per server, share and user) are kept for
 * later calls until {@linkcode LockStore.close}.
 *
 * Needs `--allow-net` to the servers.
 *
 * @param template `smb://{0}/ResourceLocks`, `smb://server:port/{0}`,
 *   `\\{0}\ResourceLocks`, ...
 * @param options credentials, port, history folder name, timeout
 * @returns the store
 * @throws {InputError} for a template this store cannot use or a missing user name
 *
 * @example Opening the store on a host's ResourceLocks share
 * ```ts ignore
 * const { openSmbStore } = await import("./smb.ts");
 * const store = openSmbStore("smb://{0}/ResourceLocks", {
 *   username: "svc-locks",
 *   password: Deno.env.get("RESOURCE_LOCKER_SMB_PASSWORD") ?? "",
 *   historyFolderName: "History",
 * });
 * try {
 *   console.log(await store.list("hv01"));
 * } finally {
 *   await store.close();
 * }
 * ```
 */
export function openSmbStore(
  template: string,
  options: SmbStoreOptions,
): LockStore {
  const parsed = parseTemplate(template, options.port ?? DEFAULT_PORT);
  if (!options.username) {
    throw new InputError(
      "SMB store needs a user name: set it in the config or RESOURCE_LOCKER_SMB_USERNAME",
    );
  }
  checkName(options.historyFolderName);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(timeoutMs > 0)) {
    throw new InputError(`Bad SMB timeout ${timeoutMs} ms: must be positive`);
  }
  installNtlmV2();
  return new SmbStore(parsed, options);
}
