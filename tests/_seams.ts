/**
 * Driving the race seams of `src/_seam.ts` from tests: find the points an
 * operation passes, and pause one caller at a point while another acts.
 *
 * @module
 */

import { assertOk } from "./_assert.ts";
import { type SeamEvent, setSeamHook } from "../src/_seam.ts";

/** How long a competitor may be blocked by the paused caller's critical section before we let it go on. */
const BLOCKED_MS = 150;

/** Points of `op` reached by running `fn` once. */
export async function pointsOf(op: string, fn: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  const previous = setSeamHook((event) => {
    if (event.point.split(".")[1] === op && !seen.includes(event.point)) seen.push(event.point);
    return undefined;
  });
  try {
    await fn();
  } finally {
    setSeamHook(previous);
  }
  return seen;
}

/**
 * Runs `fn` paused at `point` (its first passage); while paused, `competitor`
 * runs. The competitor may be blocked by the paused caller's critical section:
 * after {@linkcode BLOCKED_MS} the paused caller goes on anyway, and both are
 * awaited. Only the store under test pauses: the competitor's own passages
 * (it is the same code) go straight through.
 */
export async function pausedAt<T, C>(
  point: string,
  fn: () => Promise<T>,
  competitor: () => Promise<C>,
): Promise<{ result: T; competing: C }> {
  let fired = false;
  let competing: Promise<C> | undefined;
  const previous = setSeamHook((event: SeamEvent) => {
    if (fired || event.point !== point) return undefined;
    fired = true;
    competing = competitor();
    return Promise.race([
      competing.then(() => {}, () => {}),
      new Promise<void>((resolve) => setTimeout(resolve, BLOCKED_MS)),
    ]);
  });
  try {
    const result = await fn();
    assertOk(fired, `point ${point} was not reached again`);
    return { result, competing: await competing! };
  } finally {
    setSeamHook(previous);
  }
}

/** Seam points held shut: {@linkcode holdAt}. Disposing it removes the hook. */
export interface HeldPoints extends Disposable {
  /** Resolves once a caller waits at `point`. */
  reached(point: string): Promise<SeamEvent>;
  /** Lets the caller waiting at `point` go on. */
  letGo(point: string): void;
}

/**
 * Holds the first passage at each of `points` until {@linkcode HeldPoints.letGo}:
 * two operations paused at once, let go in the order a race needs. Later
 * passages go straight through.
 */
export function holdAt(...points: string[]): HeldPoints {
  const gates = new Map(points.map((point) => {
    const gate = Promise.withResolvers<void>();
    const reached = Promise.withResolvers<SeamEvent>();
    return [point, { gate, reached, passed: false }];
  }));
  const previous = setSeamHook((event: SeamEvent) => {
    const entry = gates.get(event.point);
    if (!entry || entry.passed) return undefined;
    entry.passed = true;
    entry.reached.resolve(event);
    return entry.gate.promise;
  });
  const get = (point: string) => {
    const entry = gates.get(point);
    assertOk(entry !== undefined, `${point} is not held`);
    return entry;
  };
  return {
    reached: (point) => get(point).reached.promise,
    letGo: (point) => get(point).gate.resolve(),
    [Symbol.dispose]() {
      for (const entry of gates.values()) entry.gate.resolve();
      setSeamHook(previous);
    },
  };
}
