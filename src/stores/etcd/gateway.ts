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
import { escapeControl, registerSecret } from "../../_text.ts";
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

/**
 * Answers that refuse the token a request carried (expired, revoked by a
 * password change or `auth disable`, none when one is wanted): etcd checks
 * it before it acts, so the request was not applied and can be sent again
 * with a new token.
 */
const TOKEN_REFUSED = /invalid auth token|auth store is old|user name is empty/i;
/** The answer to logging in when etcd has no authentication on. */
const AUTH_OFF = /authentication is not enabled/i;

/**
 * gRPC codes of error answers that can come while or after a request is
 * applied: canceled, unknown, deadline exceeded ("request timed out"),
 * internal, unavailable ("server stopped"). Any other error answer is a
 * refusal: etcd did nothing.
 */
const MAYBE_APPLIED = new Set([1, 2, 4, 13, 14]);
/** Among those, answers given before anything was done. */
const REFUSED_FIRST = /no leader|too many requests|not capable/i;
/** Refusals that another member, or the same a moment later, may not make. */
const TRY_AGAIN = /no leader|too many requests|not capable/i;
/** gRPC NOT_FOUND, as for "requested lease not found". */
const NOT_FOUND = 5;
/** First pause before trying a cluster again that said "try again" (no leader). */
const RETRY_FIRST_MS = 50;

/** The answer to one request of a batch. */
export type Result =
  | { ok: true; json: unknown }
  | {
    ok: false;
    /** Refused before anything was done, or idempotent: worth sending again. */
    retry: boolean;
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

/**
 * A server's text on one line, its control characters shown escaped: what
 * an endpoint answers goes into our error messages, and must not carry a
 * terminal's escape sequences to whoever prints them.
 */
export function oneLine(text: string): string {
  return escapeControl(text.replace(/\s+/g, " ").trim());
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

/**
 * Reads one gateway answer: its JSON, or the error it carries and what that
 * error means. A refusal changed nothing (`unchanged`); an error that may
 * come after the request was applied ("request timed out", "server
 * stopped") is, for a change, a lost answer: its caller reads back what
 * happened; an idempotent request is worth sending again.
 */
function resultOf(
  endpoint: string,
  what: string,
  answer: HttpResponse,
  idempotent: boolean,
): Result {
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
  const maybeApplied = body === undefined
    ? answer.status >= 500
    : MAYBE_APPLIED.has(grpcCode) && !REFUSED_FIRST.test(message);
  return {
    ok: false,
    retry: maybeApplied ? idempotent : TRY_AGAIN.test(message),
    lost: maybeApplied && !idempotent,
    message,
    error: new StoreError(
      endpoint,
      `Cannot ${what} in etcd at "${endpoint}": HTTP ${answer.status}${
        message ? `: ${message}` : ""
      }`,
      { cause: new EtcdAnswerError(message, grpcCode), unchanged: !maybeApplied },
    ),
  };
}

/** Resolves after `ms` (not setTimeout: see {@linkcode EtcdGateway.callAll}). */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) =>
    AbortSignal.timeout(ms).addEventListener("abort", () => resolve(), { once: true })
  );
}

/** Options of {@linkcode EtcdGateway}. */
export interface EtcdGatewayOptions {
  /** Endpoint URLs ({@linkcode endpointUrls}), the preferred first. */
  endpoints: string[];
  /** Timeout of every request, in milliseconds. */
  timeoutMs: number;
  /** CA and client certificate for `https://` endpoints. */
  tls?: HttpTlsOptions;
  /** The etcd user to log in as; none: send no token. */
  auth?: { username: string; password: string };
  /**
   * Learn the cluster's members from the first answer (member list) and
   * fail over to them too, after the endpoints given.
   * @default {true}
   */
  discover?: boolean;
}

/** Whether a failed answer refuses the token its request carried. */
function tokenRefused(result: Result): boolean {
  return !result.ok && !result.lost && result.error.cause instanceof EtcdAnswerError &&
    TOKEN_REFUSED.test(result.error.cause.message);
}

/**
 * Requests to an etcd cluster: endpoints, failover, timeouts, and the token
 * of the user logged in as.
 *
 * Authentication: with a user, the first request logs in
 * (`/v3/auth/authenticate`) and every request carries the token it got
 * (`Authorization`). A request whose token etcd refuses (expired after
 * etcd's `--auth-token-ttl` of disuse, revoked by a password change or by
 * `auth disable`) was not applied: the gateway logs in again, once, and
 * sends it again. The password and tokens never appear in messages.
 *
 * Members: the first batch also asks for the member list (pipelined, no
 * round trip of its own), and the members' client URLs join the endpoints
 * given, after them; so a store configured with one member fails over to
 * the others.
 */
export class EtcdGateway {
  readonly #endpoints: string[];
  readonly #timeoutMs: number;
  readonly #http: HttpClient;
  readonly #auth: { username: string; password: string } | undefined;
  /** The token requests carry: undefined before logging in, "" when etcd wants none. */
  #token: string | undefined;
  #loggingIn: Promise<void> | undefined;
  #preferred = 0;
  #closed = false;
  /** Member list: to ask with the next batch, or asked already (or not wanted). */
  #discovery: "pending" | "done";
  #discoveryTries = 0;

  /** @param options endpoints, timeout, TLS, user */
  constructor(options: EtcdGatewayOptions) {
    this.#endpoints = [...options.endpoints];
    this.#timeoutMs = options.timeoutMs;
    this.#http = new HttpClient(options.tls ? { tls: options.tls } : {});
    this.#auth = options.auth;
    if (!this.#auth) this.#token = "";
    this.#discovery = options.discover === false ? "done" : "pending";
  }

  /** Every endpoint known: the ones given, then the members learned. */
  get endpoints(): readonly string[] {
    return this.#endpoints;
  }

  /** Takes the members' client URLs from a member list answer. */
  #learn(answer: HttpResponse): void {
    let members: { clientURLs?: unknown }[] = [];
    try {
      members = (JSON.parse(answer.text) as { members?: { clientURLs?: unknown }[] }).members ??
        [];
    } catch {
      return;
    }
    const secure = this.#endpoints[0]!.startsWith("https:");
    for (const member of members) {
      const urls = Array.isArray(member.clientURLs) ? member.clientURLs : [];
      for (const url of urls) {
        if (typeof url !== "string") continue;
        let parsed: ParsedEndpoint;
        try {
          parsed = parseEndpoint(url, "the member list");
        } catch {
          continue;
        }
        if ((parsed.scheme === "https:") !== secure) continue;
        const endpoint = `${parsed.scheme}//${parsed.authority}`;
        if (!this.#endpoints.includes(endpoint)) this.#endpoints.push(endpoint);
      }
    }
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
    if (this.#closed) throw this.closedError(parts.at(-1)!.what);
    const token = await this.token();
    const results = await this.#send(parts, options, token);
    if (!this.#auth) return results.map((result) => this.#explain(result));
    // The token was refused (not applied): log in again, send those again.
    const refused = results.flatMap((result, n) => tokenRefused(result) ? [n] : []);
    if (refused.length > 0) {
      await this.tokenRefused(token);
      const again = await this.#send(
        refused.map((n) => parts[n]!),
        options,
        await this.token(),
      );
      refused.forEach((n, i) => results[n] = again[i]!);
    }
    return results.map((result) => this.#explain(result));
  }

  /**
   * The token to send, logging in first when there is none yet.
   * @returns the token, "" when etcd wants none
   * @throws {StoreError} when logging in fails (a wrong password: `unchanged`)
   */
  async token(): Promise<string> {
    while (this.#token === undefined) {
      this.#loggingIn ??= this.#logIn().finally(() => this.#loggingIn = undefined);
      await this.#loggingIn;
    }
    return this.#token;
  }

  /** etcd refused `used`: the next {@linkcode token} logs in again (once for all callers). */
  tokenRefused(used: string): Promise<void> {
    if (this.#auth && this.#token === used) this.#token = undefined;
    return this.token().then(() => {});
  }

  async #logIn(): Promise<void> {
    const { username, password } = this.#auth!;
    const what = `log in as "${username}"`;
    const [result] = await this.#send(
      [{
        path: "/v3/auth/authenticate",
        body: { name: username, password },
        what,
      }],
      { idempotent: true },
      "",
    );
    if (result!.ok) {
      const token = (result!.json as { token?: string }).token ?? "";
      registerSecret(token);
      this.#token = token;
      return;
    }
    if (!result!.lost && AUTH_OFF.test(result!.message)) {
      this.#token = ""; // etcd checks nobody: requests go without a token
      return;
    }
    throw new StoreError(result!.error.location, result!.error.message, {
      cause: result!.error.cause,
      unchanged: true,
    });
  }

  /** A failed answer with the setting or grant to look at, when etcd refused the user. */
  #explain(result: Result): Result {
    if (result.ok || result.lost) return result;
    const hint = /user name is empty|permission denied/i.test(result.message) && !this.#auth
      ? "no etcd user given: set etcd.username and etcd.password"
      : /CommonName of client/i.test(result.message)
      ? "with authentication on, etcd's HTTP gateway takes no client certificate with a Common Name: use one whose subject has none"
      : /permission denied/i.test(result.message)
      ? `the etcd user "${this.#auth!.username}" needs read and write on the lock prefix`
      : undefined;
    if (!hint) return result;
    const error = result.error;
    return {
      ...result,
      error: new StoreError(error.location, `${error.message} (${hint})`, {
        cause: error.cause,
        unchanged: error.unchanged,
      }),
    };
  }

  /**
   * {@linkcode callAll} with `token`, without a second login: the endpoints
   * in turn, the preferred first, each request bounded by the timeout. A
   * batch goes to the next endpoint when it surely did not reach this one
   * (refused connection, TLS refused), when every answer is a refusal worth
   * trying again ("no leader" in an election), or, for an idempotent batch,
   * on any failure. When members answered "try again" the cluster is tried
   * again after a pause, doubling, for as long as the timeout.
   */
  async #send(parts: readonly Part[], options: CallOptions, token: string): Promise<Result[]> {
    // the batch's own request is its last (a lease grant or keep-alive goes before it)
    const what = parts.at(-1)!.what;
    const idempotent = options.idempotent === true;
    const headers = token ? { Authorization: token } : undefined;
    const requests = parts.map((part) => ({
      path: part.path,
      body: JSON.stringify(part.body),
      ...headers ? { headers } : {},
    }));
    // The member list rides along (read-only, answered by the member itself).
    const discover = this.#discovery === "pending";
    if (discover) {
      this.#discovery = "done";
      requests.push({ path: "/v3/cluster/member/list", body: "{}", ...headers ? { headers } : {} });
    }
    const learn = (answers: HttpResponse[]) => {
      if (!discover) return;
      if (answers.length > parts.length) {
        this.#discovery = "done";
        const list = answers.pop()!;
        if (list.status >= 200 && list.status < 300) this.#learn(list);
      } else if (++this.#discoveryTries < 3) this.#discovery = "pending";
    };
    /** The last failure of each endpoint, for the message. */
    const failures = new Map<string, string>();
    /** Whether no endpoint tried can have applied any of the batch. */
    let unchanged = true;
    const deadline = Date.now() + this.#timeoutMs;
    for (let wait = RETRY_FIRST_MS;; wait *= 2) {
      let tryAgain = false;
      for (const index of this.rotation()) {
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
            idempotent,
          ));
        } catch (error) {
          learn([]);
          this.passOver(index);
          if (notSent(error) || idempotent) {
            failures.set(endpoint, failed(error));
            if (!notSent(error)) unchanged = false;
            continue;
          }
          // Sent, no answer: each request may or may not have been applied.
          // The caller resolves that by reading back (or throws `error`).
          const reason = failed(error);
          return parts.map((part) => ({
            ok: false,
            retry: false,
            lost: true,
            message: reason,
            error: new StoreError(
              endpoint,
              `Cannot ${part.what} in etcd at "${endpoint}": ${reason}`,
              { cause: error },
            ),
          }));
        }
        learn(answers);
        const results = answers.map((answer, n) =>
          resultOf(endpoint, parts[n]!.what, answer, idempotent)
        );
        if (results.length === parts.length && results.every((r) => !r.ok && r.retry)) {
          const head = results[0] as { message: string; error: StoreError };
          failures.set(endpoint, head.message);
          if (!head.error.unchanged) unchanged = false;
          tryAgain = true;
          this.passOver(index);
          continue;
        }
        for (let n = results.length; n < parts.length; n++) {
          results.push({
            ok: false,
            retry: false,
            lost: true,
            message: failed(broken),
            error: new StoreError(
              endpoint,
              `Cannot ${parts[n]!.what} in etcd at "${endpoint}": ${failed(broken)}`,
              { cause: broken },
            ),
          });
        }
        // A member that lost an answer (or broke the pipeline) is passed
        // over: the reading back goes elsewhere.
        if (results.some((result) => !result.ok && (result.lost || result.retry))) {
          this.passOver(index);
        } else this.#preferred = index;
        return results;
      }
      const left = deadline - Date.now();
      if (!tryAgain || left <= 0) break;
      await pause(Math.min(wait, left));
    }
    const reasons = [...failures].map(([endpoint, reason]) => `"${endpoint}": ${reason}`);
    throw new StoreError(
      this.location,
      reasons.length === 1
        ? `Cannot ${what} in etcd at ${reasons[0]}`
        : `Cannot ${what} in etcd: no endpoint answered: ${reasons.join("; ")}`,
      { unchanged },
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
   * Opens a streamed request (a watch) on a connection of its own, with
   * `token` ({@linkcode token}).
   * @throws {HttpTransportError} when the exchange fails
   */
  stream(
    endpoint: string,
    path: string,
    body: string,
    signal: AbortSignal,
    token: string,
  ): Promise<HttpStream> {
    return this.#http.stream(
      endpoint,
      path,
      body,
      signal,
      token ? { Authorization: token } : undefined,
    );
  }

  /**
   * Whether `endpoint` answers a read (`body`, to `/v3/kv/range`) within
   * the request timeout. A member that hangs (its sockets open, nothing
   * said) or that has lost the rest of the cluster (a linearizable read)
   * does not, and its watch streams hear no more changes. Never throws.
   */
  async answers(endpoint: string, body: string, token: string): Promise<boolean> {
    if (this.#closed) return false;
    try {
      const answer = await this.#http.request(
        endpoint,
        "/v3/kv/range",
        body,
        AbortSignal.timeout(this.#timeoutMs),
        true,
        token ? { Authorization: token } : undefined,
      );
      return answer.status < 500;
    } catch {
      return false;
    }
  }

  /** Whether an error text from etcd refuses a token (then {@linkcode tokenRefused}). */
  static refusesToken(message: string): boolean {
    return TOKEN_REFUSED.test(message);
  }

  /** Closes every connection; requests under way fail. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#http.close();
  }
}
