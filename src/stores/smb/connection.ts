/**
 * One SMB2 connection: the TCP socket, framing, message ids, credits,
 * time-outs, and, once the session is set up, the protection of every
 * message: each request signed (or the whole frame sealed), each answer's
 * signature verified (or its frame unsealed). An answer that is not signed,
 * or badly signed, while signing is in force, or not sealed while
 * encryption is, ends the connection: nothing it says is acted on.
 *
 * What the bytes mean is `wire.ts`'s; how messages are signed and sealed is
 * `crypto.ts`'s, reached through the {@linkcode Protection} the session hands
 * over (`session.ts`). This file knows neither keys nor algorithms.
 *
 * @module
 */

import { Socket } from "node:net";
import {
  asyncIdOf,
  Command,
  encodeCancel,
  encodeCompound,
  encodeEcho,
  frame,
  frameLength,
  HeaderFlag,
  isTransform,
  readHeader,
  splitCompound,
  Status,
  statusName,
} from "./wire.ts";

// ---------------------------------------------------------------------------
// Failures

/** A failure of one SMB step; `detail` is the text after "Cannot … : ". */
export class SmbFailure extends Error {
  /** True when the server closed or reset the connection. */
  readonly closedByServer: boolean;

  /**
   * @param detail what went wrong, one line
   * @param status the NTSTATUS behind it, if any
   * @param options the cause; `closedByServer` when the server hung up
   */
  constructor(
    readonly detail: string,
    readonly status?: number,
    options?: ErrorOptions & { closedByServer?: boolean },
  ) {
    super(detail, options);
    this.name = "SmbFailure";
    this.closedByServer = options?.closedByServer ?? false;
  }
}

/** The server dropped our session or tree: a fresh connection may succeed. */
export function sessionLost(error: unknown): boolean {
  return error instanceof SmbFailure && isSessionLostStatus(error.status);
}

function isSessionLostStatus(status: number | undefined): boolean {
  return status === Status.USER_SESSION_DELETED ||
    status === Status.NETWORK_SESSION_EXPIRED ||
    status === Status.NETWORK_NAME_DELETED;
}

/** The failure an NTSTATUS of a file operation stands for, in words. */
export function statusFailure(status: number): SmbFailure {
  const name = statusName(status);
  switch (status) {
    case Status.ACCESS_DENIED:
      return new SmbFailure(
        `access denied: the share is read-only or the user lacks the permission (${name})`,
        status,
      );
    case Status.MEDIA_WRITE_PROTECTED:
      return new SmbFailure(`the share is read-only (${name})`, status);
    case Status.FILE_IS_A_DIRECTORY:
      return new SmbFailure(`it is a folder where a lock file should be (${name})`, status);
    case Status.NOT_A_DIRECTORY:
      return new SmbFailure(`a file is in the way where a folder should be (${name})`, status);
    case Status.SHARING_VIOLATION:
      return new SmbFailure(`the file is in use by another client (${name})`, status);
    case Status.USER_SESSION_DELETED:
    case Status.NETWORK_SESSION_EXPIRED:
    case Status.NETWORK_NAME_DELETED:
      return new SmbFailure(`the SMB session ended (${name})`, status);
    default:
      return new SmbFailure(`SMB error ${name}`, status);
  }
}

// ---------------------------------------------------------------------------
// Requests and answers

/** One request of a send: its command, its body and the tree it goes to. */
export interface Request {
  /** SMB2 command. */
  command: number;
  /** Body after the header (`wire.ts` encodes it). */
  body: Uint8Array;
  /** TreeId. @default the connection's tree */
  treeId?: number;
  /**
   * In a compound, whether the request is related to the one before (works
   * on the file it opened). @default true, but for the first
   */
  related?: boolean;
}

/** The final answer to one request. */
export interface Reply {
  /** NTSTATUS of the answer. */
  status: number;
  /** The whole answer message, header included (as signed). */
  message: Uint8Array;
  /** The request message as sent, header included (for the preauth hash). */
  sent: Uint8Array;
  /** The answer's SessionId. */
  sessionId: bigint;
  /** Whether the answer came sealed (encrypted). */
  sealed: boolean;
}

/**
 * How messages are protected once the session is set up: `session.ts` makes
 * it from the keys and algorithms it negotiated (with `crypto.ts`).
 */
export interface Protection {
  /** Signs a request in place (sets SMB2_FLAGS_SIGNED and the signature). */
  sign?(message: Uint8Array): void;
  /** Whether a signed answer's signature is right. */
  verify?(message: Uint8Array): boolean;
  /** Encrypts a whole compound into a TRANSFORM_HEADER message. */
  seal?(payload: Uint8Array): Uint8Array;
  /** Decrypts a TRANSFORM_HEADER message; undefined when it fails to authenticate. */
  unseal?(packet: Uint8Array): Uint8Array | undefined;
  /** What every answer must be: "signed" (or sealed), or "sealed". */
  require: "signed" | "sealed";
}

/** An answer someone waits for. */
interface Waiter {
  command: number;
  sent: Uint8Array;
  deliver(reply: Reply): void;
  /** Hears the AsyncId of an interim answer (STATUS_PENDING). */
  interim?(asyncId: bigint): void;
}

/**
 * A compound whose last request may stay pending for long (a CHANGE_NOTIFY):
 * see {@linkcode SmbConnection.watch}.
 */
export interface Watch {
  /** The answers to every request but the last, bounded by the time-out. */
  first: Promise<Reply[]>;
  /**
   * The final answer to the last request, unbounded: it comes when the
   * server completes it, or rejects when the connection fails.
   */
  last: Promise<Reply>;
  /** Sends an SMB2 CANCEL of the last request (nothing once it is answered). */
  cancel(): void;
}

/** What {@linkcode SmbConnection.watch} hooks into a send. */
interface SendHooks {
  /** Hears the MessageId of the last request once it is on its way. */
  sent?(lastId: bigint): void;
  /** Takes the last request's answers: the send then waits only for the others. */
  last?: Pick<Waiter, "deliver" | "interim">;
}

/** A send on the wire, to reject when the connection fails. */
interface Pending {
  reject(error: Error): void;
}

/** Credits asked for in every request: enough to pipeline a host's fan-out. */
const CREDITS_ASKED = 256;
/** MessageId of an unsolicited oplock break. */
const UNSOLICITED = 0xffffffffffffffffn;
/**
 * How often a connection with a watch outstanding asks the server an ECHO:
 * a silent server is found at most this plus the request time-out late.
 */
export const PROBE_MS = 3000;

// ---------------------------------------------------------------------------
// The connection

/** Where to connect. */
export interface Address {
  /** Host name or address. */
  host: string;
  /** TCP port. */
  port: number;
}

/** One TCP connection to an SMB server, carrying one session and one tree. */
export class SmbConnection {
  /** `host:port` for messages (IPv6 in brackets). */
  readonly server: string;
  readonly #address: Address;
  readonly #socket: Socket;
  readonly #timeoutMs: number;
  /** Sends waiting for their answers, to reject when the connection fails. */
  readonly #pending = new Set<Pending>();
  /** Who waits for the answer to a message id. */
  readonly #waiting = new Map<bigint, Waiter>();
  /** Pending requests of {@linkcode watch}, to reject when the connection fails. */
  readonly #watching = new Set<Pending>();
  /** While a watch is outstanding: the ECHO every {@linkcode PROBE_MS}. */
  #probe: ReturnType<typeof setInterval> | undefined;
  /** Sends waiting for credits. */
  readonly #creditWaiters: (() => void)[] = [];
  /** Bytes of a frame not complete yet. */
  #inbox: Uint8Array = new Uint8Array();
  #failure: SmbFailure | undefined;
  readonly #closed: Promise<void>;
  #nextMessageId = 0n;
  /** Credits the server granted and we have not spent. */
  #credits = 1;
  #protection: Protection | undefined;

  /** SessionId of the requests; set by the session once the server names it. */
  sessionId = 0n;
  /** TreeId of the requests that name none; set by the tree connect. */
  treeId = 0;
  /** CreditCharge of every request: 0 on SMB 2.0.2, 1 from 2.1 on. */
  creditCharge = 0;

  /**
   * @param address where the server listens
   * @param timeoutMs time limit of every request
   */
  constructor(address: Address, timeoutMs: number) {
    this.#address = address;
    this.server = address.host.includes(":")
      ? `[${address.host}]:${address.port}`
      : `${address.host}:${address.port}`;
    this.#timeoutMs = timeoutMs;
    const socket = new Socket();
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Uint8Array) => {
      try {
        // As a plain Uint8Array: a Buffer's slice() is a view, not a copy.
        this.#receive(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      } catch (error) {
        this.#fail(
          error instanceof SmbFailure ? error : new SmbFailure(
            `SMB server "${this.server}" sent an answer this client cannot read`,
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
        new SmbFailure(`SMB server "${this.server}" closed the connection`, undefined, {
          closedByServer: true,
        }),
      );
    });
    this.#closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("close", () => {
      this.#fail(
        new SmbFailure(`SMB server "${this.server}" closed the connection`, undefined, {
          closedByServer: true,
        }),
      );
    });
    socket.unref();
  }

  /** Starts connecting; requests sent meanwhile wait in the socket. */
  open(): void {
    this.#socket.connect(this.#address.port, this.#address.host);
  }

  /** Whether the connection can take requests. */
  get usable(): boolean {
    return this.#failure === undefined;
  }

  /**
   * From now on every request is signed or sealed and every answer must be
   * signed or sealed as `protection` says (none with `undefined`). Set once
   * the session's keys are known (and again when a tree asks for encryption).
   */
  protect(protection: Protection | undefined): void {
    this.#protection = protection;
  }

  #socketFailure(error: Error & { code?: string }): SmbFailure {
    const code = error.code ?? "";
    const text: Record<string, string> = {
      ECONNREFUSED: `SMB server "${this.server}" refused the connection`,
      ECONNRESET: `SMB server "${this.server}" reset the connection`,
      EPIPE: `SMB server "${this.server}" closed the connection`,
      ENOTFOUND: `SMB server "${this.server}" not found`,
      EAI_AGAIN: `SMB server "${this.server}" not found (name lookup failed)`,
      EHOSTUNREACH: `SMB server "${this.server}" is unreachable`,
      ENETUNREACH: `SMB server "${this.server}" is unreachable`,
      ETIMEDOUT: `SMB server "${this.server}" did not answer`,
    };
    return new SmbFailure(
      text[code] ?? `connection to SMB server "${this.server}" failed (${code || error.message})`,
      undefined,
      { cause: error, closedByServer: code === "ECONNRESET" || code === "EPIPE" },
    );
  }

  #fail(failure: SmbFailure): void {
    if (this.#failure !== undefined) return;
    this.#failure = failure;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const { reject } of pending) reject(failure);
    for (const { reject } of [...this.#watching.values()]) reject(failure);
    this.#watching.clear();
    this.#probing();
    this.#waiting.clear();
    for (const wake of this.#creditWaiters.splice(0)) wake();
    this.#inbox = new Uint8Array();
    this.#socket.destroy();
  }

  /** Splits what arrives into frames, frames into answers, and hands each to its waiter. */
  #receive(chunk: Uint8Array): void {
    if (this.#failure !== undefined) return;
    if (this.#inbox.length === 0) {
      this.#inbox = chunk;
    } else {
      const joined = new Uint8Array(this.#inbox.length + chunk.length);
      joined.set(this.#inbox);
      joined.set(chunk, this.#inbox.length);
      this.#inbox = joined;
    }
    for (;;) {
      const length = frameLength(this.#inbox);
      if (length === undefined || this.#inbox.length < 4 + length) break;
      // A copy: answers keep views into it after the socket's buffer is reused.
      let payload: Uint8Array = this.#inbox.slice(4, 4 + length);
      this.#inbox = this.#inbox.subarray(4 + length);
      let sealed = false;
      if (isTransform(payload)) {
        const unseal = this.#protection?.unseal;
        if (unseal === undefined) throw new Error("an encrypted answer, but no encryption");
        const plain = unseal(payload);
        if (plain === undefined) {
          throw new SmbFailure(
            `SMB server "${this.server}" sent an encrypted answer that does not decrypt: ` +
              "it was changed on the way, or the keys differ",
          );
        }
        payload = plain;
        sealed = true;
      }
      for (const message of splitCompound(payload)) {
        this.#dispatch(message, sealed);
        if (this.#failure !== undefined) return;
      }
    }
  }

  #dispatch(message: Uint8Array, sealed: boolean): void {
    const header = readHeader(message);
    if (!(header.flags & HeaderFlag.SERVER_TO_REDIR)) throw new Error("a request, not an answer");
    if (header.messageId === UNSOLICITED) return; // an oplock break nobody asked for
    this.#credits += header.credits;
    while (this.#credits > 0 && this.#creditWaiters.length > 0) this.#creditWaiters.shift()!();
    // An interim answer: the real one follows with the same id.
    if (header.status === Status.PENDING) {
      if (header.flags & HeaderFlag.ASYNC_COMMAND) {
        this.#waiting.get(header.messageId)?.interim?.(asyncIdOf(message));
      }
      return;
    }
    const waiter = this.#waiting.get(header.messageId);
    if (waiter === undefined) return;
    if (header.command !== waiter.command) throw new Error("an answer to another command");
    this.#check(message, header.flags, header.status, sealed);
    if (this.#failure !== undefined) return;
    this.#waiting.delete(header.messageId);
    waiter.deliver({
      status: header.status,
      message,
      sent: waiter.sent,
      sessionId: header.sessionId,
      sealed,
    });
  }

  /**
   * Checks an answer against the protection in force; ends the connection
   * when it fails. A session the server ended cannot be signed any more: its
   * unsigned answer only ends this connection (the store then logs on anew).
   */
  #check(message: Uint8Array, flags: number, status: number, sealed: boolean): void {
    const protection = this.#protection;
    if (protection === undefined || sealed) return;
    if (protection.require === "sealed" && !isSessionLostStatus(status)) {
      this.#fail(
        new SmbFailure(
          `SMB server "${this.server}" sent an unencrypted answer while encryption is in force`,
        ),
      );
      return;
    }
    if (flags & HeaderFlag.SIGNED) {
      if (protection.verify !== undefined && !protection.verify(message)) {
        this.#fail(
          new SmbFailure(
            `SMB server "${this.server}" sent an answer with a bad signature: ` +
              "it was changed on the way, or the keys differ",
          ),
        );
      }
      return;
    }
    if (isSessionLostStatus(status)) {
      this.#fail(statusFailure(status));
      return;
    }
    this.#fail(
      new SmbFailure(
        `SMB server "${this.server}" sent an unsigned answer while signing is in force`,
      ),
    );
  }

  /** Waits, while the connection lasts, until `count` credits are there. */
  async #takeCredits(count: number): Promise<void> {
    while (this.#credits < count && this.#failure === undefined) {
      await new Promise<void>((resolve) => this.#creditWaiters.push(resolve));
    }
    if (this.#failure !== undefined) throw this.#failure;
    this.#credits -= count;
  }

  /** Sends one request and waits, bounded, for its final answer. */
  async request(request: Request, timeoutMs = this.#timeoutMs): Promise<Reply> {
    return (await this.send([request], timeoutMs))[0]!;
  }

  /**
   * Sends requests in one compound, each after the first related to the one
   * before (MS-SMB2 3.2.4.1.4): the server runs them in order, and a request
   * that follows a CREATE works on the file it opened when its FileId is
   * `NO_FILE_ID`. Waits, bounded, for every final answer; the time-out ends
   * the connection.
   */
  send(
    requests: readonly Request[],
    timeoutMs = this.#timeoutMs,
    hooks?: SendHooks,
  ): Promise<Reply[]> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise<Reply[]>((resolve, reject) => {
      const bounded = hooks?.last === undefined ? requests.length : requests.length - 1;
      const replies: Reply[] = new Array(bounded);
      let left = bounded;
      const timer = setTimeout(() => {
        this.#fail(
          new SmbFailure(`SMB server "${this.server}" did not answer within ${timeoutMs} ms`),
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
        if (this.#pending.size === 0) this.#socket.unref();
      };
      this.#pending.add(pending);
      this.#socket.ref();
      const go = () => {
        const first = this.#nextMessageId;
        this.#nextMessageId += BigInt(requests.length);
        let sent: Uint8Array[];
        let bytes: Uint8Array;
        try {
          [bytes, sent] = this.#encode(requests, first);
        } catch (error) {
          settle();
          reject(
            new SmbFailure(`cannot build SMB request: ${(error as Error).message}`, undefined, {
              cause: error,
            }),
          );
          return;
        }
        requests.forEach((request, i) => {
          if (i === bounded) {
            this.#waiting.set(first + BigInt(i), {
              command: request.command,
              sent: sent[i]!,
              ...hooks!.last!,
            });
            return;
          }
          this.#waiting.set(first + BigInt(i), {
            command: request.command,
            sent: sent[i]!,
            deliver: (reply) => {
              replies[i] = reply;
              if (isSessionLostStatus(reply.status)) {
                // The server ended our session or tree: no more requests
                // here; the store retries once on a new connection.
                this.#fail(statusFailure(reply.status));
                return;
              }
              if (--left === 0) {
                settle();
                resolve(replies);
              }
            },
          });
        });
        this.#socket.write(bytes);
        hooks?.sent?.(first + BigInt(bounded));
        if (left === 0) {
          settle();
          resolve(replies);
        }
      };
      // At once when the credits are there (and nobody waits before us):
      // the frame is on its way when send() returns.
      if (this.#credits >= requests.length && this.#creditWaiters.length === 0) {
        this.#credits -= requests.length;
        go();
      } else {
        this.#takeCredits(requests.length).then(go, (error) => pending.reject(error as Error));
      }
    });
  }

  /**
   * Sends requests in one compound, like {@linkcode send}, whose last request
   * may stay pending as long as the server likes (a CHANGE_NOTIFY): the
   * time-out bounds only the answers to the others. The pending request does
   * not keep the process alive; the caller bounds its wait and then cancels.
   */
  watch(requests: readonly Request[]): Watch {
    let asyncId = 0n;
    let messageId: bigint | undefined;
    let answered = false;
    let cancelled = false;
    const sendCancel = () => {
      if (messageId === undefined || answered || this.#failure !== undefined) return;
      this.#write(
        encodeCancel(messageId, asyncId, this.sessionId, requests.at(-1)!.treeId ?? this.treeId),
      );
    };
    let resolveLast!: (reply: Reply) => void;
    let rejectLast!: (error: Error) => void;
    const last = new Promise<Reply>((resolve, reject) => {
      resolveLast = resolve;
      rejectLast = reject;
    });
    const waiting: Pending = {
      reject: (error) => {
        this.#watching.delete(waiting);
        this.#probing();
        rejectLast(error);
      },
    };
    this.#watching.add(waiting);
    this.#probing();
    const first = this.send(requests, this.#timeoutMs, {
      sent: (id) => {
        messageId = id;
        if (cancelled) sendCancel();
      },
      last: {
        interim: (id) => {
          asyncId = id;
        },
        deliver: (reply) => {
          answered = true;
          this.#watching.delete(waiting);
          this.#probing();
          resolveLast(reply);
        },
      },
    });
    first.catch((error: Error) => waiting.reject(error));
    if (this.#failure !== undefined) waiting.reject(this.#failure);
    return {
      first,
      last,
      cancel: () => {
        cancelled = true;
        sendCancel();
      },
    };
  }

  /**
   * Asks the server an ECHO every {@linkcode PROBE_MS} while a watch is
   * outstanding, and stops when none is. A server or network that goes
   * silent without closing the connection (a host frozen, a link cut
   * without a reset) lets the ECHO go unanswered: its time-out ends the
   * connection, so the watches on it end and their waiters look again,
   * instead of sleeping through a release until their next re-arm.
   */
  #probing(): void {
    if (this.#watching.size > 0 && this.#failure === undefined) {
      if (this.#probe !== undefined) return;
      this.#probe = setInterval(() => {
        this.request({ command: Command.ECHO, body: encodeEcho() }).catch(() => {
          // a time-out ended the connection already; nothing else to do
        });
      }, PROBE_MS);
      // The watch does not keep the process alive, nor does its probe.
      Deno.unrefTimer(this.#probe);
    } else if (this.#probe !== undefined) {
      clearInterval(this.#probe);
      this.#probe = undefined;
    }
  }

  /** Writes requests made outside {@linkcode send} (a CANCEL): signed or sealed as in force. */
  #write(message: Uint8Array): void {
    const protection = this.#protection;
    const sealing = protection?.seal !== undefined && protection.require === "sealed";
    if (!sealing) protection?.sign?.(message);
    this.#socket.write(frame(sealing ? protection!.seal!(message) : message));
  }

  /** The frame of a compound: headers, signatures or the seal. */
  #encode(requests: readonly Request[], first: bigint): [Uint8Array, Uint8Array[]] {
    const protection = this.#protection;
    const payload = encodeCompound(requests.map((request, i) => ({
      header: {
        command: request.command,
        flags: i > 0 && request.related !== false ? HeaderFlag.RELATED_OPERATIONS : 0,
        creditCharge: request.command === Command.NEGOTIATE ? 0 : this.creditCharge,
        credits: CREDITS_ASKED,
        messageId: first + BigInt(i),
        treeId: request.treeId ?? this.treeId,
        sessionId: this.sessionId,
      },
      body: request.body,
    })));
    const messages = splitCompound(payload);
    const sealing = protection?.seal !== undefined && protection.require === "sealed";
    if (!sealing && protection?.sign !== undefined) {
      for (const message of messages) protection.sign(message);
    }
    const sent = messages.map((message) => message.slice());
    return [frame(sealing ? protection!.seal!(payload) : payload), sent];
  }

  /** Ends the connection after waiting at most 1 s for the socket to close. */
  async close(): Promise<void> {
    this.#fail(new SmbFailure("the SMB store is closed"));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#closed,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 1_000);
      }),
    ]);
    clearTimeout(timer);
    this.#socket.destroy();
  }
}
