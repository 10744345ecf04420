/**
 * A contention worker for `etcd_locking_test.ts`: loops lock, enter, work,
 * exit, release on one host through the public API, reporting enter and exit
 * to an independent oracle (an HTTP server in the test process) that checks
 * exclusion by itself. Prints a JSON summary on stdout.
 *
 * Usage: deno run -A tests/_etcd_contender.ts <store> <host> <rounds> <oracle URL> <worker id>
 *
 * @module
 */

import { closeStores, lockResource, type LockType } from "../mod.ts";
import { sleep } from "./_helpers.ts";

const [store, host, roundsText, oracle, id] = Deno.args;
if (!store || !host || !roundsText || !oracle || !id) {
  console.error("usage: _etcd_contender.ts <store> <host> <rounds> <oracle> <id>");
  Deno.exit(2);
}

async function tell(what: "enter" | "exit", type: LockType, session: string) {
  const response = await fetch(
    `${oracle}/${what}?type=${type}&worker=${id}&session=${session}`,
    { method: "POST" },
  );
  await response.body?.cancel();
  if (!response.ok) throw new Error(`oracle said ${response.status}`);
}

const counts: Record<string, number> = { Host: 0, Generic: 0 };
try {
  for (let round = 0; round < Number(roundsText); round++) {
    const type: LockType = Math.random() < 0.35 ? "Host" : "Generic";
    const lock = await lockResource(host, {
      type,
      store,
      caller: `worker-${id}`,
      dependencies: {},
      timeout: "15ms",
      retries: 100_000,
      drainTimeout: "60s",
      // half of the rounds hold a lease, renewed by the lock object
      ...(round % 2 === 0 ? { ttl: "3s" } : {}),
    });
    await tell("enter", type, lock.sessionId);
    await sleep(2 + Math.random() * 10);
    await tell("exit", type, lock.sessionId);
    const [result] = await lock.release();
    if (result?.status !== "released") {
      throw new Error(`release of ${lock.refs[0]} said ${result?.status}`);
    }
    counts[type]!++;
  }
} finally {
  await closeStores();
}
console.log(JSON.stringify(counts));
