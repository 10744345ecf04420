/**
 * A contention worker for `etcd_locking_test.ts` and `etcd_cluster_test.ts`:
 * loops lock, enter, work, exit, release on one host through the public
 * API, reporting enter and exit to an independent oracle (an HTTP server in
 * the test process) that checks exclusion by itself. Prints a JSON summary
 * on stdout.
 *
 * Usage: deno run -A tests/_etcd_contender.ts <store> <host> <rounds> <oracle URL> <worker id> [<options JSON>]
 *
 * The worker stops after `rounds` rounds, or earlier when the oracle answers
 * an exit with `stop` (a test under faults runs until its faults are done,
 * not for a number of rounds that may end before them).
 *
 * Options (for a cluster under faults): `ttl`, a lease for every round
 * (else every other round holds a 3 s lease); `config`, settings such as
 * `{ etcd: { timeout: "1s" } }`; `tolerant`, a round whose lock or release
 * fails with a store error is counted and tried again, as a script run
 * again after exit 4 would be, and a release that finds the lock lost is
 * counted (the lock was never held past the oracle's exit).
 *
 * @module
 */

import { closeStores, lockResource, type LockType, StoreError } from "../mod.ts";
import { sleep } from "./_helpers.ts";

const [store, host, roundsText, oracle, id, optionsText] = Deno.args;
if (!store || !host || !roundsText || !oracle || !id) {
  console.error("usage: _etcd_contender.ts <store> <host> <rounds> <oracle> <id> [<options>]");
  Deno.exit(2);
}
const options = JSON.parse(optionsText ?? "{}") as {
  ttl?: string;
  config?: Record<string, unknown>;
  tolerant?: boolean;
};

/** Tells the oracle; its answer (`stop` ends the loop after this round). */
async function tell(what: "enter" | "exit", type: LockType, session: string): Promise<string> {
  const response = await fetch(
    `${oracle}/${what}?type=${type}&worker=${id}&session=${session}`,
    { method: "POST" },
  );
  const answer = await response.text();
  if (!response.ok) throw new Error(`oracle said ${response.status}`);
  return answer;
}

const counts: Record<string, number> = {
  Host: 0,
  Generic: 0,
  storeErrors: 0,
  releaseErrors: 0,
  lost: 0,
};
const errors: string[] = [];
try {
  let stop = false;
  for (let round = 0; round < Number(roundsText) && !stop;) {
    const type: LockType = Math.random() < 0.35 ? "Host" : "Generic";
    let lock;
    try {
      lock = await lockResource(host, {
        type,
        store,
        caller: `worker-${id}`,
        dependencies: {},
        timeout: "15ms",
        retries: 100_000,
        drainTimeout: "60s",
        ...options.ttl ? { ttl: options.ttl } : round % 2 === 0 ? { ttl: "3s" } : {},
        ...options.config ? { config: options.config } : {},
      });
    } catch (error) {
      if (!options.tolerant || !(error instanceof StoreError)) throw error;
      counts.storeErrors!++;
      if (errors.length < 10) errors.push(error.message);
      continue;
    }
    await tell("enter", type, lock.sessionId);
    await sleep(2 + Math.random() * 10);
    stop = (await tell("exit", type, lock.sessionId)) === "stop";
    counts[type]!++;
    round++;
    try {
      const [result] = await lock.release();
      if (result?.status !== "released") {
        throw new Error(`release of ${lock.refs[0]} said ${result?.status}`);
      }
    } catch (error) {
      if (!options.tolerant) throw error;
      if (error instanceof StoreError) counts.releaseErrors!++;
      else counts.lost!++;
      if (errors.length < 10) errors.push((error as Error).message);
    }
  }
} finally {
  await closeStores();
}
console.log(JSON.stringify({ ...counts, errors }));
