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
 * | `/resource-locks/dc01/History/Host.lock-<session>.<guid>` | a released lock |
 *
 * An entry's version is its key's mod revision: etcd gives every put a new
 * one, so it names the incarnation and the content. `read` returns it, and
 * `create` and `replace` the revision of their transaction (the same number).
 *
 * - `create` is one transaction: put only if the key's create revision is 0
 *   (it does not exist). An entry with a TTL is attached to its own etcd
 *   lease, so it vanishes by itself when its holder stops renewing it. The
 *   lease grant (with an id the store picks) and the transaction go out
 *   together: one round trip.
 * - `replace`, `archive` and `remove` are each one transaction comparing the
 *   key's mod revision with the version named (compare target MOD): a key
 *   rewritten, deleted or taken again by someone else since fails the
 *   compare and is left alone.
 * - `replace` renews the entry's lease (keep-alive) and rewrites the content
 *   keeping the lease: one round trip when this store object knows the lease
 *   of that version (it created, renewed or read it), else two.
 * - `archive` deletes the live key, puts the history key and counts the
 *   history in one transaction, then revokes the entry's lease and, past
 *   `historyLimit` entries, deletes the oldest.
 * - A mutation whose answer is lost (sent, then the connection broke or timed
 *   out) is resolved by reading back: a create is ours when the key holds
 *   what we sent on the lease we sent (else our lease is revoked, which also
 *   fences a put still on its way); a replace applied when the same
 *   incarnation holds our bytes at a newer version; an archive applied when
 *   its history entry holds our bytes. When the key still is the version
 *   named, nothing was applied and the request's error is thrown.
 * - `waitForChange` watches the host's keys from the revision of the last
 *   `list`, so a change made after that `list` wakes the waiter at once.
 * - Race test seams (`src/_seam.ts`): `etcd.create.txn`, `etcd.replace.txn`,
 *   `etcd.archive.txn`, `etcd.remove.txn` before each transaction goes out
 *   (for a create with a TTL the lease grant goes in the same round trip, so
 *   there is no step between grant and put to pause at);
 *   `etcd.create.readback` after a create's answer was lost;
 *   `etcd.create.applied` once a create is in place, before it returns.
 *
 * Every request has a timeout; every failure is a {@linkcode StoreError}
 * naming the endpoint. Extra endpoints are tried in turn when one cannot be
 * connected to.
 *
 * @module
 */

import { seam } from "../_seam.ts";
import { InputError, StoreError } from "../errors.ts";
import type { CreateOptions, LockStore, StoreEntry } from "../store.ts";
import {
  HttpClient,
  type HttpResponse,
  type HttpStream,
  HttpTransportError,
} from "./_http_client.ts";
import { fillHost, parseEtcdTemplate } from "./_template.ts";

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
/** Most keys whose lease a store object keeps in mind. */
const LEASE_HINTS = 4096;

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

/** Whether `text` can be a version of ours: an etcd revision, 1 or more. */
function _isRevision(text: string): boolean {
  return /^[1-9][0-9]{0,18}$/.test(text);
}

/** The compare that holds only while `key` is `version` (its mod revision). */
function _isVersion(key: string, version: string): Record<string, string> {
  return {
    key: _key(key),
    target: "MOD",
    result: "EQUAL",
    mod_revision: version,
  };
}

/** An answer saying the lease does not exist (any more). */
function _leaseGone(result: _Result): boolean {
  const cause = result.ok ? undefined : result.error.cause;
  return cause instanceof _EtcdAnswerError && cause.grpcCode === _NOT_FOUND;
}

/** Whether a keep-alive answer gives the lease time left. */
function _ttlLeft(json: unknown): boolean {
  const alive = json as { result?: { TTL?: string } } | undefined;
  return Number(alive?.result?.TTL ?? 0) > 0;
}

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
  | {
    ok: false;
    unavailable: boolean;
    /** The request went out and its answer was lost: it may have been applied. */
    lost: boolean;
    message: string;
    error: StoreError;
  };

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
    lost: false,
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
  /**
   * The lease of each key at the version this object last created, renewed
   * or read, so that a renewal sends its keep-alive with its transaction in
   * one round trip. Only that: what a mutation acts on is the version its
   * caller names, compared by etcd.
   */
  readonly #leases = new Map<string, { version: string; lease: string }>();
  #preferred = 0;
  #closed = false;

  constructor(template: string, options: EtcdStoreOptions) {
    const parsed = parseEtcdTemplate(template);
    this.#template = template.replace(/\/+$/, "");
    this.#path = parsed.path;
    const server = parsed.server.includes(":") ? `[${parsed.server}]` : parsed.server;
    const endpoints = [`http://${server}:${parsed.port ?? DEFAULT_PORT}`];
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
    return fillHost(this.#template, host);
  }

  /** `/resource-locks/dc01` */
  #prefix(host: string): string {
    return fillHost(this.#path, host);
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
   * applied. A request that went out and whose answer was lost comes back
   * `lost` (unless idempotent: then this throws), for the caller to resolve.
   * @throws {StoreError} when no endpoint took the batch
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

  /**
   * Notes the lease of `key` at `version`. A fact, not a guess: a key keeps
   * its lease for as long as a version of it stands.
   */
  #noteLease(key: string, version: string, lease: string): void {
    this.#leases.delete(key);
    if (this.#leases.size >= LEASE_HINTS) {
      this.#leases.delete(this.#leases.keys().next().value!);
    }
    this.#leases.set(key, { version, lease });
  }

  /** The revision a write transaction made, which is the version it wrote. */
  #revisionOf(answer: _TxnResponse, what: string): string {
    const revision = answer.header?.revision;
    if (!revision || !_isRevision(revision)) {
      throw new StoreError(
        this.#endpoints.join(","),
        `Cannot ${what} in etcd: the answer carries no revision`,
      );
    }
    return revision;
  }

  async create(
    host: string,
    name: string,
    data: Uint8Array,
    options: CreateOptions = {},
  ): Promise<string | undefined> {
    const key = this.#entryKey(host, name);
    const what = `create "${key}"`;
    const value = _toBase64(data);
    let ttl: string | undefined;
    if (options.ttlMs !== undefined) {
      if (!(options.ttlMs > 0) || !Number.isFinite(options.ttlMs)) {
        throw new RangeError(
          `Invalid ttlMs ${options.ttlMs}: expected a positive number`,
        );
      }
      ttl = String(Math.max(1, Math.ceil(options.ttlMs / 1000)));
    }
    const put = (lease: string): _Part => ({
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
            value,
            ...(lease !== "0" ? { lease } : {}),
          },
        }],
        // what is there instead, to tell our own earlier put (see below)
        ...(lease !== "0" ? { failure: [{ request_range: { key: _key(key) } }] } : {}),
      },
    });
    for (let attempt = 1;; attempt++) {
      // With a TTL, the grant and the put in one round trip: the lease id is
      // ours, and etcd handles the grant first.
      const lease = ttl ? _leaseIds.next() : "0";
      const parts: _Part[] = ttl
        ? [{
          path: "/v3/lease/grant",
          body: { TTL: ttl, ID: lease },
          what: `grant a lease for "${key}"`,
        }, put(lease)]
        : [put(lease)];
      const paused = seam("etcd.create.txn", host, name);
      if (paused) await paused;
      const results = await this.#callAll(parts);
      const granted = ttl ? results[0]! : undefined;
      const created = results.at(-1)!;
      if (!created.ok && created.lost) {
        // The put may have gone in; what is there now tells.
        const reading = seam("etcd.create.readback", host, name);
        if (reading) await reading;
        const grantFailed = granted !== undefined && !granted.ok && !granted.lost;
        if (!grantFailed) {
          return await this.#resolveCreate(key, value, lease, created.error);
        }
      }
      if (granted === undefined || granted.ok) {
        if (!created.ok) {
          await this.#revoke(lease);
          throw created.error;
        }
        const answer = created.json as _TxnResponse;
        if (!answer.succeeded) {
          await this.#revoke(lease);
          return undefined;
        }
        const version = this.#revisionOf(answer, what);
        this.#noteLease(key, version, lease);
        const done = seam("etcd.create.applied", host, name);
        if (done) await done;
        return version;
      }
      // Not granted. Had the id been taken, the put went in on a lease of
      // someone else: take it back (by its version: only that put).
      let wrong: string | undefined;
      if (created.ok) {
        const answer = created.json as _TxnResponse;
        if (answer.succeeded) wrong = answer.header?.revision;
        const kv = answer.responses?.[0]?.response_range?.kvs?.[0];
        if (
          !answer.succeeded && kv?.mod_revision && (kv.value ?? "") === value &&
          kv.lease === lease
        ) {
          // The HTTP client sent the batch again after a kept-alive
          // connection dropped before any answer: the first one went in, the
          // lease it granted is ours, and so is the key on it.
          this.#noteLease(key, kv.mod_revision, lease);
          return kv.mod_revision;
        }
      } else if (created.lost) {
        // unreadable: a put on the other lease goes when that lease does
        const kv = await this.#range(key, `read back "${key}"`).catch(() => undefined);
        if (kv && (kv.value ?? "") === value && (kv.lease ?? "0") === lease) {
          wrong = kv.mod_revision;
        }
      }
      if (wrong) {
        await this.#call("/v3/kv/txn", {
          compare: [_isVersion(key, wrong)],
          success: [{ request_delete_range: { key: _key(key) } }],
        }, `take back "${key}" from a lease not ours`);
      }
      const taken = granted.ok ? false : /already exists/i.test(granted.message);
      if (!taken || attempt >= 3) throw granted.error;
    }
  }

  /**
   * After a create whose answer was lost: the key holds what we sent, on the
   * lease we sent (a lease id is ours alone; a lease-less entry's bytes name
   * its session), or it does not. Without an entry of ours our lease is
   * revoked, which also fences a put still on its way.
   * @returns the version of our entry, or undefined when another entry is there
   * @throws `lost` when there is no entry (nothing of ours is left), or when
   * reading back fails (the outcome stays unknown)
   */
  async #resolveCreate(
    key: string,
    value: string,
    lease: string,
    lost: StoreError,
  ): Promise<string | undefined> {
    let kv: _KeyValue | undefined;
    try {
      kv = await this.#range(key, `read back "${key}"`);
    } catch {
      throw lost;
    }
    if (
      kv?.mod_revision && (kv.value ?? "") === value &&
      (kv.lease ?? "0") === lease
    ) {
      this.#noteLease(key, kv.mod_revision, lease);
      return kv.mod_revision;
    }
    await this.#revoke(lease);
    if (kv) return undefined;
    throw lost;
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

  async read(host: string, name: string): Promise<StoreEntry | undefined> {
    const key = this.#entryKey(host, name);
    const kv = await this.#range(key, `read "${key}"`);
    if (!kv?.mod_revision) {
      this.#leases.delete(key);
      return undefined;
    }
    this.#noteLease(key, kv.mod_revision, kv.lease ?? "0");
    return { data: _fromBase64(kv.value), version: kv.mod_revision };
  }

  async replace(
    host: string,
    name: string,
    version: string,
    data: Uint8Array,
  ): Promise<string | undefined> {
    if (!_isRevision(version)) return undefined;
    const key = this.#entryKey(host, name);
    const what = `renew "${key}"`;
    const value = _toBase64(data);
    const hint = this.#leases.get(key);
    const known = hint?.version === version ? hint.lease : undefined;
    // The rewrite holds only while the key is `version`, and keeps the key's
    // lease. A lease known for this version is kept alive in the same round
    // trip; else the transaction tells the lease and the keep-alive follows.
    const parts: _Part[] = [];
    if (known !== undefined && known !== "0") parts.push(this.#keepAlivePart(key, known));
    parts.push({
      path: "/v3/kv/txn",
      what,
      body: {
        compare: [_isVersion(key, version)],
        success: [
          { request_put: { key: _key(key), value, ignore_lease: true } },
          ...(known === undefined ? [{ request_range: { key: _key(key), keys_only: true } }] : []),
        ],
      },
    });
    const paused = seam("etcd.replace.txn", host, name);
    if (paused) await paused;
    const results = await this.#callAll(parts);
    const txn = results.at(-1)!;
    if (!txn.ok) {
      if (!txn.lost) {
        if (_leaseGone(txn)) return this.#forget(key);
        throw txn.error;
      }
      return await this.#resolveReplace(key, version, value, txn.error);
    }
    let keptAlive = false;
    if (known !== undefined && known !== "0") {
      const alive = results[0]!;
      if (alive.ok) {
        // no time left: the lease ran out and the key went with it
        if (!_ttlLeft(alive.json)) return this.#forget(key);
        keptAlive = true;
      } else if (_leaseGone(alive)) {
        return this.#forget(key);
      }
    }
    const answer = txn.json as _TxnResponse;
    if (!answer.succeeded) return this.#forget(key);
    const next = this.#revisionOf(answer, what);
    const lease = known ??
      answer.responses?.[1]?.response_range?.kvs?.[0]?.lease ?? "0";
    // After the rewrite went in, a keep-alive that fails for another reason
    // than a lease gone leaves the lease its previous expiry (the next
    // renewal, a third of a lease later, extends it): the new version is
    // still returned, as throwing would lose it.
    if (
      lease !== "0" && !keptAlive &&
      !await this.#keepAlive(key, lease).catch(() => true)
    ) {
      return this.#forget(key);
    }
    this.#noteLease(key, next, lease);
    return next;
  }

  #keepAlivePart(key: string, lease: string): _Part {
    return {
      path: "/v3/lease/keepalive",
      body: { ID: lease },
      what: `keep the lease of "${key}" alive`,
    };
  }

  /** Renews a lease; false when it is gone (and the key with it). */
  async #keepAlive(key: string, lease: string): Promise<boolean> {
    const part = this.#keepAlivePart(key, lease);
    const [alive] = await this.#callAll([part]);
    if (alive!.ok) return _ttlLeft(alive!.json);
    if (_leaseGone(alive!)) return false;
    throw alive!.error;
  }

  /** Drops what this object noted about `key`; undefined, for returns. */
  #forget(key: string): undefined {
    this.#leases.delete(key);
    return undefined;
  }

  /**
   * After a rewrite whose answer was lost: applied when the key is still the
   * incarnation `version` was (created at or before it), was written since,
   * and holds what we sent.
   * @returns the new version, or undefined when the entry changed otherwise or is gone
   * @throws `lost` when the key still is `version` (not applied), or when
   * reading back fails
   */
  async #resolveReplace(
    key: string,
    version: string,
    value: string,
    lost: StoreError,
  ): Promise<string | undefined> {
    let kv: _KeyValue | undefined;
    try {
      kv = await this.#range(key, `read back "${key}"`);
    } catch {
      throw lost;
    }
    if (!kv?.mod_revision) return this.#forget(key);
    if (kv.mod_revision === version) throw lost;
    const sameIncarnation = BigInt(kv.create_revision ?? "0") <= BigInt(version);
    if (
      !sameIncarnation || BigInt(kv.mod_revision) < BigInt(version) ||
      (kv.value ?? "") !== value
    ) {
      return this.#forget(key);
    }
    const lease = kv.lease ?? "0";
    if (lease !== "0" && !await this.#keepAlive(key, lease).catch(() => true)) {
      return this.#forget(key);
    }
    this.#noteLease(key, kv.mod_revision, lease);
    return kv.mod_revision;
  }

  async archive(
    host: string,
    name: string,
    version: string,
    historyName: string,
    data: Uint8Array,
  ): Promise<boolean> {
    if (!_isRevision(version)) return false;
    const key = this.#entryKey(host, name);
    const historyKey = this.#historyKey(host, historyName);
    const history = `${this.#prefix(host)}/${this.#history}/`;
    const value = _toBase64(data);
    const paused = seam("etcd.archive.txn", host, name);
    if (paused) await paused;
    const [result] = await this.#callAll([{
      path: "/v3/kv/txn",
      what: `archive "${key}"`,
      body: {
        compare: [_isVersion(key, version)],
        success: [
          { request_delete_range: { key: _key(key), prev_kv: true } },
          { request_put: { key: _key(historyKey), value } },
          // the history's size after the put, in the same round trip
          {
            request_range: {
              key: _key(history),
              range_end: _prefixEnd(history),
              count_only: true,
            },
          },
        ],
        // the history entry, to tell our own earlier send (see below)
        failure: [{ request_range: { key: _key(historyKey) } }],
      },
    }]);
    if (!result!.ok) {
      if (!result!.lost) throw result!.error;
      // Applied when the history entry holds what we sent and the key is no
      // longer `version` (history names are unique per archive).
      const [kv, archived] = await this.#readBack(key, historyKey, result!.error);
      if (kv?.mod_revision === version) throw result!.error;
      return await this.#archivedBefore(key, version, value, archived);
    }
    const answer = result!.json as _TxnResponse;
    if (!answer.succeeded) {
      // The HTTP client sends a request again when a kept-alive connection
      // closes before any answer: then the history entry holding our bytes
      // is the first send's, and the archive is done.
      const archived = answer.responses?.[0]?.response_range?.kvs?.[0];
      return await this.#archivedBefore(key, version, value, archived);
    }
    this.#forget(key);
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

  /**
   * Whether an archive of ours went in before: the history entry holds our
   * bytes (a history entry's name and content are unique to one archive).
   * Revokes the entry's lease when this object knows it.
   */
  async #archivedBefore(
    key: string,
    version: string,
    value: string,
    archived: _KeyValue | undefined,
  ): Promise<boolean> {
    const applied = archived !== undefined && (archived.value ?? "") === value;
    const hint = this.#leases.get(key);
    if (applied && hint?.version === version) await this.#revoke(hint.lease);
    this.#forget(key);
    return applied;
  }

  /** Two keys read at one revision, after a lost answer (its error if this fails too). */
  async #readBack(
    key: string,
    other: string,
    lost: StoreError,
  ): Promise<[_KeyValue | undefined, _KeyValue | undefined]> {
    try {
      const answer = await this.#call<_TxnResponse>(
        "/v3/kv/txn",
        {
          success: [
            { request_range: { key: _key(key) } },
            { request_range: { key: _key(other) } },
          ],
        },
        `read back "${key}"`,
        { idempotent: true },
      );
      return [
        answer.responses?.[0]?.response_range?.kvs?.[0],
        answer.responses?.[1]?.response_range?.kvs?.[0],
      ];
    } catch {
      throw lost;
    }
  }

  async remove(host: string, name: string, version: string): Promise<boolean> {
    if (!_isRevision(version)) return false;
    const key = this.#entryKey(host, name);
    const paused = seam("etcd.remove.txn", host, name);
    if (paused) await paused;
    const [result] = await this.#callAll([{
      path: "/v3/kv/txn",
      what: `remove "${key}"`,
      body: {
        compare: [_isVersion(key, version)],
        success: [{ request_delete_range: { key: _key(key), prev_kv: true } }],
      },
    }]);
    if (!result!.ok) {
      if (!result!.lost) throw result!.error;
      // Still `version`: not applied. Gone or changed: the entry named is not
      // there any more, whoever took it away (false, as the contract says).
      let kv: _KeyValue | undefined;
      try {
        kv = await this.#range(key, `read back "${key}"`);
      } catch {
        throw result!.error;
      }
      if (kv?.mod_revision === version) throw result!.error;
      return this.#forget(key) ?? false;
    }
    const answer = result!.json as _TxnResponse;
    this.#forget(key);
    if (!answer.succeeded) return false;
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
