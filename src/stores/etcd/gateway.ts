/**
 * The way to an etcd cluster, written once for every request of the store:
 * its endpoints and failover between them, timeouts, and what an answer or a
 * failure means (applied, surely not applied, or unknown: sent and its answer
 * lost). Requests go over etcd's v3 HTTP/JSON gateway (`/v3/...`) on our own
 * HTTP/1.1 client (`../_http_client.ts`).
 *
 * @module
 */

import { InputError, StoreError } from "../../errors.ts";
import {
  HttpClient,
  type HttpResponse,
  type HttpStream,
  type HttpTlsOptions,
  HttpTransportError,
} from "../_http_client.ts";
import type { Part } from "./requests.ts";

/** Port of an endpoint that names none. */
export const DEFAULT_PORT = 2379;

/** A gRPC error carried in a gateway answer. */
export class EtcdAnswerError extends Error {
  /** The gRPC status code. */
  readonly grpcCode: number;
  /**
   * @param message etcd's message
   * @param grpcCode the gRPC status code
   */
  constructor(message: string, grpcCode: number) {
    super(message);
    this.name = "EtcdAnswerError";
    this.grpcCode = grpcCode;
  }
}

/** gRPC status codes that mean "not applied, another member may serve it". */
const UNAVAILABLE = 14;
/** gRPC NOT_FOUND, as for "requested lease not found". */
const NOT_FOUND = 5;

/** The answer to one request of a batch. */
export type Result =
  | { ok: true; json: unknown }
  | {
    ok: false;
    unavailable: boolean;
    /** The request went out and its answer was lost: it may have been applied. */
    lost: boolean;
    message: string;
    error: StoreError;
  };

/** How a request may be sent. */
export interface CallOptions {
  /** Safe to send again to another endpoint after any network failure. */
  idempotent?: boolean;
}

/** An endpoint as given: its scheme when it names one, host and port. */
export interface ParsedEndpoint {
  /** `http:` or `https:`; undefined for `host:port` or `etcd://host:port`. */
  scheme: "http:" | "https:" | undefined;
  /** `host:port` (IPv6 in brackets), the port filled in. */
  authority: string;
  /** The endpoint as given, for messages. */
  text: string;
}

/**
 * Parses an endpoint: `host:port`, `http://host:port`, `https://host:port`
 * (`etcd://host:port` is `host:port`).
 *
 * @param text the endpoint
 * @param context where it was given, for messages
 * @returns its scheme, if any, and `host:port`
 * @throws {InputError} when it is not a host and port
 */
export function parseEndpoint(text: string, context: string): ParsedEndpoint {
  const named = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) && !/^etcd:\/\//i.test(text);
  const withScheme = named ? text : `http://${text.replace(/^etcd:\/\//i, "")}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new InputError(
      `Invalid etcd endpoint "${text}" in "${context}": not a host:port`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InputError(
      `Invalid etcd endpoint "${text}" in "${context}": use http:// or https://`,
    );
  }
  if (url.pathname !== "/" || url.search || url.hash || url.username) {
    throw new InputError(
      `Invalid etcd endpoint "${text}" in "${context}": give only host and port`,
    );
  }
  return {
    scheme: named ? url.protocol as "http:" | "https:" : undefined,
    authority: `${url.hostname}:${url.port || DEFAULT_PORT}`,
    text,
  };
}

/**
 * The URLs of endpoints as given: `https://` for every one when any names
 * `https://` or when `tls` is set, else `http://`; one cluster speaks one or
 * the other.
 *
 * @param endpoints the endpoints, parsed, in order
 * @param tls whether TLS settings (a CA or a client certificate) are given
 * @returns the URLs, without repeats, in order
 * @throws {InputError} when one names `http://` and another `https://`, or
 * `http://` beside TLS settings
 */
export function endpointUrls(endpoints: readonly ParsedEndpoint[], tls: boolean): string[] {
  const secure = tls || endpoints.some((e) => e.scheme === "https:");
  const plain = endpoints.find((e) => e.scheme === "http:");
  if (secure && plain) {
    throw new InputError(
      `Invalid etcd endpoint "${plain.text}": ${
        tls ? "TLS settings (etcd.ca, etcd.cert) are given" : "another endpoint is https://"
      }; use https:// for every endpoint of the cluster`,
    );
  }
  const urls: string[] = [];
  for (const endpoint of endpoints) {
    const url = `${secure ? "https:" : "http:"}//${endpoint.authority}`;
    if (!urls.includes(url)) urls.push(url);
  }
  return urls;
}

/** Whether an answer says the lease does not exist (any more). */
export function leaseGone(result: Result): boolean {
  const cause = result.ok ? undefined : result.error.cause;
  return cause instanceof EtcdAnswerError && cause.grpcCode === NOT_FOUND;
}

/** Text on one line. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** Short reason out of a transport failure. */
export function reasonOf(error: unknown): string {
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return error.message;
  }
  const text = error instanceof Error ? error.message : String(error);
  return tlsReason(oneLine(text.replace(/\s*\(os error \d+\)/, ""))) || "request failed";
}

/**
 * A TLS failure in words, with the setting to look at; other text as it is.
 * What Deno (rustls) says is kept after a colon where it adds something.
 */
function tlsReason(text: string): string {
  const peer = /invalid peer certificate: (.*)$/i.exec(text)?.[1];
  if (peer !== undefined) {
    if (/UnknownIssuer/i.test(peer)) {
      return "TLS: the server's certificate is not signed by a trusted CA (etcd.ca names the CA files to trust)";
    }
    const name = /not valid for name "([^"]*)"/i.exec(peer)?.[1];
    if (name !== undefined) {
      const valid = /only valid for (.*)$/i.exec(peer)?.[1];
      return `TLS: the server's certificate is not valid for "${name}"${
        valid ? ` (it names ${valid.replace(/\b(?:DnsName|IpAddress)\(([^)]*)\)/g, "$1")})` : ""
      }`;
    }
    if (/Expired/i.test(peer)) return "TLS: the server's certificate has expired";
    if (/NotValidYet/i.test(peer)) return "TLS: the server's certificate is not valid yet";
    return `TLS: the server's certificate is refused: ${peer}`;
  }
  const alert = /received fatal alert: (\w+)/i.exec(text)?.[1];
  if (alert !== undefined) {
    return /Certificate|UnknownCA|AccessDenied|DecryptError/i.test(alert)
      ? `TLS: the server refused the client certificate (etcd.cert and etcd.key; none given, or not signed by a CA it trusts): ${alert}`
      : `TLS: the server ended the handshake: ${alert}`;
  }
  if (/InvalidContentType|corrupt message/i.test(text)) {
    return "TLS: the server does not speak TLS (an http:// endpoint?)";
  }
  if (/KeyMismatch|keys may not be consistent/i.test(text)) {
    return "TLS: the client certificate and key do not belong together (etcd.cert, etcd.key)";
  }
  return text;
}

/** True when the request surely never reached the server. */
function notSent(error: unknown): boolean {
  return error instanceof HttpTransportError && !error.sent;
}

/** Reads one gateway answer: its JSON, or the error it carries. */
function resultOf(endpoint: string, what: string, answer: HttpResponse): Result {
  let json: unknown;
  try {
    json = JSON.parse(answer.text);
  } catch {
    json = undefined;
  }
  const body = json as
    | { error?: string; message?: string; code?: number }
    | undefined;
  const ok = answer.status >= 200 && answer.status < 300;
  if (ok && body !== undefined && body.error === undefined) return { ok: true, json };
  const message = oneLine(body?.message ?? body?.error ?? answer.text.slice(0, 200));
  const grpcCode = body?.code ?? 0;
  return {
    ok: false,
    unavailable: grpcCode === UNAVAILABLE,
    lost: false,
    message,
    error: new StoreError(
      endpoint,
      `Cannot ${what} in etcd at "${endpoint}": HTTP ${answer.status}${
        message ? `: ${message}` : ""
      }`,
      { cause: new EtcdAnswerError(message, grpcCode) },
    ),
  };
}

/** Options of {@linkcode EtcdGateway}. */
export interface EtcdGatewayOptions {
  /** Endpoint URLs ({@linkcode endpointUrls}), the preferred first. */
  endpoints: string[];
  /** Timeout of every request, in milliseconds. */
  timeoutMs: number;
  /** CA and client certificate for `https://` endpoints. */
  tls?: HttpTlsOptions;
}

/** Requests to an etcd cluster: endpoints, failover, timeouts. */
export class EtcdGateway {
  readonly #endpoints: string[];
  readonly #timeoutMs: number;
  readonly #http: HttpClient;
  #preferred = 0;
  #closed = false;

  /** @param options endpoints, timeout, TLS */
  constructor(options: EtcdGatewayOptions) {
    this.#endpoints = [...options.endpoints];
    this.#timeoutMs = options.timeoutMs;
    this.#http = new HttpClient(options.tls ? { tls: options.tls } : {});
  }

  /** Every endpoint, for messages. */
  get location(): string {
    return this.#endpoints.join(",");
  }

  /** Timeout of every request, in milliseconds. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** Whether {@linkcode close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The error of a call made after {@linkcode close}. */
  closedError(what: string): StoreError {
    return new StoreError(this.location, `Cannot ${what}: the etcd store is closed`, {
      unchanged: true,
    });
  }

  /**
   * Requests sent back to back on one connection (HTTP/1.1 pipelining: etcd
   * handles them in order, and a request may rely on the one before), with
   * timeout and endpoint failover; one result per request. A batch goes to
   * the next endpoint only while none of it can have been applied. A request
   * that went out and whose answer was lost comes back `lost` (unless
   * idempotent: then this throws), for the caller to resolve.
   * @throws {StoreError} when no endpoint took the batch
   */
  async callAll(parts: readonly Part[], options: CallOptions = {}): Promise<Result[]> {
    // the batch's own request is its last (a lease grant or keep-alive goes before it)
    const what = parts.at(-1)!.what;
    if (this.#closed) throw this.closedError(what);
    const requests = parts.map((part) => ({
      path: part.path,
      body: JSON.stringify(part.body),
    }));
    const count = this.#endpoints.length;
    const failures: string[] = [];
    /** Whether every endpoint tried surely did not get the batch. */
    let unsent = true;
    const first = this.#preferred;
    for (let i = 0; i < count; i++) {
      const index = (first + i) % count;
      const endpoint = this.#endpoints[index]!;
      // Not setTimeout: the first one of a Deno 2.9 process loads Node's
      // timers (3.5 ms). This timer holds the process only while the client
      // listens to it, during the request.
      const timeout = AbortSignal.timeout(this.#timeoutMs);
      const failed = (error: unknown) =>
        timeout.aborted ? `no answer within ${this.#timeoutMs} ms` : reasonOf(error);
      let answers: HttpResponse[];
      let broken: HttpTransportError | undefined;
      try {
        ({ answers, error: broken } = await this.#http.requestAll(
          endpoint,
          requests,
          timeout,
          options.idempotent === true,
        ));
      } catch (error) {
        const reason = failed(error);
        if (count > 1) this.#preferred = (index + 1) % count;
        if (!timeout.aborted && (notSent(error) || options.idempotent)) {
          failures.push(`"${endpoint}": ${reason}`);
          if (!notSent(error)) unsent = false;
          continue;
        }
        if (options.idempotent) {
          throw new StoreError(
            endpoint,
            `Cannot ${what} in etcd at "${endpoint}": ${reason}`,
            { cause: error },
          );
        }
        // Sent, no answer: each request may or may not have been applied.
        // The caller resolves that by reading back (or throws `error`).
        return parts.map((part) => ({
          ok: false,
          unavailable: false,
          lost: true,
          message: reason,
          error: new StoreError(
            endpoint,
            `Cannot ${part.what} in etcd at "${endpoint}": ${reason}`,
            { cause: error },
          ),
        }));
      }
      const results = answers.map((answer, n) => resultOf(endpoint, parts[n]!.what, answer));
      const head = results[0]!;
      if (!head.ok && head.unavailable && i + 1 < count) {
        failures.push(`"${endpoint}": ${head.message}`);
        unsent = false;
        this.#preferred = (index + 1) % count;
        continue;
      }
      for (let n = results.length; n < parts.length; n++) {
        results.push({
          ok: false,
          unavailable: false,
          lost: true,
          message: failed(broken),
          error: new StoreError(
            endpoint,
            `Cannot ${parts[n]!.what} in etcd at "${endpoint}": ${failed(broken)}`,
            { cause: broken },
          ),
        });
      }
      this.#preferred = index;
      return results;
    }
    throw new StoreError(
      this.location,
      count === 1
        ? `Cannot ${what} in etcd at ${failures[0]}`
        : `Cannot ${what} in etcd: no endpoint answered: ${failures.join("; ")}`,
      { unchanged: unsent },
    );
  }

  /** One request, with timeout and endpoint failover; its answer's JSON. */
  async call<T>(part: Part, options: CallOptions = {}): Promise<T> {
    const [result] = await this.callAll([part], options);
    if (!result!.ok) throw result!.error;
    return result!.json as T;
  }

  /** The endpoints' indexes in the order to try them, the preferred first. */
  rotation(): number[] {
    const count = this.#endpoints.length;
    return Array.from({ length: count }, (_, i) => (this.#preferred + i) % count);
  }

  /** The endpoint at `index`. */
  endpoint(index: number): string {
    return this.#endpoints[index]!;
  }

  /** Prefers the endpoint at `index` from now on. */
  prefer(index: number): void {
    this.#preferred = index;
  }

  /** The endpoint at `index` failed: the next one is preferred. */
  passOver(index: number): void {
    const count = this.#endpoints.length;
    if (count > 1) this.#preferred = (index + 1) % count;
  }

  /**
   * Opens a streamed request (a watch) on a connection of its own.
   * @throws {HttpTransportError} when the exchange fails
   */
  stream(endpoint: string, path: string, body: string, signal: AbortSignal): Promise<HttpStream> {
    return this.#http.stream(endpoint, path, body, signal);
  }

  /** Closes every connection; requests under way fail. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#http.close();
  }
}
