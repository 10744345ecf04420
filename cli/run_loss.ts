/**
 * Lease loss in `run`: watching the held lock while the command runs (on
 * loss: stop the tree at once, then say when, and who broke it as History
 * tells), and releasing at the end in a way that says how a lock was lost.
 *
 * @module
 */

import {
  getResourceLockHistory,
  LockLostError,
  LockNotOwnedError,
  parseLockRef,
  type ReleaseResult,
  type ResourceLock,
  type StoreOptions,
} from "../mod.ts";
import { describeHolder } from "../src/_text.ts";

function describeRelease(result: ReleaseResult): string {
  if (result.status === "lost") {
    const at = result.brokenAt ? ` at ${result.brokenAt.toISOString()}` : "";
    const why = result.breakReason ? ` (${result.breakReason})` : "";
    return `Lock "${result.ref}" was lost: broken by ${result.brokenBy ?? "someone"}${at}${why}`;
  }
  return `Lock "${result.ref}" was lost: someone else released it`;
}

/**
 * Releases every lock; says how it was lost when it was (the library returns
 * `lost`/`already-released` or throws `LockNotOwnedError`, and may throw
 * `LockLostError`).
 *
 * @returns undefined when released, else one line describing the loss
 * @throws {StoreError} when the store cannot be reached
 */
export async function releaseOrLoss(lock: ResourceLock): Promise<string | undefined> {
  try {
    const results = await lock.release();
    const bad = results.find((result) => result.status !== "released");
    return bad ? describeRelease(bad) : undefined;
  } catch (error) {
    if (error instanceof LockLostError) return error.message;
    if (error instanceof LockNotOwnedError) {
      return `Lock "${error.ref}" was lost: it now belongs to another session: ${
        describeHolder(error.holder, { description: false, session: true })
      }`;
    }
    throw error;
  }
}

/**
 * Who broke a lost lock and when, from History, within `ms`: a renewal that
 * finds the lock gone knows only that it is gone.
 */
async function brokenBy(
  lost: unknown,
  sessionId: string,
  store: StoreOptions,
  ms: number,
): Promise<string | undefined> {
  if (!(lost instanceof LockLostError)) return undefined;
  const lookup = (async () => {
    const { host, lockId } = parseLockRef(lost.ref);
    const entries = await getResourceLockHistory(host, { ...store, limit: 50 });
    const entry = entries.find((e) =>
      e.sessionId === sessionId && e.lockId === lockId && e.brokenBy !== undefined
    );
    if (!entry) return undefined;
    const at = entry.unlockedAt ? ` at ${entry.unlockedAt.toISOString()}` : "";
    const why = entry.breakReason ? ` (${entry.breakReason})` : "";
    return `broken by ${entry.brokenBy}${at}${why}`;
  })().catch(() => undefined);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const result = await Promise.race([
    lookup,
    new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), ms)),
  ]);
  clearTimeout(timer);
  return result;
}

/** A watch on a held lock while the command runs. */
export interface LossWatch {
  /** True once the lock was lost. */
  readonly lost: boolean;
  /** Stops watching; resolves once the loss, if any, has been told. */
  end(): Promise<void>;
}

/** What {@linkcode watchForLoss} does on loss. */
export interface LossWatchOptions {
  /** Store options, to read History. */
  store: StoreOptions;
  /** Stops the command's tree (SIGTERM, SIGKILL after the grace). */
  stop: () => void;
  /** Tells the loss: one line. */
  tell: (line: string) => void;
  /** The grace, as the line says it (`10s`). */
  grace: string;
}

/**
 * Watches `held`: when its lease is lost, stops the command at once, then
 * tells when it was lost and, from History within 2 s, who broke it.
 */
export function watchForLoss(held: ResourceLock, options: LossWatchOptions): LossWatch {
  let told: Promise<void> | undefined;
  const onLost = () => {
    const at = new Date().toISOString();
    options.stop();
    const reason = held.signal.reason;
    told = brokenBy(reason, held.sessionId, options.store, 2000).then((who) => {
      const what = reason instanceof Error ? reason.message : String(reason);
      options.tell(
        `${at}: ${what}${
          who ? `; ${who}` : ""
        }; stopping the command (SIGTERM, SIGKILL after ${options.grace})`,
      );
    });
  };
  if (held.signal.aborted) onLost();
  else held.signal.addEventListener("abort", onLost, { once: true });
  return {
    get lost() {
      return told !== undefined;
    },
    async end() {
      held.signal.removeEventListener("abort", onLost);
      await told;
    },
  };
}
