/**
 * The SMB store: each host's lock folder on an SMB share, reached with our
 * own SMB2/SMB3 client, the layers below this file:
 *
 * - `wire.ts`: pure encode and decode of headers, compounds and bodies;
 * - `crypto.ts`: key derivation, signing and sealing;
 * - `connection.ts`: socket, message ids, credits, time-outs, and every
 *   message signed or sealed once the session is set up;
 * - `session.ts`: NEGOTIATE (SMB 2.0.2 to 3.1.1), NTLMv2 logon (`ntlm.ts`),
 *   tree connect;
 * - `files.ts`: the file operations this store needs;
 * - this file: templates, connections per server and share, the LockStore.
 *
 * Templates: `smb://{0}/ResourceLocks`, `smb://fileserver:4445/{0}`,
 * `smb://fileserver/Locks/{0}` and, off Windows, `\\{0}\ResourceLocks`. The
 * first path segment is the share; the rest is the folder in it. `{0}` or
 * `{host}` stands for the host, in the server, the share or the folder.
 *
 * Every request has a time-out, every open asks only for the rights it
 * needs (reads share everything; creates and compare-and-act opens share
 * nothing, below), and calls are compound requests (open, work, close)
 * where the protocol allows.
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
 * Load this module with a dynamic `import()`: nothing of the SMB client
 * loads for the local store.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { InputError, StoreError } from "../../errors.ts";
import { seam } from "../../_seam.ts";
import type { ChangeHint, CreateOptions, LockStore, StoreEntry } from "../../store.ts";
import { fillHost, hostsRoot, parseSmbTemplate } from "../_template.ts";
import {
  type Reply,
  type Request,
  sessionLost,
  SmbConnection,
  SmbFailure,
  statusFailure,
} from "./connection.ts";
import {
  busyFailure,
  CHUNK,
  closeRequest,
  createRequest,
  deleteRequest,
  type Exclusive,
  expectSuccess,
  type Handle,
  listChain,
  missing,
  readRequest,
  RELATED_FILE_ID,
  setInfoRequest,
  SmbShare,
  writeRequests,
} from "./files.ts";
import type { NtlmCredentials } from "./ntlm.ts";
import { sleepUnless } from "../../_sleep.ts";
import {
  type EncryptSetting,
  type SessionInfo,
  setUpSession,
  type SigningSetting,
} from "./session.ts";
import {
  Access,
  Attribute,
  CreateOption,
  decodeRead,
  type DirectoryEntry,
  Disposition,
  InfoClass,
  renameInformation,
  Status,
  WireError,
} from "./wire.ts";

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
  /**
   * `auto`: every message signed whenever the server supports it (every
   * SMB2 server does), and every answer's signature checked; `required`:
   * also tell the server so, and refuse a session that cannot be signed
   * (a guest logon). `off` is for measuring what signing costs: sign only
   * when the server requires it (not offered in the config).
   * @default "auto"
   */
  signing?: "auto" | "required" | "off";
  /**
   * `auto`: encrypt when the server requires it for the session or the
   * share; `required`: always (SMB 3 with a cipher, else an error).
   * @default "auto"
   */
  encrypt?: "auto" | "required";
}

const DEFAULT_PORT = 445;
const DEFAULT_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------
// Templates

/** A template split into its parts, placeholders still in. */
interface SmbTemplate {
  server: string;
  port: number;
  share: string;
  folder: string[];
  /**
   * The folder segments holding every host's folder, when the template's
   * last folder is the host alone on a fixed server and share
   * (`smb://server/share/{0}`); absent for a server or share per host.
   */
  root?: string[];
}

/** Where one host's folder is. */
interface SmbTarget {
  server: string;
  port: number;
  share: string;
  /** Folder segments inside the share; [] for the share root. */
  folder: string[];
}

/** The template's parts (the shared parser, `../_template.ts`), the port defaulted. */
function parseTemplate(template: string, defaultPort: number): SmbTemplate {
  const parsed = parseSmbTemplate(template);
  const { server, port, share, folder } = parsed;
  const root = hostsRoot(parsed);
  return { server, port: port ?? defaultPort, share, folder, ...root ? { root } : {} };
}

function fill(part: string, host: string): string {
  return fillHost(part, host);
}

// --- versions and compare-and-act ---------------------------------------------

/** Prefix of the store's temporary files: no lock name starts so; left out of listings. */
const PRIVATE_PREFIX = ".resource-locker-";
/** Prefix of every version this store makes. */
const VERSION_PREFIX = "smb1:";
/** Prefix of the version of an entry that stayed busy: no version of a real read starts so. */
const BUSY_PREFIX = "smb-busy:";

/** A FILETIME (100 ns since 1601, little-endian, as hex) as a date. */
function fileTimeDate(hex: string): Date {
  const ticks = Buffer.from(hex, "hex").readBigUInt64LE(0);
  return new Date(Number((ticks - 116_444_736_000_000_000n) / 10_000n));
}

/** The version of an incarnation (its CreationTime) holding `data`; the bytes go in as latin1. */
function versionOf(creation: string, data: Uint8Array): string {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return `${VERSION_PREFIX}${creation}:${bytes.toString("latin1")}`;
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

/** A connection with its session and share set up. */
/** How long a wait for a change lasts at most where the server refuses to notify. */
const NO_NOTIFY_POLL_MS = 500;
/**
 * How long one CHANGE_NOTIFY is waited for at most: a server that takes it
 * but never notifies makes a waiter look this often, not every 30 s.
 */
const NOTIFY_RECHECK_MS = 10_000;

interface Link {
  share: SmbShare;
  session: SessionInfo;
}

/** Failures after which the server is known to have made nothing (a refusal, not a lost answer). */
const madeNothing = new WeakSet<object>();

/** Marks a failure as one after which nothing was made. */
function nothingMade<E extends object>(error: E): E {
  madeNothing.add(error);
  return error;
}

class SmbStore implements LockStore {
  readonly kind = "smb" as const;
  readonly #template: SmbTemplate;
  readonly #credentials: NtlmCredentials;
  readonly #history: string;
  readonly #timeoutMs: number;
  readonly #signing: SigningSetting | "off";
  readonly #encrypt: EncryptSetting;
  readonly #connections = new Map<string, Promise<Link>>();
  /** The set-up connections of #connections, to reach without an await. */
  readonly #ready = new Map<string, Link>();
  #closed = false;
  /**
   * The folders under the root of a template whose last folder is the host
   * alone on a fixed server and share (`smb://server/share/{0}`); absent for
   * a server or a share per host (`smb://{0}/…`, `smb://server/{0}`).
   */
  readonly listHosts?: () => Promise<string[]>;

  constructor(template: SmbTemplate, options: SmbStoreOptions) {
    this.#template = template;
    const root = template.root;
    if (root !== undefined) this.listHosts = () => this.#listHosts(root);
    this.#credentials = {
      username: options.username ?? "",
      password: options.password ?? "",
      domain: options.domain === "" ? undefined : options.domain,
    };
    this.#history = options.historyFolderName;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#signing = options.signing ?? "auto";
    this.#encrypt = options.encrypt ?? "auto";
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

  #key(target: SmbTarget): string {
    return [
      target.server.toLowerCase(),
      target.port,
      target.share.toLowerCase(),
      this.#credentials.domain ?? "",
      this.#credentials.username,
    ].join("\u0000");
  }

  /** The target's connection when it is set up and usable, without waiting. */
  #linked(target: SmbTarget): Link | undefined {
    const link = this.#ready.get(this.#key(target));
    return link?.share.connection.usable ? link : undefined;
  }

  /** The connection to the target's server and share, made (and set up) when there is none. */
  async #link(target: SmbTarget): Promise<Link> {
    if (this.#closed) throw new SmbFailure("the SMB store is closed");
    const key = this.#key(target);
    const existing = this.#connections.get(key);
    if (existing !== undefined) {
      const link = await existing.catch(() => undefined);
      if (link?.share.connection.usable) return link;
      if (this.#connections.get(key) === existing) {
        this.#connections.delete(key);
      }
      const again = this.#connections.get(key);
      if (again !== undefined) return await again;
    }
    const connecting = (async () => {
      const connection = new SmbConnection(
        { host: target.server, port: target.port },
        this.#timeoutMs,
      );
      try {
        connection.open();
        const session = await setUpSession(connection, {
          credentials: this.#credentials,
          sharePath: `\\\\${target.server}\\${target.share}`,
          share: target.share,
          timeoutMs: this.#timeoutMs,
          signing: this.#signing,
          encrypt: this.#encrypt,
        });
        const link = { share: new SmbShare(connection), session };
        if (!this.#closed) this.#ready.set(key, link);
        return link;
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

  /**
   * Runs `work` on the host's share; one retry on a new connection when the
   * server ended the session. A failure to connect, log on or connect the
   * share before `work` sent anything is a StoreError that says so
   * (`unchanged`): the store is as it was.
   */
  async #run<T>(
    verb: string,
    host: string,
    names: string[],
    work: (share: SmbShare, target: SmbTarget) => Promise<T>,
  ): Promise<T> {
    return await this.#runOn(verb, this.#target(host), names, work);
  }

  /** {@linkcode #run} on a target named directly (the root of every host's folder). */
  async #runOn<T>(
    verb: string,
    target: SmbTarget,
    names: string[],
    work: (share: SmbShare, target: SmbTarget) => Promise<T>,
  ): Promise<T> {
    let sent = false;
    const attempt = async () => {
      // Connected: no await before the work, so its requests go out in this
      // turn (a woken waiter's create before anything else the wake-up set off).
      const link = this.#linked(target) ?? await this.#link(target);
      sent = true;
      return await work(link.share, target);
    };
    try {
      try {
        return await attempt();
      } catch (error) {
        if (!sessionLost(error)) throw error;
        return await attempt();
      }
    } catch (error) {
      if (error instanceof StoreError || error instanceof InputError) {
        throw error;
      }
      const location = this.#url(target, ...names);
      const detail = error instanceof SmbFailure
        ? error.detail
        : error instanceof WireError
        ? `SMB server "${target.server}" sent an answer this client cannot read (${error.message})`
        : `unexpected SMB client error: ${String((error as Error)?.message)}`;
      throw new StoreError(location, `Cannot ${verb} "${location}": ${detail}`, {
        cause: error,
        unchanged: !sent || madeNothing.has(error as object),
      });
    }
  }

  /** The host's SMB server clock minus this machine's, measured when connecting. */
  async clockOffsetMs(host: string): Promise<number> {
    const target = this.#target(host);
    // Connected: the offset is the session's, known since it was set up.
    const linked = this.#closed ? undefined : this.#linked(target);
    if (linked) return linked.session.clockOffsetMs;
    return await this.#run(
      "read the clock of",
      host,
      [],
      async () => (await this.#link(target)).session.clockOffsetMs,
    );
  }

  #path(target: SmbTarget, ...names: string[]): string {
    return [...target.folder, ...names].join("\\");
  }

  /** Creates the last folder segment when the folder above it exists. */
  async #makeFolder(
    share: SmbShare,
    target: SmbTarget,
    segments: string[],
  ): Promise<void> {
    const path = segments.join("\\");
    const [made, closed] = await share.openThen({
      path,
      access: Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
      disposition: Disposition.FILE_CREATE,
      options: CreateOption.FILE_DIRECTORY_FILE,
      attributes: Attribute.DIRECTORY,
    }, (id) => [closeRequest(id)]);
    await share.closeLeft(made!, closed);
    if (made!.status === Status.OBJECT_NAME_COLLISION) {
      // There already; a file of that name is in the way, though.
      const [existing, closedToo] = await share.openThen({
        path,
        access: Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
        disposition: Disposition.FILE_OPEN,
        options: CreateOption.FILE_DIRECTORY_FILE,
      }, (id) => [closeRequest(id)]);
      await share.closeLeft(existing!, closedToo);
      if (existing!.status === Status.NOT_A_DIRECTORY) {
        throw new SmbFailure(
          `a file is in the way where folder "${
            this.#url({ ...target, folder: segments })
          }" should be (STATUS_NOT_A_DIRECTORY)`,
          existing!.status,
        );
      }
      return;
    }
    if (made!.status === Status.OBJECT_PATH_NOT_FOUND) {
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
  create(
    host: string,
    name: string,
    data: Uint8Array,
    _options?: CreateOptions,
  ): Promise<string | undefined> {
    return this.#create(host, name, data);
  }

  /**
   * The create's compound also lists the folder after the link (an open of
   * the folder unrelated to the file's, two queries, its close): still one
   * round trip.
   */
  async createAndList(
    host: string,
    name: string,
    data: Uint8Array,
    _options?: CreateOptions,
  ): Promise<{ version: string | undefined; names?: string[] }> {
    const listing: { names?: string[] } = {};
    const version = await this.#create(host, name, data, listing);
    return listing.names ? { version, names: listing.names } : { version };
  }

  /** Creates; with `listing`, the compound also lists the folder, into `listing.names`. */
  async #create(
    host: string,
    name: string,
    data: Uint8Array,
    listing?: { names?: string[] },
  ): Promise<string | undefined> {
    checkName(name);
    return await this.#run("create", host, [name], async (share, target) => {
      const path = this.#path(target, name);
      const temporary = this.#path(target, `${PRIVATE_PREFIX}${crypto.randomUUID()}.tmp`);
      const chain = [
        createRequest({
          path: temporary,
          access: Access.FILE_WRITE_DATA | Access.DELETE | Access.FILE_READ_ATTRIBUTES |
            Access.SYNCHRONIZE,
          disposition: Disposition.FILE_CREATE,
          options: CreateOption.FILE_NON_DIRECTORY_FILE,
          attributes: Attribute.NORMAL,
          share: 0,
        }),
        ...writeRequests(RELATED_FILE_ID, data, false),
        setInfoRequest(
          RELATED_FILE_ID,
          InfoClass.FileLinkInformation,
          renameInformation(path, false),
        ),
        deleteRequest(RELATED_FILE_ID),
        closeRequest(RELATED_FILE_ID),
      ];
      const send = async () => {
        const all = await this.#sendCreate(
          share,
          listing ? [...chain, ...listChain(this.#path(target), false)] : chain,
          host,
          name,
        );
        return { replies: all.slice(0, chain.length), listed: all.slice(chain.length) };
      };
      let { replies, listed } = await send();
      if (replies[0]!.status === Status.OBJECT_PATH_NOT_FOUND && target.folder.length > 0) {
        await this.#makeFolder(share, target, target.folder);
        ({ replies, listed } = await send());
      }
      if (listing && listed.length > 0) {
        // Only a hint for the caller, who lists when it is missing: never a failure here.
        const entries = await share.listedIn(listed).catch(() => undefined);
        if (Array.isArray(entries)) listing.names = this.#entryNames(entries);
      }
      const created = replies[0]!;
      // The server refused the temporary file: nothing was made.
      if (created.status !== Status.SUCCESS) throw nothingMade(statusFailure(created.status));
      const handle = share.handle(created);
      const [linked, deleted, closed] = replies.slice(-3) as [Reply, Reply, Reply];
      await share.closeLeft(created, closed);
      if (deleted.status !== Status.SUCCESS) {
        // Only clutter (no lock name matches it), but take it away.
        await share.removeIncarnation(temporary, handle.creation).catch(() => false);
      }
      if (
        linked.status === Status.OBJECT_NAME_COLLISION || linked.status === Status.DELETE_PENDING
      ) {
        await this.#refuseFolder(share, path).catch((error) => {
          throw nothingMade(error);
        });
        return undefined;
      }
      if (linked.status !== Status.SUCCESS) {
        // The temporary file is gone with its CLOSE; nothing was made.
        throw nothingMade(
          new SmbFailure(
            linked.status === Status.NOT_SUPPORTED
              ? "the share cannot make hard links (STATUS_NOT_SUPPORTED), which the SMB store " +
                "needs to create a lock file with its content at once"
              : `linking the new lock file into place failed: ${
                statusFailure(linked.status).detail
              }`,
            linked.status,
          ),
        );
      }
      const failed = replies.slice(1, -3).find((reply) => reply.status !== Status.SUCCESS);
      if (failed !== undefined) {
        // Requests after a successful CREATE run even when one of them fails
        // (only a failed CREATE stops a compound): the link made the short
        // file visible. Delete this incarnation.
        const removed = await share.removeIncarnation(path, handle.creation).catch(() => false);
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
    share: SmbShare,
    chain: Request[],
    host: string,
    name: string,
  ): Promise<Reply[]> {
    const p = seam("smb.create.before", host, name);
    if (p) await p;
    const sending = share.send(chain);
    const q = seam("smb.create.sent", host, name);
    if (q) {
      sending.catch(() => {}); // awaited below
      await q;
    }
    return await sending;
  }

  /** A create collided: fine for a file, an error for a folder of that name. */
  async #refuseFolder(share: SmbShare, path: string): Promise<void> {
    const [opened, closed] = await share.openThen({
      path,
      access: Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
      disposition: Disposition.FILE_OPEN,
      options: 0,
    }, (id) => [closeRequest(id)]);
    if (opened!.status !== Status.SUCCESS) return;
    await share.closeLeft(opened!, closed);
    if (share.handle(opened!).attributes & Attribute.DIRECTORY) {
      throw statusFailure(Status.FILE_IS_A_DIRECTORY);
    }
  }

  async #list(
    verb: string,
    host: string,
    sub: string[],
  ): Promise<string[]> {
    return await this.#run(verb, host, sub, async (share, target) => {
      return this.#entryNames(await share.listFolder(this.#path(target, ...sub)) ?? []);
    });
  }

  /**
   * A folder's entries: a folder named like a lock still counts by its name
   * (as in the local-folder store; reading it is the error). History and
   * the store's private files are no entries.
   */
  #entryNames(entries: readonly DirectoryEntry[]): string[] {
    return entries
      .filter((entry) =>
        !entry.name.startsWith(PRIVATE_PREFIX) &&
        (!(entry.attributes & Attribute.DIRECTORY) ||
          entry.name.toLowerCase() !== this.#history.toLowerCase())
      )
      .map((entry) => entry.name)
      .sort();
  }

  list(host: string): Promise<string[]> {
    return this.#list("list", host, []);
  }

  listHistory(host: string): Promise<string[]> {
    return this.#list("list the history of", host, [this.#history]);
  }

  /** The folders in the root (no placeholder left in it, so nothing to fill in). */
  async #listHosts(folder: string[]): Promise<string[]> {
    const t = this.#template;
    const root: SmbTarget = { server: t.server, port: t.port, share: t.share, folder };
    return await this.#runOn("list the hosts in", root, [], async (share, target) => {
      const entries = await share.listFolder(this.#path(target));
      if (entries === undefined) {
        throw new SmbFailure(
          "it does not exist (STATUS_OBJECT_PATH_NOT_FOUND)",
          Status.OBJECT_PATH_NOT_FOUND,
        );
      }
      return entries
        .filter((entry) =>
          (entry.attributes & Attribute.DIRECTORY) !== 0 && !entry.name.startsWith(PRIVATE_PREFIX)
        )
        .map((entry) => entry.name);
    });
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
    return await this.#run("read", host, names, async (share, target) => {
      const request = {
        path: this.#path(target, ...names),
        access: Access.FILE_READ_DATA | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
        disposition: Disposition.FILE_OPEN,
        // A link is opened itself, and refused (contentOf), never followed.
        options: CreateOption.FILE_NON_DIRECTORY_FILE | CreateOption.FILE_OPEN_REPARSE_POINT,
      };
      const [opened, read, closed] = await share.openThen(
        request,
        (id) => [readRequest(id, CHUNK, 0), closeRequest(id)],
      );
      if (missing(opened!.status)) return undefined;
      if (opened!.status === Status.SHARING_VIOLATION) return "busy";
      expectSuccess(opened!);
      await share.closeLeft(opened!, closed);
      const handle = share.handle(opened!);
      if (read!.status !== Status.SUCCESS || decodeRead(read!.message).length >= handle.size) {
        const data = await share.contentOf(handle, read!);
        return {
          data,
          version: versionOf(handle.creation, data),
          writtenAt: fileTimeDate(handle.creation),
        };
      }
      // Larger than one read: open it again and read it all through that handle.
      const [again, first] = await share.openThen(
        request,
        (id) => [readRequest(id, CHUNK, 0)],
      );
      if (missing(again!.status)) return undefined;
      if (again!.status === Status.SHARING_VIOLATION) return "busy";
      expectSuccess(again!);
      const whole = share.handle(again!);
      try {
        const data = await share.contentOf(whole, first!);
        return {
          data,
          version: versionOf(whole.creation, data),
          writtenAt: fileTimeDate(whole.creation),
        };
      } finally {
        await share.closeHandle(whole).catch(() => {});
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
      share: SmbShare,
      target: SmbTarget,
      held: Exclusive,
      closed: () => void,
    ) => Promise<T>,
  ): Promise<T | undefined> {
    checkName(name);
    // A busy entry's version, or none of ours: no incarnation is that version.
    if (!version.startsWith(VERSION_PREFIX)) return undefined;
    return await this.#run(verb, host, [name], async (share, target) => {
      const held = await share.openExclusive(this.#path(target, name), access);
      if (held === undefined) return undefined;
      let open = true;
      try {
        if (versionOf(held.handle.creation, held.data) !== version) return undefined;
        return await act(share, target, held, () => {
          open = false;
        });
      } finally {
        if (open) await share.closeHandle(held.handle).catch(() => {});
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
      Access.FILE_WRITE_DATA,
      async (share, _target, held, closed) => {
        const p = seam("smb.replace.verified", host, name);
        if (p) await p;
        const fileId = held.handle.fileId;
        const failed = (await share.send(writeRequests(fileId, data, true)))
          .find((reply) => reply.status !== Status.SUCCESS);
        if (failed !== undefined) {
          const undone = (await share.send(writeRequests(fileId, held.data, true)))
            .every((reply) => reply.status === Status.SUCCESS);
          const cause = statusFailure(failed.status);
          throw new SmbFailure(
            `${cause.detail}; ${undone ? "the old content is kept" : "the content may be damaged"}`,
            failed.status,
            { cause },
          );
        }
        const q = seam("smb.replace.written", host, name);
        if (q) await q;
        const close = await share.request(closeRequest(fileId));
        if (close.status === Status.SUCCESS) closed();
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
      Access.FILE_WRITE_DATA | Access.DELETE,
      async (share, target, held, closed) => {
        const p = seam("smb.archive.verified", host, name);
        if (p) await p;
        await this.#moveToHistory(share, target, held.handle, historyName);
        const q = seam("smb.archive.moved", host, name);
        if (q) await q;
        const replies = await share.send([
          ...writeRequests(held.handle.fileId, data, true),
          closeRequest(held.handle.fileId),
        ]);
        if (replies.at(-1)!.status === Status.SUCCESS) closed();
        const failed = replies.slice(0, -1).find((reply) => reply.status !== Status.SUCCESS);
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
  /**
   * History is there but the server will not go into it or make it: a link
   * out of the share, which the server hides. The lock stays where it is.
   */
  #historyHidden(status: number): SmbFailure {
    return new SmbFailure(
      `the ${this.#history} folder cannot be entered or made (${
        statusFailure(status).detail
      }; a link out of the share?): the lock stays`,
      status,
    );
  }

  async #moveToHistory(
    share: SmbShare,
    target: SmbTarget,
    handle: Handle,
    historyName: string,
  ): Promise<void> {
    const destination = this.#path(target, this.#history, historyName);
    let replace = false;
    let made = false;
    for (;;) {
      const reply = await share.request(
        setInfoRequest(
          handle.fileId,
          InfoClass.FileRenameInformation,
          renameInformation(destination, replace),
        ),
      );
      if (reply.status === Status.SUCCESS) return;
      if (reply.status === Status.OBJECT_PATH_NOT_FOUND && !made) {
        // The first release on this host: make History, then move the file.
        made = true;
        await this.#makeFolder(share, target, [...target.folder, this.#history]).catch((error) => {
          if (!(error instanceof SmbFailure) || error.status !== Status.OBJECT_NAME_NOT_FOUND) {
            throw error;
          }
          throw this.#historyHidden(error.status);
        });
      } else if (reply.status === Status.OBJECT_NAME_COLLISION && !replace) {
        replace = true;
      } else if (
        reply.status === Status.OBJECT_NAME_NOT_FOUND ||
        reply.status === Status.OBJECT_PATH_NOT_FOUND
      ) {
        throw this.#historyHidden(reply.status);
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
      Access.DELETE,
      async (share, _target, held, closed) => {
        const p = seam("smb.remove.verified", host, name);
        if (p) await p;
        const [deleted, close] = await share.send([
          deleteRequest(held.handle.fileId),
          closeRequest(held.handle.fileId),
        ]);
        if (close!.status === Status.SUCCESS) closed();
        expectSuccess(deleted!);
        return true;
      },
    );
    return removed ?? false;
  }

  /**
   * Resolves when the host's lock folder may have changed, after `ms`, or
   * when `signal` aborts: an SMB2 CHANGE_NOTIFY on the folder. Where the
   * server refuses it (or anything fails) it waits at most
   * {@linkcode NO_NOTIFY_POLL_MS} instead, so the caller looks again as
   * often as without notifications. A server may also take the request and
   * never answer (one that misses changes made past it): the wait ends after
   * {@linkcode NOTIFY_RECHECK_MS} at most, so the caller looks again then.
   * Never rejects: a notification is only a hint.
   */
  async waitForChange(
    host: string,
    ms: number,
    signal?: AbortSignal,
    onHint?: (hint: ChangeHint) => void,
  ): Promise<ChangeHint | void> {
    const started = Date.now();
    try {
      const target = this.#target(host);
      // Without an await when connected: the CHANGE_NOTIFY goes out before
      // the look the caller makes next.
      const link = this.#linked(target) ?? await this.#link(target);
      const outcome = await link.share.waitForChange(
        this.#path(target),
        Math.min(ms, NOTIFY_RECHECK_MS),
        signal,
        onHint && ((answer) => {
          if (Array.isArray(answer) && answer.length > 0) onHint({ removed: answer });
        }),
      );
      if (Array.isArray(outcome)) return outcome.length > 0 ? { removed: outcome } : undefined;
      if (outcome !== "refused") return;
    } catch {
      // Only a hint: wait as a poll would.
    }
    await sleepUnless(Math.min(ms - (Date.now() - started), NO_NOTIFY_POLL_MS), signal);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const connections = [...this.#connections.values()];
    this.#connections.clear();
    this.#ready.clear();
    await Promise.all(connections.map(async (connecting) => {
      const link = await connecting.catch(() => undefined);
      await link?.share.connection.close();
    }));
  }
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
 * const { openSmbStore } = await import("./store.ts");
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
  if (options.signing !== undefined && !["auto", "required", "off"].includes(options.signing)) {
    throw new InputError(`Bad SMB signing setting "${options.signing}": use "auto" or "required"`);
  }
  if (options.encrypt !== undefined && !["auto", "required"].includes(options.encrypt)) {
    throw new InputError(`Bad SMB encrypt setting "${options.encrypt}": use "auto" or "required"`);
  }
  return new SmbStore(parsed, options);
}
