/**
 * A locker per simulated process and a Host lock request whose attempts are
 * 30 s apart, for tests of waiting and handoff at the locker's level.
 *
 * @module
 */

import { Locker } from "../src/locker.ts";
import { FileNames } from "../src/lock_ref.ts";
import { SYSTEM_CLOCK } from "../src/clock.ts";
import type { LockStore } from "../src/store.ts";

/** A locker on `store` for one process. */
export function lockerOf(store: LockStore, pid: number): Locker {
  return new Locker({
    store,
    names: new FileNames("{0}.lock"),
    clock: SYSTEM_CLOCK,
    skewMs: 0,
    holder: { host: "test", pid },
  });
}

/** A Host lock on hv01 whose attempts are 30 s apart: only a wake-up makes it early. */
export function request(sessionId: string) {
  return {
    hosts: ["hv01"],
    type: "Host" as const,
    sessionId,
    retryDelayMs: 30_000,
    attempts: 3,
    drain: false,
    drainTimeoutMs: 0,
  };
}
