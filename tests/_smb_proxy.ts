/**
 * Test helper: a loopback TCP forwarder in front of smbd that reads the SMB2
 * requests going through it. Tests count the connections a client opens and
 * make a server stop answering (freeze) or vanish (cut), for everything or
 * for one share at one chosen request: "the server died right after the lock
 * file was created". It can also hold every chunk for a while, as a network
 * would (the benchmark's fan-out over a simulated network).
 *
 * The rule sees the first request of each frame: a compound request (several
 * chained in one frame) passes, freezes or is cut as a whole. An answer
 * judge can change a signed or sealed answer on its way back (a byte
 * flipped, a signature taken off), as an attacker on the network would.
 *
 * @module
 */

import { sleep } from "./_helpers.ts";

/** What the forwarder does with a request. */
/**
 * What the forwarder does with a request: pass it; cut the connection;
 * freeze the connection (nothing more either way); or pass it and hold
 * every answer of the connection from then on (`hold-answers`: the server
 * acts, the client hears nothing).
 */
export type FrameAction = "pass" | "cut" | "freeze" | "hold-answers";

/** One SMB2 request from the client, as far as the rules need it. */
export interface SmbRequestInfo {
  /** Share of the connection, once its TREE_CONNECT went through. */
  share: string | undefined;
  /** SMB2 command: 3 TREE_CONNECT, 5 CREATE, 6 CLOSE, 8 READ, 9 WRITE, 0x11 SET_INFO. */
  command: number;
  /** CREATE: the path opened, share-relative. */
  name?: string;
  /** CREATE: the create disposition (1 open, 2 create). */
  disposition?: number;
  /** SET_INFO: the information class (10 rename, 13 delete, 20 end of file). */
  infoClass?: number;
  /** MessageId of the request (undefined for an encrypted frame). */
  messageId?: bigint;
}

/** One answer frame from the server, as far as tampering needs it. */
export interface SmbAnswerInfo {
  /** SMB2 command of the frame's first message; -1 for an encrypted frame. */
  command: number;
  /** Whether the frame is encrypted (TRANSFORM_HEADER). */
  encrypted: boolean;
  /** Whether its first message carries SMB2_FLAGS_SIGNED. */
  signed: boolean;
  /** The request it answers (by MessageId; undefined for encrypted frames). */
  request: SmbRequestInfo | undefined;
}

/** What the forwarder does to an answer frame. */
export type AnswerAction = "pass" | "flip" | "unsign" | "reparse";

/** Options of {@linkcode startSmbProxy}. */
export interface SmbProxyOptions {
  /** Decides per request; requests of a cut connection never arrive. @default pass all */
  rule?: (request: SmbRequestInfo) => FrameAction;
  /**
   * Decides per answer frame: `flip` changes its last byte (inside the
   * body of its last message, which its signature or seal covers);
   * `unsign` clears SMB2_FLAGS_SIGNED and the signature of its first
   * message; `reparse` marks the file a CREATE answer opened as a reparse
   * point (a link on a Windows server), for unsigned sessions only.
   * @default pass all
   */
  answer?: (answer: SmbAnswerInfo) => AnswerAction;
  /**
   * Milliseconds each chunk waits before it goes on, in each direction, so
   * a round trip takes 2 × `delayMs` longer, as over a network. Chunks keep
   * their order, and their waits overlap: a pipelined request is not held
   * up by the one before. @default 0
   */
  delayMs?: number;
}

/** A running forwarder. */
export interface SmbProxy extends AsyncDisposable {
  /** Port to connect to instead of smbd's. */
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections open now. */
  readonly open: number;
  /** Stop forwarding in both directions; connections stay open, silent. */
  freeze(): void;
  /** Forward again after {@linkcode SmbProxy.freeze}. */
  thaw(): void;
  /** Close every connection now. */
  cut(): void;
  /** Stop listening and close everything. */
  close(): Promise<void>;
}

const SMB2_HEADER = 64;
const SMB2_FLAGS_SIGNED = 0x8;
const TREE_CONNECT = 0x03;
const CREATE = 0x05;
const SET_INFO = 0x11;

function utf16(bytes: Uint8Array, offset: number, length: number): string {
  return new TextDecoder("utf-16le").decode(bytes.subarray(offset, offset + length));
}

/** Reads what the rules need from one SMB2 message (without its 4-byte frame header). */
function describe(message: Uint8Array, share: string | undefined): SmbRequestInfo {
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const info: SmbRequestInfo = { share, command: -1 };
  if (message.length < SMB2_HEADER + 8 || view.getUint32(0) !== 0xfe534d42) return info;
  info.command = view.getUint16(12, true);
  info.messageId = view.getBigUint64(24, true);
  const body = SMB2_HEADER;
  try {
    if (info.command === TREE_CONNECT) {
      const path = utf16(message, view.getUint16(body + 4, true), view.getUint16(body + 6, true));
      info.share = path.slice(path.lastIndexOf("\\") + 1).toLowerCase();
    } else if (info.command === CREATE) {
      info.disposition = view.getUint32(body + 36, true);
      info.name = utf16(message, view.getUint16(body + 44, true), view.getUint16(body + 46, true));
    } else if (info.command === SET_INFO) {
      info.infoClass = view.getUint8(body + 3);
    }
  } catch {
    // a short message: the command is enough
  }
  return info;
}

/** Reads what an answer judge needs from one answer frame (without its 4-byte header). */
function describeAnswer(
  payload: Uint8Array,
  requests: Map<bigint, SmbRequestInfo>,
): SmbAnswerInfo {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (payload.length < SMB2_HEADER || view.getUint32(0) !== 0xfe534d42) {
    return {
      command: -1,
      encrypted: view.getUint32(0) === 0xfd534d42,
      signed: false,
      request: undefined,
    };
  }
  return {
    command: view.getUint16(12, true),
    encrypted: false,
    signed: (view.getUint32(16, true) & SMB2_FLAGS_SIGNED) !== 0,
    request: requests.get(view.getBigUint64(24, true)),
  };
}

/** Applies an answer action to a whole frame (4-byte header included), in place. */
function tamper(frame: Uint8Array, action: AnswerAction): void {
  if (action === "flip") {
    frame[frame.length - 1]! ^= 0x01;
  } else if (action === "reparse" && frame.length >= 4 + SMB2_HEADER + 60) {
    // CREATE answer body: FileAttributes at offset 56.
    frame[4 + SMB2_HEADER + 57]! |= 0x04; // FILE_ATTRIBUTE_REPARSE_POINT (0x400)
  } else if (action === "unsign" && frame.length >= 4 + SMB2_HEADER) {
    frame[4 + 16]! &= ~SMB2_FLAGS_SIGNED;
    frame.fill(0, 4 + 48, 4 + 64);
  }
}

/**
 * Starts a forwarder on a free loopback port to `127.0.0.1:targetPort`.
 *
 * @param targetPort smbd's port
 * @param options a rule that may cut or freeze a connection at a request
 * @returns the forwarder
 */
export function startSmbProxy(targetPort: number, options: SmbProxyOptions = {}): SmbProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  interface Pair {
    client: Deno.Conn;
    server: Deno.Conn;
    share: string | undefined;
    frozen: boolean;
    /** Answers of this connection are held (`hold-answers`). */
    answersHeld: boolean;
    /** Requests by MessageId, for the answers. */
    requests: Map<bigint, SmbRequestInfo>;
  }
  const pairs = new Set<Pair>();
  const pumps = new Set<Promise<void>>();
  let accepted = 0;
  let frozen = false;
  let thawed: PromiseWithResolvers<void> = Promise.withResolvers();

  function closePair(pair: Pair): void {
    if (!pairs.delete(pair)) return;
    for (const conn of [pair.client, pair.server]) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  }

  async function writeAll(to: Deno.Conn, bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.length) written += await to.write(bytes.subarray(written));
  }

  const delayMs = options.delayMs ?? 0;
  /** Per destination: chunks waiting for their time; present while a writer drains it. */
  const queues = new Map<Deno.Conn, { due: number; bytes: Uint8Array }[]>();

  /** Writes now, or queues a copy to be written after the delay, the order kept. */
  function forward(to: Deno.Conn, bytes: Uint8Array): Promise<void> {
    if (delayMs <= 0) return writeAll(to, bytes);
    const item = { due: performance.now() + delayMs, bytes: bytes.slice() };
    const queue = queues.get(to);
    if (queue !== undefined) {
      queue.push(item);
      return Promise.resolve();
    }
    const fresh = [item];
    queues.set(to, fresh);
    track((async () => {
      try {
        while (fresh.length > 0) {
          const next = fresh.shift()!;
          const wait = next.due - performance.now();
          if (wait > 0) await sleep(wait);
          await writeAll(to, next.bytes);
        }
      } catch {
        // the other side closed: the pumps end the pair
      } finally {
        queues.delete(to);
      }
    })());
    return Promise.resolve();
  }

  async function hold(pair: Pair): Promise<void> {
    while ((frozen || pair.frozen) && pairs.has(pair)) await thawed.promise;
  }

  async function holdAnswers(pair: Pair): Promise<void> {
    while (pair.answersHeld && pairs.has(pair)) await thawed.promise;
    await hold(pair);
  }

  /** Server to client: bytes as they come, or whole frames when answers are judged. */
  async function pumpBack(pair: Pair): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    const judge = options.answer;
    let pending = new Uint8Array(0);
    try {
      for (;;) {
        const n = await pair.server.read(buffer);
        if (n === null) break;
        await holdAnswers(pair);
        if (judge === undefined) {
          await forward(pair.client, buffer.subarray(0, n));
          continue;
        }
        const joined = new Uint8Array(pending.length + n);
        joined.set(pending);
        joined.set(buffer.subarray(0, n), pending.length);
        pending = joined;
        while (pending.length >= 4) {
          const length = (pending[1]! << 16) | (pending[2]! << 8) | pending[3]!;
          if (pending.length < 4 + length) break;
          const frame = pending.slice(0, 4 + length);
          pending = pending.slice(4 + length);
          tamper(frame, judge(describeAnswer(frame.subarray(4), pair.requests)));
          await forward(pair.client, frame);
        }
      }
    } catch {
      // a closed side ends the pair
    } finally {
      closePair(pair);
    }
  }

  /** Client to server: whole SMB2 messages, each judged by the rule. */
  async function pumpForth(pair: Pair): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    let pending = new Uint8Array(0);
    try {
      for (;;) {
        const n = await pair.client.read(buffer);
        if (n === null) break;
        const joined = new Uint8Array(pending.length + n);
        joined.set(pending);
        joined.set(buffer.subarray(0, n), pending.length);
        pending = joined;
        while (pending.length >= 4) {
          const length = (pending[1]! << 16) | (pending[2]! << 8) | pending[3]!;
          if (pending.length < 4 + length) break;
          const frame = pending.slice(0, 4 + length);
          pending = pending.slice(4 + length);
          const info = describe(frame.subarray(4), pair.share);
          if (info.command === TREE_CONNECT) pair.share = info.share;
          if (info.messageId !== undefined) pair.requests.set(info.messageId, info);
          const action = options.rule?.(info) ?? "pass";
          if (action === "cut") {
            closePair(pair);
            return;
          }
          if (action === "freeze") pair.frozen = true;
          await hold(pair);
          if (!pairs.has(pair)) return;
          await forward(pair.server, frame);
          if (action === "hold-answers") pair.answersHeld = true;
        }
      }
    } catch {
      // a closed side ends the pair
    } finally {
      closePair(pair);
    }
  }

  function track(promise: Promise<void>): void {
    pumps.add(promise);
    promise.finally(() => pumps.delete(promise));
  }

  const accepting = (async () => {
    for await (const client of listener) {
      accepted++;
      let server: Deno.TcpConn;
      try {
        server = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
      } catch {
        client.close();
        continue;
      }
      // No Nagle: small frames go at once, as the client and smbd send them.
      client.setNoDelay(true);
      server.setNoDelay(true);
      const pair: Pair = {
        client,
        server,
        share: undefined,
        frozen: false,
        answersHeld: false,
        requests: new Map(),
      };
      pairs.add(pair);
      track(pumpForth(pair));
      track(pumpBack(pair));
    }
  })().catch(() => {});

  const proxy: SmbProxy = {
    port,
    get accepted() {
      return accepted;
    },
    get open() {
      return pairs.size;
    },
    freeze() {
      frozen = true;
    },
    thaw() {
      frozen = false;
      for (const pair of pairs) {
        pair.frozen = false;
        pair.answersHeld = false;
      }
      thawed.resolve();
      thawed = Promise.withResolvers();
    },
    cut() {
      for (const pair of [...pairs]) closePair(pair);
      thawed.resolve();
      thawed = Promise.withResolvers();
    },
    async close() {
      listener.close();
      proxy.cut();
      await accepting;
      await Promise.all([...pumps]);
    },
    [Symbol.asyncDispose]() {
      return proxy.close();
    },
  };
  return proxy;
}
