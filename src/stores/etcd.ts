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
 *   (it does not exist), and while the create's own fence key does not
 *   exist (see below). An entry with a TTL is attached to its own etcd
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
 *   out, or etcd answered "request timed out", "server stopped") is never
 *   sent again but resolved by reading back. A create first writes its fence
 *   key (`.resource-locker-fence-<id>` beside the entry, on a lease of a
 *   day; no lock name matches it and `list` leaves it out), so that the put,
 *   if it is still on its way (a member that stalled with it, a proposal
 *   committed after its member died), fails; then it reads: the create is
 *   ours when the key holds what we sent on the lease we sent; with nothing
 *   there it surely did nothing and is made again (on another member).
 *   A replace applied when the same incarnation holds our bytes at a newer
 *   version; an archive applied when its history entry holds our bytes.
 *   When the key still is the version named, nothing was applied and the
 *   request's error is thrown.
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
 * naming the endpoint. Cluster: the members' client URLs are learned from
 * the first answer (member list) and join the endpoints given; a request
 * goes to the next member when it surely did not reach one, "no leader"
 * answers are tried again for as long as the timeout, and a watch whose
 * member fails resumes on another from the same revision. TLS (`https://`,
 * `ca`, `cert`, `key`) and authentication (`username`, `password`: a token
 * renewed when etcd refuses it) are the gateway's (`etcd/gateway.ts`).
 *
 * The code: this module opens the store; `etcd/gateway.ts` is the way to the
 * cluster (endpoints, failover, timeouts, what a failure means),
 * `etcd/requests.ts` the keys and request bodies (each compare written
 * once), `etcd/watch.ts` the watches, `etcd/store.ts` the operations.
 *
 * @module
 */

import { InputError } from "../errors.ts";
import type { LockStore } from "../store.ts";
import type { HttpTlsOptions } from "./_http_client.ts";
import { hostsRoot, parseEtcdTemplate } from "./_template.ts";
import { DEFAULT_PORT, endpointUrls, parseEndpoint } from "./etcd/gateway.ts";
import { EtcdStore } from "./etcd/store.ts";

export { _leaseIds } from "./etcd/store.ts";

/** Options for {@linkcode openEtcdStore}. */
export interface EtcdStoreOptions {
  /**
   * More endpoints of the same cluster (`https://host:port`,
   * `http://host:port`, `host:port`), tried in turn after the template's
   * when one cannot be connected to. One `https://` endpoint makes every
   * endpoint speak TLS, the template's too.
   * @default {[]}
   */
  endpoints?: string[];
  /**
   * Path of a PEM file with the CA certificate(s) that signed the servers'
   * certificates, trusted besides Deno's root store. Setting it (or `cert`)
   * makes every endpoint speak TLS.
   */
  ca?: string;
  /**
   * Path of a PEM file with the client certificate (chain) shown to etcd
   * (`--client-cert-auth`); with `key`.
   */
  cert?: string;
  /** Path of the PEM file with the private key of `cert`. */
  key?: string;
  /**
   * etcd user to log in as, when etcd has authentication on; its role
   * needs read and write on the template's prefix (`/resource-locks/`), no
   * more.
   */
  username?: string;
  /** Password of `username`; never shown. */
  password?: string;
  /**
   * Learn the cluster's other members from the first answer (etcd's member
   * list) and fail over to them too, after the endpoints given.
   * @default {true}
   */
  discover?: boolean;
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

const DEFAULT_HISTORY_LIMIT = 1000;
const DEFAULT_TIMEOUT_MS = 5000;

/**
 * Opens an etcd store for a folder template. Opening does not connect; the
 * first request does.
 *
 * @param template `etcd://host[:port]/prefix/{0}`; `{host}` works as `{0}`
 * @param options endpoints, TLS, user, history folder name and bound, timeout
 * @returns the store; call `close()` when done
 * @throws {InputError} when the template or an endpoint is malformed
 * @throws {RangeError} when `historyLimit` or `timeoutMs` is not a positive number
 *
 * Needs `--allow-net` for the endpoints.
 *
 * @example Opening a store
 * ```ts
 * import { openEtcdStore } from "./etcd.ts";
 * import { equal } from "node:assert/strict";
 * const store = openEtcdStore("etcd://127.0.0.1:2379/resource-locks/{0}", {
 *   historyFolderName: "History",
 * });
 * equal(store.describe("dc01"), "etcd://127.0.0.1:2379/resource-locks/dc01");
 * await store.close();
 * ```
 */
export function openEtcdStore(
  template: string,
  options: EtcdStoreOptions,
): LockStore {
  const parsed = parseEtcdTemplate(template);
  const server = parsed.server.includes(":") ? `[${parsed.server}]` : parsed.server;
  const given = [
    // the template names no scheme: TLS settings choose it
    { scheme: undefined, authority: `${server}:${parsed.port ?? DEFAULT_PORT}`, text: template },
    ...(options.endpoints ?? []).map((extra) => parseEndpoint(extra, "endpoints")),
  ];
  const tls = _loadTls(options);
  if (options.password !== undefined && options.username === undefined) {
    throw new InputError("Invalid etcd settings: etcd.password is given without etcd.username");
  }
  const root = hostsRoot(parsed);
  return new EtcdStore({
    template: template.replace(/\/+$/, ""),
    path: parsed.path,
    endpoints: endpointUrls(given, tls !== undefined),
    ...tls ? { tls } : {},
    ...options.username !== undefined
      ? { auth: { username: options.username, password: options.password ?? "" } }
      : {},
    discover: options.discover ?? true,
    ...root !== undefined ? { root } : {},
    historyFolderName: options.historyFolderName,
    historyLimit: options.historyLimit ?? DEFAULT_HISTORY_LIMIT,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
}

/**
 * Reads the PEM files the TLS options name; undefined when none is named.
 * @throws {InputError} naming the setting and file when one cannot be read
 * or holds no PEM of its kind, or when `cert` comes without `key`
 */
function _loadTls(options: EtcdStoreOptions): HttpTlsOptions | undefined {
  const { ca, cert, key } = options;
  if (ca === undefined && cert === undefined && key === undefined) return undefined;
  if ((cert === undefined) !== (key === undefined)) {
    throw new InputError(
      `Invalid etcd TLS settings: etcd.cert and etcd.key go together (${
        cert === undefined ? "etcd.key" : "etcd.cert"
      } alone is given)`,
    );
  }
  const tls: HttpTlsOptions = {};
  if (ca !== undefined) tls.caCerts = [_readPem(ca, "etcd.ca", /-----BEGIN CERTIFICATE-----/)];
  if (cert !== undefined && key !== undefined) {
    tls.cert = _readPem(cert, "etcd.cert", /-----BEGIN CERTIFICATE-----/);
    tls.key = _readPem(key, "etcd.key", /-----BEGIN [A-Z ]*PRIVATE KEY-----/);
  }
  return tls;
}

/** Largest PEM file read: a certificate chain is a few KiB. */
const _MAX_PEM_BYTES = 1024 * 1024;

function _readPem(path: string, setting: string, kind: RegExp): string {
  let text: string;
  try {
    const info = Deno.statSync(path);
    if (!info.isFile) throw new Error("not a file");
    if (info.size > _MAX_PEM_BYTES) throw new Error("larger than 1 MiB");
    text = Deno.readTextFileSync(path);
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error))
      .replace(/\s*\(os error \d+\)/, "").split(/[\n:]/)[0];
    throw new InputError(`Cannot read ${setting} "${path}": ${reason}`);
  }
  if (!kind.test(text)) {
    throw new InputError(
      `Invalid ${setting} "${path}": no PEM ${
        setting === "etcd.key" ? "private key" : "certificate"
      } in it`,
    );
  }
  return text;
}
