/**
 * Shared test helpers: temporary local stores and a clock the tests move.
 *
 * @module
 */

import type { Clock } from "../src/clock.ts";

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
  /** Records the sleep, moves time, yields once to the event loop. */
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    this.sleeps.push(ms);
    this.#now += ms;
    await new Promise((resolve) => setTimeout(resolve, 0));
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

async function names(path: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const entry of Deno.readDir(path)) if (entry.isFile) out.push(entry.name);
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
    files: (host) => names(`${root}/${host}`),
    history: (host) => names(`${root}/${host}/History`),
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}
