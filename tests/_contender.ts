/**
 * One contending process for the concurrency tests. It takes Host or
 * Generic locks on one host for many rounds and, while it holds a lock,
 * checks an independent oracle: marker files in a plain folder, created
 * with an exclusive create and listed, never through the tool's own view.
 *
 * Usage: deno run -A tests/_contender.ts <json options>
 * Prints one JSON line: { acquired, failed, violations, hostRounds }.
 *
 * @module
 */

import { closeStores, lockResource } from "../mod.ts";
import { sleep } from "./_helpers.ts";

interface Options {
  store: string;
  host: string;
  rounds: number;
  worker: number;
  oracle: string;
  holdMs: number;
}

const options: Options = JSON.parse(Deno.args[0]!);
const violations: string[] = [];
let acquired = 0;
let failed = 0;
let hostRounds = 0;

for (let round = 0; round < options.rounds; round++) {
  const exclusive = (round + options.worker) % 3 === 0;
  let lock;
  try {
    lock = await lockResource(options.host, {
      store: options.store,
      type: exclusive ? "Host" : "Generic",
      caller: `worker-${options.worker}`,
      dependencies: {},
      timeout: "3ms",
      retries: 100_000,
      drainTimeout: "60s",
      ...Deno.env.get("CONTENDER_NO_DRAIN") ? { drain: false } : {},
    });
  } catch (error) {
    failed++;
    violations.push(`round ${round}: could not lock: ${(error as Error).message}`);
    continue;
  }
  acquired++;
  if (exclusive) hostRounds++;
  const marker = `${options.oracle}/${exclusive ? "H" : "G"}-${options.worker}-${round}`;
  await Deno.writeFile(marker, new Uint8Array(), { createNew: true });
  const others = [...Deno.readDirSync(options.oracle)].map((e) => e.name).filter((n) =>
    n !== marker.slice(options.oracle.length + 1)
  );
  if (exclusive && others.length > 0) {
    violations.push(`round ${round}: Host lock held beside ${others.join(", ")}`);
  }
  if (!exclusive && others.some((n) => n.startsWith("H-"))) {
    violations.push(
      `round ${round}: Generic lock held beside ${
        others.filter((n) => n.startsWith("H-")).join(", ")
      }`,
    );
  }
  await sleep(options.holdMs);
  await Deno.remove(marker);
  await lock.release();
}
await closeStores();
console.log(JSON.stringify({ acquired, failed, violations, hostRounds }));
