/**
 * A small HTTP/1.1 client over `Deno.connect`, for the etcd store's JSON
 * gateway: POST a body, read the answer (`Content-Length` or chunked), keep
 * the connection for the next request; or stream a chunked answer (watches).
 * `https://` origins speak TLS, the server's certificate checked against
 * the CA certificates given and Deno's root store, with a client
 * certificate when one is given.
 *
 * Why not `fetch`: before its first call in a process sends a byte, Deno
 * loads its HTTP stack, reads the system's CA certificates (even for plain
 * http) and calibrates a timer, and `Deno.createHttpClient` adds more:
 * together more than all the etcd work of `resource-locker run`, where a
 * socket costs next to nothing (the benchmark's `startup-fetch` and
 * `startup-connect` figures).
 *
 * @module
 */

import { concatBytes } from "../_bytes.ts";

/** TLS settings of an {@linkcode HttpClient}, for `https://` origins. */
export interface HttpTlsOptions {
  /** CA certificates (PEM) trusted besides Deno's root store. */
  caCerts?: string[];
  /** Client certificate chain (PEM), presented when the server asks; with `key`. */
  cert?: string;
  /** Private key (PEM) of `cert`. */
  key?: string;
}

/** One request of {@linkcode HttpClient.requestAll}. */
export interface HttpRequest {
  /** Request path, e.g. `/v3/kv/range`. */
  path: string;
  /** JSON text. */
  body: string;
  /** Extra header fields, e.g. `{ Authorization: token }`. */
  headers?: Record<string, string>;
}

/** A failed exchange. `sent` is false when the request surely never left. */
export class HttpTransportError extends Error {
  /** Whether the server may have received the request. */
  readonly sent: boolean;
  /**
   * @param message what went wrong, one line
   * @param sent whether the server may have received the request
   * @param options the cause
   */
  constructor(message: string, sent: boolean, options?: ErrorOptions) {
    super(message, options);
    this.name = "HttpTransportError";
    this.sent = sent;
  }
}

/** A complete answer. */
export interface HttpResponse {
  /** HTTP status. */
  status: number;
  /** Body, decoded as UTF-8. */
  text: string;
}

/** An answer whose body arrives piece by piece. */
export interface HttpStream {
  /** HTTP status. */
  status: number;
  /** The next piece of the body; undefined at its end. */
  read(): Promise<Uint8Array | undefined>;
  /** The rest of the body as text. */
  text(): Promise<string>;
  /** Closes the connection. */
  close(): void;
}

interface _Origin {
  hostname: string;
  port: number;
  tls: boolean;
  /** `Host` header. */
  authority: string;
}

interface _Head {
  status: number;
  headers: Map<string, string>;
}

/** Connections idle longer are closed instead of reused: servers and proxies drop idle ones. */
const IDLE_MS = 4000;
/** Idle connections kept per origin. */
const MAX_IDLE = 32;
const MAX_HEAD = 64 * 1024;
const _encoder = new TextEncoder();
const _decoder = new TextDecoder();
const _latin1 = new TextDecoder("latin1");

/** A TLS alert from the server: it ended the handshake. */
const _TLS_ALERT = /received fatal alert/i;

/** The server closed the connection before any byte of the answer. */
class _NoAnswer extends Error {}

function _parseOrigin(origin: string): _Origin {
  const url = new URL(origin);
  const tls = url.protocol === "https:";
  return {
    hostname: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: Number(url.port || (tls ? 443 : 80)),
    tls,
    authority: url.host,
  };
}

/** One kept-alive connection with its read buffer. */
class _Connection {
  readonly #conn: Deno.Conn;
  #buffer = new Uint8Array(16 * 1024);
  #start = 0;
  #end = 0;
  #received = false;
  /** Set when it was used before: a failure may only mean the server dropped it. */
  reused = false;
  idleSince = 0;
  closed = false;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  /** Whether a byte of the answer arrived. */
  get received(): boolean {
    return this.#received;
  }

  /** Whether bytes are left over past the answer (then it cannot be reused). */
  get leftover(): boolean {
    return this.#end > this.#start;
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.#received = false;
    let offset = 0;
    while (offset < bytes.length) {
      offset += await this.#conn.write(bytes.subarray(offset));
    }
  }

  /** Reads more; false at the end of the stream. */
  async #fill(): Promise<boolean> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buffer.length) {
      if (this.#start > 0) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      } else {
        const bigger = new Uint8Array(this.#buffer.length * 2);
        bigger.set(this.#buffer);
        this.#buffer = bigger;
      }
    }
    const count = await this.#conn.read(this.#buffer.subarray(this.#end));
    if (count === null) {
      if (!this.#received) throw new _NoAnswer("connection closed before the answer");
      return false;
    }
    this.#received = true;
    this.#end += count;
    return true;
  }

  async #needMore(): Promise<void> {
    if (!await this.#fill()) throw new Error("connection closed in the middle of the answer");
  }

  /** One line without its CRLF. */
  async #line(): Promise<string> {
    let scanned = 0;
    while (true) {
      for (let i = this.#start + scanned; i + 1 < this.#end; i++) {
        if (this.#buffer[i] === 13 && this.#buffer[i + 1] === 10) {
          const line = _latin1.decode(this.#buffer.subarray(this.#start, i));
          this.#start = i + 2;
          return line;
        }
      }
      scanned = Math.max(0, this.#end - this.#start - 1);
      if (scanned > MAX_HEAD) throw new Error("answer line too long");
      await this.#needMore();
    }
  }

  /** Exactly `count` bytes. */
  async #bytes(count: number): Promise<Uint8Array> {
    while (this.#end - this.#start < count) await this.#needMore();
    const bytes = this.#buffer.slice(this.#start, this.#start + count);
    this.#start += count;
    return bytes;
  }

  async head(): Promise<_Head> {
    let statusLine = await this.#line();
    while (statusLine === "") statusLine = await this.#line();
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
    if (!match) throw new Error(`not an HTTP answer: ${JSON.stringify(statusLine.slice(0, 40))}`);
    const headers = new Map<string, string>();
    let size = statusLine.length;
    for (let line = await this.#line(); line !== ""; line = await this.#line()) {
      size += line.length;
      if (size > MAX_HEAD) throw new Error("answer head too long");
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
    }
    const status = Number(match[1]);
    // 1xx answers come before the real one
    return status >= 100 && status < 200 ? await this.head() : { status, headers };
  }

  /** The next chunk of a chunked body; undefined after the last. */
  async chunk(): Promise<Uint8Array | undefined> {
    while (true) {
      const sizeLine = await this.#line();
      const size = parseInt(sizeLine.split(";")[0]!.trim(), 16);
      if (!Number.isInteger(size) || size < 0) {
        throw new Error(`bad chunk size ${JSON.stringify(sizeLine.slice(0, 20))}`);
      }
      if (size === 0) {
        while (await this.#line() !== "") { /* trailers */ }
        return undefined;
      }
      const data = await this.#bytes(size);
      if (await this.#line() !== "") throw new Error("bad chunk end");
      if (data.length > 0) return data;
    }
  }

  /** The whole body of an answer. */
  async body(head: _Head): Promise<Uint8Array> {
    if (/\bchunked\b/i.test(head.headers.get("transfer-encoding") ?? "")) {
      const parts: Uint8Array[] = [];
      for (let part = await this.chunk(); part; part = await this.chunk()) parts.push(part);
      return concatBytes(parts);
    }
    const length = head.headers.get("content-length");
    if (length !== undefined) return await this.#bytes(Number(length));
    // no length: the body ends with the connection
    while (await this.#fill()) { /* read on */ }
    return this.#bytes(this.#end - this.#start);
  }
}

function _keepAlive(head: _Head): boolean {
  const connection = head.headers.get("connection") ?? "";
  if (/\bclose\b/i.test(connection)) return false;
  return head.headers.has("content-length") ||
    /\bchunked\b/i.test(head.headers.get("transfer-encoding") ?? "");
}

/** Short text of a socket error: "Connection refused", not "… (os error 111)". */
function _message(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s*\(os error \d+\)/, "").replace(/\s+/g, " ").trim() || "request failed";
}

/** HTTP/1.1 client with kept-alive connections per origin. */
export class HttpClient {
  readonly #tls: HttpTlsOptions;
  readonly #origins = new Map<string, _Origin>();
  readonly #idle = new Map<string, _Connection[]>();
  readonly #open = new Set<_Connection>();
  #closed = false;

  /** @param options TLS settings for `https://` origins */
  constructor(options: { tls?: HttpTlsOptions } = {}) {
    this.#tls = options.tls ?? {};
  }

  #origin(origin: string): _Origin {
    let parsed = this.#origins.get(origin);
    if (!parsed) {
      parsed = _parseOrigin(origin);
      this.#origins.set(origin, parsed);
    }
    return parsed;
  }

  async #connect(target: _Origin, signal: AbortSignal): Promise<_Connection> {
    signal.throwIfAborted();
    let conn: Deno.Conn;
    try {
      if (!target.tls) {
        const tcp = await Deno.connect({ hostname: target.hostname, port: target.port, signal });
        tcp.setNoDelay(true);
        conn = tcp;
      } else {
        conn = await this.#connectTls(target, signal);
      }
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      throw new HttpTransportError(_message(error), false, { cause: error });
    }
    const connection = new _Connection(conn);
    if (this.#closed) {
      connection.close();
      throw new HttpTransportError("the client is closed", false);
    }
    this.#open.add(connection);
    return connection;
  }

  /**
   * A TLS connection, its handshake done (so that a certificate refused on
   * either side fails here, before any request is written).
   *
   * Without a client certificate: TCP with Nagle's algorithm off, then TLS
   * over it. `Deno.connectTls` cannot turn Nagle off (`TlsConn` has no
   * `setNoDelay`), and with Nagle on the first request of a connection waits
   * for the server's delayed acknowledgement of the handshake's last flight,
   * about 40 ms (measured). `Deno.startTls` takes no client certificate, so
   * with one it is `Deno.connectTls`, and that wait.
   */
  async #connectTls(target: _Origin, signal: AbortSignal): Promise<Deno.Conn> {
    const tls = this.#tls;
    let tcp: Deno.TcpConn | undefined;
    const connecting = (async () => {
      let conn: Deno.TlsConn;
      if (tls.cert !== undefined && tls.key !== undefined) {
        conn = await Deno.connectTls({
          hostname: target.hostname,
          port: target.port,
          caCerts: tls.caCerts ?? [],
          cert: tls.cert,
          key: tls.key,
        });
      } else {
        tcp = await Deno.connect({ hostname: target.hostname, port: target.port, signal });
        tcp.setNoDelay(true);
        try {
          conn = await Deno.startTls(tcp, {
            hostname: target.hostname,
            caCerts: tls.caCerts ?? [],
          });
        } catch (error) {
          tcp.close();
          throw error;
        }
      }
      try {
        await conn.handshake();
      } catch (error) {
        conn.close();
        throw error;
      }
      return conn;
    })();
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([connecting, aborted]);
    } finally {
      signal.removeEventListener("abort", onAbort!);
      connecting.then((late) => signal.aborted && late.close(), () => {});
      if (signal.aborted && tcp) {
        try {
          tcp.close();
        } catch { /* taken over by TLS, or closed */ }
      }
    }
  }

  /** An idle connection to reuse, or a new one. */
  async #checkout(origin: string, signal: AbortSignal): Promise<_Connection> {
    if (this.#closed) throw new HttpTransportError("the client is closed", false);
    const idle = this.#idle.get(origin);
    const now = Date.now();
    while (idle && idle.length > 0) {
      const connection = idle.pop()!;
      if (!connection.closed && now - connection.idleSince < IDLE_MS) {
        connection.reused = true;
        return connection;
      }
      this.#drop(connection);
    }
    return await this.#connect(this.#origin(origin), signal);
  }

  #drop(connection: _Connection): void {
    connection.close();
    this.#open.delete(connection);
  }

  #checkin(origin: string, connection: _Connection): void {
    if (this.#closed || connection.closed || connection.leftover) {
      this.#drop(connection);
      return;
    }
    let idle = this.#idle.get(origin);
    if (!idle) {
      idle = [];
      this.#idle.set(origin, idle);
    }
    if (idle.length >= MAX_IDLE) {
      this.#drop(connection);
      return;
    }
    connection.idleSince = Date.now();
    idle.push(connection);
  }

  #request(origin: string, request: HttpRequest, stream: boolean): Uint8Array {
    const payload = _encoder.encode(request.body);
    let fields = "";
    for (const [name, value] of Object.entries(request.headers ?? {})) {
      if (/[\r\n]/.test(name + value)) throw new TypeError(`Invalid header field "${name}"`);
      fields += `${name}: ${value}\r\n`;
    }
    const head = _encoder.encode(
      `POST ${request.path} HTTP/1.1\r\nHost: ${this.#origin(origin).authority}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n` +
        fields + (stream ? "Connection: close\r\n" : "") + "\r\n",
    );
    const bytes = new Uint8Array(head.length + payload.length);
    bytes.set(head);
    bytes.set(payload, head.length);
    return bytes;
  }

  /**
   * Sends a POST and opens its answer, on a reused connection when one is
   * idle (once more on a new one when the server had dropped it).
   */
  async #exchange(
    origin: string,
    bytes: Uint8Array,
    signal: AbortSignal,
    fresh: boolean,
    idempotent: boolean,
  ): Promise<{ connection: _Connection; head: _Head }> {
    for (let attempt = 0;; attempt++) {
      const connection = fresh
        ? await this.#connect(this.#origin(origin), signal)
        : await this.#checkout(origin, signal);
      const onAbort = () => connection.close();
      signal.addEventListener("abort", onAbort, { once: true });
      let written = false;
      try {
        await connection.write(bytes);
        written = true;
        return { connection, head: await connection.head() };
      } catch (error) {
        this.#drop(connection);
        if (signal.aborted) throw signal.reason;
        // A kept-alive connection the server had dropped (a restart, an idle
        // timeout): once more on a new connection when the request surely did
        // not get in (the write failed) or is safe to send twice. A written
        // request that met a closed connection may have been applied: a
        // change (a transaction) is not sent again but reported as sent, and
        // its caller reads back what happened.
        const stale = connection.reused && attempt === 0 && !connection.received &&
          (!written || idempotent);
        if (stale) continue;
        // A fatal TLS alert before any answer: the server refused the
        // handshake (our certificate), so it never read the request.
        const refused = !connection.received && _TLS_ALERT.test(_message(error));
        throw new HttpTransportError(_message(error), written && !refused, { cause: error });
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    }
  }

  /**
   * POSTs `body` as JSON and reads the whole answer.
   *
   * @param origin `http://host:port` or `https://host:port`
   * @param path request path, e.g. `/v3/kv/range`
   * @param body JSON text
   * @param signal aborts the exchange; its reason is thrown
   * @param idempotent safe to send twice: retried on a new connection when a
   * kept-alive one fails before any answer
   * @param headers extra header fields
   * @returns status and body
   * @throws {HttpTransportError} when the exchange fails
   */
  async request(
    origin: string,
    path: string,
    body: string,
    signal: AbortSignal,
    idempotent = false,
    headers?: Record<string, string>,
  ): Promise<HttpResponse> {
    const { answers, error } = await this.requestAll(
      origin,
      [{ path, body, ...headers ? { headers } : {} }],
      signal,
      idempotent,
    );
    if (error) throw error;
    return answers[0]!;
  }

  /**
   * POSTs several JSON bodies back to back on one connection (HTTP/1.1
   * pipelining) and reads their answers, in order. The server handles them
   * one after the other, so a request may rely on the one before it; the
   * answers save a round trip each.
   *
   * @param origin `http://host:port` or `https://host:port`
   * @param requests paths, JSON bodies and extra header fields
   * @param signal aborts the exchange; its reason is thrown
   * @param idempotent safe to send twice: retried on a new connection when a
   * kept-alive one fails before any answer
   * @returns the answers in order; when the exchange broke after the first
   * answer, the answers that came and the error
   * @throws {HttpTransportError} when no answer came
   */
  async requestAll(
    origin: string,
    requests: readonly HttpRequest[],
    signal: AbortSignal,
    idempotent = false,
  ): Promise<{ answers: HttpResponse[]; error?: HttpTransportError }> {
    const parts = requests.map((r) => this.#request(origin, r, false));
    const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
    parts.reduce((offset, part) => (bytes.set(part, offset), offset + part.length), 0);
    const exchange = await this.#exchange(origin, bytes, signal, false, idempotent);
    const connection = exchange.connection;
    let head = exchange.head;
    const answers: HttpResponse[] = [];
    const onAbort = () => connection.close();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (true) {
        const data = await connection.body(head);
        answers.push({ status: head.status, text: _decoder.decode(data) });
        if (!_keepAlive(head)) {
          this.#drop(connection);
          if (answers.length < requests.length) {
            throw new Error("the server closed the connection before the last answer");
          }
          return { answers };
        }
        if (answers.length === requests.length) {
          this.#checkin(origin, connection);
          return { answers };
        }
        head = await connection.head();
      }
    } catch (error) {
      this.#drop(connection);
      const failure = signal.aborted
        ? signal.reason
        : new HttpTransportError(_message(error), true, { cause: error });
      if (answers.length === 0) throw failure;
      return {
        answers,
        error: failure instanceof HttpTransportError
          ? failure
          : new HttpTransportError(_message(failure), true, { cause: failure }),
      };
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * POSTs `body` as JSON on a connection of its own and streams the answer
   * (a watch). Aborting `signal` or `close()` ends it.
   *
   * @param origin `http://host:port` or `https://host:port`
   * @param path request path, e.g. `/v3/watch`
   * @param body JSON text
   * @param signal aborts the exchange and the stream
   * @param headers extra header fields
   * @returns the answer, read piece by piece
   * @throws {HttpTransportError} when the exchange fails
   */
  async stream(
    origin: string,
    path: string,
    body: string,
    signal: AbortSignal,
    headers?: Record<string, string>,
  ): Promise<HttpStream> {
    const bytes = this.#request(origin, { path, body, ...headers ? { headers } : {} }, true);
    const { connection, head } = await this.#exchange(origin, bytes, signal, true, false);
    const onAbort = () => this.#drop(connection);
    signal.addEventListener("abort", onAbort, { once: true });
    const chunked = /\bchunked\b/i.test(head.headers.get("transfer-encoding") ?? "");
    let done = false;
    const guard = async <T>(read: () => Promise<T>): Promise<T> => {
      try {
        return await read();
      } catch (error) {
        this.#drop(connection);
        if (signal.aborted) throw signal.reason;
        throw new HttpTransportError(_message(error), true, { cause: error });
      }
    };
    return {
      status: head.status,
      read: () =>
        guard(async () => {
          if (done) return undefined;
          const part = chunked ? await connection.chunk() : await connection.body(head);
          if (!chunked || part === undefined) done = true;
          return part;
        }),
      text: () =>
        guard(async () => {
          if (done) return "";
          done = true;
          return _decoder.decode(await connection.body(head));
        }),
      close: () => {
        signal.removeEventListener("abort", onAbort);
        this.#drop(connection);
      },
    };
  }

  /** Closes every connection; requests under way fail. */
  close(): void {
    this.#closed = true;
    for (const connection of this.#open) connection.close();
    this.#open.clear();
    this.#idle.clear();
  }
}
