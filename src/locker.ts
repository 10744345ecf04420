/**
 * The locking rules, written once above the {@linkcode LockStore} interface:
 * exclusion by type, exclusive create then check, retries with jitter,
 * all-or-nothing with rollback, drain for Host locks, leases, release with
 * the session check, breaking of stale locks.
 *
 * @module
 */

import type { Clock } from "./clock.ts";
import { seam } from "./_seam.ts";
import { describeGroup, describeHolders, describeSlotHolder } from "./_text.ts";
import {
  DrainTimeoutError,
  type HolderInfo,
  InputError,
  LockBusyError,
  LockLostError,
  LockNotOwnedError,
  ResourceLockerError,
  StoreError,
} from "./errors.ts";
import {
  type ContentState,
  decodeLockContent,
  encodeLockContent,
  type LockContent,
  type LockType,
  toLocalTicks,
} from "./lock_file.ts";
import { type FileNames, formatLockRef, type LockRef, parseLockId } from "./lock_ref.ts";
import type { ChangeHint, LockStore, StoreEntry } from "./store.ts";
import { slotName, slotNumber } from "./groups.ts";

/** A lock as read from a store. */
export interface LockInfo {
  /** Host, lower-cased. */
  host: string;
  /** Lock id: `Host`, `Generic-<session>`, `File-<session>`. */
  lockId: string;
  /** Lock type. */
  type: LockType;
  /** Lock ref, with the session when known. */
  ref: string;
  /** Session that took it, when known. */
  sessionId?: string;
  /** Caller name, when known. */
  caller?: string;
  /** Description, when known. */
  description?: string;
  /** When it was taken, when known. */
  lockedAt?: Date;
  /** Lease expiry; absent for locks that never expire. */
  expiresAt?: Date;
  /** True when the lease ran out (clock skew allowed for): it blocks nobody. */
  expired: boolean;
  /** How much of the file could be read: `ok`, `empty`, `partial`, `unreadable`. */
  state: ContentState;
  /** Host and process that hold it, when written by us. */
  holder?: { host?: string; pid?: number };
  /**
   * Who wrote it, as its fields tell: `resource-locker` (our fields),
   * `powershell` (only the original module's fields, or only its caller
   * name: its first write step), `unknown` (empty or unreadable).
   */
  origin?: "resource-locker" | "powershell" | "unknown";
  /** When the entry was last written, on the store's clock, where the store tells (file time). */
  writtenAt?: Date;
}

/** A slot of a maintenance group to take together with a Host lock on a member. */
export interface SlotClaim {
  /** Group name. */
  group: string;
  /** Slots in all: at most this many members hold Host locks at once. */
  max: number;
  /** Where the group's slots live: its own folder (`_group-<name>`) or its home host's. */
  home: string;
  /** The member host the slot is taken for. */
  member: string;
}

/** A slot of a maintenance group this process took. */
export interface HeldSlot {
  /** Group name. */
  group: string;
  /** The member host it was taken for. */
  member: string;
  /** Where it lives. */
  home: string;
  /** Its entry name, `Group-<group>.slot-<n>`. */
  name: string;
  /** Session. */
  sessionId: string;
}

/** A slot of a maintenance group as read from the store. */
export interface SlotInfo {
  /** Group name. */
  group: string;
  /** Slot number, 1 to the group's max (higher ones are left from a larger max). */
  slot: number;
  /** Entry name. */
  name: string;
  /** Where it lives. */
  home: string;
  /** The member in maintenance, when known. */
  member?: string;
  /** Session that took it, when known. */
  sessionId?: string;
  /** Caller name, when known. */
  caller?: string;
  /** Description, when known. */
  description?: string;
  /** When it was taken, when known. */
  lockedAt?: Date;
  /** Lease expiry; absent when the Host lock it goes with never expires. */
  expiresAt?: Date;
  /** True when the lease ran out (skew allowed for): the next taker frees it. */
  expired: boolean;
  /**
   * True when its member's Host lock no longer belongs to its session
   * (released or broken without the slot): the next taker frees it.
   */
  orphaned: boolean;
  /** Host and process that took it. */
  holder?: { host?: string; pid?: number };
}

/** What {@linkcode Locker.acquireAll} took. */
export interface Acquired {
  /** The locks, in the order of the request's hosts. */
  locks: HeldLock[];
  /** The slots of maintenance groups, one per claim. */
  slots: HeldSlot[];
}

/** A released lock from a host's history. */
export interface HistoryEntry extends LockInfo {
  /** Name of the entry in the history folder. */
  name: string;
  /** When it was released, when known. */
  unlockedAt?: Date;
  /** Who broke it, when it was broken rather than released. */
  brokenBy?: string;
  /** Why it was broken. */
  breakReason?: string;
}

/** A lock this process took. */
export interface HeldLock {
  /** Host, lower-cased. */
  host: string;
  /** Lock id. */
  lockId: string;
  /** Lock type. */
  type: LockType;
  /** Session. */
  sessionId: string;
  /** Full ref, with the session. */
  ref: string;
}

/**
 * Progress while waiting for a lock. It comes when the state changes (another
 * host or other locks in the way) and otherwise every 30 s while the wait
 * lasts (never more often), so a long wait stays readable in a log.
 */
export interface LockProgress {
  /** `retry`: an attempt failed and another follows; `drain`: waiting for shared locks to go. */
  phase: "retry" | "drain";
  /** The host in the way. */
  host: string;
  /** Attempt just made (retry). */
  attempt?: number;
  /** Attempts in all; absent when waiting for a time (`wait`) instead. */
  attempts?: number;
  /**
   * Milliseconds until the next attempt at the latest (retry; it comes at
   * once when the way clears), or until the wait or the drain gives up.
   * `Infinity` when waiting for as long as it takes.
   */
  waitMs: number;
  /** When this was reported. */
  at: Date;
  /** The locks in the way. */
  holders: HolderInfo[];
  /** When a maintenance group is full: its name (`holders` are its slots). */
  group?: string;
}

/** What to acquire. */
export interface AcquireRequest {
  /** Hosts, lower-cased, each once: dependencies first, the main host last. */
  hosts: string[];
  /** Lock type for every host. */
  type: LockType;
  /** Session id for every lock. */
  sessionId: string;
  /** Caller name to write. */
  caller?: string;
  /** Description to write. */
  description?: string;
  /** Milliseconds between attempts at the latest: a change of the way in wakes a waiter at once. */
  retryDelayMs: number;
  /** Attempts in all (at least 1); ignored when `waitMs` is given. */
  attempts: number;
  /**
   * Waits up to this long in all (`Infinity`: as long as it takes) instead
   * of counting attempts; woken by changes, not by a timer.
   */
  waitMs?: number;
  /** Host locks wait for shared locks to drain. */
  drain: boolean;
  /** How long a Host lock waits for shared locks. */
  drainTimeoutMs: number;
  /** Lease; absent for locks that never expire. */
  ttlMs?: number;
  /** Aborts the wait. */
  signal?: AbortSignal;
  /** Called while waiting. */
  onProgress?: (progress: LockProgress) => void;
  /**
   * Slots of maintenance groups to take with Host locks, all or nothing
   * with the locks; only with `type` Host and {@linkcode Locker.acquireAll}.
   */
  slots?: SlotClaim[];
}

/** Result of releasing one lock. */
export interface ReleaseResult {
  /** The ref released. */
  ref: string;
  /**
   * `released`; `already-released` when nothing was there (safe in
   * `finally`); `lost` when the lock was broken by someone else before this
   * release (History says so): the session did not hold it to the end.
   */
  status: "released" | "already-released" | "lost";
  /** For `lost`: who broke it, when and why, as History records it. */
  brokenBy?: string;
  /** For `lost`: when it was broken. */
  brokenAt?: Date;
  /** For `lost`: why it was broken. */
  breakReason?: string;
}

/** How the engine reaches its store. */
export interface LockerOptions {
  /** The store. */
  store: LockStore;
  /** File names from the file-name template. */
  names: FileNames;
  /** Source of time. */
  clock: Clock;
  /** Clock skew allowed between machines when judging expiry, in milliseconds. */
  skewMs: number;
  /** Hosts handled in parallel at most. @default 64 */
  concurrency?: number;
  /** Who we are, written into locks (`Holder`) and breaks (`BrokenBy`). */
  holder: { host: string; pid: number; user?: string };
}

interface CurrentLock {
  info: LockInfo;
  content: LockContent;
  /** The store's version of what was read: every change names it. */
  version: string;
}

type TakeResult =
  | { ok: true; lock: HeldLock; owned: boolean; listed?: string[] }
  | { ok: false; host: string; holders: HolderInfo[] };

/** Why an attempt failed: a host in the way, or a full group (then `host` is where its slots live). */
interface Failure {
  host: string;
  holders: HolderInfo[];
  /** `needs`: the members of this request in the group, each needing a slot. */
  group?: { name: string; max: number; member: string; needs?: string[] };
}

type AttemptResult =
  | {
    ok: true;
    taken: HeldLock[];
    owned: HeldLock[];
    slots: HeldSlot[];
    ownedSlots: HeldSlot[];
    /** Each host's entries as they stood right after its Host lock was made, where the store told. */
    listed: Map<string, string[]>;
  }
  | ({ ok: false } & Failure);

type SlotTake =
  | { ok: true; slot: HeldSlot; owned: boolean }
  | ({ ok: false } & Failure);

interface CurrentSlot {
  info: SlotInfo;
  content: LockContent;
  version: string;
}

/** Without change notifications from the store, a waiter looks at the locks in its way this often. */
const POLL_MS = 500;
/** With them (a hint, never the truth), it still looks this often. */
const RECHECK_MS = 30_000;
/** Wake-ups that find nothing changed in the way: this many looks at once... */
const WAKE_BURST = 10;
/** ...and then at most this many a second. */
const WAKES_PER_SECOND = 20;
/**
 * Why a wait's own timer and notification are stopped once it is over (only
 * ever caught): a reason made once, because `abort()` without one builds a
 * DOMException, which a fresh process pays about a millisecond for, between
 * a wake-up and the attempt it is for.
 */
const WAIT_OVER = new Error("the wait is over");

let warmedUp = false;
let warmTimer: ReturnType<typeof setTimeout> | undefined;
/**
 * Runs an abort with a listener, and a timer to its end, once in this
 * process. The first abort a Deno process makes costs 0.4-0.7 ms (its event
 * dispatch runs for the first time), a later one under 0.1 ms; the first
 * timer that fires compiles Deno's timer code (0.2-0.3 ms). A waiter pays
 * both while it waits, not right after a wake-up, where its wait is stopped
 * and the stores' clean-up timers fire while its attempt is under way.
 */
function warmUpOnce(): void {
  if (warmedUp) return;
  warmedUp = true;
  const first = new AbortController();
  first.signal.addEventListener("abort", () => {}, { once: true });
  first.abort(WAIT_OVER);
  warmTimer = setTimeout(() => warmTimer = undefined, 0);
}

/**
 * Stops the warm-up's timer when the wait is over before it fired (a wait
 * woken without I/O): no timer of ours outlives the call. The next wait
 * warms up again.
 */
function warmUpOver(): void {
  if (warmTimer === undefined) return;
  clearTimeout(warmTimer);
  warmTimer = undefined;
  warmedUp = false;
}
/** Progress repeats an unchanged state at most this often. */
const PROGRESS_EVERY_MS = 30_000;

/** Passes progress on when the state changed or a while has passed. */
class ProgressGate {
  readonly #clock: Clock;
  readonly #onProgress: ((progress: LockProgress) => void) | undefined;
  #state = "";
  #at = -Infinity;
  constructor(clock: Clock, onProgress: ((progress: LockProgress) => void) | undefined) {
    this.#clock = clock;
    this.#onProgress = onProgress;
  }
  report(progress: Omit<LockProgress, "at">): void {
    if (!this.#onProgress) return;
    const now = this.#clock.now();
    const state = [progress.phase, progress.host, ...progress.holders.map(holderKey).sort()]
      .join("\n");
    if (state === this.#state && now - this.#at < PROGRESS_EVERY_MS) return;
    this.#state = state;
    this.#at = now;
    this.#onProgress({ ...progress, at: new Date(now) });
  }
}

/** Who holds a lock: its session, or without one (PowerShell's) its caller and time. */
function holderKey(holder: HolderInfo): string {
  return holder.sessionId !== undefined
    ? `${holder.lockId}@${holder.sessionId}`
    : `${holder.lockId}@@${holder.caller ?? ""}@${holder.lockedAt?.getTime() ?? ""}`;
}
/**
 * Whether a slot's member (read from the slot's file: any text) is a host
 * name whose folder can be looked at: lower case as written, no way out of
 * the store.
 */
function isMemberHost(member: string): boolean {
  return /^[a-z0-9._-]+$/.test(member) && !member.includes("..");
}

/** History entries of one session's Host lock read, at most, to learn whether it was broken. */
const FATE_SCAN_LIMIT = 256;

/** Runs `fn` over `items` with at most `limit` at once; settles all before rejecting. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      try {
        results[index] = {
          status: "fulfilled",
          value: await fn(items[index]!),
        };
      } catch (reason) {
        results[index] = { status: "rejected", reason };
      }
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, worker),
  );
  return results;
}

/** The locking rules over one store. */
export class Locker {
  readonly #store: LockStore;
  readonly #names: FileNames;
  readonly #clock: Clock;
  readonly #skewMs: number;
  readonly #concurrency: number;
  readonly #holder: { host: string; pid: number; user?: string };
  /**
   * What this locker last wrote of each lock it took or renewed, by the
   * lock's object: its release moves that version without reading it first
   * (one round trip less between a holder letting go and a waiter getting
   * in), and its record is made from these fields, not from the bytes
   * decoded again. The move is compare-and-act on that version, so a lock
   * changed since (broken, renewed by another object of the session) is
   * read and judged as any other.
   */
  readonly #written = new WeakMap<LockRef, { version: string; fields: Record<string, unknown> }>();

  /** @param options store, names, clock and skew */
  constructor(options: LockerOptions) {
    this.#store = options.store;
    this.#names = options.names;
    this.#clock = options.clock;
    this.#skewMs = options.skewMs;
    this.#concurrency = options.concurrency ?? 64;
    this.#holder = options.holder;
  }

  /** The store below. */
  get store(): LockStore {
    return this.#store;
  }

  /** .NET ticks of the local clock at `wall` (a reading of this machine's clock). */
  #ticks(wall: number): bigint {
    return toLocalTicks(wall, this.#clock.utcOffsetMinutes(wall));
  }

  /** Milliseconds to add to this machine's clock to get the store's. */
  async #offset(host: string): Promise<number> {
    return this.#store.clockOffsetMs ? await this.#store.clockOffsetMs(host).catch(() => 0) : 0;
  }

  /**
   * Now on the store's clock where it has one (an SMB server's), so that
   * leases written and judged there agree across machines whose clocks differ.
   */
  async #now(host: string): Promise<number> {
    return this.#clock.now() + await this.#offset(host);
  }

  /**
   * One reading of the clock for everything a change writes: local ticks
   * (`LockedAt`, `UnlockedAt`) and the store-clock time of the same instant.
   */
  async #instant(host: string): Promise<{ ticks: bigint; at: number }> {
    const offset = await this.#offset(host);
    const wall = this.#clock.now();
    return { ticks: this.#ticks(wall), at: wall + offset };
  }

  #info(host: string, lockId: string, content: LockContent, now: number): LockInfo {
    const parsed = parseLockId(lockId)!;
    const sessionId = content.sessionId ?? parsed.sessionId;
    const info: LockInfo = {
      host,
      lockId,
      type: parsed.type,
      ref: formatLockRef(host, lockId, sessionId),
      expired: content.expiresAt !== undefined &&
        content.expiresAt.getTime() + this.#skewMs < now,
      state: content.state,
    };
    if (sessionId !== undefined) info.sessionId = sessionId;
    if (content.caller !== undefined) info.caller = content.caller;
    if (content.description !== undefined) {
      info.description = content.description;
    }
    if (content.lockedAt) info.lockedAt = content.lockedAt;
    if (content.expiresAt) info.expiresAt = content.expiresAt;
    const holder = content.fields.Holder as
      | { Host?: unknown; Pid?: unknown }
      | undefined;
    if (holder && typeof holder === "object") {
      info.holder = {};
      if (typeof holder.Host === "string") info.holder.host = holder.Host;
      if (typeof holder.Pid === "number") info.holder.pid = holder.Pid;
    }
    info.origin = originOf(content);
    return info;
  }

  async #read(host: string, lockId: string): Promise<CurrentLock | undefined> {
    const entry = await this.#store.read(host, this.#names.fileName(lockId));
    return entry === undefined ? undefined : await this.#judge(host, lockId, entry);
  }

  /** A lock entry as it stands: its content and what it means now. */
  async #judge(host: string, lockId: string, entry: StoreEntry): Promise<CurrentLock> {
    const content = decodeLockContent(entry.data, this.#clock.utcOffsetMinutes(this.#clock.now()));
    const info = this.#info(host, lockId, content, await this.#now(host));
    if (entry.writtenAt !== undefined) info.writtenAt = entry.writtenAt;
    return { info, content, version: entry.version };
  }

  /**
   * Now on the store's clock for a host (where the store has a clock of its
   * own, as an SMB server), in epoch milliseconds: what ages and lease
   * expiries of the host's locks are judged against.
   *
   * @param host host, lower-cased
   * @returns epoch milliseconds
   */
  async storeNow(host: string): Promise<number> {
    return await this.#now(host);
  }

  /**
   * Current locks of a host, expired ones included (marked `expired`).
   *
   * @param host host, lower-cased
   * @returns its locks, Host lock first
   */
  async status(host: string): Promise<LockInfo[]> {
    const ids = (await this.#store.list(host))
      .map((name) => this.#names.lockId(name))
      .filter((id): id is string => id !== undefined)
      .sort((
        a,
        b,
      ) => (a === "Host" ? -1 : b === "Host" ? 1 : a.localeCompare(b)));
    // A read that fails (a folder where a lock file should be) fails status:
    // a fault is never "no lock".
    const read = await Promise.all(ids.map(async (id) => (await this.#read(host, id))?.info));
    return read.filter((info): info is LockInfo => info !== undefined);
  }

  /**
   * Tells whether a host has a live lock of one of `types`.
   *
   * @param host host, lower-cased
   * @param types lock types that count
   * @returns true when locked
   */
  async test(host: string, types: readonly LockType[]): Promise<boolean> {
    const ids = (await this.#store.list(host))
      .map((name) => this.#names.lockId(name))
      .filter((id): id is string => id !== undefined && types.includes(parseLockId(id)!.type));
    for (const id of ids) {
      const current = await this.#read(host, id);
      if (current && !current.info.expired) return true;
    }
    return false;
  }

  /**
   * Released and broken locks of a host, newest first.
   *
   * @param host host, lower-cased
   * @param limit at most this many
   * @returns history entries
   */
  async history(host: string, limit = Infinity): Promise<HistoryEntry[]> {
    const names = await this.#store.listHistory(host);
    // Only the newest `limit` entries are kept while reading: History is
    // written by anyone who may write in the host's folder, and each record
    // may be as large as a lock file (1 MiB), so holding them all for a short
    // answer would take memory in proportion to everything planted there.
    // Ties keep History's listing order, as a stable sort of them all would.
    const kept: { entry: HistoryEntry; index: number; time: number }[] = [];
    const time = (e: HistoryEntry) => (e.unlockedAt ?? e.lockedAt)?.getTime() ?? 0;
    const before = (a: (typeof kept)[number], b: (typeof kept)[number]) =>
      a.time > b.time || (a.time === b.time && a.index < b.index);
    const keep = (entry: HistoryEntry, index: number) => {
      const item = { entry, index, time: time(entry) };
      if (limit === Infinity) return void kept.push(item); // all of them: sorted once at the end
      let low = 0;
      let high = kept.length;
      while (low < high) {
        const middle = (low + high) >>> 1;
        if (before(kept[middle]!, item)) low = middle + 1;
        else high = middle;
      }
      if (low >= limit) return;
      kept.splice(low, 0, item);
      if (kept.length > limit) kept.pop();
    };
    const indexed = names.map((name, index) => ({ name, index }));
    const entries = await mapLimit(indexed, this.#concurrency, async ({ name, index }) => {
      const lockId = this.#names.historyLockId(name);
      if (!lockId) return;
      const bytes = await this.#store.readHistory(host, name);
      if (!bytes) return undefined;
      const offset = this.#clock.utcOffsetMinutes(this.#clock.now());
      const content = decodeLockContent(bytes, offset);
      const entry: HistoryEntry = {
        ...this.#info(host, lockId, content, 0),
        name,
        expired: false,
      };
      const f = content.fields;
      const unlockedUtc = typeof f.UnlockedAtUtc === "string"
        ? new Date(f.UnlockedAtUtc)
        : undefined;
      if (unlockedUtc && !Number.isNaN(unlockedUtc.getTime())) {
        entry.unlockedAt = unlockedUtc;
      } else if (
        typeof f.UnlockedAt === "bigint" || typeof f.UnlockedAt === "number"
      ) {
        const ticks = BigInt(f.UnlockedAt);
        entry.unlockedAt = new Date(
          Number((ticks - 621_355_968_000_000_000n) / 10_000n) -
            offset * 60_000,
        );
      }
      if (typeof f.BrokenBy === "string") entry.brokenBy = f.BrokenBy;
      if (typeof f.BreakReason === "string") entry.breakReason = f.BreakReason;
      keep(entry, index);
    });
    for (const result of entries) {
      if (result.status === "rejected") throw result.reason;
    }
    if (limit === Infinity) kept.sort((a, b) => before(a, b) ? -1 : before(b, a) ? 1 : 0);
    return kept.map((item) => item.entry);
  }

  #newFields(
    request: AcquireRequest,
    instant: { ticks: bigint; at: number },
  ): Record<string, unknown> {
    const now = instant.at;
    const fields: Record<string, unknown> = {};
    if (request.caller) fields.Caller = request.caller;
    if (request.description) fields.Description = request.description;
    fields.LockedAt = instant.ticks;
    fields.LockedAtUtc = new Date(now).toISOString();
    fields.Type = request.type;
    fields.SessionId = request.sessionId;
    fields.Holder = { Host: this.#holder.host, Pid: this.#holder.pid };
    if (request.ttlMs !== undefined) {
      fields.ExpiresAtUtc = new Date(now + request.ttlMs).toISOString();
      fields.TtlSeconds = request.ttlMs / 1000;
    }
    return fields;
  }

  async #breakEntry(
    host: string,
    current: CurrentLock,
    reason: string,
  ): Promise<boolean> {
    const name = this.#names.fileName(current.info.lockId);
    const historyName = this.#historyName(name, current.info.lockId, current.info.sessionId);
    const instant = await this.#instant(host);
    const at = new Date(instant.at).toISOString();
    const fields = {
      ...current.content.fields,
      UnlockedAt: instant.ticks,
      UnlockedAtUtc: at,
      BrokenAtUtc: at,
      BrokenBy: `${
        this.#holder.user ? this.#holder.user + "@" : ""
      }${this.#holder.host}:${this.#holder.pid}`,
      BreakReason: reason,
    };
    // Only the very lock that was judged: if it changed meanwhile (another
    // caller broke it and took the host), this does nothing.
    const p = seam("locker.break.judged", host, name);
    if (p) await p;
    return await this.#store.archive(
      host,
      name,
      current.version,
      historyName,
      encodeLockContent(fields),
    );
  }

  async #take(
    host: string,
    request: AcquireRequest,
  ): Promise<TakeResult> {
    const fields = this.#newFields(request, await this.#instant(host));
    const data = encodeLockContent(fields);
    const lockId = request.type === "Host" ? "Host" : `${request.type}-${request.sessionId}`;
    const name = this.#names.fileName(lockId);
    const lock: HeldLock = {
      host,
      lockId,
      type: request.type,
      sessionId: request.sessionId,
      ref: formatLockRef(host, lockId, request.sessionId),
    };
    const createOptions = request.ttlMs !== undefined ? { ttlMs: request.ttlMs } : {};
    // A Host lock that drains lists the host right after it is made: in the
    // same round trip where the store can.
    const store = this.#store;
    const createAndList = request.type === "Host" && request.drain && store.createAndList
      ? store.createAndList.bind(store)
      : undefined;
    for (let round = 0; round < 3; round++) {
      let version: string | undefined;
      let listed: string[] | undefined;
      try {
        if (createAndList) {
          ({ version, names: listed } = await createAndList(host, name, data, createOptions));
        } else version = await store.create(host, name, data, createOptions);
      } catch (error) {
        // Sure that nothing was made (refused, or never sent): nothing to undo.
        if (error instanceof StoreError && error.unchanged) throw error;
        // The create may have made our entry before failing (a reply lost
        // on the way back): remove it when it is ours, else name it.
        const clean = await this.#removeIfOurs(host, lockId, request.sessionId);
        throw withLeftBehind(error, clean ? [] : [lock.ref]);
      }
      const created = version !== undefined;
      if (version !== undefined) this.#written.set(lock, { fields, version });
      if (request.type === "Host") {
        if (created) return { ok: true, lock, owned: true, ...listed ? { listed } : {} };
        const current = await this.#read(host, "Host");
        if (!current) continue; // released meanwhile: create again
        if (current.info.sessionId === request.sessionId) {
          return { ok: true, lock, owned: false };
        }
        if (current.info.expired) {
          await this.#breakEntry(host, current, "lease expired");
          continue;
        }
        return { ok: false, host, holders: [current.info] };
      }
      // Shared lock: ours is in place, now look for a Host lock (create, then check).
      const taken: TakeResult = { ok: true, lock, owned: created };
      try {
        const current = await this.#inTheWay(host, "Host", request.sessionId);
        if (!current || current.info.sessionId === request.sessionId) return taken;
        if (created) await this.#store.remove(host, name, version!);
        return { ok: false, host, holders: [current.info] };
      } catch (error) {
        // The check failed after our file was made: take it back, or say it is left.
        if (!created) throw error;
        const removed = await this.#store.remove(host, name, version!).then(
          () => true,
          () => false,
        );
        throw withLeftBehind(error, removed ? [] : [lock.ref]);
      }
    }
    return { ok: false, host, holders: [] };
  }

  /**
   * The lock `lockId` on `host` as it stands in the way: breaks it when its
   * lease ran out (unless it is the session's own), and judges again when
   * the break finds it changed meanwhile (renewed, released or retaken by
   * then): a lost break never counts as a free host.
   * @returns the lock in the way, or undefined when there is none (any more)
   */
  async #inTheWay(
    host: string,
    lockId: string,
    sessionId: string,
  ): Promise<CurrentLock | undefined> {
    let current = await this.#read(host, lockId);
    for (let round = 0; round < 3; round++) {
      if (!current || !current.info.expired || current.info.sessionId === sessionId) {
        return current;
      }
      if (await this.#breakEntry(host, current, "lease expired")) return undefined;
      current = await this.#read(host, lockId);
    }
    return current; // kept changing while expired: still in the way
  }

  /** Removes a lock entry if it carries our session; true when none of ours is left. */
  async #removeIfOurs(host: string, lockId: string, sessionId: string): Promise<boolean> {
    try {
      const current = await this.#read(host, lockId);
      if (!current) return true;
      const owner = current.info.sessionId ?? parseLockId(lockId)?.sessionId;
      if (owner !== sessionId && current.content.state === "ok") return true;
      // Ours, or an empty/half-written file we may have made: a shared lock's
      // name is ours alone; a Host lock we only remove when it names us.
      if (owner !== sessionId && lockId === "Host") return false;
      await this.#store.remove(host, this.#names.fileName(lockId), current.version);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Takes back the locks this attempt created (never ones the session held
   * before it), each only while it is still the entry created or renewed.
   * @returns refs that could not be removed
   */
  async #rollback(
    owned: readonly HeldLock[],
    ownedSlots: readonly HeldSlot[] = [],
  ): Promise<{ left: string[]; fault: unknown }> {
    const results = await mapLimit(owned, this.#concurrency, async (lock) => {
      const current = await this.#read(lock.host, lock.lockId);
      if (!current || current.info.sessionId !== lock.sessionId) return;
      await this.#store.remove(lock.host, this.#names.fileName(lock.lockId), current.version);
    });
    // Slots after their Host locks: a slot never stands for a member whose
    // Host lock is held without one.
    const slots = await this.releaseSlots(ownedSlots);
    const failed = [...results, ...slots].find((r) => r.status === "rejected");
    return {
      left: [
        ...owned.filter((_, i) => results[i]!.status === "rejected").map((l) => l.ref),
        ...ownedSlots.filter((_, i) => slots[i]!.status === "rejected").map(slotRef),
      ],
      fault: failed?.status === "rejected" ? failed.reason : undefined,
    };
  }

  /**
   * Backs off what an attempt made when the way is not clear. Anything it
   * cannot take back is no busy host but a fault: thrown with what it left.
   */
  async #backOff<T>(
    owned: readonly HeldLock[],
    ownedSlots: readonly HeldSlot[],
    fault: unknown,
    refused: T,
  ): Promise<T> {
    const back = await this.#rollback(owned, ownedSlots);
    if (fault !== undefined) throw withLeftBehind(fault, back.left);
    if (back.left.length > 0) throw withLeftBehind(back.fault, back.left);
    return refused;
  }

  async #attempt(request: AcquireRequest): Promise<AttemptResult> {
    const results = await mapLimit(
      request.hosts,
      this.#concurrency,
      (host) => this.#take(host, request),
    );
    const taken: HeldLock[] = [];
    const owned: HeldLock[] = [];
    const listed = new Map<string, string[]>();
    let failure: { host: string; holders: HolderInfo[] } | undefined;
    let fault: unknown;
    results.forEach((result) => {
      if (result.status === "rejected") fault ??= result.reason;
      else if (result.value.ok) {
        taken.push(result.value.lock);
        if (result.value.owned) owned.push(result.value.lock);
        if (result.value.listed) listed.set(result.value.lock.host, result.value.listed);
      } else {failure ??= {
          host: result.value.host,
          holders: result.value.holders,
        };}
    });
    if (fault === undefined && failure === undefined) {
      const claims = request.slots ?? [];
      if (claims.length === 0) {
        return { ok: true, taken, owned, slots: [], ownedSlots: [], listed };
      }
      // Every Host lock is in place: now a slot of each group per member.
      const takes = await mapLimit(
        claims,
        this.#concurrency,
        (claim) => this.#takeSlot(claim, request),
      );
      const slots: HeldSlot[] = [];
      const ownedSlots: HeldSlot[] = [];
      let full: Failure | undefined;
      for (const take of takes) {
        if (take.status === "rejected") fault ??= take.reason;
        else if (take.value.ok) {
          slots.push(take.value.slot);
          if (take.value.owned) ownedSlots.push(take.value.slot);
        } else {
          const { ok: _, ...rest } = take.value;
          if (rest.group) {
            const name = rest.group.name;
            rest.group.needs = claims.filter((c) => c.group === name).map((c) => c.member);
          }
          full ??= rest;
        }
      }
      if (fault === undefined && full === undefined) {
        return { ok: true, taken, owned, slots, ownedSlots, listed };
      }
      return await this.#backOff(owned, ownedSlots, fault, { ok: false as const, ...full! });
    }
    return await this.#backOff(owned, [], fault, { ok: false as const, ...failure! });
  }

  // -------------------------------------------------------------------------
  // Slots of maintenance groups: `Group-<group>.slot-<n>` entries, n from 1
  // to max, made with the store's exclusive create, so no more than max can
  // exist whatever the races. A slot carries its member and session, and the
  // lease of the Host lock it goes with; it is taken after its member's Host
  // lock and released after it. So a slot whose member's Host lock is not
  // its session's (any more) is left over and may be freed by anyone, as an
  // expired one: with a compare-and-act remove of the very version judged.

  #slotContent(claim: SlotClaim, request: AcquireRequest, instant: { ticks: bigint; at: number }) {
    const fields: Record<string, unknown> = {};
    if (request.caller) fields.Caller = request.caller;
    if (request.description) fields.Description = request.description;
    fields.LockedAt = instant.ticks;
    fields.LockedAtUtc = new Date(instant.at).toISOString();
    fields.Type = "GroupSlot";
    fields.Group = claim.group;
    fields.Member = claim.member;
    fields.SessionId = request.sessionId;
    fields.Holder = { Host: this.#holder.host, Pid: this.#holder.pid };
    if (request.ttlMs !== undefined) {
      fields.ExpiresAtUtc = new Date(instant.at + request.ttlMs).toISOString();
      fields.TtlSeconds = request.ttlMs / 1000;
    }
    return fields;
  }

  /**
   * A slot entry as it stands, or undefined when there is none. With
   * `judge`, also whether it is left over (its member's Host lock is not
   * its session's): one more read.
   */
  async #readSlot(
    home: string,
    group: string,
    name: string,
    judge: boolean,
  ): Promise<CurrentSlot | undefined> {
    const slot = slotNumber(group, name);
    if (slot === undefined) return undefined;
    const entry = await this.#store.read(home, name);
    if (entry === undefined) return undefined;
    const content = decodeLockContent(entry.data, this.#clock.utcOffsetMinutes(this.#clock.now()));
    const f = content.fields;
    const info: SlotInfo = {
      group,
      slot,
      name,
      home,
      expired: content.expiresAt !== undefined &&
        content.expiresAt.getTime() + this.#skewMs < await this.#now(home),
      orphaned: false,
    };
    if (typeof f.Member === "string") info.member = f.Member;
    if (content.sessionId !== undefined) info.sessionId = content.sessionId;
    if (content.caller !== undefined) info.caller = content.caller;
    if (content.description !== undefined) info.description = content.description;
    if (content.lockedAt) info.lockedAt = content.lockedAt;
    if (content.expiresAt) info.expiresAt = content.expiresAt;
    const holder = f.Holder as { Host?: unknown; Pid?: unknown } | undefined;
    if (holder && typeof holder === "object") {
      info.holder = {};
      if (typeof holder.Host === "string") info.holder.host = holder.Host;
      if (typeof holder.Pid === "number") info.holder.pid = holder.Pid;
    }
    if (judge && info.member !== undefined && info.sessionId !== undefined) {
      // Only a member that is a host name can hold a Host lock to look at.
      // A member that cannot be read (its own server, down for the very
      // maintenance the slot is for) cannot be judged: its slot stays in force.
      if (isMemberHost(info.member)) {
        const lock = await this.#read(info.member, "Host").then(
          (found) => ({ found }),
          () => undefined,
        );
        info.orphaned = lock !== undefined &&
          (lock.found === undefined || lock.found.info.sessionId !== info.sessionId);
      }
    }
    return { info, content, version: entry.version };
  }

  /** The slots of a group where they live, each read (entries of other groups and non-slots skipped). */
  async #slots(home: string, group: string, judge: boolean): Promise<CurrentSlot[]> {
    const names = (await this.#store.list(home)).filter((name) =>
      slotNumber(group, name) !== undefined
    );
    const read = await mapLimit(
      names,
      this.#concurrency,
      (name) => this.#readSlot(home, group, name, judge),
    );
    const slots: CurrentSlot[] = [];
    for (const result of read) {
      if (result.status === "rejected") throw result.reason;
      if (result.value) slots.push(result.value);
    }
    return slots.sort((a, b) => a.info.slot - b.info.slot);
  }

  /**
   * Takes a free slot of the claim's group, or finds the session's own for
   * the member (touched, so nobody frees it as left over meanwhile), or
   * frees an expired or left-over one and takes it.
   */
  async #takeSlot(claim: SlotClaim, request: AcquireRequest): Promise<SlotTake> {
    // Others' slots: the session's own, for other members of this request, are no one in the way.
    const holders = (slots: CurrentSlot[]): HolderInfo[] =>
      slots.filter((s) => s.info.slot <= claim.max && s.info.sessionId !== request.sessionId)
        .map((s) => slotHolder(s.info));
    const full = (slots: CurrentSlot[]): SlotTake => ({
      ok: false,
      host: claim.home,
      holders: holders(slots),
      group: { name: claim.group, max: claim.max, member: claim.member },
    });
    const held = (name: string): HeldSlot => ({
      group: claim.group,
      member: claim.member,
      home: claim.home,
      name,
      sessionId: request.sessionId,
    });
    let slots: CurrentSlot[] = [];
    for (let round = 0; round < 4; round++) {
      slots = await this.#slots(claim.home, claim.group, true);
      const data = encodeLockContent(
        this.#slotContent(claim, request, await this.#instant(claim.home)),
      );
      const own = slots.find((s) =>
        s.info.sessionId === request.sessionId && s.info.member === claim.member
      );
      if (own) {
        // The session's own slot for this member (a lock taken again):
        // rewritten as of now, only while it is the version just read.
        const p = seam("locker.slot.own", claim.home, own.info.name);
        if (p) await p;
        const renewed = await this.#store.replace(claim.home, own.info.name, own.version, data);
        if (renewed !== undefined) return { ok: true, slot: held(own.info.name), owned: false };
        continue; // freed or changed meanwhile: look again
      }
      const taken = new Set(slots.map((s) => s.info.slot));
      const free: number[] = [];
      for (let n = 1; n <= claim.max; n++) if (!taken.has(n)) free.push(n);
      const stale = slots.filter((s) =>
        s.info.slot <= claim.max && (s.info.expired || s.info.orphaned)
      );
      if (free.length === 0 && stale.length === 0) return full(slots);
      // Between the look and the create another taker may take the same
      // slot: the create is exclusive, so one of the two gets it.
      const p = seam("locker.slot.checked", claim.home, claim.group);
      if (p) await p;
      for (const n of free) {
        const made = await this.#createSlot(claim, request, slotName(claim.group, n), data);
        if (made) return { ok: true, slot: held(made), owned: true };
      }
      for (const slot of stale) {
        // Only the very slot judged: renewed or retaken meanwhile, it stays.
        const q = seam("locker.slot.judged", claim.home, slot.info.name);
        if (q) await q;
        if (!(await this.#store.remove(claim.home, slot.info.name, slot.version))) continue;
        const made = await this.#createSlot(claim, request, slot.info.name, data);
        if (made) return { ok: true, slot: held(made), owned: true };
      }
    }
    return full(slots);
  }

  /** Creates a slot entry; its name when made, undefined when it exists. */
  async #createSlot(
    claim: SlotClaim,
    request: AcquireRequest,
    name: string,
    data: Uint8Array,
  ): Promise<string | undefined> {
    const createOptions = request.ttlMs !== undefined ? { ttlMs: request.ttlMs } : {};
    try {
      const version = await this.#store.create(claim.home, name, data, createOptions);
      return version === undefined ? undefined : name;
    } catch (error) {
      if (error instanceof StoreError && error.unchanged) throw error;
      // The create may have made our slot before failing: remove it when it is ours.
      const clean = await this.#removeSlotIfOurs(
        claim.home,
        claim.group,
        name,
        request.sessionId,
        claim.member,
      ).catch(() => false);
      throw withLeftBehind(error, clean ? [] : [`${claim.home}/${name}`]);
    }
  }

  async #removeSlotIfOurs(
    home: string,
    group: string,
    name: string,
    sessionId: string,
    member: string,
  ): Promise<boolean> {
    const current = await this.#readSlot(home, group, name, false);
    if (!current || current.info.sessionId !== sessionId || current.info.member !== member) {
      return true;
    }
    await this.#store.remove(home, name, current.version);
    return true;
  }

  /**
   * Renews the leases of held slots, as {@linkcode Locker.renewAll} the locks.
   *
   * @param slots slots of one session
   * @param ttlMs new time to live from now
   * @throws {LockLostError} when a slot is gone or belongs to someone else now
   */
  async renewSlots(slots: readonly HeldSlot[], ttlMs: number): Promise<void> {
    const results = await mapLimit(slots, this.#concurrency, async (slot) => {
      const current = await this.#readSlot(slot.home, slot.group, slot.name, false);
      const lost = (why: string) =>
        new LockLostError(
          slotRef(slot),
          `Slot "${slot.name}" of group "${slot.group}" for "${slot.member}" was lost: ${why}`,
        );
      if (
        !current || current.info.sessionId !== slot.sessionId ||
        current.info.member !== slot.member
      ) {
        throw lost(
          current ? `it is ${describeSlotHolder(slotHolder(current.info))} now` : "it was freed",
        );
      }
      const now = await this.#now(slot.home);
      const fields = {
        ...current.content.fields,
        ExpiresAtUtc: new Date(now + ttlMs).toISOString(),
        RenewedAtUtc: new Date(now).toISOString(),
      };
      const p = seam("locker.slot.renew", slot.home, slot.name);
      if (p) await p;
      const renewed = await this.#store.replace(
        slot.home,
        slot.name,
        current.version,
        encodeLockContent(fields),
      );
      if (renewed === undefined) throw lost("it was freed or taken over");
    });
    for (const result of results) {
      if (result.status === "rejected") throw result.reason;
    }
  }

  /**
   * Frees held slots, each only while it is still the session's. A slot
   * already gone (freed as left over once its Host lock was released, or
   * expired and taken) is nothing to free.
   *
   * @param slots slots of one session
   * @returns one settled result per slot: true when freed here
   */
  releaseSlots(slots: readonly HeldSlot[]): Promise<PromiseSettledResult<boolean>[]> {
    return mapLimit(slots, this.#concurrency, async (slot) => {
      for (let round = 0; round < 5; round++) {
        const current = await this.#readSlot(slot.home, slot.group, slot.name, false);
        if (
          !current || current.info.sessionId !== slot.sessionId ||
          current.info.member !== slot.member
        ) return false;
        const p = seam("locker.slot.release", slot.home, slot.name);
        if (p) await p;
        if (await this.#store.remove(slot.home, slot.name, current.version)) return true;
      }
      throw new StoreError(
        this.#store.describe(slot.home),
        `Cannot free slot "${slot.name}" of group "${slot.group}": it kept changing`,
      );
    });
  }

  /**
   * Frees the slots a session holds for a member in the given groups: what
   * releasing a Host lock by its ref (`unlock`) frees with it.
   *
   * @param member the member host
   * @param sessionId the session
   * @param claims the member's groups (where their slots live)
   * @returns the slots freed
   */
  async releaseSlotsOf(
    member: string,
    sessionId: string,
    claims: readonly SlotClaim[],
  ): Promise<HeldSlot[]> {
    const found: HeldSlot[] = [];
    for (const claim of claims) {
      for (const slot of await this.#slots(claim.home, claim.group, false)) {
        if (slot.info.sessionId === sessionId && slot.info.member === member) {
          found.push({
            group: claim.group,
            member,
            home: claim.home,
            name: slot.info.name,
            sessionId,
          });
        }
      }
    }
    const results = await this.releaseSlots(found);
    for (const result of results) if (result.status === "rejected") throw result.reason;
    return found.filter((_, i) => (results[i] as PromiseFulfilledResult<boolean>).value);
  }

  /**
   * The slots of a group as they stand: who is in maintenance.
   *
   * @param group the group's name
   * @param home where its slots live
   * @returns its slots, by number, each judged expired or left over
   */
  async groupSlots(group: string, home: string): Promise<SlotInfo[]> {
    return (await this.#slots(home, group, true)).map((slot) => slot.info);
  }

  /** The lock ids of shared locks of other sessions among a host's entry names. */
  #sharedOfOthers(names: readonly string[], sessionId: string): string[] {
    return names
      .map((name) => this.#names.lockId(name))
      .filter((id): id is string => {
        if (id === undefined || id === "Host") return false;
        return parseLockId(id)!.sessionId !== sessionId;
      });
  }

  /**
   * Whether the listings made with the Host locks show no shared lock of
   * another session: drained already (the common case, right after a
   * handoff), without {@linkcode Locker.#drain} (whose first run after a
   * wake-up costs its compilation).
   */
  #drainedAtTake(
    taken: readonly HeldLock[],
    listed: ReadonlyMap<string, string[]>,
    sessionId: string,
  ): boolean {
    return taken.every((lock) => {
      const names = listed.get(lock.host);
      return names !== undefined && this.#sharedOfOthers(names, sessionId).length === 0;
    });
  }

  async #drain(
    request: AcquireRequest,
    taken: HeldLock[],
    renew: () => Promise<void>,
    listed: Map<string, string[]>,
  ): Promise<void> {
    // Called with the locks taken; whoever calls it rolls back on any throw.
    const start = this.#clock.now();
    const deadline = start + request.drainTimeoutMs;
    const progress = new ProgressGate(this.#clock, request.onProgress);
    let renewedAt = start;
    let waited = false;
    while (true) {
      const pending: LockInfo[] = [];
      let pendingHost = "";
      const checks = await mapLimit(taken, this.#concurrency, async (lock) => {
        // The first look may be the listing made with the Host lock.
        const names = listed.get(lock.host) ?? await this.#store.list(lock.host);
        listed.delete(lock.host);
        const shared = this.#sharedOfOthers(names, request.sessionId);
        const found: LockInfo[] = [];
        for (const id of shared) {
          const current = await this.#inTheWay(lock.host, id, request.sessionId);
          if (current) found.push(current.info);
        }
        return found;
      });
      for (const check of checks) {
        if (check.status === "rejected") throw check.reason;
        pending.push(...check.value);
      }
      pendingHost = pending[0]?.host ?? "";
      if (pending.length === 0) {
        // Drained after a wait: the Host locks are still ours (else one was
        // broken or force-released meanwhile, maybe taken by another since,
        // and we would say we hold it). The first look comes right after
        // the take, as the listing made with it does: nothing to confirm.
        if (waited) await this.#confirmHeld(taken);
        return;
      }
      const now = this.#clock.now();
      if (now >= deadline) {
        throw new DrainTimeoutError(
          pendingHost,
          `Cannot lock "${pendingHost}": shared locks did not drain in ${
            Math.round(request.drainTimeoutMs / 100) / 10
          }s: ${describeHolders(pending)}`,
          pending,
        );
      }
      progress.report({
        phase: "drain",
        host: pendingHost,
        waitMs: deadline - now,
        holders: pending,
      });
      const renewEvery = request.ttlMs !== undefined ? request.ttlMs / 3 : Infinity;
      if (now - renewedAt >= renewEvery) {
        await renew();
        renewedAt = now;
      }
      waited = true;
      await this.#waitWhileBlocked(
        pendingHost,
        pending.filter((lock) => lock.host === pendingHost),
        // a long drain looks (and so reports) again every PROGRESS_EVERY_MS
        Math.min(deadline, renewedAt + renewEvery, now + PROGRESS_EVERY_MS),
        request.signal,
      );
    }
  }

  /** Throws {@linkcode LockLostError} when a lock is gone or is another session's now. */
  async #confirmHeld(locks: readonly HeldLock[]): Promise<void> {
    const checks = await mapLimit(locks, this.#concurrency, async (lock) => {
      const current = await this.#read(lock.host, lock.lockId);
      if (current?.content.sessionId === lock.sessionId) return;
      throw new LockLostError(
        lock.ref,
        `Lock "${lock.ref}" was lost while shared locks drained: ${
          current ? describeHolders([current.info]) : "it was broken or released by someone else"
        }`,
      );
    });
    for (const check of checks) if (check.status === "rejected") throw check.reason;
  }

  /**
   * Waits while the locks in the way stay as they are: until one of them is
   * gone, changed hands or ran out, until `untilMs` (on this clock), or until
   * aborted. The store's change notifications wake it early; they are a
   * hint, so it looks again and waits on when nothing that matters changed.
   * Without them it looks every {@linkcode POLL_MS}. Each look comes after
   * the wait is armed, so a change between the caller's look and the wait
   * is never missed.
   *
   * With `attemptNow`, a notification that says an entry in the way was
   * removed starts the next attempt right as the store reads it (see
   * {@linkcode LockStore.waitForChange}'s `onHint`): `attemptNow` is then
   * called once, and this returns true, never throws, so that the caller
   * always gets what that attempt took.
   * @returns true when the way may be clear (worth an attempt), false when
   *   `untilMs` came first
   */
  async #waitWhileBlocked(
    host: string,
    blockers: readonly HolderInfo[],
    untilMs: number,
    signal: AbortSignal | undefined,
    attemptNow?: () => void,
  ): Promise<boolean> {
    const notified = this.#store.waitForChange !== undefined;
    // A slot of a full group also stops blocking when its member's Host lock
    // goes (released or broken without the slot): that change is in the
    // member's folder, not the group's, so those are watched too.
    const members = [
      ...new Set(
        blockers.flatMap((b) =>
          b.group !== undefined && b.member !== undefined && b.member !== host &&
            isMemberHost(b.member)
            ? [b.member]
            : []
        ),
      ),
    ];
    // Wake-ups that change nothing in the way (a folder busy with other
    // locks, a server that answers every watch at once) get a look each,
    // WAKE_BURST at once and then WAKES_PER_SECOND: never a busy loop.
    let budget = WAKE_BURST;
    let budgetAt = this.#clock.now();
    const clears = (hint: ChangeHint | void) =>
      !!hint && blockers.some((b) => hint.removed.includes(this.#entryName(b)));
    let attempted = false;
    while (true) {
      signal?.throwIfAborted();
      const now = this.#clock.now();
      if (now >= untilMs) return false;
      const stop = new AbortController();
      const abort = () => stop.abort(WAIT_OVER);
      signal?.addEventListener("abort", abort, { once: true });
      // A wake-up that says an entry in the way was removed: attempt at once
      // (the attempt runs every check), without looking first.
      let cleared = false;
      // A wait that failed (no watch to be had) is no wake-up: this look
      // then waits as a poll would, not again at once (a busy loop).
      let failed = false;
      let changed = false;
      const waitFailed = () => {
        failed = true;
      };
      const waitMs = Math.min(untilMs - now, RECHECK_MS);
      let pauseMs = 0;
      let over = false;
      // Resolves when a hint started the attempt: this returns then, however
      // late the store resolves the wait itself.
      let started!: () => void;
      const attemptStarted = new Promise<void>((resolve) => started = resolve);
      const onHint = attemptNow && ((hint: ChangeHint) => {
        if (over || attempted || !clears(hint)) return;
        attempted = true;
        attemptNow();
        started();
      });
      // A store that throws (even after its hint) fails the wait, never this
      // call: an attempt the hint started is always handed on.
      const waitOn = (h: string, hinted?: (hint: ChangeHint) => void) => {
        try {
          return this.#store.waitForChange!(h, waitMs, stop.signal, hinted);
        } catch (error) {
          return Promise.reject(error);
        }
      };
      const change = notified
        ? Promise.race([
          attemptStarted,
          waitOn(host, onHint)
            .then((hint) => {
              changed = true;
              cleared = clears(hint);
            }, waitFailed),
          // A change there is a reason to look again (the look judges the slot), no more.
          ...members.map((member) =>
            waitOn(member).then(() => {
              changed = true;
            }, waitFailed)
          ),
        ])
        : undefined;
      try {
        const blockedMs = await this.#blockedFor(host, blockers);
        if (blockedMs === 0 || attempted) return true;
        const ms = Math.min(untilMs - now, blockedMs, notified ? RECHECK_MS : POLL_MS);
        const timer = this.#clock.sleep(ms, stop.signal).catch(() => {});
        warmUpOnce();
        await (change ? Promise.race([change, timer]) : timer);
        if (cleared || attempted) return true;
        if (failed) pauseMs = Math.min(ms, POLL_MS) - (this.#clock.now() - now);
        else if (changed) {
          const at = this.#clock.now();
          budget = Math.min(WAKE_BURST, budget + (at - budgetAt) * WAKES_PER_SECOND / 1000);
          budgetAt = at;
          budget--;
          if (budget < 0) {
            pauseMs = Math.min(Math.ceil(-budget * 1000 / WAKES_PER_SECOND), untilMs - at);
          }
        }
      } catch (error) {
        // A look that failed once the attempt is under way: the attempt tells.
        if (attempted) return true;
        throw error;
      } finally {
        over = true;
        warmUpOver();
        // Stopped, not awaited: taking down a watch (a connection closing)
        // must not delay the attempt the wake-up was for.
        stop.abort(WAIT_OVER);
        signal?.removeEventListener("abort", abort);
      }
      // Paced (a failed wait, or wake-ups over the budget) with nothing
      // armed: the next look comes after the watch is armed again.
      if (pauseMs > 0) await this.#clock.sleep(pauseMs, signal).catch(() => {});
    }
  }

  /** The name of a blocker's entry in its host's folder. */
  #entryName(blocker: HolderInfo): string {
    return blocker.group !== undefined ? blocker.lockId : this.#names.fileName(blocker.lockId);
  }

  /**
   * How long the locks in the way keep blocking as they stand now: 0 when
   * one of them is gone, belongs to another session now or ran out (worth
   * another attempt), else the milliseconds until the first lease runs out.
   */
  async #blockedFor(host: string, blockers: readonly HolderInfo[]): Promise<number> {
    if (blockers.length === 0) return POLL_MS; // nobody named: look again soon
    let ms = Infinity;
    for (const blocker of blockers) {
      // A slot of a full group is in the way like a lock, and also no more
      // once its member's Host lock is no longer its session's.
      const current = blocker.group !== undefined
        ? await this.#readSlot(host, blocker.group, blocker.lockId, true)
        : await this.#read(host, blocker.lockId);
      if (
        !current || current.info.expired || current.info.sessionId !== blocker.sessionId ||
        ("orphaned" in current.info && current.info.orphaned) ||
        // Without a session (PowerShell's locks) a new holder shows by its caller and time.
        (blocker.sessionId === undefined && "lockId" in current.info &&
          holderKey(current.info) !== holderKey(blocker))
      ) {
        return 0;
      }
      const expiresAt = current.info.expiresAt?.getTime();
      if (expiresAt !== undefined) {
        ms = Math.min(ms, expiresAt + this.#skewMs + 1 - (await this.#now(host)));
      }
    }
    return Math.max(1, ms);
  }

  /**
   * Takes every lock of a request or none. Retries with jitter; Host locks
   * drain shared locks when asked to.
   *
   * @param request what to lock
   * @returns the locks taken, in the order of `request.hosts`
   * @throws {LockBusyError} after the last attempt, naming the host and its holder
   * @throws {DrainTimeoutError} when shared locks did not drain in time
   * @throws {StoreError} when the store fails; locks taken so far are released
   */
  async acquire(request: AcquireRequest): Promise<HeldLock[]> {
    if (request.slots?.length) {
      throw new TypeError(
        "Locker.acquire() takes no slots of maintenance groups: use acquireAll()",
      );
    }
    return (await this.acquireAll(request)).locks;
  }

  /**
   * Takes every lock of a request and every slot of maintenance groups it
   * claims, or none: the Host locks first, then the slots (so a slot never
   * stands without its member's Host lock, and a slot whose member's Host
   * lock is not its session's any more can be freed by anyone). A full
   * group is waited on like a busy host.
   *
   * @param request what to lock, with `slots` to take
   * @returns the locks and the slots taken
   * @throws {LockBusyError} after the last attempt, naming the host or the full group
   * @throws {DrainTimeoutError} when shared locks did not drain in time
   * @throws {InputError} when the request needs more slots of a group than it has
   * @throws {StoreError} when the store fails; what was taken so far is released
   */
  async acquireAll(request: AcquireRequest): Promise<Acquired> {
    const claims = request.slots ?? [];
    if (claims.length > 0 && request.type !== "Host") {
      throw new TypeError("Slots of maintenance groups go with Host locks only");
    }
    const needed = new Map<string, number>();
    for (const claim of claims) needed.set(claim.group, (needed.get(claim.group) ?? 0) + 1);
    for (const claim of claims) {
      if (needed.get(claim.group)! > claim.max) {
        const members = claims.filter((c) => c.group === claim.group).map((c) => c.member);
        throw new InputError(
          `Cannot lock ${
            members.map((m) => `"${m}"`).join(", ")
          } together: group "${claim.group}" lets ${claim.max} of its members into maintenance at once, this needs ${
            needed.get(claim.group)
          }`,
        );
      }
    }
    const waitUntil = request.waitMs !== undefined ? this.#clock.now() + request.waitMs : undefined;
    const attempts = waitUntil !== undefined ? Infinity : Math.max(1, request.attempts);
    const progress = new ProgressGate(this.#clock, request.onProgress);
    /** The next attempt, when a wake-up started it already (with when it started). */
    let early: { at: number; result: Promise<AttemptResult> } | undefined;
    for (let attempt = 1;; attempt++) {
      const underWay = early;
      early = undefined;
      // An attempt under way is awaited whatever comes: what it took is
      // rolled back below when the signal aborted meanwhile.
      if (!underWay) request.signal?.throwIfAborted();
      const attemptStart = underWay?.at ?? this.#clock.now();
      const result = await (underWay?.result ?? this.#attempt(request));
      if (result.ok) {
        try {
          request.signal?.throwIfAborted();
          if (
            request.type === "Host" && request.drain &&
            !this.#drainedAtTake(result.taken, result.listed, request.sessionId)
          ) {
            await this.#drain(
              request,
              result.taken,
              async () => {
                await this.renewAll(result.taken, request.ttlMs!);
                await this.renewSlots(result.slots, request.ttlMs!);
              },
              result.listed,
            );
          }
          // The holder renews a third of the lease after this returns: when
          // taking the locks took that long already (a slow store, many
          // hosts), renew now, so no lock is handed over near its end.
          const ttlMs = request.ttlMs;
          if (ttlMs !== undefined && this.#clock.now() - attemptStart >= ttlMs / 3) {
            await this.renewAll(result.taken, ttlMs);
          }
          // Last, after every await: a signal that came meanwhile rolls back
          // what this attempt made here, and only that (not a lock the
          // session held before), instead of reaching the caller after.
          request.signal?.throwIfAborted();
        } catch (error) {
          // Interrupted (signal, a throwing onProgress) or failed while
          // draining: nothing this attempt took stays behind.
          const { left } = await this.#rollback(result.owned, result.ownedSlots);
          throw withLeftBehind(error, left);
        }
        return { locks: result.taken, slots: result.slots };
      }
      const now = this.#clock.now();
      if (attempt >= attempts || (waitUntil !== undefined && now >= waitUntil)) {
        const tries = `(${attempt} attempt${attempt === 1 ? "" : "s"})`;
        const group = result.group;
        throw new LockBusyError(
          group ? group.member : result.host,
          group
            ? `Cannot lock "${group.member}": ${
              describeGroup(group.name, group.max, result.holders, group.needs)
            } ${tries}`
            : `Cannot lock "${result.host}": ${describeHolders(result.holders)} ${tries}`,
          result.holders,
        );
      }
      const waitMs = waitUntil !== undefined ? waitUntil - now : Math.round(
        request.retryDelayMs * (0.75 + Math.random() / 2) + Math.random() * 20,
      );
      const report = (leftMs: number) =>
        progress.report({
          phase: "retry",
          host: result.group ? result.group.member : result.host,
          attempt,
          ...waitUntil === undefined ? { attempts } : {},
          waitMs: leftMs,
          holders: result.holders,
          ...result.group ? { group: result.group.name } : {},
        });
      report(waitMs);
      // The next attempt comes when the way may be clear, at the latest after
      // waitMs; a long wait that nothing ends is reported again (the gate lets
      // an unchanged state through every PROGRESS_EVERY_MS), not attempted.
      const nextAt = now + waitMs;
      // A wake-up that says the lock in the way was removed starts the next
      // attempt as the store reads it: its request goes out before this
      // wait has even resolved.
      const attemptNow = () => {
        const taking = this.#attempt(request);
        taking.catch(() => {}); // awaited by the loop, maybe a turn after it settles
        early = { at: this.#clock.now(), result: taking };
      };
      while (true) {
        const at = this.#clock.now();
        const woken = await this.#waitWhileBlocked(
          result.host,
          result.holders,
          Math.min(nextAt, at + PROGRESS_EVERY_MS),
          request.signal,
          attemptNow,
        );
        const left = nextAt - this.#clock.now();
        if (woken || left <= 0) break;
        report(left);
      }
    }
  }

  /**
   * Renews the leases of held locks.
   *
   * @param locks locks of one session
   * @param ttlMs new time to live from now
   * @throws {LockLostError} when a lock is gone or belongs to someone else now
   */
  async renewAll(locks: readonly HeldLock[], ttlMs: number): Promise<void> {
    const results = await mapLimit(locks, this.#concurrency, async (lock) => {
      const current = await this.#read(lock.host, lock.lockId);
      // Ours only when the file itself names our session: a file that
      // names none (PowerShell's, or an empty one) replaced ours.
      if (!current || current.content.sessionId !== lock.sessionId) {
        throw new LockLostError(
          lock.ref,
          `Lock "${lock.ref}" was lost: ${
            current ? describeHolders([current.info]) : "it was broken or released by someone else"
          }`,
        );
      }
      const now = await this.#now(lock.host);
      const fields = {
        ...current.content.fields,
        ExpiresAtUtc: new Date(now + ttlMs).toISOString(),
        RenewedAtUtc: new Date(now).toISOString(),
      };
      // Only the lock just checked: broken and retaken meanwhile, it is lost.
      const p = seam("locker.renew.checked", lock.host, lock.lockId);
      if (p) await p;
      const data = encodeLockContent(fields);
      const renewed = await this.#store.replace(
        lock.host,
        this.#names.fileName(lock.lockId),
        current.version,
        data,
      );
      if (renewed !== undefined) this.#written.set(lock, { fields, version: renewed });
      else {
        throw new LockLostError(
          lock.ref,
          `Lock "${lock.ref}" was lost: it was broken or released`,
        );
      }
    });
    for (const result of results) {
      if (result.status === "rejected") throw result.reason;
    }
  }

  /**
   * Releases one lock into history, only if it still belongs to the session
   * the ref names.
   *
   * @param ref the lock
   * @param force release whatever is there, whoever holds it
   * @returns released, or already-released when nothing was there
   * @throws {LockNotOwnedError} when another session's lock is in its place
   * @throws {InputError} when the owner cannot be verified and `force` is not set
   */
  async release(ref: LockRef, force = false): Promise<ReleaseResult> {
    const refText = formatLockRef(ref.host, ref.lockId, ref.sessionId);
    // A lock this locker wrote is first moved as written, unread.
    const written = this.#written.get(ref);
    this.#written.delete(ref);
    // A lock renewed by its own session between our read and our move has a
    // new version: read again. Anything else that changed it ends the loop.
    for (let round = 0;; round++) {
      // As written: ours, with these fields; else read as it stands now.
      const mine = round === 0 ? written : undefined;
      const current = mine ? undefined : await this.#read(ref.host, ref.lockId);
      if (!mine && !current) return await this.#fate(ref, refText);
      if (current && !force) {
        if (ref.sessionId === undefined) {
          throw new InputError(
            `Cannot unlock "${refText}": the ref does not name its session; the force option releases it anyway`,
            { remedies: ["force"] },
          );
        }
        const owner = current.info.sessionId;
        if (owner === undefined) {
          throw new InputError(
            `Cannot unlock "${refText}": the lock file names no session (written by PowerShell?); the force option releases it`,
            { remedies: ["force"] },
          );
        }
        if (owner !== ref.sessionId) {
          throw new LockNotOwnedError(
            refText,
            `Cannot unlock "${refText}": it now belongs to another session: ${
              describeHolders([current.info])
            }`,
            current.info,
          );
        }
      }
      const name = this.#names.fileName(ref.lockId);
      const owner = mine ? ref.sessionId : current!.info.sessionId;
      const historyName = this.#historyName(name, ref.lockId, owner);
      const fields: Record<string, unknown> = { ...(mine?.fields ?? current!.content.fields) };
      if (
        current?.content.state === "partial" &&
        current.content.caller !== undefined
      ) {
        fields.Caller = current.content.caller;
      }
      const instant = await this.#instant(ref.host);
      fields.UnlockedAt = instant.ticks;
      fields.UnlockedAtUtc = new Date(instant.at).toISOString();
      // Moves only the lock just checked, never one that replaced it.
      const p = seam("locker.release.checked", ref.host, name);
      if (p) await p;
      const archived = await this.#store.archive(
        ref.host,
        name,
        mine?.version ?? current!.version,
        historyName,
        encodeLockContent(fields),
      );
      if (archived) return { ref: refText, status: "released" };
      if (round >= 5) {
        throw new StoreError(
          this.#store.describe(ref.host),
          `Cannot unlock "${refText}": it kept changing while being released`,
        );
      }
    }
  }

  /**
   * The History name of a lock: shared locks keep theirs; Host locks get the
   * session that held them (when known) and a unique suffix,
   * `Host.lock-<session>.<uuid>`, so the fate of a session's Host lock is
   * found by name, however long History grows.
   */
  #historyName(name: string, lockId: string, sessionId: string | undefined): string {
    if (lockId !== "Host") return name;
    return `${name}-${sessionId !== undefined ? `${sessionId}.` : ""}${crypto.randomUUID()}`;
  }

  /**
   * What became of a lock that is gone: broken by someone (History holds it
   * with `BrokenBy` and our session) or released.
   */
  async #fate(ref: LockRef, refText: string): Promise<ReleaseResult> {
    const released: ReleaseResult = { ref: refText, status: "already-released" };
    if (ref.sessionId === undefined) return released;
    const name = this.#names.fileName(ref.lockId);
    // Shared locks keep their name in History; a Host lock's name starts
    // with its session (a prefix only: the content says whose it is).
    const names = ref.lockId === "Host"
      ? (await this.#store.listHistory(ref.host))
        .filter((n) => n.startsWith(`${name}-${ref.sessionId}.`))
        .slice(-FATE_SCAN_LIMIT)
      : [name];
    const found = await mapLimit(names, this.#concurrency, async (historyName) => {
      const bytes = await this.#store.readHistory(ref.host, historyName);
      if (!bytes) return undefined;
      const content = decodeLockContent(bytes, 0);
      const f = content.fields;
      if (content.sessionId !== ref.sessionId || typeof f.BrokenBy !== "string") return undefined;
      const broken: ReleaseResult = { ref: refText, status: "lost", brokenBy: f.BrokenBy };
      if (typeof f.BrokenAtUtc === "string") broken.brokenAt = new Date(f.BrokenAtUtc);
      if (typeof f.BreakReason === "string") broken.breakReason = f.BreakReason;
      return broken;
    });
    let newest: ReleaseResult | undefined;
    for (const result of found) {
      if (result.status !== "fulfilled" || !result.value) continue;
      const at = result.value.brokenAt?.getTime() ?? 0;
      if (!newest || at > (newest.brokenAt?.getTime() ?? 0)) newest = result.value;
    }
    return newest ?? released;
  }

  /**
   * Releases a session's locks in parallel (bounded), each with the session check.
   *
   * @param locks locks this process took
   * @returns one settled result per lock, in order
   */
  releaseAll(locks: readonly HeldLock[]): Promise<PromiseSettledResult<ReleaseResult>[]> {
    return mapLimit(locks, this.#concurrency, (lock) => this.release(lock));
  }

  /**
   * Breaks a lock: moves it into history with who broke it and why.
   *
   * @param ref the lock
   * @param reason why, recorded in history
   * @param force break a lock that has not expired
   * @returns the lock that was broken
   * @throws {LockBusyError} when the lock has not expired and `force` is not set
   * @throws {InputError} when there is no such lock
   */
  async breakLock(
    ref: LockRef,
    reason: string,
    force = false,
  ): Promise<LockInfo> {
    const refText = formatLockRef(ref.host, ref.lockId, ref.sessionId);
    // A lock renewed between our judgement and our break is judged again.
    for (let round = 0;; round++) {
      const current = await this.#read(ref.host, ref.lockId);
      if (!current) {
        throw new InputError(
          `Cannot break "${refText}": ${
            round === 0 ? "there is no such lock" : "it was released meanwhile"
          }`,
        );
      }
      // A ref that names a session breaks only that session's lock.
      if (ref.sessionId !== undefined && ref.sessionId !== current.info.sessionId) {
        throw new LockNotOwnedError(
          refText,
          `Cannot break "${refText}": the lock there now belongs to another session: ${
            describeHolders([current.info])
          }`,
          current.info,
        );
      }
      if (!current.info.expired && !force) {
        throw new LockBusyError(
          ref.host,
          `Cannot break "${refText}": it has not expired (${
            describeHolders([current.info])
          }); the force option breaks it anyway`,
          [current.info],
          { remedies: ["force"] },
        );
      }
      if (await this.#breakEntry(ref.host, current, reason)) return current.info;
      if (round >= 5) {
        throw new StoreError(
          this.#store.describe(ref.host),
          `Cannot break "${refText}": it kept changing while being broken`,
        );
      }
    }
  }
}

/** Who wrote a lock, as its fields tell. */
function originOf(content: LockContent): NonNullable<LockInfo["origin"]> {
  if (content.state === "empty" || content.state === "unreadable") return "unknown";
  if (content.state === "partial") return "powershell"; // its first write step: the caller alone
  const f = content.fields;
  const ours = ["SessionId", "LockedAtUtc", "Holder", "Type", "ExpiresAtUtc"].some((key) =>
    Object.hasOwn(f, key)
  );
  if (ours) return "resource-locker";
  return Object.hasOwn(f, "LockedAt") ? "powershell" : "unknown";
}

/** How a slot shows in messages and errors. */
function slotRef(slot: HeldSlot): string {
  return `${slot.home}/${slot.name}`;
}

/** A slot as a holder in the way. */
function slotHolder(info: SlotInfo): HolderInfo {
  const holder: HolderInfo = { lockId: info.name, group: info.group };
  if (info.member !== undefined) holder.member = info.member;
  if (info.caller !== undefined) holder.caller = info.caller;
  if (info.description !== undefined) holder.description = info.description;
  if (info.lockedAt !== undefined) holder.lockedAt = info.lockedAt;
  if (info.sessionId !== undefined) holder.sessionId = info.sessionId;
  return holder;
}

function withLeftBehind(error: unknown, left: readonly string[]): unknown {
  if (left.length === 0) return error;
  const suffix = `; could not release ${left.join(", ")}: unlock them with the force option`;
  if (error instanceof StoreError) {
    return new StoreError(error.location, error.message + suffix, {
      cause: error.cause,
      remedies: [...error.remedies, "force"],
    });
  }
  if (error instanceof ResourceLockerError) {
    error.message += suffix;
    error.remedies = [...error.remedies, "force"];
    return error;
  }
  return error;
}
