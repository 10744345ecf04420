/**
 * The etcd store: locks as keys in an etcd v3 cluster, reached through etcd's
 * own HTTP/JSON gateway (`/v3/...`). No npm client: a process that opens this
 * store and reads one key starts in about 18 ms, against about 120 ms with
 * `npm:etcd3` over gRPC (measured, see the README). Not `fetch` either: its
 * first call costs a Deno process 7-10 ms; the store speaks HTTP/1.1 over a
 * kept-alive socket (`_http_client.ts`) and sends requests that belong
 * together back to back (pipelined: etcd handles them in order).
 *
 * Template `etcd://127.0.0.1:2379/resource-locks/{0}` (placeholder `{0}` or
 * `{host}` in the path; port 2379 when omitted). Keys, for host `dc01` and
 * history folder `History`:
 *
 * | key | what |
 * | --- | --- |
 * | `/resource-locks/dc01/Host.lock` | a live lock entry (JSON as in lock files) |
 * | `/resource-locks/dc01/History/Host.lock-<guid>` | a released lock |
 *
 * - `create` is one transaction: put only if the key's create revision is 0
 *   (it does not exist). An entry with a TTL is attached to its own etcd
 *   lease, so it vanishes by itself when its holder stops renewing it. The
 *   lease grant (with an id the store picks) and the transaction go out
 *   together: one round trip.
 * - `replace` renews the entry's lease (keep-alive) and rewrites the content
 *   keeping the lease, only while the key still exists: one round trip for
 *   an entry this store object created or read.
 * - `archive` deletes the live key, puts the history key and counts the
 *   history in one transaction, then revokes the entry's lease and, past
 *   `historyLimit` entries, deletes the oldest.
 * - `archive`, `remove` and `replace` act only on the incarnation of the key
 *   this store object last saw (by `create` or `read`): an entry that expired
 *   and was taken again by someone else in between is never touched.
 * - `waitForChange` watches the host's keys from the revision of the last
 *   `list`, so a change made after that `list` wakes the waiter at once.
 *
 * Every request has a timeout; every failure is a {@linkcode StoreError}
 * naming the endpoint. Extra endpoints are tried in turn when one cannot be
 * connected to.
 *
 * @module
 */

import { InputError, StoreError } from "../errors.ts";
import type { CreateOptions, LockStore } from "../store.ts";
import {
  HttpClient,
  type HttpResponse,
  type HttpStream,
  HttpTransportError,
} from "./_http_client.ts";

/** Options for {@linkcode openEtcdStore}. */
export interface EtcdStoreOptions {
  /**
   * More endpoints of the same cluster (`http://host:port`, `host:port`),
   * tried in turn after the template's when one cannot be connected to.
   * @default {[]}
   */
  endpoints?: string[];
  /** Name of the history "folder" under each host's prefix, e.g. `History`. */
  historyFolderName: string;
  /**
   * Most history entries kept per host; older ones are deleted.
   * @default {1000}
   */
  historyLimit?: number;
  /**
   * Timeout of every request to etcd, in milliseconds.
   * @default {5000}
   */
  timeoutMs?: number;
}

const DEFAULT_PORT = 2379;
const DEFAULT_HISTORY_LIMIT = 1000;
const DEFAULT_TIMEOUT_MS = 5000;
/** etcd's default --max-txn-ops is 128. */
const TXN_CHUNK = 100;
const PLACEHOLDER = /\{0\}|\{host\}/g;
const HAS_PLACEHOLDER = /\{0\}|\{host\}/;

/**
 * Opens an etcd store for a folder template. Opening does not connect; the
 * first request does.
 *
 * @param template `etcd://host[:port]/prefix/{0}`; `{host}` works as `{0}`
 * @param options endpoints, history folder name and bound, timeout
 * @returns the store; call `close()` when done
 * @throws {InputError} when the template or an endpoint is malformed
 * @throws {RangeError} when `historyLimit` or `timeoutMs` is not a positive number
 *
 * Needs `--allow-net` for the endpoints.
 *
 * @example Opening a store
 * ```ts
 * import { openEtcdStore } from "./etcd.ts";
 * const store = openEtcdStore("etcd://127.0.0.1:2379/resource-locks/{0}", {
 *   historyFolderName: "History",
 * });
 * console.assert(
 *   store.describe("dc01") === "etcd://127.0.0.1:2379/resource-locks/dc01",
 * );
 * await store.close();
 * ```
 */
export function openEtcdStore(
  template: string,
  options: EtcdStoreOptions,
): LockStore {
  return new _EtcdStore(template, options);
}

interface _KeyValue {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  lease?: string;
}

interface _Header {
  revision?: string;
}

interface _RangeResponse {
  header?: _Header;
  kvs?: _KeyValue[];
  count?: string;
}

interface _TxnResponse {
  header?: _Header;
  succeeded?: boolean;
  responses?: {
    response_range?: _RangeResponse;
    response_delete_range?: { deleted?: string; prev_kvs?: _KeyValue[] };
  }[];
}

interface _ParsedTemplate {
  endpoint: string;
  path: string;
}

function _parseTemplate(template: string): _ParsedTemplate {
  const match = /^etcd:\/\/([^/]+)(\/.*)?$/i.exec(template);
  if (!match) {
    throw new InputError(
      `Invalid etcd store template "${template}": expected etcd://host[:port]/prefix/{0}`,
    );
  }
  const authority = match[1]!;
  const path = (match[2] ?? "").replace(/\/+$/, "");
  if (HAS_PLACEHOLDER.test(authority)) {
    throw new InputError(
      `Invalid etcd store template "${template}": the host placeholder belongs in the path`,
    );
  }
  if (!HAS_PLACEHOLDER.test(path)) {
    throw new InputError(
      `Invalid etcd store template "${template}": no {0} or {host} placeholder in the path`,
    );
  }
  if (/[?#]/.test(path)) {
    throw new InputError(
      `Invalid etcd store template "${template}": no query or fragment allowed`,
    );
  }
  return { endpoint: _parseEndpoint(authority, template), path };
}

function _parseEndpoint(text: string, context: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text)
    ? text.replace(/^etcd:\/\//i, "http://")
    : `http://${text}`;
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
  return `${url.protocol}//${url.hostname}:${url.port || DEFAULT_PORT}`;
}

const _encoder = new TextEncoder();
const _decoder = new TextDecoder();

/**
 * The engine's own base64 (V8 13) where there is one: the first `btoa` of a
 * Deno 2.9 process loads a script (0.8 ms).
 */
const _NATIVE_BASE64 = typeof Uint8Array.fromBase64 === "function" &&
  typeof Uint8Array.prototype.toBase64 === "function";

function _toBase64(bytes: Uint8Array): string {
  if (_NATIVE_BASE64) return bytes.toBase64();
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function _fromBase64(text: string | undefined): Uint8Array {
  if (_NATIVE_BASE64) return Uint8Array.fromBase64(text ?? "");
  const binary = atob(text ?? "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function _key(text: string): string {
  return _toBase64(_encoder.encode(text));
}

function _keyText(base64: string | undefined): string {
  return _decoder.decode(_fromBase64(base64));
}

/** The smallest key greater than every key starting with `prefix`. */
function _prefixEnd(prefix: string): string {
  const bytes = _encoder.encode(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i]!++;
      return _toBase64(end);
    }
  }
  return _toBase64(new Uint8Array([0]));
}

/** A gRPC error carried in a gateway answer. */
class _EtcdAnswerError extends Error {
  readonly grpcCode: number;
  constructor(message: string, grpcCode: number) {
    super(message);
    this.grpcCode = grpcCode;
  }
}

/** gRPC status codes that mean "not applied, another member may serve it". */
const _UNAVAILABLE = 14;
/** gRPC NOT_FOUND, as for "requested lease not found". */
const _NOT_FOUND = 5;

function _oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** Short reason out of a transport failure. */
function _reason(error: unknown): string {
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return error.message;
  }
  const text = error instanceof Error ? error.message : String(error);
  return _oneLine(text.replace(/\s*\(os error \d+\)/, "")) || "request failed";
}

/** True when the request surely never reached the server. */
function _notSent(error: unknown): boolean {
  return error instanceof HttpTransportError && !error.sent;
}

/** One request of a batch. */
interface _Part {
  path: string;
  body: unknown;
  /** What it does, for messages: `create "/resource-locks/dc01/Host.lock"`. */
  what: string;
}

type _Result =
  | { ok: true; json: unknown }
  | { ok: false; unavailable: boolean; message: string; error: StoreError };

/** Reads one gateway answer: its JSON, or the error it carries. */
function _result(endpoint: string, what: string, answer: HttpResponse): _Result {
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
  const message = _oneLine(body?.message ?? body?.error ?? answer.text.slice(0, 200));
  const grpcCode = body?.code ?? 0;
  return {
    ok: false,
    unavailable: grpcCode === _UNAVAILABLE,
    message,
    error: new StoreError(
      endpoint,
      `Cannot ${what} in etcd at "${endpoint}": HTTP ${answer.status}${
        message ? `: ${message}` : ""
      }`,
      { cause: new _EtcdAnswerError(message, grpcCode) },
    ),
  };
}

/**
 * Where lease ids come from: random, so the grant and the put that uses the
 * lease go out together. Replaceable by tests (a taken id).
 */
export const _leaseIds: { next(): string } = {
  next() {
    // 62 random bits: positive as etcd's int64, never 0 ("let etcd choose")
    const [value] = crypto.getRandomValues(new BigUint64Array(1));
    return String((value! >> 2n) || 1n);
  },
};

interface _CallOptions {
  /** Safe to send again to another endpoint after any network failure. */
  idempotent?: boolean;
}

type _WatchOutcome =
  | { kind: "done"; reason?: undefined }
  | { kind: "aborted"; reason?: undefined }
  | { kind: "unreachable"; reason: string }
  | { kind: "failed"; reason: string };

type _WatchState = "waiting" | "timeout" | "stalled" | "aborted";

class _EtcdStore implements LockStore {
  readonly kind = "etcd" as const;
  readonly #template: string;
  readonly #path: string;
  readonly #endpoints: string[];
  readonly #history: string;
  readonly #historyLimit: number;
  readonly #timeoutMs: number;
  readonly #http = new HttpClient();
  readonly #watches = new Set<AbortController>();
  /** Revision of the last `list` per host: where watches start. */
  readonly #listRevision = new Map<string, bigint>();
  /** Create revision and lease of each key as this object last saw it. */
  readonly #seen = new Map<string, { revision: string; lease: string }>();
  #preferred = 0;
  #closed = false;

  constructor(template: string, options: EtcdStoreOptions) {
    const parsed = _parseTemplate(template);
    this.#template = template;
    this.#path = parsed.path;
    const endpoints = [parsed.endpoint];
    for (const extra of options.endpoints ?? []) {
      const endpoint = _parseEndpoint(extra, "endpoints");
      if (!endpoints.includes(endpoint)) endpoints.push(endpoint);
    }
    this.#endpoints = endpoints;
    const history = options.historyFolderName;
    if (
      !history || /[/\\]/.test(history) || history === "." || history === ".."
    ) {
      throw new InputError(
        `Invalid history folder name "${history}": expected one path segment`,
      );
    }
    this.#history = history;
    this.#historyLimit = options.historyLimit ?? DEFAULT_HISTORY_LIMIT;
    if (!Number.isInteger(this.#historyLimit) || this.#historyLimit < 1) {
      throw new RangeError(
        `Invalid historyLimit ${options.historyLimit}: expected a positive integer`,
      );
    }
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(this.#timeoutMs > 0) || !Number.isFinite(this.#timeoutMs)) {
      throw new RangeError(
        `Invalid timeoutMs ${options.timeoutMs}: expected a positive number`,
      );
    }
  }

  describe(host: string): string {
    return this.#template.replace(/\/+$/, "").replace(PLACEHOLDER, host);
  }

  /** `/resource-locks/dc01` */
  #prefix(host: string): string {
    return this.#path.replace(PLACEHOLDER, host);
  }

  #entryKey(host: string, name: string): string {
    return `${this.#prefix(host)}/${name}`;
  }

  #historyKey(host: string, name: string): string {
    return `${this.#prefix(host)}/${this.#history}/${name}`;
  }

  /**
   * Gateway requests sent back to back on one connection (HTTP/1.1
   * pipelining: etcd handles them in order, and a request may rely on the one
   * before), with timeout and endpoint failover; one result per request. A
   * batch goes to the next endpoint only while none of it can have been
   * applied.
   */
  async #callAll(
    parts: readonly _Part[],
    options: _CallOptions = {},
  ): Promise<_Result[]> {
    const what = parts[0]!.what;
    if (this.#closed) {
      throw new StoreError(
        this.#endpoints.join(","),
        `Cannot ${what}: the etcd store is closed`,
      );
    }
    const requests = parts.map((part) => ({
      path: part.path,
      body: JSON.stringify(part.body),
    }));
    const count = this.#endpoints.length;
    const failures: string[] = [];
    const first = this.#preferred;
    for (let i = 0; i < count; i++) {
      const index = (first + i) % count;
      const endpoint = this.#endpoints[index]!;
      // Not setTimeout: the first one of a Deno 2.9 process loads Node's
      // timers (3.5 ms). This timer holds the process only while the client
      // listens to it, during the request.
      const timeout = AbortSignal.timeout(this.#timeoutMs);
      const failed = (error: unknown) =>
        timeout.aborted ? `no answer within ${this.#timeoutMs} ms` : _reason(error);
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
        if (!timeout.aborted && (_notSent(error) || options.idempotent)) {
          failures.push(`"${endpoint}": ${reason}`);
          continue;
        }
        throw new StoreError(
          endpoint,
          `Cannot ${what} in etcd at "${endpoint}": ${reason}`,
          { cause: error },
        );
      }
      const results = answers.map((answer, n) => _result(endpoint, parts[n]!.what, answer));
      const head = results[0]!;
      if (!head.ok && head.unavailable && i + 1 < count) {
        failures.push(`"${endpoint}": ${head.message}`);
        this.#preferred = (index + 1) % count;
        continue;
      }
      for (let n = results.length; n < parts.length; n++) {
        results.push({
          ok: false,
          unavailable: false,
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
      this.#endpoints.join(","),
      count === 1
        ? `Cannot ${what} in etcd at ${failures[0]}`
        : `Cannot ${what} in etcd: no endpoint answered: ${failures.join("; ")}`,
    );
  }

  /** One gateway request, with timeout and endpoint failover. */
  async #call<T>(
    path: string,
    body: unknown,
    what: string,
    options: _CallOptions = {},
  ): Promise<T> {
    const [result] = await this.#callAll([{ path, body, what }], options);
    if (!result!.ok) throw result!.error;
    return result!.json as T;
  }

  async #range(key: string, what: string): Promise<_KeyValue | undefined> {
    const answer = await this.#call<_RangeResponse>(
      "/v3/kv/range",
      { key: _key(key) },
      what,
      { idempotent: true },
    );
    return answer.kvs?.[0];
  }

  async #revoke(lease: string | undefined): Promise<void> {
    if (!lease || lease === "0") return;
    try {
      await this.#call("/v3/lease/revoke", { ID: lease }, "revoke lease");
    } catch {
      // best effort: an unrevoked lease expires by itself after its TTL
    }
  }

  /** The compare that pins a key to the incarnation we last saw (or any). */
  #exists(key: string): Record<string, string> {
    const seen = this.#seen.get(key);
    return seen
      ? {
        key: _key(key),
        target: "CREATE",
        result: "EQUAL",
        create_revision: seen.revision,
      }
      : {
        key: _key(key),
        target: "CREATE",
        result: "GREATER",
        create_revision: "0",
      };
  }

  async create(
    host: string,
    name: string,
    data: Uint8Array,
    options: CreateOptions = {},
  ): Promise<boolean> {
    const key = this.#entryKey(host, name);
    const what = `create "${key}"`;
    const put = (lease?: string): _Part => ({
      path: "/v3/kv/txn",
      what,
      body: {
        compare: [{
          key: _key(key),
          target: "CREATE",
          result: "EQUAL",
          create_revision: "0",
        }],
        success: [{
          request_put: {
            key: _key(key),
            value: _toBase64(data),
            ...(lease ? { lease } : {}),
          },
        }],
      },
    });
    if (options.ttlMs === undefined) {
      const plain = put();
      const answer = await this.#call<_TxnResponse>(plain.path, plain.body, what);
      return this.#created(key, answer, "0");
    }
    if (!(options.ttlMs > 0) || !Number.isFinite(options.ttlMs)) {
      throw new RangeError(
        `Invalid ttlMs ${options.ttlMs}: expected a positive number`,
      );
    }
    const ttl = String(Math.max(1, Math.ceil(options.ttlMs / 1000)));
    // The grant and the put in one round trip: the lease id is ours, and
    // etcd handles the grant first.
    for (let attempt = 1;; attempt++) {
      const lease = _leaseIds.next();
      const [granted, created] = await this.#callAll([
        {
          path: "/v3/lease/grant",
          body: { TTL: ttl, ID: lease },
          what: `grant a lease for "${key}"`,
        },
        put(lease),
      ]);
      if (granted!.ok) {
        if (!created!.ok) {
          await this.#revoke(lease);
          throw created!.error;
        }
        const answer = created!.json as _TxnResponse;
        if (!answer.succeeded) await this.#revoke(lease);
        return this.#created(key, answer, lease);
      }
      // Not granted. Had the id been taken, the put went in on a lease of
      // someone else: take it back (by its revision: only that put).
      const answer = created!.ok ? created!.json as _TxnResponse : undefined;
      if (answer?.succeeded && answer.header?.revision) {
        await this.#call("/v3/kv/txn", {
          compare: [{
            key: _key(key),
            target: "CREATE",
            result: "EQUAL",
            create_revision: answer.header.revision,
          }],
          success: [{ request_delete_range: { key: _key(key) } }],
        }, `take back "${key}" from a lease not ours`);
      }
      const taken = /already exists/i.test(granted!.message);
      if (!taken || attempt >= 3) throw granted!.error;
    }
  }

  /** Notes the incarnation a successful create made. */
  #created(key: string, answer: _TxnResponse, lease: string): boolean {
    if (!answer.succeeded) return false;
    if (answer.header?.revision) {
      this.#seen.set(key, { revision: answer.header.revision, lease });
    }
    return true;
  }

  async list(host: string): Promise<string[]> {
    const prefix = `${this.#prefix(host)}/`;
    const history = `${prefix}${this.#history}/`;
    // two ranges around the history folder, read at one revision
    const answer = await this.#call<_TxnResponse>(
      "/v3/kv/txn",
      {
        success: [
          {
            request_range: {
              key: _key(prefix),
              range_end: _key(history),
              keys_only: true,
            },
          },
          {
            request_range: {
              key: _prefixEnd(history),
              range_end: _prefixEnd(prefix),
              keys_only: true,
            },
          },
        ],
      },
      `list "${prefix}"`,
      { idempotent: true },
    );
    const revision = answer.header?.revision;
    if (revision) {
      const value = BigInt(revision);
      if (value > (this.#listRevision.get(host) ?? 0n)) {
        this.#listRevision.set(host, value);
      }
    }
    const names: string[] = [];
    for (const part of answer.responses ?? []) {
      for (const kv of part.response_range?.kvs ?? []) {
        const name = _keyText(kv.key).slice(prefix.length);
        if (name && !name.includes("/")) names.push(name);
      }
    }
    return names;
  }

  async read(host: string, name: string): Promise<Uint8Array | undefined> {
    const key = this.#entryKey(host, name);
    const kv = await this.#range(key, `read "${key}"`);
    if (!kv) {
      this.#seen.delete(key);
      return undefined;
    }
    if (kv.create_revision) {
      this.#seen.set(key, { revision: kv.create_revision, lease: kv.lease ?? "0" });
    }
    return _fromBase64(kv.value);
  }

  async replace(
    host: string,
    name: string,
    data: Uint8Array,
  ): Promise<boolean> {
    const key = this.#entryKey(host, name);
    const what = `renew "${key}"`;
    let seen = this.#seen.get(key);
    if (!seen) {
      const kv = await this.#range(key, what);
      if (!kv?.create_revision) return false;
      seen = { revision: kv.create_revision, lease: kv.lease ?? "0" };
    }
    // Keep-alive and rewrite in one round trip. The rewrite holds only while
    // the key is the incarnation we saw: a lease that ran out took it along.
    const leased = seen.lease !== "0";
    const parts: _Part[] = [];
    if (leased) {
      parts.push({
        path: "/v3/lease/keepalive",
        body: { ID: seen.lease },
        what: `keep the lease of "${key}" alive`,
      });
    }
    parts.push({
      path: "/v3/kv/txn",
      what,
      body: {
        compare: [{
          key: _key(key),
          target: "CREATE",
          result: "EQUAL",
          create_revision: seen.revision,
        }],
        success: [{
          request_put: {
            key: _key(key),
            value: _toBase64(data),
            ignore_lease: true,
          },
        }],
      },
    });
    const results = await this.#callAll(parts);
    for (const result of results) {
      if (result.ok) continue;
      const cause = result.error.cause;
      if (cause instanceof _EtcdAnswerError && cause.grpcCode === _NOT_FOUND) {
        return false; // the lease went away
      }
      throw result.error;
    }
    if (leased) {
      const alive = (results[0] as { json: { result?: { TTL?: string } } }).json;
      if (!(Number(alive.result?.TTL ?? 0) > 0)) return false;
    }
    return (results.at(-1) as { json: _TxnResponse }).json.succeeded === true;
  }

  async archive(
    host: string,
    name: string,
    historyName: string,
    data: Uint8Array,
  ): Promise<boolean> {
    const key = this.#entryKey(host, name);
    const historyKey = this.#historyKey(host, historyName);
    const history = `${this.#prefix(host)}/${this.#history}/`;
    const answer = await this.#call<_TxnResponse>("/v3/kv/txn", {
      compare: [this.#exists(key)],
      success: [
        { request_delete_range: { key: _key(key), prev_kv: true } },
        { request_put: { key: _key(historyKey), value: _toBase64(data) } },
        // the history's size after the put, in the same round trip
        {
          request_range: {
            key: _key(history),
            range_end: _prefixEnd(history),
            count_only: true,
          },
        },
      ],
    }, `archive "${key}"`);
    if (!answer.succeeded) return false;
    this.#seen.delete(key);
    const excess = Number(answer.responses?.[2]?.response_range?.count ?? 0) -
      this.#historyLimit;
    await Promise.all([
      this.#revoke(
        answer.responses?.[0]?.response_delete_range?.prev_kvs?.[0]?.lease,
      ),
      excess > 0
        ? this.#prune(history, excess).catch(() => {
          // best effort: the next archive trims again
        })
        : undefined,
    ]);
    return true;
  }

  async remove(host: string, name: string): Promise<boolean> {
    const key = this.#entryKey(host, name);
    const answer = await this.#call<_TxnResponse>("/v3/kv/txn", {
      compare: [this.#exists(key)],
      success: [{ request_delete_range: { key: _key(key), prev_kv: true } }],
    }, `remove "${key}"`);
    if (!answer.succeeded) return false;
    this.#seen.delete(key);
    await this.#revoke(
      answer.responses?.[0]?.response_delete_range?.prev_kvs?.[0]?.lease,
    );
    return true;
  }

  /** Deletes the `excess` oldest entries of a history prefix. */
  async #prune(prefix: string, excess: number): Promise<void> {
    const what = `trim the history "${prefix}"`;
    const oldest = await this.#call<_RangeResponse>(
      "/v3/kv/range",
      {
        key: _key(prefix),
        range_end: _prefixEnd(prefix),
        keys_only: true,
        limit: String(excess),
        sort_order: "ASCEND",
        sort_target: "CREATE",
      },
      what,
      { idempotent: true },
    );
    const keys = (oldest.kvs ?? []).map((kv) => kv.key ?? "");
    for (let i = 0; i < keys.length; i += TXN_CHUNK) {
      await this.#call("/v3/kv/txn", {
        success: keys.slice(i, i + TXN_CHUNK).map((key) => ({
          request_delete_range: { key },
        })),
      }, what);
    }
  }

  async listHistory(host: string): Promise<string[]> {
    const prefix = `${this.#prefix(host)}/${this.#history}/`;
    const answer = await this.#call<_RangeResponse>(
      "/v3/kv/range",
      {
        key: _key(prefix),
        range_end: _prefixEnd(prefix),
        keys_only: true,
        sort_order: "ASCEND",
        sort_target: "CREATE",
      },
      `list "${prefix}"`,
      { idempotent: true },
    );
    return (answer.kvs ?? [])
      .map((kv) => _keyText(kv.key).slice(prefix.length))
      .filter((name) => name && !name.includes("/"));
  }

  async readHistory(
    host: string,
    name: string,
  ): Promise<Uint8Array | undefined> {
    const key = this.#historyKey(host, name);
    const kv = await this.#range(key, `read "${key}"`);
    return kv ? _fromBase64(kv.value) : undefined;
  }

  /**
   * Resolves at the first change under the host's prefix since the last
   * `list` of that host (at once if there was one), or after `ms`, or when
   * the store is closed.
   * @throws the signal's reason when `signal` aborts
   * @throws {StoreError} when no endpoint accepts the watch in time
   */
  async waitForChange(
    host: string,
    ms: number,
    signal?: AbortSignal,
  ): Promise<void> {
    signal?.throwIfAborted();
    if (ms <= 0) return;
    const prefix = `${this.#prefix(host)}/`;
    const what = `watch "${prefix}"`;
    if (this.#closed) {
      throw new StoreError(
        this.#endpoints.join(","),
        `Cannot ${what}: the etcd store is closed`,
      );
    }
    const since = this.#listRevision.get(host);
    const request = JSON.stringify({
      create_request: {
        key: _key(prefix),
        range_end: _prefixEnd(prefix),
        ...(since !== undefined ? { start_revision: String(since + 1n) } : {}),
      },
    });
    const deadline = Date.now() + ms;
    const failures: string[] = [];
    const count = this.#endpoints.length;
    const first = this.#preferred;
    for (let i = 0; i < count; i++) {
      const index = (first + i) % count;
      const endpoint = this.#endpoints[index]!;
      const outcome = await this.#watchOnce(
        endpoint,
        request,
        deadline - Date.now(),
        signal,
      );
      if (outcome.kind === "done") {
        this.#preferred = index;
        return;
      }
      if (outcome.kind === "aborted") throw signal!.reason;
      if (outcome.kind === "unreachable" && Date.now() < deadline) {
        failures.push(`"${endpoint}": ${outcome.reason}`);
        if (count > 1) this.#preferred = (index + 1) % count;
        continue;
      }
      if (outcome.kind === "unreachable") return; // wait is over anyway
      throw new StoreError(
        endpoint,
        `Cannot ${what} in etcd at "${endpoint}": ${outcome.reason ?? "failed"}`,
      );
    }
    throw new StoreError(
      this.#endpoints.join(","),
      count === 1
        ? `Cannot ${what} in etcd at ${failures[0]}`
        : `Cannot ${what} in etcd: no endpoint answered: ${failures.join("; ")}`,
    );
  }

  async #watchOnce(
    endpoint: string,
    request: string,
    ms: number,
    signal: AbortSignal | undefined,
  ): Promise<_WatchOutcome> {
    const controller = new AbortController();
    this.#watches.add(controller);
    const status: { state: _WatchState } = { state: "waiting" };
    const stop = (why: _WatchState) => {
      if (status.state === "waiting") status.state = why;
      controller.abort();
    };
    const onAbort = () => stop("aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    // timers from AbortSignal.timeout, as in #call; the listeners go in finally
    const timer = AbortSignal.timeout(Math.max(0, ms));
    const onTimer = () => stop("timeout");
    timer.addEventListener("abort", onTimer, { once: true });
    // the watch must be accepted within the request timeout
    let created = false;
    const stallTimer = AbortSignal.timeout(this.#timeoutMs);
    const onStall = () => {
      if (!created) stop("stalled");
    };
    stallTimer.addEventListener("abort", onStall, { once: true });
    let response: HttpStream | undefined;
    try {
      response = await this.#http.stream(
        endpoint,
        "/v3/watch",
        request,
        controller.signal,
      );
      if (response.status < 200 || response.status >= 300) {
        const text = await response.text();
        return {
          kind: "failed",
          reason: `HTTP ${response.status}: ${_oneLine(text.slice(0, 200))}`,
        };
      }
      let buffer = "";
      while (true) {
        const value = await response.read();
        if (value === undefined) return { kind: "done" }; // the server ended it: look again
        buffer += _decoder.decode(value, { stream: true });
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (!line) continue;
          const message = JSON.parse(line) as {
            result?: {
              created?: boolean;
              canceled?: boolean;
              compact_revision?: string;
              events?: unknown[];
            };
            error?: { message?: string };
          };
          if (message.error) {
            return {
              kind: "failed",
              reason: _oneLine(message.error.message ?? "watch failed"),
            };
          }
          const result = message.result ?? {};
          if (result.created) created = true;
          if (
            (result.events?.length ?? 0) > 0 || result.canceled ||
            (result.compact_revision && result.compact_revision !== "0")
          ) {
            return { kind: "done" };
          }
        }
      }
    } catch (error) {
      if (this.#closed) return { kind: "done" };
      switch (status.state) {
        case "timeout":
          return { kind: "done" };
        case "aborted":
          return { kind: "aborted" };
        case "stalled":
          return {
            kind: "failed",
            reason: `no answer within ${this.#timeoutMs} ms`,
          };
      }
      return created
        ? { kind: "failed", reason: _reason(error) }
        : { kind: "unreachable", reason: _reason(error) };
    } finally {
      timer.removeEventListener("abort", onTimer);
      stallTimer.removeEventListener("abort", onStall);
      signal?.removeEventListener("abort", onAbort);
      this.#watches.delete(controller);
      response?.close();
      controller.abort();
    }
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const controller of this.#watches) controller.abort();
      this.#http.close();
    }
    return Promise.resolve();
  }
}
