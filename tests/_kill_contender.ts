/**
 * One worker process of the crash-and-race stress test (`_kill_stress.ts`,
 * issue 9). It takes Host and Generic locks on one host through the public
 * API, with a short lease that renews by itself, holds them for a random
 * while and releases them, round after round, until its deadline or until
 * the parent kills it with SIGKILL.
 *
 * It tells the parent's oracle what it does in its own log file, one JSON
 * line per event, each written with one `write(2)` before the next step (a
 * write that returned survives a SIGKILL of the writer; fsync would only
 * guard against a machine crash and would widen the window in which a kill
 * loses the line):
 *
 * - `acquired`: right after `lockResource` returned, with `after`, a time
 *   the lock's create came after (the call, or the last retry the call
 *   reported), so the lease written is at least `after + ttl`;
 * - `renewed`: a renewal that succeeded, with `t` the time it started, so the
 *   lease written is at least `t + ttl`;
 * - `lost`: the lock's signal aborted;
 * - `releasing`: right before `release()` is called;
 * - the probe only: `retry` and `drain`, each time it reports a wait, with
 *   the locks in its way;
 * - `released`, `release-failed`, `failed` (`lockResource` threw).
 *
 * With `goFile` it starts warm: it loads everything, reads the host's locks
 * once (which makes the store's connection), logs `ready` and waits for the
 * go file, whose JSON adds options; so the parent replaces a killed worker
 * at once, whatever a start costs on the store.
 *
 * `RESOURCE_LOCKER_TEST_SEAM=<point>:<dir>` (in the environment, or `seam`
 * in the go file) pauses the first passage of a race seam so that the parent
 * can kill the process there (`installSeamFromEnv`, which only the command
 * line installs by itself).
 *
 * Usage: deno run -A tests/_kill_contender.ts <json WorkerOptions>
 *
 * @module
 */

import {
  closeStores,
  getResourceLockStatus,
  LockLostError,
  lockResource,
  type ResourceLock,
} from "../mod.ts";
import { installSeamFromEnv } from "../src/_seam.ts";
import { seededRandom as random } from "./_helpers.ts";

/** What the parent passes, as JSON in the first argument. */
export interface WorkerOptions {
  /** Folder template of the store. */
  store: string;
  /** The host contended for. */
  host: string;
  /** Log file (created by the worker, appended to). */
  log: string;
  /** Lease in ms. */
  ttlMs: number;
  /** Clock skew allowed, in ms. */
  skewMs: number;
  /** Epoch ms after which the worker stops by itself (a bound if the parent dies). */
  untilMs: number;
  /** Seed of the worker's random choices. */
  seed: number;
  /** `work`: rounds until killed; `probe`: one Host lock, held briefly, then exit. */
  mode: "work" | "probe";
  /** Share of Host rounds, 0..1. @default 0.4 */
  hostShare?: number;
  /** Longest hold, in ms. @default 1.3 × ttl */
  maxHoldMs?: number;
  /** Shortest hold, in ms (seam workers hold long enough to renew). @default 0 */
  minHoldMs?: number;
  /** Time between attempts, in ms. @default 30 */
  retryMs?: number;
  /**
   * Start warm and wait: load everything, reach the store once (a read),
   * log `ready`, then wait until this file appears and take its JSON as
   * further options (`seam`: the seam spec to install).
   */
  goFile?: string;
  /** `<point>:<dir>` for `RESOURCE_LOCKER_TEST_SEAM`, given on go. */
  seam?: string;
}

const options: WorkerOptions = JSON.parse(Deno.args[0]!);
const logFile = Deno.openSync(options.log, { append: true, create: true });
const encoder = new TextEncoder();
/** Appends one event line with a single write. */
function log(event: Record<string, unknown>): void {
  const bytes = encoder.encode(JSON.stringify(event) + "\n");
  let written = 0;
  while (written < bytes.length) written += logFile.writeSync(bytes.subarray(written));
}

const rand = random(options.seed);
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });

/** Takes one lock; logs `acquired` or `failed`. */
async function take(type: "Host" | "Generic", attempts: number): Promise<ResourceLock | undefined> {
  const calledAt = Date.now();
  let after = calledAt;
  log({ e: "attempt", t: calledAt, type });
  let lock: ResourceLock;
  try {
    lock = await lockResource(options.host, {
      store: options.store,
      config: { clockSkew: `${options.skewMs}ms` },
      type,
      caller: `kill-stress-${Deno.pid}`,
      dependencies: {},
      ttl: `${options.ttlMs}ms`,
      timeout: `${options.retryMs ?? 30}ms`,
      retries: attempts,
      drainTimeout: "3s",
      signal: AbortSignal.timeout(Math.max(1, options.untilMs - calledAt)),
      onProgress: (progress) => {
        // The next attempt, whose create may succeed, starts after this.
        if (progress.phase === "retry") after = Date.now();
        // The probe tells what stood in its way, and when it was seen.
        if (options.mode === "probe") {
          log({
            e: progress.phase,
            t: Date.now(),
            holders: progress.holders.map((h) => ({
              lockId: h.lockId,
              caller: h.caller,
              expiresAt: (h as { expiresAt?: Date }).expiresAt,
            })),
          });
        }
      },
    });
  } catch (error) {
    log({ e: "failed", t: Date.now(), type, message: String((error as Error)?.message ?? error) });
    return undefined;
  }
  const t = Date.now();
  log({ e: "acquired", t, type, after, session: lock.sessionId });
  // Renewals happen by themselves (every third of the lease) through
  // lock.renew(): wrap it on this object to log each one that succeeded.
  const renew = lock.renew.bind(lock);
  lock.renew = async () => {
    const started = Date.now();
    await renew();
    log({ e: "renewed", t: started, done: Date.now() });
  };
  lock.signal.addEventListener("abort", () => log({ e: "lost", t: Date.now() }), { once: true });
  return lock;
}

/** Releases a lock; logs `releasing` before and the outcome after. */
async function release(lock: ResourceLock): Promise<void> {
  log({ e: "releasing", t: Date.now() });
  try {
    await lock.release();
    log({ e: "released", t: Date.now() });
  } catch (error) {
    log({
      e: "release-failed",
      t: Date.now(),
      lost: error instanceof LockLostError,
      message: String((error as Error)?.message ?? error),
    });
  }
}

log({ e: "start", t: Date.now(), pid: Deno.pid });
if (options.goFile) {
  try {
    await getResourceLockStatus(options.host, {
      store: options.store,
      config: { clockSkew: `${options.skewMs}ms` },
    });
  } catch (error) {
    log({ e: "warm-failed", t: Date.now(), message: String((error as Error)?.message ?? error) });
  }
  log({ e: "ready", t: Date.now() });
  let go: Partial<WorkerOptions> | undefined;
  while (!go) {
    try {
      go = JSON.parse(await Deno.readTextFile(options.goFile));
    } catch {
      if (Date.now() > options.untilMs) Deno.exit(0);
      await sleep(20);
    }
  }
  Object.assign(options, go);
  if (options.seam) Deno.env.set("RESOURCE_LOCKER_TEST_SEAM", options.seam);
}
installSeamFromEnv();
log({ e: "go", t: Date.now(), mode: options.mode, seam: options.seam });
if (options.mode === "probe") {
  const attempts = Math.ceil((options.untilMs - Date.now()) / (options.retryMs ?? 50)) + 1;
  const lock = await take("Host", Math.max(1, attempts));
  if (lock) {
    await sleep(20);
    await release(lock);
  }
  await closeStores();
  logFile.close();
  Deno.exit(lock ? 0 : 3);
}

const maxHold = options.maxHoldMs ?? Math.round(options.ttlMs * 1.3);
const minHold = options.minHoldMs ?? 0;
while (Date.now() < options.untilMs) {
  const type = rand() < (options.hostShare ?? 0.4) ? "Host" : "Generic";
  const lock = await take(type, 1_000_000);
  if (lock) {
    await sleep(minHold + rand() * Math.max(0, maxHold - minHold), lock.signal);
    await release(lock);
  }
  await sleep(rand() * 60);
}
await closeStores();
logFile.close();
