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

/** Where one store keeps its locks; what every store implements. */
export interface LockStore {
  /** Short name of the store kind, shown in messages. */
  readonly kind: "fs" | "smb" | "etcd";
  /** Where a host's lock folder is, for messages (never holds a secret). */
  describe(host: string): string;
  /**
   * Creates entry `name` holding `data` if and only if no entry of that name
   * exists: an exclusive create (O_EXCL, FILE_CREATE, an etcd transaction).
   * Creates the host's folder when the folder above it exists.
   * @returns true when created, false when an entry of that name exists
   * @throws {StoreError} when the store cannot be reached or the folder is missing
   */
  create(
    host: string,
    name: string,
    data: Uint8Array,
    options?: CreateOptions,
  ): Promise<boolean>;
  /**
   * Names of the entries in a host's folder, History excluded. A folder named
   * like a lock file is listed too: a lock counts by its name. [] when the
   * host's folder is missing but the folder above it exists.
   */
  list(host: string): Promise<string[]>;
  /** Content of an entry, or undefined when it does not exist. */
  read(host: string, name: string): Promise<Uint8Array | undefined>;
  /**
   * Replaces the content of an existing entry (renewal), keeping any native
   * lease. @returns false when the entry no longer exists.
   */
  replace(host: string, name: string, data: Uint8Array): Promise<boolean>;
  /**
   * Moves entry `name` into the host's history as `historyName`, with `data` as
   * its final content; creates the history folder when missing.
   * @returns false when the entry no longer exists
   */
  archive(
    host: string,
    name: string,
    historyName: string,
    data: Uint8Array,
  ): Promise<boolean>;
  /** Deletes an entry (backing off a lock just taken). @returns false when it did not exist. */
  remove(host: string, name: string): Promise<boolean>;
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
   * `ms` milliseconds, whichever is first (etcd watches). Stores without it
   * are polled.
   */
  waitForChange?(host: string, ms: number, signal?: AbortSignal): Promise<void>;
  /** Releases connections; the store is unusable afterwards. */
  close(): Promise<void>;
}
