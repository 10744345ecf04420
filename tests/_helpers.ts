/**
 * Shared test helpers: sleeping, polling and bounding waits, temporary local
 * stores, file listings, and a clock the tests move.
 *
 * @module
 */

import type { Clock } from "../src/clock.ts";

/** Resolves after `ms` milliseconds of real time. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every `intervalMs` until it holds or `ms` have passed, then
 * checks once more.
 *
 * @returns whether it held; see {@linkcode waitFor} for the throwing shape
 */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms: number,
  intervalMs = 100,
): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(intervalMs);
  }
  return await check();
}

/**
 * Polls `check` every `intervalMs` until it holds, at most `ms`.
 *
 * @throws {Error} naming `what` when it never held
 */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 15_000,
  intervalMs = 50,
): Promise<void> {
  if (!await eventually(check, ms, intervalMs)) {
    throw new Error(`Timed out after ${ms}ms waiting for ${what}`);
  }
}

/**
 * Resolves or rejects as `promise` does, or rejects once `ms` have passed
 * (calling `onTimeout` first, to stop what is waited for).
 */
export async function within<T>(
  ms: number,
  promise: Promise<T>,
  onTimeout?: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          onTimeout?.();
          reject(new Error(`still waiting after ${ms} ms`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A clock that only moves when slept on or advanced: time logic without sleeping. */
export class FakeClock implements Clock {
  #now: number;
  /** Every sleep asked for, in milliseconds. */
  readonly sleeps: number[] = [];
  /** @param start epoch milliseconds to start at */
  constructor(start = Date.UTC(2026, 11, 1, 10, 0, 0)) {
    this.#now = start;
  }
  /** Current fake time. */
  now(): number {
    return this.#now;
  }
  /** Moves time forward. */
  advance(ms: number): void {
    this.#now += ms;
  }
  /**
   * Yields once to the event loop, then moves time and records the sleep;
   * a sleep aborted meanwhile (a waiter woken by a change) takes no time.
   */
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    await sleep(0);
    signal?.throwIfAborted();
    this.sleeps.push(ms);
    this.#now += ms;
  }
  /** UTC. */
  utcOffsetMinutes(): number {
    return 0;
  }
  /** Calls nothing by itself: scheduled calls wait for {@linkcode FakeClock.runDue}. */
  schedule(fn: () => void, ms: number): () => void {
    const entry = { at: this.#now + ms, fn };
    this.#scheduled.push(entry);
    return () => {
      this.#scheduled = this.#scheduled.filter((e) => e !== entry);
    };
  }
  /** How many scheduled calls wait (a renewal that ended schedules the next). */
  get scheduledCount(): number {
    return this.#scheduled.length;
  }
  /** Runs the scheduled calls whose time has come. */
  runDue(): void {
    const due = this.#scheduled.filter((e) => e.at <= this.#now);
    this.#scheduled = this.#scheduled.filter((e) => e.at > this.#now);
    due.forEach((e) => e.fn());
  }
  #scheduled: { at: number; fn: () => void }[] = [];
}

/** A temporary local store: its root, template, and cleanup. */
export interface TempStore extends AsyncDisposable {
  /** The root folder. */
  root: string;
  /** `<root>/{0}`. */
  store: string;
  /** Names of the files in a host's folder (History excluded). */
  files(host: string): Promise<string[]>;
  /** Names of the files in a host's History folder. */
  history(host: string): Promise<string[]>;
}

/**
 * The local store's per-host guard file (`src/stores/fs.ts`): always there
 * once a lock was changed, never a lock. Tests that list a folder skip it
 * (and only it: a leftover temporary file is a bug they should see).
 */
export const GUARD_FILE = ".resource-locker.guard";

/** Names of the files (not folders) in a folder, sorted, the guard left out; [] when it does not exist. */
export async function fileNames(path: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const entry of Deno.readDir(path)) {
      if (entry.isFile && entry.name !== GUARD_FILE) out.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return out.sort();
}

/** Makes a temporary local store. */
export async function tempStore(): Promise<TempStore> {
  const root = await Deno.makeTempDir({ prefix: "rl-test-" });
  return {
    root,
    store: `${root}/{0}`,
    files: (host) => fileNames(`${root}/${host}`),
    history: (host) => fileNames(`${root}/${host}/History`),
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

/** A small seeded random generator (mulberry32): numbers in [0, 1), the same for the same seed, so a failing run can be made again. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Whether this run is CI's: `CI` set to anything but "", "false" or "0"
 * (CI services set `CI=true` or `CI=1`). Under CI a missing server or tool
 * fails its suite instead of skipping it.
 */
export function underCi(): boolean {
  const value = Deno.env.get("CI")?.trim().toLowerCase();
  return value !== undefined && value !== "" && value !== "false" && value !== "0";
}
