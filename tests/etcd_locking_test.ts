/**
 * Engine-level tests of the etcd store through the public API and the
 * command line, against a real etcd on loopback: lock, unlock, test, status,
 * history, dependencies, drain, leases, contention across processes with an
 * independent oracle, a SIGKILLed holder's key vanishing with its lease, etcd
 * stopped mid-run. The `run` suite of issue 4 (SIGKILLed holder, break under
 * run, SIGINT, contending run loops) runs on etcd in etcd_run_test.ts.
 *
 * Without `etcd` installed they skip with a message, except under CI=true,
 * where they fail.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  breakResourceLock,
  closeStores,
  DrainTimeoutError,
  getResourceLockHistory,
  getResourceLockStatus,
  LockBusyError,
  LockLostError,
  lockResource,
  StoreError,
  testHostResourceLock,
  tryLockResource,
  unlockResource,
} from "../mod.ts";
import { runCli, spawnCli } from "./_cli_helpers.ts";
import {
  etcdGateway,
  etcdKeys,
  type EtcdServer,
  etcdTemplate,
  etcdTestGate,
  liveKeys,
} from "./_etcd.ts";
import { eventually, sleep } from "./_helpers.ts";

const gate = await etcdTestGate();
const CONTENDER = fileURLToPath(
  new URL("./_etcd_contender.ts", import.meta.url),
);
const decoder = new TextDecoder();

/**
 * A test against a private etcd of its own, given with its template; skipped
 * without etcd. The library's cached stores are closed at its end.
 */
function etcdTest(
  name: string,
  fn: (etcd: EtcdServer, store: string, t: Deno.TestContext) => Promise<void>,
): void {
  gate.test(name, async (etcd, t) => {
    try {
      await fn(etcd, etcdTemplate(etcd), t);
    } finally {
      await closeStores();
    }
  });
}

/** Reads lines of a stream until one matches, bounded by `ms`. */
async function waitForLine(
  reader: ReadableStreamDefaultReader<string>,
  match: RegExp,
  ms: number,
  seen: string[],
): Promise<string> {
  const deadline = Date.now() + ms;
  let buffer = "";
  while (Date.now() < deadline) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const next = await Promise.race([
      reader.read(),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), deadline - Date.now());
      }),
    ]);
    clearTimeout(timer);
    if (next === undefined) break;
    if (next.done) break;
    buffer += next.value;
    const lines = buffer.split("\n");
    buffer = lines.pop()!;
    for (const line of lines) {
      seen.push(line);
      if (match.test(line)) return line;
    }
  }
  throw new Error(`no line matching ${match} within ${ms} ms: ${seen.join(" | ")}`);
}

/**
 * Starts `cli.ts run <host> … -- sh -c 'echo child=$$; exec sleep 30'` and
 * waits until the command runs. The child's pid is known so it can be
 * stopped by id whatever happens to `run`.
 */
async function startRun(args: string[]) {
  const process = spawnCli(["run", ...args, "--", "sh", "-c", "echo child=$$; exec sleep 30"]);
  const stdout = process.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  const stderrText = new Response(process.stderr).text();
  const seen: string[] = [];
  let childPid: number | undefined;
  try {
    const line = await waitForLine(stdout, /^child=\d+$/, 15_000, seen);
    childPid = Number(line.slice("child=".length));
  } catch (error) {
    process.kill("SIGKILL");
    await process.status;
    await stdout.cancel();
    throw new Error(`${(error as Error).message}; stderr: ${await stderrText}`);
  }
  return {
    process,
    childPid,
    stderr: stderrText,
    /** Stops whatever is left, by pid, and waits for the streams. */
    async cleanup() {
      try {
        Deno.kill(childPid!, "SIGKILL");
      } catch { /* already gone */ }
      try {
        process.kill("SIGKILL");
      } catch { /* already gone */ }
      await process.status;
      await stdout.cancel().catch(() => {});
      await stderrText.catch(() => "");
    },
  };
}

function childAlive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

etcdTest(
  "etcd locking: lock, test, status, unlock, history, dependencies",
  async (etcd, store, t) => {
    const common = { store, dependencies: {} };
    await t.step("a Host lock is a key under the prefix and blocks others", async () => {
      const lock = await lockResource("DC01", {
        ...common,
        type: "Host",
        caller: "Invoke-Maintenance",
        description: "patching",
      });
      assert.equal(lock.refs.length, 1);
      assert.match(lock.refs[0]!, /^dc01\/Host@[0-9a-f-]{36}$/);
      const keys = await liveKeys(etcd, "dc01");
      assert.deepEqual(keys.map((k) => k.key), [
        "/resource-locks/dc01/Host.lock",
      ]);
      const content = JSON.parse(keys[0]!.value);
      assert.equal(content.Caller, "Invoke-Maintenance");
      assert.equal(content.SessionId, lock.sessionId);
      assert.equal(typeof content.LockedAt, "number");

      assert.equal(await testHostResourceLock("dc01", { store }), true);
      assert.equal(
        await testHostResourceLock("dc01", { store, type: "Generic" }),
        false,
      );
      const [info] = await getResourceLockStatus("dc01", { store });
      assert.equal(info!.type, "Host");
      assert.equal(info!.caller, "Invoke-Maintenance");
      assert.equal(info!.description, "patching");
      assert.equal(info!.sessionId, lock.sessionId);

      assert.equal(
        await tryLockResource("dc01", { ...common, type: "Host" }),
        undefined,
      );
      await assert.rejects(
        lockResource("dc01", { ...common, timeout: "20ms", retries: 2 }),
        (error: unknown) =>
          error instanceof LockBusyError &&
          /Invoke-Maintenance/.test(error.message) && error.host === "dc01",
      );
      // the refused shared lock left nothing behind
      assert.equal((await liveKeys(etcd, "dc01")).length, 1);

      const results = await unlockResource(lock.refs, { store });
      assert.deepEqual(results.map((r) => r.status), ["released"]);
      assert.equal((await liveKeys(etcd, "dc01")).length, 0);
      assert.equal(await testHostResourceLock("dc01", { store }), false);
      const again = await unlockResource(lock.refs, { store });
      assert.deepEqual(again.map((r) => r.status), ["already-released"]);

      const history = await getResourceLockHistory("dc01", { store });
      assert.equal(history.length, 1);
      assert.equal(history[0]!.caller, "Invoke-Maintenance");
      assert.ok(history[0]!.unlockedAt instanceof Date);
      assert.match(history[0]!.name, /^Host\.lock-[0-9a-f-]{36}\.[0-9a-f-]{36}$/);
      const historyKeys = await etcdKeys(
        etcd,
        "/resource-locks/dc01/History/",
      );
      assert.equal(historyKeys.length, 1);
      assert.ok(JSON.parse(historyKeys[0]!.value).UnlockedAt);
    });

    await t.step("shared locks coexist; a ref of another session is not released", async () => {
      const a = await lockResource("web01", { ...common, caller: "a" });
      const b = await lockResource("web01", { ...common, caller: "b" });
      const status = await getResourceLockStatus("web01", { store });
      assert.deepEqual(status.map((s) => s.caller).sort(), ["a", "b"]);
      await a.release();
      await b.release();
      assert.equal((await liveKeys(etcd, "web01")).length, 0);
      assert.equal(
        (await getResourceLockHistory("web01", { store })).length,
        2,
      );
    });

    await t.step("dependencies are locked all or nothing", async () => {
      const dependencies = {
        hv01: ["dc01", "vmm01"],
        dc01: ["dc02"],
        dc02: ["dc01"],
      };
      const lock = await lockResource("dc01", {
        store,
        dependencies,
        type: "Host",
      });
      assert.deepEqual(
        lock.refs.map((r) => r.split("/")[0]),
        ["dc02", "hv01", "dc01"],
      );
      for (const host of ["dc01", "dc02", "hv01"]) {
        assert.equal((await liveKeys(etcd, host)).length, 1, host);
      }
      await lock.release();

      // hv01 held by someone else: locking dc02 takes nothing
      const blocker = await lockResource("hv01", { ...common, type: "Host" });
      await assert.rejects(
        lockResource("dc02", {
          store,
          dependencies,
          type: "Generic",
          timeout: "20ms",
          retries: 2,
        }),
        (error: unknown) => error instanceof LockBusyError && error.host === "hv01",
      );
      assert.equal((await liveKeys(etcd, "dc01")).length, 0);
      assert.equal((await liveKeys(etcd, "dc02")).length, 0);
      await blocker.release();
    });

    await t.step("a Host lock waits for shared locks to drain, or gives up", async () => {
      const shared = await lockResource("db01", { ...common, caller: "app" });
      await assert.rejects(
        lockResource("db01", {
          ...common,
          type: "Host",
          drainTimeout: "300ms",
        }),
        DrainTimeoutError,
      );
      assert.deepEqual(
        (await liveKeys(etcd, "db01")).map((k) => k.key.split("/").pop()),
        [`Generic-${shared.sessionId}.lock`],
      );
      // released while the Host lock drains: it gets the host at once
      let releasedAt = 0;
      const releasing = sleep(300).then(async () => {
        releasedAt = Date.now();
        await shared.release();
      });
      const host = await lockResource("db01", {
        ...common,
        type: "Host",
        drainTimeout: "10s",
      });
      const lag = Date.now() - releasedAt;
      await releasing;
      assert.ok(releasedAt > 0 && lag < 1000, `drained ${lag} ms after`);
      await host.release();
    });
  },
);

etcdTest(
  "etcd locking: a lease rides an etcd lease, is renewed while held, and its loss is told",
  async (etcd, store) => {
    const common = { store, dependencies: {} };
    const lock = await lockResource("hv02", {
      ...common,
      type: "Host",
      ttl: "1s",
    });
    const [key] = await liveKeys(etcd, "hv02");
    assert.ok(key && key.lease !== "0", "no etcd lease on the key");
    // Renewed twice (each renewal rewrites the key), i.e. more than the lease
    // has passed since it was taken, and still held.
    const renewals = new Set<string>();
    assert.ok(
      await eventually(
        async () => {
          const [now] = await liveKeys(etcd, "hv02");
          const renewed = now && JSON.parse(now.value).RenewedAtUtc;
          if (renewed) renewals.add(renewed);
          return renewals.size >= 2;
        },
        10_000,
        50,
      ),
      "not renewed twice",
    );
    assert.equal(lock.signal.aborted, false);
    assert.equal((await liveKeys(etcd, "hv02")).length, 1);
    await lock.release();
    assert.equal((await liveKeys(etcd, "hv02")).length, 0);

    // the lease is revoked behind the holder's back: LockLostError
    const held = await lockResource("hv03", {
      ...common,
      type: "Host",
      ttl: "1s",
    });
    const [entry] = await liveKeys(etcd, "hv03");
    await etcdGateway(etcd, "/v3/lease/revoke", { ID: entry!.lease });
    assert.ok(
      await eventually(() => Promise.resolve(held.signal.aborted), 3000),
      "the holder was not told",
    );
    assert.ok(held.signal.reason instanceof LockLostError);
    // release() of a lost lock tells it (not "already-released")
    await assert.rejects(held.release(), LockLostError);

    // break --force on a held lock: told too
    const victim = await lockResource("hv04", {
      ...common,
      type: "Host",
      ttl: "1s",
    });
    await breakResourceLock(victim.refs[0]!, {
      store,
      force: true,
      reason: "test",
    });
    assert.ok(
      await eventually(() => Promise.resolve(victim.signal.aborted), 3000),
    );
    const [broken] = await getResourceLockHistory("hv04", { store });
    assert.equal(broken!.breakReason, "test");
    await assert.rejects(victim.release(), LockLostError);
  },
);

etcdTest(
  "etcd locking: four processes contend for one host; an independent oracle sees no overlap",
  async (etcd, store) => {
    const workers = 4;
    const rounds = 25;
    const state = { host: 0, generic: 0, entered: 0, exited: 0, maxGeneric: 0 };
    const violations: string[] = [];
    const sessions = new Set<string>();
    const oracle = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request) => {
        const url = new URL(request.url);
        const type = url.searchParams.get("type");
        const who = `${url.searchParams.get("worker")}/${type}`;
        if (url.pathname === "/enter") {
          state.entered++;
          sessions.add(url.searchParams.get("session") ?? "");
          if (type === "Host" && (state.host > 0 || state.generic > 0)) {
            violations.push(`${who} entered beside ${JSON.stringify(state)}`);
          }
          if (type !== "Host" && state.host > 0) {
            violations.push(`${who} entered beside a Host lock`);
          }
          if (type === "Host") state.host++;
          else state.generic++;
          state.maxGeneric = Math.max(state.maxGeneric, state.generic);
        } else if (url.pathname === "/exit") {
          state.exited++;
          if (type === "Host") state.host--;
          else state.generic--;
        } else return new Response("not found", { status: 404 });
        return new Response("ok");
      },
    );
    const oracleUrl = `http://127.0.0.1:${oracle.addr.port}`;
    const children: Deno.ChildProcess[] = [];
    try {
      for (let id = 1; id <= workers; id++) {
        children.push(
          new Deno.Command(Deno.execPath(), {
            args: [
              "run",
              "--allow-all",
              CONTENDER,
              store,
              "pool01",
              String(rounds),
              oracleUrl,
              String(id),
            ],
            env: { NO_COLOR: "1" },
            stdin: "null",
            stdout: "piped",
            stderr: "piped",
          }).spawn(),
        );
      }
      const timer = setTimeout(() => {
        for (const child of children) {
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
        }
      }, 90_000);
      const outputs = await Promise.all(children.map((c) => c.output()));
      clearTimeout(timer);
      const totals = { Host: 0, Generic: 0 };
      outputs.forEach((output, i) => {
        assert.equal(
          output.code,
          0,
          `worker ${i + 1} failed: ${decoder.decode(output.stderr)}`,
        );
        const counts = JSON.parse(decoder.decode(output.stdout));
        totals.Host += counts.Host;
        totals.Generic += counts.Generic;
      });
      assert.deepEqual(violations, []);
      assert.equal(state.entered, workers * rounds);
      assert.equal(state.exited, workers * rounds);
      assert.equal(sessions.size, workers * rounds);
      assert.equal(totals.Host + totals.Generic, workers * rounds);
      assert.ok(totals.Host > 0 && totals.Generic > 0, JSON.stringify(totals));
      // shared locks did overlap: the processes really ran side by side
      assert.ok(state.maxGeneric >= 2, `at most ${state.maxGeneric} at once`);
      assert.deepEqual(await liveKeys(etcd, "pool01"), []);
      const history = await etcdKeys(etcd, "/resource-locks/pool01/History/");
      assert.equal(history.length, workers * rounds);
    } finally {
      for (const child of children) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        await child.status;
      }
      await oracle.shutdown();
    }
  },
);

etcdTest(
  "etcd locking: the key of a holder killed with SIGKILL rides an etcd lease and vanishes by itself",
  async (etcd, store) => {
    const run = await startRun([
      "hv05",
      "--hard",
      "--ttl",
      "1s",
      "--no-dependencies",
      "--store",
      store,
    ]);
    try {
      const [key] = await liveKeys(etcd, "hv05");
      assert.ok(key && key.lease !== "0");
      run.process.kill("SIGKILL");
      await run.process.status;
      const killedAt = Date.now();
      assert.ok(
        await eventually(
          async () => (await liveKeys(etcd, "hv05")).length === 0,
          5000,
        ),
        "the key outlived its lease",
      );
      const took = Date.now() - killedAt;
      assert.ok(took < 4000, `key gone ${took} ms after the kill`);
      // gone by etcd's lease, not broken by anyone: nothing in History
      assert.deepEqual(await etcdKeys(etcd, "/resource-locks/hv05/History/"), []);
      // (that the next lock then gets the host: the run suite, etcd_run_test.ts)
    } finally {
      await run.cleanup();
    }
  },
);

etcdTest(
  "etcd locking: etcd stopped mid-run: exit 4 for calls, exit 5 for run, locks intact after restart",
  async (etcd, store) => {
    const where = ["--store", store];
    const base = ["--no-dependencies", ...where];
    // a lock without lease, to survive the restart
    const held = await runCli(["lock", "app01", "--hard", "--caller", "keeper", ...base]);
    assert.equal(held.code, 0, held.stderr);
    // a waiter for that host, then etcd goes away under it
    const waiter = spawnCli([
      "lock",
      "app01",
      "--hard",
      "--timeout",
      "200ms",
      "--retries",
      "200",
      ...base,
    ], { stdout: "null" });
    const waiterTimer = setTimeout(() => waiter.kill("SIGKILL"), 20_000);
    const run = await startRun(["app02", "--hard", "--ttl", "1s", "--grace", "1s", ...base]);
    try {
      // The waiter is retrying once it says so; then etcd goes away.
      const waiterStderr = readUntil(waiter.stderr, "Waiting for");
      await waiterStderr.seen;
      await etcd.stop();
      const stoppedAt = Date.now();

      const waited = await waiter.status;
      clearTimeout(waiterTimer);
      const waiterErr = await waiterStderr.all;
      assert.equal(waited.code, 4, waiterErr);
      assert.match(waiterErr, new RegExp(`Error: .*127\\.0\\.0\\.1:${etcd.clientPort}`));

      const status = await runCli(["status", "app01", ...where]);
      assert.equal(status.code, 4, status.stderr);
      assert.equal(status.stderr.trim().split("\n").length, 1, status.stderr);
      assert.match(
        status.stderr,
        /^Error: Cannot .* in etcd at "http:\/\/127\.0\.0\.1:\d+": Connection refused$/m,
      );
      assert.ok(status.ms < 5000, `status took ${status.ms} ms`);

      // run cannot renew: once the lease is over it stops its command, exit 5
      const ran = await run.process.status;
      const lostAfter = Date.now() - stoppedAt;
      assert.equal(ran.code, 5, await run.stderr);
      assert.ok(lostAfter < 6000, `run noticed after ${lostAfter} ms`);
      assert.ok(
        await eventually(() => Promise.resolve(!childAlive(run.childPid)), 3000),
        "run's command still runs",
      );

      await etcd.restart();
      const after = await runCli(["status", "app01", "--json", ...where]);
      assert.equal(after.code, 0, after.stderr);
      assert.match(after.stdout, /keeper/);
      const unlocked = await runCli(["unlock", held.stdout.trim(), ...where]);
      assert.equal(unlocked.code, 0, unlocked.stderr);
    } finally {
      clearTimeout(waiterTimer);
      try {
        waiter.kill("SIGKILL");
      } catch { /* gone */ }
      await waiter.status;
      await run.cleanup();
    }
  },
);

etcdTest(
  "etcd locking: the library reports a stopped etcd as StoreError",
  async (etcd, store) => {
    await etcd.stop();
    const started = Date.now();
    await assert.rejects(
      lockResource("dc09", { store, dependencies: {}, type: "Host" }),
      (error: unknown) =>
        error instanceof StoreError &&
        error.message.includes(etcd.endpoint),
    );
    assert.ok(Date.now() - started < 3000);
  },
);

/**
 * Reads a process's stream to its end; `seen` resolves once `text` has
 * appeared in it (rejects if it ends first), `all` with everything read.
 */
function readUntil(
  stream: ReadableStream<Uint8Array>,
  text: string,
): { seen: Promise<void>; all: Promise<string> } {
  let found = () => {};
  let missing = (_error: Error) => {};
  const seen = new Promise<void>((resolve, reject) => {
    found = resolve;
    missing = reject;
  });
  const all = (async () => {
    let collected = "";
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      collected += decoder.decode(chunk, { stream: true });
      if (collected.includes(text)) found();
    }
    if (!collected.includes(text)) missing(new Error(`"${text}" never appeared in: ${collected}`));
    return collected;
  })();
  return { seen, all };
}
