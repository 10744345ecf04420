/**
 * The one small interface every lock store implements. The locking rules
 * (exclusion, drain, retries, leases, all-or-nothing) live above it in
 * `src/locker.ts` and are written once for every store.
 *
 * A store sees each host as a folder of named entries ("Host.lock",
 * "Generic-<session>.lock") plus a history folder of released entries. Host
 * names reach a store already validated and lower-cased.
 *
 * @module
 */

/** Options for {@linkcode LockStore.create}. */
export interface CreateOptions {
  /**
   * Time to live of the entry in milliseconds, for stores with native leases
   * (etcd). File stores ignore it: the expiry is in the content.
   */
  ttlMs?: number;
}

/**
 * An entry as read from a store: its bytes and the version they are.
 *
 * The version is opaque to the caller and names this exact incarnation and
 * content of the entry (etcd: the key's mod revision; files: the file's
 * identity and bytes; SMB: creation time and bytes). Every mutation names the
 * version it checked and acts only if the entry still is that version, so no
 * caller ever moves, rewrites or deletes an entry it did not check.
 */
export interface StoreEntry {
  /** Content. */
  data: Uint8Array;
  /** Opaque version of this incarnation and content. */
  version: string;
  /**
   * When this incarnation was written, on the store's clock, where the store
   * tells (a file's modification time; on SMB the file's creation time).
   * Only for judging how old a lock without a date in it is (an empty file
   * left by a PowerShell writer that died between its two steps).
   */
  writtenAt?: Date;
}

/** What a wake-up from {@linkcode LockStore.waitForChange} says changed, as far as the store tells. */
export interface ChangeHint {
  /** Names of the host's entries the notification says were removed or renamed away. */
  removed: readonly string[];
}

/**
 * Where one store keeps its locks; what every store implements.
 *
 * The contract, which `tests/_store_contract.ts` checks on every store:
 * - `create` is atomic: the entry appears with its whole content or not at
 *   all, and never replaces an entry (an entry is never observable empty or
 *   half-written, even when the creating process dies at any point);
 * - `replace`, `archive` and `remove` are compare-and-act: they act on the
 *   entry only while it still is the version named, and never touch another
 *   incarnation (a lock broken and retaken meanwhile is left alone);
 * - a process that dies inside any operation leaves either the old state or
 *   the new one, never a state another caller cannot resolve.
 */
export interface LockStore {
  /** Short name of the store kind, shown in messages. */
  readonly kind: "fs" | "smb" | "etcd";
  /** Where a host's lock folder is, for messages (never holds a secret). */
  describe(host: string): string;
  /**
   * Creates entry `name` holding `data` if and only if no entry of that name
   * exists, atomically with its content. Creates the host's folder when the
   * folder above it exists.
   * @returns the version created, or undefined when an entry of that name exists
   * @throws {StoreError} when the store cannot be reached or the folder is
   *   missing; with `unchanged` set when the store is sure nothing was
   *   created (the locker then has nothing to clean up and no lock to name)
   */
  create(
    host: string,
    name: string,
    data: Uint8Array,
    options?: CreateOptions,
  ): Promise<string | undefined>;
  /**
   * Optional: {@linkcode create}, then the names of the host's entries as
   * they stand right after it ({@linkcode list}'s), in one round trip (an
   * etcd transaction, an SMB compound). A Host lock's drain starts from
   * this listing instead of listing once more. `names` is absent when the
   * store could not tell (the caller then lists).
   */
  createAndList?(
    host: string,
    name: string,
    data: Uint8Array,
    options?: CreateOptions,
  ): Promise<{ version: string | undefined; names?: string[] }>;
  /**
   * Names of the entries in a host's folder, History excluded. A folder named
   * like a lock file is listed too: a lock counts by its name. [] when the
   * host's folder is missing but the folder above it exists.
   */
  list(host: string): Promise<string[]>;
  /** Content and version of an entry, or undefined when it does not exist. */
  read(host: string, name: string): Promise<StoreEntry | undefined>;
  /**
   * Replaces the content of the entry if it still is `version` (renewal),
   * keeping any native lease, atomically: readers see the old content or the
   * new, never a mix or an empty entry.
   * @returns the new version, or undefined when the entry is gone or is no
   * longer `version`
   */
  replace(
    host: string,
    name: string,
    version: string,
    data: Uint8Array,
  ): Promise<string | undefined>;
  /**
   * Moves the entry into the host's history as `historyName`, with `data` as
   * its final content, if it still is `version`; creates the history folder
   * when missing.
   * @returns false when the entry is gone or is no longer `version`
   */
  archive(
    host: string,
    name: string,
    version: string,
    historyName: string,
    data: Uint8Array,
  ): Promise<boolean>;
  /**
   * Deletes the entry if it still is `version` (backing off a lock just taken).
   * @returns false when the entry is gone or is no longer `version`
   */
  remove(host: string, name: string, version: string): Promise<boolean>;
  /**
   * Optional, for stores whose hosts' folders share one root (a folder
   * template ending in `/{0}`, `smb://server/share/{0}`, etcd): the names of
   * the folders under that root, unsorted: every host that has one, and
   * other folders a reader skips (names that are no host names). Absent
   * where each host has its own server or share: there the hosts must be
   * named.
   * @throws {StoreError} when the root cannot be listed or does not exist
   */
  listHosts?(): Promise<string[]>;
  /** Names of the entries in a host's history; [] when there is none. */
  listHistory(host: string): Promise<string[]>;
  /** Content of a history entry, or undefined when missing. */
  readHistory(host: string, name: string): Promise<Uint8Array | undefined>;
  /**
   * Optional: milliseconds to add to this machine's clock to get the store's
   * clock, for stores that have one (an SMB server tells its time when a
   * connection is made). Lease expiries are written and judged on it, so
   * holders whose clocks differ agree; the configured skew is allowed on top.
   */
  clockOffsetMs?(host: string): Promise<number>;
  /**
   * Optional: resolves when the host's folder may have changed or after
   * `ms` milliseconds, whichever is first (a file watcher, an SMB2
   * CHANGE_NOTIFY, an etcd watch). Stores without it are polled. It must
   * see every change after it is called: armed before it returns (a
   * watcher, a request sent), or from the revision of the store's last look
   * (etcd). The locker calls it, then looks again, then waits.
   *
   * It may resolve with a {@linkcode ChangeHint}: the entries the
   * notification says were removed. A hint only: the locker then skips its
   * look and makes its next attempt at once, and that attempt runs every
   * check (an atomic create, the reads after it).
   *
   * Where the store can, it also hands that hint to `onHint` the moment it
   * reads the notification, before the wait resolves (and before any
   * clean-up), so that the caller's next request goes out in the same turn:
   * in a process just woken from idle every step in between costs. At most
   * once per wait, never after it is over; `onHint` must not throw. A store
   * that cannot (or a wait that resolves at once) only resolves.
   */
  waitForChange?(
    host: string,
    ms: number,
    signal?: AbortSignal,
    onHint?: (hint: ChangeHint) => void,
  ): Promise<ChangeHint | void>;
  /** Releases connections; the store is unusable afterwards. */
  close(): Promise<void>;
}
