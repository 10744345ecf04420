/**
 * One process of the maintenance-group contention test
 * (`tests/_group_contention.ts`), through the public API.
 *
 * Mode `work`: for `rounds` rounds, takes a Host lock on a random member of
 * the group (waiting as long as it takes, woken by changes), then checks an
 * oracle outside the tool: a marker file `<member>-<worker>-<round>` made
 * with an exclusive create (O_EXCL) in a plain folder, and that folder
 * listed: never more than `max` members with a marker, never two markers
 * for one member. Removes its marker, then releases. Prints one JSON line:
 * `{ acquired, violations, members }`.
 *
 * Mode `hold`: takes a Host lock on `member`, writes `<oracle>/held-<member>`
 * (`{ before }`: the time just before it asked, so its lease ran out no
 * earlier than `before + ttl`), and waits to be killed.
 *
 * Usage: deno run -A tests/_group_contender.ts <json options>
 *
 * @module
 */

import { closeStores, lockResource, type MaintenanceGroup } from "../mod.ts";
import { seededRandom, sleep } from "./_helpers.ts";

interface Options {
  mode: "work" | "hold";
  store: string;
  group: MaintenanceGroup;
  oracle: string;
  ttl: string;
  skew: string;
  worker?: number;
  rounds?: number;
  holdMs?: number;
  member?: string;
  seed?: number;
}

const options: Options = JSON.parse(Deno.args[0]!);
const common = {
  store: options.store,
  type: "Host" as const,
  dependencies: {},
  config: { groups: [options.group], clockSkew: options.skew },
  ttl: options.ttl,
  wait: "60s",
};

if (options.mode === "hold") {
  const before = Date.now();
  await lockResource(options.member!, { ...common, caller: `holder-${options.member}` });
  // Written aside and renamed into place: the parent, which waits for the
  // name to appear, never reads it empty.
  const marker = `${options.oracle}/held-${options.member}`;
  await Deno.writeTextFile(`${marker}.tmp`, JSON.stringify({ before }));
  await Deno.rename(`${marker}.tmp`, marker);
  for (;;) await sleep(1000); // until SIGKILL
}

const random = seededRandom(options.seed ?? options.worker!);
const violations: string[] = [];
const members: Record<string, number> = {};
let acquired = 0;

function check(round: number, member: string, mine: string, when: string): void {
  const markers = [...Deno.readDirSync(options.oracle)]
    .map((e) => e.name)
    .filter((name) => !name.startsWith("held-"));
  const inMaintenance = new Set(markers.map((name) => name.split("-")[0]));
  if (inMaintenance.size > options.group.max) {
    violations.push(
      `round ${round} (${when}): ${inMaintenance.size} members in maintenance: ${
        markers.join(", ")
      }`,
    );
  }
  const same = markers.filter((name) => name !== mine && name.startsWith(`${member}-`));
  if (same.length > 0) {
    violations.push(`round ${round} (${when}): two Host locks on ${member}: ${mine}, ${same}`);
  }
}

try {
  for (let round = 0; round < options.rounds!; round++) {
    const member = options.group.members[Math.floor(random() * options.group.members.length)]!;
    let lock;
    try {
      lock = await lockResource(member, { ...common, caller: `worker-${options.worker}` });
    } catch (error) {
      violations.push(`round ${round}: could not lock ${member}: ${(error as Error).message}`);
      continue;
    }
    acquired++;
    members[member] = (members[member] ?? 0) + 1;
    const mine = `${member}-${options.worker}-${round}`;
    await Deno.writeFile(`${options.oracle}/${mine}`, new Uint8Array(), { createNew: true });
    check(round, member, mine, "entered");
    await sleep(options.holdMs ?? 10);
    check(round, member, mine, "leaving");
    await Deno.remove(`${options.oracle}/${mine}`);
    await lock.release();
  }
} finally {
  await closeStores();
}
console.log(JSON.stringify({ acquired, violations, members }));
