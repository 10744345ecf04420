/**
 * The etcd store on a real 3-member cluster on loopback, under faults:
 *
 * - a store given one member learns the others (member list) and fails
 *   over to them when that member dies; a watch on the dead member resumes
 *   on another from the same revision, so a change made meanwhile still
 *   wakes the waiter;
 * - a paused member (SIGSTOP: its sockets stay open, nothing answers): reads
 *   and watches move on after the request timeout, and a create whose answer
 *   it swallowed is resolved by reading back and fencing its lease, then
 *   made on another member, with no second entry after it thaws;
 * - four processes contend for one host with short leases while the leader
 *   is killed and restarted, a follower is paused and thawed, and the new
 *   leader is stopped and restarted: an independent oracle sees no overlap,
 *   every process ends, no lock is left, and waiters go on taking the host
 *   after each fault.
 *
 * Without `etcd` the tests skip with a message, except under CI, where a
 * failing test says so.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { LockStore } from "../src/store.ts";
import { openEtcdStore } from "../src/stores/etcd.ts";
import { type EtcdCluster, etcdKeys, etcdTestGate, startEtcdCluster } from "./_etcd.ts";
import { eventually, sleep } from "./_helpers.ts";

const gate = await etcdTestGate();
const CONTENDER = fileURLToPath(new URL("./_etcd_contender.ts", import.meta.url));
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A test with a 3-member cluster of its own. */
function clusterTest(name: string, fn: (cluster: EtcdCluster) => Promise<void>): void {
  Deno.test({
    name,
    ignore: gate.ignore,
    async fn() {
      await using cluster = await startEtcdCluster();
      await fn(cluster);
    },
  });
}

/** A store given only member `index`'s endpoint, closed by `await using`. */
function storeAt(cluster: EtcdCluster, index: number, timeoutMs = 1500) {
  const store = openEtcdStore(
    `etcd://127.0.0.1:${cluster.members[index]!.clientPort}/resource-locks/{0}`,
    { historyFolderName: "History", timeoutMs },
  ) as LockStore & { waitForChange: NonNullable<LockStore["waitForChange"]> };
  return Object.assign(store, { [Symbol.asyncDispose]: () => store.close() });
}

clusterTest(
  "etcd cluster: a store given one member learns the others, fails over, and a watch resumes from its revision",
  async (cluster) => {
    const follower = ((await cluster.leader()) + 1) % 3;
    const other = (follower + 1) % 3;
    await using store = storeAt(cluster, follower);
    await using writer = storeAt(cluster, other);
    assert.deepEqual(await store.list("dc01"), []);
    // the waiter's watch goes to the member it was given; that member dies
    const waiting = store.waitForChange("dc01", 20_000);
    await sleep(300);
    await cluster.members[follower]!.kill();
    // a change at once, before the watch can have moved: it is not missed
    const started = Date.now();
    const version = await writer.create("dc01", "Host.lock", encoder.encode("h"), {
      ttlMs: 30_000,
    });
    assert.ok(version);
    await waiting;
    const woke = Date.now() - started;
    assert.ok(woke < 5000, `the waiter woke ${woke} ms after the change`);
    // every operation goes on through the members it learned
    assert.deepEqual(await store.list("dc01"), ["Host.lock"]);
    const renewed = await store.replace("dc01", "Host.lock", version, encoder.encode("h2"));
    assert.ok(renewed);
    assert.ok(
      await store.archive("dc01", "Host.lock", renewed, "Host.lock-1", encoder.encode("u")),
    );
    assert.deepEqual(await store.listHistory("dc01"), ["Host.lock-1"]);
    const created = await store.create("dc01", "Generic-1.lock", encoder.encode("g"), {
      ttlMs: 30_000,
    });
    assert.ok(created);
    await cluster.members[follower]!.restart();
    await using again = storeAt(cluster, follower);
    assert.deepEqual(await again.list("dc01"), ["Generic-1.lock"]);
  },
);

clusterTest(
  "etcd cluster: a paused member: reads move on, a create it swallowed is fenced and made elsewhere, once",
  async (cluster) => {
    const paused = ((await cluster.leader()) + 1) % 3;
    await using store = storeAt(cluster, paused, 1000);
    await using other = storeAt(cluster, (paused + 1) % 3);
    await store.list("dc01"); // learns the members
    cluster.members[paused]!.pause();
    try {
      // the create goes to the paused member, which swallows it
      let started = Date.now();
      const version = await store.create("dc01", "Host.lock", encoder.encode("mine"), {
        ttlMs: 30_000,
      });
      let took = Date.now() - started;
      assert.ok(version, "the create failed");
      assert.ok(took < 5000, `the create took ${took} ms`);
      assert.deepEqual(await other.read("dc01", "Host.lock"), {
        data: encoder.encode("mine"),
        version,
      });
      // reads and watches go to the others from now on
      started = Date.now();
      assert.deepEqual(await store.list("dc01"), ["Host.lock"]);
      const waiting = store.waitForChange("dc01", 10_000);
      await sleep(200);
      assert.ok(
        await other.archive("dc01", "Host.lock", version, "Host.lock-1", encoder.encode("u")),
      );
      await waiting;
      took = Date.now() - started;
      assert.ok(took < 4000, `list and wake took ${took} ms`);
    } finally {
      cluster.members[paused]!.resume();
    }
    // thawed, the member may still act on what it swallowed: the fenced put
    // fails on its revoked lease, and the host stays free
    await sleep(1500);
    assert.deepEqual(await other.list("dc01"), []);
    const keys = (await etcdKeys(cluster, "/resource-locks/dc01/", { keysOnly: true }))
      .map((kv) => kv.key.slice("/resource-locks/dc01/".length));
    // the history entry and the fence of the create whose answer was lost
    assert.equal(keys.length, 2, keys.join(", "));
    assert.ok(keys.includes("History/Host.lock-1"), keys.join(", "));
    assert.ok(keys.some((key) => /^\.resource-locker-fence-\d+$/.test(key)), keys.join(", "));
  },
);

clusterTest(
  "etcd cluster: four processes contend with short leases through leader crashes and a paused follower; the oracle sees no overlap",
  async (cluster) => {
    const workers = 4;
    // the workers run until the faults are done (the oracle then answers
    // "stop"), not for a number of rounds that could end before the last
    // fault and leave nobody to take the host after it
    const rounds = 10_000;
    let stopping = false;
    const state = { host: 0, generic: 0, entered: 0, exited: 0 };
    const enteredAt: number[] = [];
    const violations: string[] = [];
    const oracle = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
      const url = new URL(request.url);
      const type = url.searchParams.get("type");
      const who = `${url.searchParams.get("worker")}/${type}`;
      if (url.pathname === "/enter") {
        state.entered++;
        enteredAt.push(Date.now());
        if (type === "Host" && (state.host > 0 || state.generic > 0)) {
          violations.push(`${who} entered beside ${JSON.stringify(state)}`);
        }
        if (type !== "Host" && state.host > 0) violations.push(`${who} entered beside a Host lock`);
        if (type === "Host") state.host++;
        else state.generic++;
      } else if (url.pathname === "/exit") {
        state.exited++;
        if (type === "Host") state.host--;
        else state.generic--;
        if (stopping) return new Response("stop");
      } else return new Response("not found", { status: 404 });
      return new Response("ok");
    });
    const oracleUrl = `http://127.0.0.1:${oracle.addr.port}`;
    // every worker is given member 0 alone, and learns the others
    const store = `etcd://127.0.0.1:${cluster.members[0]!.clientPort}/resource-locks/{0}`;
    const options = JSON.stringify({
      ttl: "3s",
      config: { etcd: { timeout: "2s" } },
      tolerant: true,
    });
    const children = Array.from({ length: workers }, (_, i) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          CONTENDER,
          store,
          "pool01",
          String(rounds),
          oracleUrl,
          String(i + 1),
          options,
        ],
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn());
    const killAll = () => {
      for (const child of children) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }
    };
    const timer = setTimeout(killAll, 55_000);
    const outputs = Promise.all(children.map((child) => child.output()));
    /** Waits until `count` more workers entered after now; the time it took. */
    const progress = async (count: number, what: string) => {
      const since = Date.now();
      const before = enteredAt.filter((t) => t >= since).length;
      const ok = await eventually(
        () => enteredAt.filter((t) => t >= since).length >= before + count,
        15_000,
        50,
      );
      assert.ok(ok, `no worker took the host within 15 s after ${what}`);
      return Date.now() - since;
    };
    const faults: string[] = [];
    try {
      await progress(workers, "the start");
      // the leader crashes; the others elect a new one; it comes back
      let leader = await cluster.leader();
      await cluster.members[leader]!.kill();
      faults.push(
        `m${leader} killed (leader): next entry after ${await progress(
          3,
          "the leader crashed",
        )} ms`,
      );
      await cluster.members[leader]!.restart();
      // a follower freezes, then thaws
      leader = await cluster.leader();
      // the member the workers were given, when it follows: they use it
      const follower = leader === 0 ? 1 : 0;
      cluster.members[follower]!.pause();
      faults.push(
        `m${follower} paused (follower): next entry after ${await progress(
          3,
          "a follower froze",
        )} ms`,
      );
      await sleep(1000);
      cluster.members[follower]!.resume();
      // the new leader is stopped (it hands over), then restarted
      leader = await cluster.leader();
      await cluster.members[leader]!.stop();
      faults.push(
        `m${leader} stopped (leader): next entry after ${await progress(
          3,
          "the leader stopped",
        )} ms`,
      );
      await cluster.members[leader]!.restart();
      stopping = true;
      const results = await outputs;
      const totals = { Host: 0, Generic: 0, storeErrors: 0, releaseErrors: 0, lost: 0 };
      const errors: string[] = [];
      results.forEach((output, i) => {
        assert.equal(output.code, 0, `worker ${i + 1} failed: ${decoder.decode(output.stderr)}`);
        const counts = JSON.parse(decoder.decode(output.stdout));
        for (const key of Object.keys(totals) as (keyof typeof totals)[]) {
          totals[key] += counts[key];
        }
        errors.push(...counts.errors);
      });
      console.log(
        `faults: ${faults.join("; ")}\ntotals ${JSON.stringify(totals)}${
          errors.map((error) => `\n  ${error}`).join("")
        }`,
      );
      assert.deepEqual(violations, []);
      assert.equal(state.entered, totals.Host + totals.Generic);
      assert.equal(state.exited, state.entered);
      assert.ok(totals.Host > 0 && totals.Generic > 0, JSON.stringify(totals));
      // nothing is left: a lock whose release failed goes with its 3 s lease
      assert.ok(
        await eventually(
          async () =>
            (await etcdKeys(cluster, "/resource-locks/pool01/", { keysOnly: true }))
              // (fences of creates whose answers were lost are no locks)
              .filter((kv) => !/\/History\/|\/\.resource-locker-fence-/.test(kv.key)).length === 0,
          6000,
        ),
        "a lock was left behind",
      );
    } finally {
      clearTimeout(timer);
      killAll();
      await outputs.catch(() => {});
      for (const member of cluster.members) member.resume();
      await oracle.shutdown();
    }
  },
);
