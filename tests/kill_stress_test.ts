/**
 * The crash-and-race stress test (tests/_kill_stress.ts) on the local-folder
 * store, and the oracle's own checks on made-up logs: it must see an early
 * take of a killed holder's host and a Host lock beside another lock, and
 * must not see a take after lease + skew.
 *
 * @module
 */

import { assertEquals, assertOk } from "./_assert.ts";
import {
  entryProblem,
  exclusionViolations,
  folderEntries,
  type Holding,
  type KillStressStore,
  registerKillStressSuite,
} from "./_kill_stress.ts";

const TTL = 600;
const SKEW = 100;
const limits = { ttlMs: TTL, skewMs: SKEW, toleranceMs: 0 };
const holding = (
  who: string,
  type: "Host" | "Generic",
  at: number,
  rest: Partial<Holding> = {},
) => ({
  who,
  type,
  acquiredAt: at,
  after: at - 5,
  renewals: [],
  session: who,
  ...rest,
});

Deno.test("kill stress oracle: a killed Host holder's host taken before lease + skew is a violation", () => {
  // Killed at 1000 after a renewal that started at 900: in force until 900 + 600 + 100.
  const dead = holding("a", "Host", 0, { renewals: [200, 500, 900] });
  assertEquals(exclusionViolations([dead, holding("b", "Host", 1200)], limits).length, 1);
  assertEquals(exclusionViolations([dead, holding("b", "Generic", 1200)], limits).length, 1);
  assertEquals(exclusionViolations([dead, holding("b", "Host", 1599)], limits).length, 1);
  assertEquals(exclusionViolations([dead, holding("b", "Host", 1600)], limits), []);
  assertEquals(exclusionViolations([dead, holding("b", "Host", 1750)], limits), []);
});

Deno.test("kill stress oracle: overlapping holdings with a Host lock are violations, shared ones are not", () => {
  const a = holding("a", "Host", 0, { releasingAt: 100 });
  assertEquals(
    exclusionViolations([a, holding("b", "Host", 50, { releasingAt: 60 })], limits).length,
    1,
  );
  assertEquals(exclusionViolations([a, holding("b", "Generic", 99)], limits).length, 1);
  assertEquals(exclusionViolations([a, holding("b", "Generic", 100)], limits), []);
  const g = holding("g", "Generic", 0, { releasingAt: 300 });
  assertEquals(
    exclusionViolations([g, holding("h", "Generic", 10, { releasingAt: 20 })], limits),
    [],
  );
  assertEquals(exclusionViolations([g, holding("h", "Host", 200)], limits).length, 1);
  // A holder that could not renew (stalled) is in force only until its lease lower bound + skew.
  const stalled = holding("s", "Host", 0, { after: 0, releasingAt: 5000 });
  assertEquals(exclusionViolations([stalled, holding("t", "Host", 701)], limits), []);
  assertEquals(exclusionViolations([stalled, holding("t", "Host", 699)], limits).length, 1);
});

Deno.test("kill stress oracle: whole entries pass, empty, torn and lease-less ones do not", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);
  const ok = '{"SessionId":"x","ExpiresAtUtc":"2026-01-01T00:00:00.000Z"}';
  assertEquals(entryProblem({ name: "Host.lock", data: bytes(ok) }), undefined);
  assertEquals(entryProblem({ name: ".resource-locker-1.tmp", data: bytes("") }), undefined);
  assertEquals(entryProblem({ name: "Host.lock", data: bytes("") }), "empty");
  assertOk(
    entryProblem({ name: "Generic-x.lock", data: bytes(ok.slice(0, 20)) })?.startsWith("not JSON"),
  );
  assertEquals(
    entryProblem({ name: "Host.lock", data: bytes('{"SessionId":"x"}') }),
    "no ExpiresAtUtc: it never expires",
  );
});

async function openLocal(): Promise<KillStressStore> {
  const root = await Deno.makeTempDir({ prefix: "rl-kill-stress-store-" });
  const folder = (host: string) => `${root}/${host}`;
  return {
    store: `${root}/{0}`,
    entries: (host) => folderEntries(folder(host)),
    history: async (host) => (await folderEntries(`${folder(host)}/History`)).map((e) => e.data),
    removeEntry: (host, name) => Deno.remove(`${folder(host)}/${name}`).catch(() => {}),
    createEntry: (host, name, data) =>
      Deno.writeFile(`${folder(host)}/${name}`, data, { createNew: true }).then(
        () => true,
        () => false,
      ),
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

registerKillStressSuite("local", openLocal, {
  seams: {
    required: {
      creation: ["fs.create.written", "fs.create.linked"],
      renewal: ["fs.replace.verified", "locker.renew.checked"],
      release: ["fs.archive.verified", "fs.archive.moved", "locker.release.checked"],
    },
    optional: ["fs.remove.verified", "locker.break.judged"],
  },
});
