/**
 * What the etcd store says to etcd, with no I/O: keys in base64, the answers'
 * shapes, and every request body of the store, each written once. The
 * compares that carry the store's guarantees are here and nowhere else:
 *
 * - {@linkcode isAbsent}: the key's create revision is 0, so a put made under
 *   it never replaces an entry (an exclusive create);
 * - {@linkcode isVersion}: the key's mod revision is the version the caller
 *   checked, so a rewrite, archive or delete made under it acts on that very
 *   incarnation and content, never on one that replaced it.
 *
 * @module
 */

/** One key as etcd's gateway answers it (base64 key and value, revisions as strings). */
export interface KeyValue {
  /** The key, base64. */
  key?: string;
  /** The value, base64. */
  value?: string;
  /** Revision of the transaction that created this incarnation of the key. */
  create_revision?: string;
  /** Revision of the last transaction that wrote it: the store's version. */
  mod_revision?: string;
  /** Lease id, absent or "0" for none. */
  lease?: string;
}

/** The header of every answer. */
export interface Header {
  /** The store's revision when the answer was made. */
  revision?: string;
}

/** Answer of a range. */
export interface RangeResponse {
  /** Header. */
  header?: Header;
  /** The keys found. */
  kvs?: KeyValue[];
  /** How many keys matched (with `count_only`). */
  count?: string;
  /** Whether more keys match than a `limit` let through. */
  more?: boolean;
}

/** Answer of a transaction. */
export interface TxnResponse {
  /** Header; its revision is the transaction's when it wrote. */
  header?: Header;
  /** Whether the compares held (the success branch ran). */
  succeeded?: boolean;
  /** One answer per operation of the branch that ran. */
  responses?: {
    response_range?: RangeResponse;
    response_delete_range?: { deleted?: string; prev_kvs?: KeyValue[] };
  }[];
}

/** One request to the gateway. */
export interface Part {
  /** e.g. `/v3/kv/txn`. */
  path: string;
  /** The JSON body. */
  body: unknown;
  /** What it does, for messages: `create "/resource-locks/dc01/Host.lock"`. */
  what: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The engine's own base64 (V8 13) where there is one: the first `btoa` of a
 * Deno 2.9 process loads a script (0.8 ms).
 */
const NATIVE_BASE64 = typeof Uint8Array.fromBase64 === "function" &&
  typeof Uint8Array.prototype.toBase64 === "function";

/** Bytes as base64, the way the gateway carries keys and values. */
export function toBase64(bytes: Uint8Array): string {
  if (NATIVE_BASE64) return bytes.toBase64();
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Base64 from the gateway as bytes (absent: none). */
export function fromBase64(text: string | undefined): Uint8Array {
  if (NATIVE_BASE64) return Uint8Array.fromBase64(text ?? "");
  const binary = atob(text ?? "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** A key as the gateway wants it. */
export function keyOf(text: string): string {
  return toBase64(encoder.encode(text));
}

/** A key from the gateway as text. */
export function keyText(base64: string | undefined): string {
  return decoder.decode(fromBase64(base64));
}

/** The smallest key greater than every key starting with `prefix` (base64). */
export function prefixEnd(prefix: string): string {
  const bytes = encoder.encode(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i]!++;
      return toBase64(end);
    }
  }
  return toBase64(new Uint8Array([0]));
}

/** Whether `text` can be a version of ours: an etcd revision, 1 or more. */
export function isRevision(text: string): boolean {
  return /^[1-9][0-9]{0,18}$/.test(text);
}

/** The compare that holds only while `key` does not exist: its create revision is 0. */
export function isAbsent(key: string): Record<string, string> {
  return { key: keyOf(key), target: "CREATE", result: "EQUAL", create_revision: "0" };
}

/** The compare that holds only while `key` is `version` (its mod revision). */
export function isVersion(key: string, version: string): Record<string, string> {
  return { key: keyOf(key), target: "MOD", result: "EQUAL", mod_revision: version };
}

/** A lease of `ttl` whole seconds with the id `lease`, chosen by us. */
export function grantPart(key: string, lease: string, ttl: string): Part {
  return {
    path: "/v3/lease/grant",
    body: { TTL: ttl, ID: lease },
    what: `grant a lease for "${key}"`,
  };
}

/**
 * Puts `key` only while it does not exist, on `lease` ("0": none), and
 * while `fence` does not exist either: writing the fence makes this very
 * request fail wherever it still is on its way. With a lease the failure
 * branch reads what is there instead, so that an earlier send of ours can
 * be told (our value on our lease). `then`: more requests of the success
 * branch, after the put (a listing of the host's keys).
 */
export function createPart(
  key: string,
  value: string,
  lease: string,
  fence: string,
  then: readonly object[] = [],
): Part {
  return {
    path: "/v3/kv/txn",
    what: `create "${key}"`,
    body: {
      compare: [isAbsent(key), isAbsent(fence)],
      success: [{
        request_put: { key: keyOf(key), value, ...(lease !== "0" ? { lease } : {}) },
      }, ...then],
      ...(lease !== "0" ? { failure: [{ request_range: { key: keyOf(key) } }] } : {}),
    },
  };
}

/** Writes the fence of a create (see {@linkcode createPart}) on `lease`, unless it is there. */
export function fencePart(fence: string, lease: string): Part {
  return {
    path: "/v3/kv/txn",
    what: `fence "${fence}"`,
    body: {
      compare: [isAbsent(fence)],
      success: [{ request_put: { key: keyOf(fence), value: "", lease } }],
    },
  };
}

/** Renews a lease; the answer's TTL is the time left (0 or absent: gone). */
export function keepAlivePart(key: string, lease: string): Part {
  return {
    path: "/v3/lease/keepalive",
    body: { ID: lease },
    what: `keep the lease of "${key}" alive`,
  };
}

/**
 * Rewrites `key` while it is `version`, keeping its lease; with
 * `readLease` the same transaction tells the lease (keys only).
 */
export function replacePart(key: string, version: string, value: string, readLease: boolean): Part {
  return {
    path: "/v3/kv/txn",
    what: `renew "${key}"`,
    body: {
      compare: [isVersion(key, version)],
      success: [
        { request_put: { key: keyOf(key), value, ignore_lease: true } },
        ...(readLease ? [{ request_range: { key: keyOf(key), keys_only: true } }] : []),
      ],
    },
  };
}

/**
 * While `key` is `version`: deletes it (telling its lease), puts the history
 * entry and counts the history, in one transaction. When the compare fails it
 * reads the history entry, to tell an earlier send of ours.
 */
export function archivePart(
  key: string,
  version: string,
  historyKey: string,
  historyPrefix: string,
  value: string,
): Part {
  return {
    path: "/v3/kv/txn",
    what: `archive "${key}"`,
    body: {
      compare: [isVersion(key, version)],
      success: [
        { request_delete_range: { key: keyOf(key), prev_kv: true } },
        { request_put: { key: keyOf(historyKey), value } },
        // the history's size after the put, in the same round trip
        {
          request_range: {
            key: keyOf(historyPrefix),
            range_end: prefixEnd(historyPrefix),
            count_only: true,
          },
        },
      ],
      failure: [{ request_range: { key: keyOf(historyKey) } }],
    },
  };
}

/** Deletes `key` while it is `version` (telling its lease). */
export function removePart(key: string, version: string, what = `remove "${key}"`): Part {
  return {
    path: "/v3/kv/txn",
    what,
    body: {
      compare: [isVersion(key, version)],
      success: [{ request_delete_range: { key: keyOf(key), prev_kv: true } }],
    },
  };
}

/** Revokes a lease (its keys go with it). */
export function revokePart(lease: string): Part {
  return { path: "/v3/lease/revoke", body: { ID: lease }, what: "revoke lease" };
}

/** One key, read. */
export function rangePart(key: string, what: string): Part {
  return { path: "/v3/kv/range", body: { key: keyOf(key) }, what };
}

/** Two keys read at one revision. */
export function rangeBothPart(key: string, other: string, what: string): Part {
  return {
    path: "/v3/kv/txn",
    what,
    body: {
      success: [
        { request_range: { key: keyOf(key) } },
        { request_range: { key: keyOf(other) } },
      ],
    },
  };
}

/**
 * The names under `prefix` but outside `history` (a folder under it): two
 * ranges around the history folder, read at one revision, keys only.
 */
export function listPart(prefix: string, history: string): Part {
  return {
    path: "/v3/kv/txn",
    what: `list "${prefix}"`,
    body: { success: listRanges(prefix, history) },
  };
}

/** The ranges of a listing of `prefix` without `history` (keys only), for a transaction. */
export function listRanges(prefix: string, history: string): object[] {
  return [
    { request_range: { key: keyOf(prefix), range_end: keyOf(history), keys_only: true } },
    {
      request_range: {
        key: prefixEnd(history),
        range_end: prefixEnd(prefix),
        keys_only: true,
      },
    },
  ];
}

/** Keys under `prefix`, oldest first; `limit` of them when given. */
export function keysPart(prefix: string, what: string, limit?: number): Part {
  return {
    path: "/v3/kv/range",
    what,
    body: {
      key: keyOf(prefix),
      range_end: prefixEnd(prefix),
      keys_only: true,
      ...(limit !== undefined ? { limit: String(limit) } : {}),
      sort_order: "ASCEND",
      sort_target: "CREATE",
    },
  };
}

/**
 * One page of keys (keys only, in key order) from `from` (base64) up to the
 * end of `root`: listing the hosts under a root.
 */
export function hostsPagePart(root: string, from: string, limit: number): Part {
  return {
    path: "/v3/kv/range",
    what: `list the hosts under "${root}"`,
    body: { key: from, range_end: prefixEnd(root), keys_only: true, limit: String(limit) },
  };
}

/** Deletes the keys named (base64, as a range answered them). */
export function deleteKeysPart(keys: readonly string[], what: string): Part {
  return {
    path: "/v3/kv/txn",
    what,
    body: { success: keys.map((key) => ({ request_delete_range: { key } })) },
  };
}

/**
 * A linearizable read of `key` that returns its count only: whether a
 * member still answers, and reaches the cluster's leader.
 */
export function probeBody(key: string): string {
  return JSON.stringify({ key: keyOf(key), count_only: true });
}

/** A watch of every key under `prefix`, from `start` when given. */
export function watchBody(prefix: string, start?: bigint): string {
  return JSON.stringify({
    create_request: {
      key: keyOf(prefix),
      range_end: prefixEnd(prefix),
      ...(start !== undefined ? { start_revision: String(start) } : {}),
    },
  });
}
