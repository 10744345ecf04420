/**
 * The etcd store's operations (`LockStore`), on top of the gateway
 * (`gateway.ts`), the request bodies (`requests.ts`) and watches
 * (`watch.ts`). What each guarantees, and how a lost answer is resolved, is
 * told in `../etcd.ts`.
 *
 * @module
 */

import { seam } from "../../_seam.ts";
import { InputError, StoreError } from "../../errors.ts";
import type { ChangeHint, CreateOptions, LockStore, StoreEntry } from "../../store.ts";
import type { HttpTlsOptions } from "../_http_client.ts";
import { fillHost } from "../_template.ts";
import { EtcdGateway, leaseGone } from "./gateway.ts";
import {
  archivePart,
  createPart,
  deleteKeysPart,
  fencePart,
  fromBase64,
  grantPart,
  hostsPagePart,
  isRevision,
  keepAlivePart,
  keyOf,
  keysPart,
  keyText,
  type KeyValue,
  listPart,
  listRanges,
  type Part,
  prefixEnd,
  rangeBothPart,
  rangePart,
  type RangeResponse,
  removePart,
  replacePart,
  revokePart,
  toBase64,
  type TxnResponse,
} from "./requests.ts";
import { EtcdWatcher } from "./watch.ts";
import { sleepUnless } from "../../_sleep.ts";

/** What the store is made of, parsed and checked by `openEtcdStore`. */
export interface EtcdStoreInit {
  /** The template without trailing slashes, for `describe`. */
  template: string;
  /** The key prefix of a host, placeholder still in: `/resource-locks/{0}`. */
  path: string;
  /** Endpoints, parsed, the template's first. */
  endpoints: string[];
  /** History folder name. */
  historyFolderName: string;
  /** Most history entries kept per host. */
  historyLimit: number;
  /** Timeout of every request, in milliseconds. */
  timeoutMs: number;
  /** CA and client certificate for `https://` endpoints. */
  tls?: HttpTlsOptions;
  /** The etcd user to log in as. */
  auth?: { username: string; password: string };
  /** Whether to learn the cluster's members from its member list. */
  discover: boolean;
  /**
   * The key prefix holding every host's keys (`/resource-locks/`), when the
   * template's last segment is the host alone; absent for other templates.
   */
  root?: string;
}

/** Keys of one page when listing hosts. */
const HOST_PAGE_KEYS = 256;

/** etcd's default --max-txn-ops is 128. */
const TXN_CHUNK = 100;
/** Most keys whose lease a store object keeps in mind. */
const LEASE_HINTS = 4096;

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

/** Names of the fence keys of lost creates: no lock name matches them. */
const FENCE_PREFIX = ".resource-locker-fence-";
/** How long a fence stands, in seconds: far longer than any request can be held up. */
const FENCE_TTL = String(24 * 3600);
/**
 * A wait that no event ended (the watch stream was cancelled, compacted,
 * cut or ended by the endpoint) lasts at least this long: the caller looks
 * again when it returns, and a stream that ends at once every time would
 * otherwise make a busy loop of looks and streams.
 */
const ENDED_WATCH_PAUSE_MS = 500;

/** Whether a keep-alive answer gives the lease time left. */
function ttlLeft(json: unknown): boolean {
  const alive = json as { result?: { TTL?: string } } | undefined;
  return Number(alive?.result?.TTL ?? 0) > 0;
}

/** Of the names a watch event removed under a host, the host's folder's entries (not its history's). */
function folderEntries(names: readonly string[]): string[] {
  return names.filter((name) => name !== "" && !name.includes("/"));
}

/** The etcd store; see `../etcd.ts`. */
export class EtcdStore implements LockStore {
  readonly kind = "etcd" as const;
  readonly #template: string;
  readonly #path: string;
  readonly #history: string;
  readonly #historyLimit: number;
  readonly #gateway: EtcdGateway;
  readonly #watcher: EtcdWatcher;
  /** Revision of the last `list` per host: where watches start. */
  readonly #listRevision = new Map<string, bigint>();
  /**
   * The lease of each key at the version this object last created, renewed
   * or read, so that a renewal sends its keep-alive with its transaction in
   * one round trip. Only that: what a mutation acts on is the version its
   * caller names, compared by etcd.
   */
  readonly #leases = new Map<string, { version: string; lease: string }>();
  /**
   * A lease granted for a create that found its key taken, kept for this
   * object's next create with the same TTL: most likely a waiter's, right
   * after the holder let go. Renewed in the same round trip as the put, it
   * saves that create the grant, a raft write of its own. Only while young
   * (half its TTL); one that is never used has no keys and runs out by
   * itself.
   */
  #spare: { lease: string; ttl: string; at: number } | undefined;
  /** The hosts under the root of a template ending in the host; absent for other templates. */
  readonly listHosts?: () => Promise<string[]>;

  /** @param init the parsed template and settings */
  constructor(init: EtcdStoreInit) {
    this.#template = init.template;
    this.#path = init.path;
    const root = init.root;
    if (root !== undefined) this.listHosts = () => this.#listHosts(root);
    const history = init.historyFolderName;
    if (
      !history || /[/\\]/.test(history) || history === "." || history === ".."
    ) {
      throw new InputError(
        `Invalid history folder name "${history}": expected one path segment`,
      );
    }
    this.#history = history;
    this.#historyLimit = init.historyLimit;
    if (!Number.isInteger(this.#historyLimit) || this.#historyLimit < 1) {
      throw new RangeError(
        `Invalid historyLimit ${init.historyLimit}: expected a positive integer`,
      );
    }
    if (!(init.timeoutMs > 0) || !Number.isFinite(init.timeoutMs)) {
      throw new RangeError(
        `Invalid timeoutMs ${init.timeoutMs}: expected a positive number`,
      );
    }
    this.#gateway = new EtcdGateway({
      endpoints: init.endpoints,
      timeoutMs: init.timeoutMs,
      ...init.tls ? { tls: init.tls } : {},
      ...init.auth ? { auth: init.auth } : {},
      discover: init.discover,
    });
    this.#watcher = new EtcdWatcher(this.#gateway);
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

  async #range(key: string, what: string, host?: string): Promise<KeyValue | undefined> {
    const answer = await this.#gateway.call<RangeResponse>(rangePart(key, what), {
      idempotent: true,
    });
    if (host !== undefined) this.#seen(host, answer.header?.revision);
    return answer.kvs?.[0];
  }

  /**
   * Notes the revision a look at a host's keys saw: a watch starts after it,
   * so whatever changed since that look wakes the waiter (none is missed)
   * and nothing older does (no wake-up for what the look already saw).
   */
  #seen(host: string, revision: string | undefined): void {
    if (!revision) return;
    const value = BigInt(revision);
    if (value > (this.#listRevision.get(host) ?? 0n)) this.#listRevision.set(host, value);
  }

  /**
   * Revokes a lease, best effort: an unrevoked lease expires by itself
   * after its TTL.
   * @returns true when etcd revoked it now (it existed until then)
   */
  async #revoke(lease: string | undefined): Promise<boolean> {
    if (!lease || lease === "0") return false;
    try {
      await this.#gateway.call(revokePart(lease));
      return true;
    } catch {
      return false;
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

  /** Drops what this object noted about `key`; undefined, for returns. */
  #forget(key: string): undefined {
    this.#leases.delete(key);
    return undefined;
  }

  /** The revision a write transaction made, which is the version it wrote. */
  #revisionOf(answer: TxnResponse, what: string): string {
    const revision = answer.header?.revision;
    if (!revision || !isRevision(revision)) {
      throw new StoreError(
        this.#gateway.location,
        `Cannot ${what} in etcd: the answer carries no revision`,
      );
    }
    return revision;
  }

  create(
    host: string,
    name: string,
    data: Uint8Array,
    options: CreateOptions = {},
  ): Promise<string | undefined> {
    return this.#create(host, name, data, options);
  }

  /** The create's transaction also lists the host's keys (its success branch, after the put). */
  async createAndList(
    host: string,
    name: string,
    data: Uint8Array,
    options: CreateOptions = {},
  ): Promise<{ version: string | undefined; names?: string[] }> {
    const listing: { names?: string[] } = {};
    const version = await this.#create(host, name, data, options, listing);
    return listing.names ? { version, names: listing.names } : { version };
  }

  /** Creates; with `listing`, the transaction also lists the host, into `listing.names`. */
  async #create(
    host: string,
    name: string,
    data: Uint8Array,
    options: CreateOptions,
    listing?: { names?: string[] },
  ): Promise<string | undefined> {
    const key = this.#entryKey(host, name);
    const prefix = `${this.#prefix(host)}/`;
    const list = listing ? listRanges(prefix, `${prefix}${this.#history}/`) : [];
    const what = `create "${key}"`;
    const value = toBase64(data);
    let ttl: string | undefined;
    if (options.ttlMs !== undefined) {
      if (!(options.ttlMs > 0) || !Number.isFinite(options.ttlMs)) {
        throw new RangeError(
          `Invalid ttlMs ${options.ttlMs}: expected a positive number`,
        );
      }
      ttl = String(Math.max(1, Math.ceil(options.ttlMs / 1000)));
    }
    for (let attempt = 1;; attempt++) {
      // With a TTL, the grant and the put in one round trip: the lease id is
      // ours, and etcd handles the grant first. A spare lease is renewed
      // instead of a grant (cheaper: no raft write), its fence id fresh.
      const spare = ttl ? this.#takeSpare(ttl) : undefined;
      const lease = spare ?? (ttl ? _leaseIds.next() : "0");
      const fence = this.#fenceKey(
        host,
        lease !== "0" && spare === undefined ? lease : _leaseIds.next(),
      );
      const create = createPart(key, value, lease, fence, list);
      const parts: Part[] = !ttl
        ? [create]
        : [spare ? keepAlivePart(key, spare) : grantPart(key, lease, ttl), create];
      const paused = seam("etcd.create.txn", host, name);
      if (paused) await paused;
      const results = await this.#gateway.callAll(parts);
      const created = results.at(-1)!;
      if (spare !== undefined && !created.ok && !created.lost && leaseGone(created)) {
        // The spare ran out before the put: nothing was made; grant one.
        attempt--;
        continue;
      }
      // A renewed spare stands for a grant that went in.
      const granted = ttl ? (spare ? { ok: true as const } : results[0]!) : undefined;
      const grantFailed = granted !== undefined && !granted.ok && !granted.lost;
      /** What a put of ours that went in looks like: our bytes on our lease. */
      const ours = (kv: KeyValue | undefined): kv is KeyValue & { mod_revision: string } =>
        !!kv?.mod_revision && (kv.value ?? "") === value && (kv.lease ?? "0") === lease;
      if (!created.ok && created.lost) {
        // The put may have gone in, or may still: fence it, then look.
        const reading = seam("etcd.create.readback", host, name);
        if (reading) await reading;
        const kv = await this.#fenceAndRead(key, fence, created.error);
        if (!grantFailed) {
          if (ours(kv)) {
            this.#noteLease(key, kv.mod_revision, lease);
            return kv.mod_revision;
          }
          await this.#revoke(lease);
          if (kv) return undefined;
          // Nothing of ours is there, and the fence keeps it so: create
          // again (on the next member: the one that lost the answer is
          // passed over).
          if (attempt < 3) continue;
          throw new StoreError(created.error.location, created.error.message, {
            cause: created.error.cause,
            unchanged: true,
          });
        }
        // Not granted: a put that went in rides a lease not ours.
        if (ours(kv)) await this.#takeBack(key, kv.mod_revision);
      } else if (granted === undefined || granted.ok) {
        if (!created.ok) {
          await this.#revoke(lease);
          throw created.error;
        }
        const answer = created.json as TxnResponse;
        if (!answer.succeeded) {
          // The key is taken: the lease is kept for the next create.
          if (ttl) this.#spare = { lease, ttl, at: performance.now() };
          return undefined;
        }
        const version = this.#revisionOf(answer, what);
        this.#noteLease(key, version, lease);
        if (listing) {
          this.#seen(host, answer.header?.revision);
          listing.names = this.#namesIn(prefix, answer.responses?.slice(1) ?? []);
        }
        const done = seam("etcd.create.applied", host, name);
        if (done) await done;
        return version;
      } else if (created.ok) {
        // Not granted. Had the id been taken, the put went in on a lease of
        // someone else: take it back (by its version: only that put).
        const answer = created.json as TxnResponse;
        if (answer.succeeded) await this.#takeBack(key, this.#revisionOf(answer, what));
      }
      const taken = granted!.ok ? false : /already exists/i.test(granted!.message);
      if (!taken || attempt >= 3) throw (granted as { error: StoreError }).error;
    }
  }

  /** The spare lease for a create with `ttl` (seconds), while young; it is used once. */
  #takeSpare(ttl: string): string | undefined {
    const spare = this.#spare;
    this.#spare = undefined;
    if (!spare || spare.ttl !== ttl) return undefined;
    return performance.now() - spare.at < Number(ttl) * 500 ? spare.lease : undefined;
  }

  /** Deletes the entry a put of ours made on a lease not ours (by its version: only that put). */
  async #takeBack(key: string, version: string): Promise<void> {
    await this.#gateway.call(removePart(key, version, `take back "${key}" from a lease not ours`));
  }

  /**
   * The fence of one create: a key that only a create whose answer was
   * lost writes, and whose absence that create's transaction compares, so
   * that a put still on its way (held by a member that stalled, or
   * proposed before a member died and committed after) fails once the
   * fence is there. Named so that no lock name matches it; `list` leaves it
   * out.
   */
  #fenceKey(host: string, id: string): string {
    return `${this.#prefix(host)}/${FENCE_PREFIX}${id}`;
  }

  /**
   * After a create whose answer was lost: writes its fence (kept a day, on
   * a lease of its own), then reads the key. What the key holds then is
   * final: a put of ours that went in before the fence is there, and none
   * can go in after it.
   * @returns the key as it stands
   * @throws `lost` when the fence or the read fails (the outcome stays unknown)
   */
  async #fenceAndRead(key: string, fence: string, lost: StoreError): Promise<KeyValue | undefined> {
    const lease = _leaseIds.next();
    const results = await this.#gateway.callAll([
      grantPart(fence, lease, FENCE_TTL),
      fencePart(fence, lease),
    ]).catch(() => undefined);
    if (!results?.every((result) => result.ok)) throw lost;
    try {
      return await this.#range(key, `read back "${key}"`);
    } catch {
      throw lost;
    }
  }

  async list(host: string): Promise<string[]> {
    const prefix = `${this.#prefix(host)}/`;
    const history = `${prefix}${this.#history}/`;
    const answer = await this.#gateway.call<TxnResponse>(listPart(prefix, history), {
      idempotent: true,
    });
    this.#seen(host, answer.header?.revision);
    return this.#namesIn(prefix, answer.responses ?? []);
  }

  /** The entries' names in a listing's ranges (no history, no fences). */
  #namesIn(prefix: string, parts: NonNullable<TxnResponse["responses"]>): string[] {
    const names: string[] = [];
    for (const part of parts) {
      for (const kv of part.response_range?.kvs ?? []) {
        const name = keyText(kv.key).slice(prefix.length);
        if (name && !name.includes("/") && !name.startsWith(FENCE_PREFIX)) names.push(name);
      }
    }
    return names;
  }

  /**
   * The hosts with keys under `root` (`/resource-locks/`), by skipping: a
   * page of keys (keys only) from a cursor, and the cursor then jumps past
   * the last host seen, so a host's history (up to `historyLimit` keys) is
   * never read in full. One round trip per page; a page names one host or
   * more.
   */
  async #listHosts(root: string): Promise<string[]> {
    const hosts: string[] = [];
    let from = keyOf(root);
    for (;;) {
      const answer = await this.#gateway.call<RangeResponse>(
        hostsPagePart(root, from, HOST_PAGE_KEYS),
        { idempotent: true },
      );
      const kvs = answer.kvs ?? [];
      let last: string | undefined;
      for (const kv of kvs) {
        const rest = keyText(kv.key).slice(root.length);
        const slash = rest.indexOf("/");
        if (slash <= 0) continue; // a key right under the root: no host's
        const host = rest.slice(0, slash);
        if (host !== last) hosts.push(host);
        last = host;
      }
      if (answer.more !== true || kvs.length === 0) return hosts;
      // On past every key of the last host seen (always past this page).
      from = last !== undefined
        ? prefixEnd(`${root}${last}/`)
        : keyOf(`${keyText(kvs.at(-1)!.key)}\0`);
    }
  }

  async read(host: string, name: string): Promise<StoreEntry | undefined> {
    const key = this.#entryKey(host, name);
    const kv = await this.#range(key, `read "${key}"`, host);
    if (!kv?.mod_revision) {
      this.#leases.delete(key);
      return undefined;
    }
    this.#noteLease(key, kv.mod_revision, kv.lease ?? "0");
    return { data: fromBase64(kv.value), version: kv.mod_revision };
  }

  async replace(
    host: string,
    name: string,
    version: string,
    data: Uint8Array,
  ): Promise<string | undefined> {
    if (!isRevision(version)) return undefined;
    const key = this.#entryKey(host, name);
    const what = `renew "${key}"`;
    const value = toBase64(data);
    const hint = this.#leases.get(key);
    const known = hint?.version === version ? hint.lease : undefined;
    // The rewrite holds only while the key is `version`, and keeps the key's
    // lease. A lease known for this version is kept alive in the same round
    // trip; else the transaction tells the lease and the keep-alive follows.
    const parts: Part[] = [];
    if (known !== undefined && known !== "0") parts.push(keepAlivePart(key, known));
    parts.push(replacePart(key, version, value, known === undefined));
    const paused = seam("etcd.replace.txn", host, name);
    if (paused) await paused;
    const results = await this.#gateway.callAll(parts);
    const txn = results.at(-1)!;
    if (!txn.ok) {
      if (!txn.lost) {
        if (leaseGone(txn)) return this.#forget(key);
        throw txn.error;
      }
      return await this.#resolveReplace(key, version, value, txn.error);
    }
    let keptAlive = false;
    if (known !== undefined && known !== "0") {
      const alive = results[0]!;
      if (alive.ok) {
        // no time left: the lease ran out and the key went with it
        if (!ttlLeft(alive.json)) return this.#forget(key);
        keptAlive = true;
      } else if (leaseGone(alive)) {
        return this.#forget(key);
      }
    }
    const answer = txn.json as TxnResponse;
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

  /** Renews a lease; false when it is gone (and the key with it). */
  async #keepAlive(key: string, lease: string): Promise<boolean> {
    const [alive] = await this.#gateway.callAll([keepAlivePart(key, lease)]);
    if (alive!.ok) return ttlLeft(alive!.json);
    if (leaseGone(alive!)) return false;
    throw alive!.error;
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
    let kv: KeyValue | undefined;
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
    if (!isRevision(version)) return false;
    const key = this.#entryKey(host, name);
    const historyKey = this.#historyKey(host, historyName);
    const history = `${this.#prefix(host)}/${this.#history}/`;
    const value = toBase64(data);
    const paused = seam("etcd.archive.txn", host, name);
    if (paused) await paused;
    const [result] = await this.#gateway.callAll([
      archivePart(key, version, historyKey, history, value),
    ]);
    if (!result!.ok) {
      if (!result!.lost) throw result!.error;
      // Applied when the history entry holds what we sent and the key is no
      // longer `version` (history names are unique per archive).
      const [kv, archived] = await this.#readBack(key, historyKey, result!.error);
      if (kv?.mod_revision === version) throw result!.error;
      return await this.#archivedBefore(key, version, value, archived);
    }
    const answer = result!.json as TxnResponse;
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
    archived: KeyValue | undefined,
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
  ): Promise<[KeyValue | undefined, KeyValue | undefined]> {
    try {
      const answer = await this.#gateway.call<TxnResponse>(
        rangeBothPart(key, other, `read back "${key}"`),
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
    if (!isRevision(version)) return false;
    const key = this.#entryKey(host, name);
    const paused = seam("etcd.remove.txn", host, name);
    if (paused) await paused;
    const [result] = await this.#gateway.callAll([removePart(key, version)]);
    if (!result!.ok) {
      if (!result!.lost) throw result!.error;
      // Still `version`: not applied. Gone or changed: the entry named is not
      // there any more, whoever took it away (false, as the contract says).
      let kv: KeyValue | undefined;
      try {
        kv = await this.#range(key, `read back "${key}"`);
      } catch {
        throw result!.error;
      }
      if (kv?.mod_revision === version) throw result!.error;
      return this.#forget(key) ?? false;
    }
    const answer = result!.json as TxnResponse;
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
    const oldest = await this.#gateway.call<RangeResponse>(keysPart(prefix, what, excess), {
      idempotent: true,
    });
    const keys = (oldest.kvs ?? []).map((kv) => kv.key ?? "");
    for (let i = 0; i < keys.length; i += TXN_CHUNK) {
      await this.#gateway.call(deleteKeysPart(keys.slice(i, i + TXN_CHUNK), what));
    }
  }

  async listHistory(host: string): Promise<string[]> {
    const prefix = `${this.#prefix(host)}/${this.#history}/`;
    const answer = await this.#gateway.call<RangeResponse>(
      keysPart(prefix, `list "${prefix}"`),
      { idempotent: true },
    );
    return (answer.kvs ?? [])
      .map((kv) => keyText(kv.key).slice(prefix.length))
      .filter((name) => name && !name.includes("/"));
  }

  async readHistory(
    host: string,
    name: string,
  ): Promise<Uint8Array | undefined> {
    const key = this.#historyKey(host, name);
    const kv = await this.#range(key, `read "${key}"`);
    return kv ? fromBase64(kv.value) : undefined;
  }

  /**
   * Resolves at the first change under the host's prefix since the last read or
   * `list` of that host (at once if there was one), or after `ms`, or when
   * the store is closed; with the entries the events deleted, when any. One
   * watch stream per host, shared by every waiter of this store object.
   * @throws the signal's reason when `signal` aborts
   * @throws {StoreError} when no endpoint accepts the watch in time
   */
  async waitForChange(
    host: string,
    ms: number,
    signal?: AbortSignal,
    onHint?: (hint: ChangeHint) => void,
  ): Promise<ChangeHint | void> {
    signal?.throwIfAborted();
    if (ms <= 0) return;
    const started = Date.now();
    const since = this.#listRevision.get(host);
    const removed = await this.#watcher.wait(
      `${this.#prefix(host)}/`,
      since !== undefined ? since + 1n : undefined,
      ms,
      signal,
      onHint && ((names) => {
        const entries = folderEntries(names);
        if (entries.length > 0) onHint({ removed: entries });
      }),
    );
    if (removed === undefined) {
      // No event: its time ran out, the store closed, or the stream ended.
      if (this.#gateway.closed) return;
      await sleepUnless(Math.min(ms, ENDED_WATCH_PAUSE_MS) - (Date.now() - started), signal);
      signal?.throwIfAborted();
      return;
    }
    const entries = folderEntries(removed);
    if (entries.length > 0) return { removed: entries };
  }

  /** Watch streams open now, per host prefix: for tests. */
  get openWatches(): string[] {
    return this.#watcher.open;
  }

  close(): Promise<void> {
    this.#gateway.close();
    this.#watcher.close();
    return Promise.resolve();
  }
}
