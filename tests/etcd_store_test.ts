/**
 * Store-level tests of the etcd store against a real etcd on loopback, for
 * what is etcd's own (the contract every store keeps, `_store_contract.ts`,
 * runs on etcd in etcd_store_contract_test.ts): keys and prefixes, versions
 * as mod revisions, native leases and their renewal, history pruning,
 * watches, failover, faults, and each race window
 * forced with the seams (`src/_seam.ts`) or a proxy that loses an answer.
 *
 * One etcd serves the file, each test under its own key prefix; the tests
 * that stop or restart etcd start their own. Without `etcd` installed they
 * skip with a message, except under CI, where a failing test says so.
 */

import assert from "node:assert/strict";
import { assertNoRawControl } from "./_assert.ts";
import { type SeamEvent, setSeamHook } from "../src/_seam.ts";
import { InputError, StoreError } from "../src/errors.ts";
import type { LockStore } from "../src/store.ts";
import { _leaseIds, type EtcdStoreOptions, openEtcdStore } from "../src/stores/etcd.ts";
import {
  etcdGateway,
  etcdKeys,
  type EtcdServer,
  etcdTemplate,
  etcdTestGate,
  fileEtcd,
  startEtcdProxy,
} from "./_etcd.ts";
import { eventually, sleep } from "./_helpers.ts";

const gate = await etcdTestGate();
const shared = await fileEtcd(gate);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

function text(data: Uint8Array | undefined): string | undefined {
  return data === undefined ? undefined : decoder.decode(data);
}

/** The etcd store implements the optional waitForChange. */
type WatchingStore = LockStore & {
  waitForChange: NonNullable<LockStore["waitForChange"]>;
};

function watching(store: LockStore): WatchingStore {
  assert.equal(typeof store.waitForChange, "function");
  return store as WatchingStore;
}

type OpenStore = (options?: Partial<EtcdStoreOptions>) => WatchingStore & AsyncDisposable;

/** Stores over `template`, closed by `await using` (closing twice is harmless). */
function storesAt(template: string): OpenStore {
  return (options = {}) => {
    const store = watching(openEtcdStore(template, {
      historyFolderName: "History",
      timeoutMs: 2000,
      ...options,
    }));
    return Object.assign(store, { [Symbol.asyncDispose]: () => store.close() });
  };
}

let prefixes = 0;

/**
 * A test on the file's etcd, with a key prefix of its own (`/t<n>`) and a
 * way to open stores under it.
 */
function sharedTest(
  name: string,
  fn: (etcd: EtcdServer, open: OpenStore, prefix: string, t: Deno.TestContext) => Promise<void>,
): void {
  const prefix = `/t${++prefixes}`;
  Deno.test({
    name,
    ignore: gate.ignore,
    fn: (t) => fn(shared!, storesAt(etcdTemplate(shared!, prefix)), prefix, t),
  });
}

/** A test with an etcd of its own (it stops or restarts it). */
function ownTest(name: string, fn: (etcd: EtcdServer, open: OpenStore) => Promise<void>): void {
  gate.test(name, (etcd) => fn(etcd, storesAt(etcdTemplate(etcd))));
}

/** The raw key of `host`'s `name` under `prefix`, read straight from etcd. */
async function rawKey(etcd: EtcdServer, prefix: string, host: string, name: string) {
  const [kv] = await etcdKeys(etcd, `${prefix}/${host}/${name}`, { exact: true });
  return kv;
}

/**
 * Pauses the first passage of `point` until `release()`; `reached` resolves
 * when it is reached. Uninstalls itself on dispose.
 */
function pauseAt(point: string) {
  let reach!: (event: SeamEvent) => void;
  const reached = new Promise<SeamEvent>((resolve) => reach = resolve);
  let release!: () => void;
  const released = new Promise<void>((resolve) => release = resolve);
  let fired = false;
  const previous = setSeamHook((event) => {
    if (fired || event.point !== point) return undefined;
    fired = true;
    reach(event);
    return released;
  });
  return {
    reached,
    release,
    [Symbol.dispose]() {
      release();
      setSeamHook(previous);
    },
  };
}

/** Runs `fn` and returns its error, failing when it takes over `ms`. */
async function errorWithin(
  ms: number,
  fn: () => Promise<unknown>,
): Promise<unknown> {
  const started = Date.now();
  try {
    await fn();
  } catch (error) {
    const took = Date.now() - started;
    assert.ok(took < ms, `took ${took} ms, more than ${ms} ms`);
    return error;
  }
  assert.fail("expected an error");
}

Deno.test("openEtcdStore() refuses a malformed endpoint (InputError) and a bad timeout (RangeError)", () => {
  // Its templates are refused by the shared parser: tests/store_template_test.ts.
  assert.throws(
    () =>
      openEtcdStore("etcd://127.0.0.1/locks/{0}", {
        historyFolderName: "History",
        endpoints: ["ftp://x:1"],
      }),
    InputError,
  );
  assert.throws(
    () =>
      openEtcdStore("etcd://127.0.0.1/locks/{0}", {
        historyFolderName: "History",
        timeoutMs: 0,
      }),
    RangeError,
  );
});

Deno.test("openEtcdStore() describes a host's prefix with {0} or {host}", async () => {
  const a = openEtcdStore("etcd://10.0.0.1/resource-locks/{host}/", {
    historyFolderName: "History",
  });
  const b = openEtcdStore("etcd://10.0.0.1:2381/x/{0}/y", {
    historyFolderName: "History",
  });
  try {
    assert.equal(a.describe("dc01"), "etcd://10.0.0.1/resource-locks/dc01");
    assert.equal(b.describe("dc01"), "etcd://10.0.0.1:2381/x/dc01/y");
    assert.equal(a.kind, "etcd");
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("etcd store: a version that is no revision matches nothing, without a request", async () => {
  // nothing listens on port 1: a request would fail
  const store = openEtcdStore("etcd://127.0.0.1:1/locks/{0}", { historyFolderName: "History" });
  try {
    for (const version of ["", "0", "-1", "abc", "1e3", "99999999999999999999"]) {
      assert.equal(await store.replace("dc01", "Host.lock", version, bytes("x")), undefined);
      assert.equal(await store.archive("dc01", "Host.lock", version, "H", bytes("x")), false);
      assert.equal(await store.remove("dc01", "Host.lock", version), false);
    }
  } finally {
    await store.close();
  }
});

sharedTest(
  "etcd store: keys under the template's prefix, versions are mod revisions, history bounded",
  async (etcd, open, prefix, t) => {
    await using store = open({ historyLimit: 3 });
    await using other = open();

    await t.step("an entry is a key; its version is the key's mod revision", async () => {
      const v1 = await store.create("dc01", "Host.lock", bytes("a"));
      const raw = await etcdGateway(etcd, "/v3/kv/range", {
        key: btoa(`${prefix}/dc01/Host.lock`),
      }) as { kvs: { value: string; mod_revision: string }[] };
      assert.equal(atob(raw.kvs[0]!.value), "a");
      assert.equal(v1, raw.kvs[0]!.mod_revision);
      const v2 = await other.replace("dc01", "Host.lock", v1!, bytes("a2"));
      assert.ok(BigInt(v2!) > BigInt(v1!));
      const read = await store.read("dc01", "Host.lock");
      assert.deepEqual(read, { data: bytes("a2"), version: v2 });
    });

    await t.step("history keeps the newest historyLimit entries", async () => {
      for (const n of [2, 3, 4, 5]) { // four archived, the oldest pruned
        const v = await store.create("dc01", `Generic-${n}.lock`, bytes("g"));
        assert.ok(
          await store.archive("dc01", `Generic-${n}.lock`, v!, `Generic-${n}.lock`, bytes(`h${n}`)),
        );
      }
      assert.deepEqual(await store.listHistory("dc01"), [
        "Generic-3.lock",
        "Generic-4.lock",
        "Generic-5.lock",
      ]);
      assert.equal(text(await store.readHistory("dc01", "Generic-5.lock")), "h5");
    });
  },
);

sharedTest(
  "etcd store: a TTL entry vanishes after its lease unless replace() renews it, on its lease",
  async (etcd, open, prefix) => {
    await using store = open();
    await using other = open();
    let version = await store.create("dc01", "Host.lock", bytes("h"), { ttlMs: 1000 });
    assert.ok(await store.create("dc01", "Generic-1.lock", bytes("g"), { ttlMs: 1000 }));
    assert.ok(await store.create("dc01", "Generic-2.lock", bytes("forever")));
    const lease = (await rawKey(etcd, prefix, "dc01", "Host.lock"))!.lease;
    assert.notEqual(lease, "0");
    // renew Host.lock every 300 ms for 2.5 s, by turns from the creating
    // store and from another that never saw the entry (it learns the lease
    // from the transaction): Generic-1 expires meanwhile
    const until = Date.now() + 2500;
    for (let n = 0; Date.now() < until; n++) {
      const renewer = n % 2 === 0 ? store : other;
      const next = await renewer.replace("dc01", "Host.lock", version!, bytes(`h${n}`));
      assert.ok(next !== undefined && next !== version, `renewal ${n}`);
      version = next;
      await sleep(300);
    }
    assert.equal((await rawKey(etcd, prefix, "dc01", "Host.lock"))!.lease, lease);
    assert.ok(
      await eventually(
        async () => (await store.read("dc01", "Generic-1.lock")) === undefined,
        3000,
      ),
      "Generic-1.lock outlived its lease",
    );
    // holder dies: no more renewals, the entry vanishes by itself
    assert.ok(
      await eventually(async () => (await store.list("dc01")).length === 1, 4000),
      "Host.lock outlived its lease",
    );
    assert.deepEqual(await store.list("dc01"), ["Generic-2.lock"]);
    assert.equal(await store.replace("dc01", "Host.lock", version!, bytes("late")), undefined);
    assert.equal(text((await store.read("dc01", "Generic-2.lock"))?.data), "forever");
  },
);

sharedTest(
  "etcd store: archive and remove revoke the entry's lease",
  async (etcd, open, prefix) => {
    await using store = open();
    await using other = open();
    for (const op of ["archive", "remove"] as const) {
      const name = `Generic-${op}.lock`;
      const version = await store.create("dc01", name, bytes("g"), { ttlMs: 30_000 });
      const lease = (await rawKey(etcd, prefix, "dc01", name))!.lease;
      // by a store object that never saw the entry: the lease comes from prev_kv
      assert.ok(
        op === "archive"
          ? await other.archive("dc01", name, version!, name, bytes("done"))
          : await other.remove("dc01", name, version!),
      );
      const alive = await etcdGateway(etcd, "/v3/lease/timetolive", { ID: lease });
      assert.equal(Number(alive.TTL ?? -1), -1, `${op}: the lease is still there`);
    }
  },
);

/**
 * The race windows of the mutations, forced: the first store is paused at
 * the seam just before its transaction goes out; meanwhile the second breaks
 * the very version the first names (archive) and takes the entry again. The
 * first must act on nothing, and the new entry (content, version, lease) must
 * be untouched.
 */
sharedTest(
  "etcd store: a replace, archive or remove paused while the entry is broken and retaken acts on nothing",
  async (etcd, open, prefix, t) => {
    await using store = open();
    await using other = open();
    for (const op of ["replace", "archive", "remove"] as const) {
      await t.step(op, async () => {
        const host = `race-${op}`;
        const old = await store.create(host, "Host.lock", bytes("dead holder"), { ttlMs: 30_000 });
        using pause = pauseAt(`etcd.${op}.txn`);
        const acting = op === "replace"
          ? store.replace(host, "Host.lock", old!, bytes("renewed"))
          : op === "archive"
          ? store.archive(host, "Host.lock", old!, "Host.lock-late", bytes("late"))
          : store.remove(host, "Host.lock", old!);
        const event = await pause.reached;
        assert.deepEqual(event, { point: `etcd.${op}.txn`, host, name: "Host.lock" });
        assert.ok(
          await other.archive(host, "Host.lock", old!, "Host.lock-broken", bytes("broken")),
        );
        const taken = await other.create(host, "Host.lock", bytes("new holder"), { ttlMs: 30_000 });
        const before = await rawKey(etcd, prefix, host, "Host.lock");
        pause.release();
        const result = await acting;
        assert.equal(result, op === "replace" ? undefined : false);
        const now = await other.read(host, "Host.lock");
        assert.deepEqual(now, { data: bytes("new holder"), version: taken });
        assert.deepEqual(await rawKey(etcd, prefix, host, "Host.lock"), before);
        assert.deepEqual(await other.listHistory(host), ["Host.lock-broken"]);
        // the new holder goes on renewing
        assert.ok(await other.replace(host, "Host.lock", taken!, bytes("new holder 2")));
      });
    }
  },
);

/**
 * A request that reached etcd but whose answer never came back (the proxy
 * forwards it, waits for etcd's answer, and closes the connection instead of
 * passing it on), or that never reached etcd (dropped): the store reads back
 * and tells which.
 */
sharedTest(
  "etcd store: a mutation whose answer was lost is resolved by reading back",
  async (etcd, _open, prefix, t) => {
    await using proxy = startEtcdProxy(etcd);
    const template = proxy.template(prefix);
    /** A store whose first request goes out on a new connection. */
    const fresh = () => storesAt(template)();
    await using other = storesAt(etcdTemplate(etcd, prefix))();
    const txn = "/v3/kv/txn";

    for (const ttlMs of [undefined, 30_000]) {
      const kind = ttlMs ? "with a lease" : "without a lease";
      const options = ttlMs ? { ttlMs } : {};
      await t.step(`create ${kind}, applied, answer lost: ours, with its version`, async () => {
        await using store = fresh();
        const host = `lost-${ttlMs ?? 0}`;
        const cut = proxy.failNext(txn, "lose-answer");
        const version = await store.create(host, "Host.lock", bytes("mine"), options);
        await cut;
        const read = await other.read(host, "Host.lock");
        assert.deepEqual(read, { data: bytes("mine"), version });
        const kv = await rawKey(etcd, prefix, host, "Host.lock");
        assert.equal(kv!.lease !== "0", ttlMs !== undefined);
        // and it is usable: renew, then archive by that version
        const next = await store.replace(host, "Host.lock", version!, bytes("mine 2"));
        assert.ok(next);
        assert.ok(await store.archive(host, "Host.lock", next, "Host.lock-1", bytes("done")));
      });

      await t.step(`create ${kind}, never arrived: fenced, then made again, once`, async () => {
        await using store = fresh();
        const host = `dropped-${ttlMs ?? 0}`;
        const cut = proxy.failNext(txn, "drop-request");
        const version = await store.create(host, "Host.lock", bytes("mine"), options);
        await cut;
        assert.ok(version, "the create failed");
        assert.deepEqual(await other.read(host, "Host.lock"), { data: bytes("mine"), version });
        // beside it the fence of the first send, which list() leaves out
        const keys = (await etcdKeys(etcd, `${prefix}/${host}/`)).map((kv) =>
          kv.key.slice(`${prefix}/${host}/`.length)
        );
        assert.equal(keys.length, 2, keys.join(", "));
        assert.ok(keys.includes("Host.lock"));
        assert.ok(keys.some((key) => key.startsWith(".resource-locker-fence-")), keys.join(", "));
        assert.deepEqual(await other.list(host), ["Host.lock"]);
      });
    }

    await t.step("create answer lost, and the entry is taken meanwhile: not ours", async () => {
      await using store = fresh();
      const host = "lost-taken";
      using pause = pauseAt("etcd.create.readback");
      const cut = proxy.failNext(txn, "lose-answer");
      const creating = store.create(host, "Host.lock", bytes("mine"), { ttlMs: 30_000 });
      await cut;
      await pause.reached;
      const ours = await other.read(host, "Host.lock");
      const lease = (await rawKey(etcd, prefix, host, "Host.lock"))!.lease;
      assert.ok(await other.archive(host, "Host.lock", ours!.version, "Host.lock-b", bytes("b")));
      const theirs = await other.create(host, "Host.lock", bytes("theirs"));
      pause.release();
      assert.equal(await creating, undefined);
      assert.deepEqual(await other.read(host, "Host.lock"), {
        data: bytes("theirs"),
        version: theirs,
      });
      // our lease was revoked on the way
      const alive = await etcdGateway(etcd, "/v3/lease/timetolive", { ID: lease });
      assert.equal(Number(alive.TTL ?? -1), -1);
    });

    await t.step(
      "create with a lease, answer lost on a kept-alive connection: sent again, still ours",
      async () => {
        // the HTTP client sends a request again when a reused connection closes
        // before any answer; the second grant finds the lease of the first
        await using store = fresh();
        await store.list("resent");
        const cut = proxy.failNext(txn, "lose-answer");
        const version = await store.create("resent", "Host.lock", bytes("mine"), { ttlMs: 30_000 });
        await cut;
        assert.ok(version, "the entry of the first send is ours");
        assert.deepEqual(await other.read("resent", "Host.lock"), {
          data: bytes("mine"),
          version,
        });
      },
    );

    await t.step(
      "create on a spare lease, the keep-alive and put applied, both answers lost: read back, ours",
      async () => {
        // pipelined, they share their fate; the put is not sent again but read back
        await using store = fresh();
        const held = await other.create("resent-spare", "Host.lock", bytes("h"), { ttlMs: 30_000 });
        const refused = await store.create("resent-spare", "Host.lock", bytes("mine"), {
          ttlMs: 30_000,
        });
        assert.equal(refused, undefined); // its lease is kept as the spare
        assert.ok(await other.remove("resent-spare", "Host.lock", held!));
        const cut = proxy.failNext("/v3/lease/keepalive", "lose-answer");
        const version = await store.create("resent-spare", "Host.lock", bytes("mine"), {
          ttlMs: 30_000,
        });
        await cut;
        assert.ok(version, "the entry of the first send is ours");
        assert.deepEqual(await other.read("resent-spare", "Host.lock"), {
          data: bytes("mine"),
          version,
        });
        const kv = await rawKey(etcd, prefix, "resent-spare", "Host.lock");
        const alive = await etcdGateway(etcd, "/v3/lease/timetolive", { ID: kv!.lease });
        assert.ok(Number(alive.TTL) > 0, "it rides a live lease");
      },
    );

    await t.step(
      "archive, answer lost on a kept-alive connection: sent again, still done",
      async () => {
        await using store = fresh();
        const version = await store.create("resent", "Generic-1.lock", bytes("g"));
        const cut = proxy.failNext(txn, "lose-answer");
        assert.equal(
          await store.archive("resent", "Generic-1.lock", version!, "Generic-1.lock", bytes("u")),
          true,
        );
        await cut;
        assert.equal(text(await other.readHistory("resent", "Generic-1.lock")), "u");
        assert.equal(await other.read("resent", "Generic-1.lock"), undefined);
      },
    );

    await t.step("replace, archive, remove: applied, answer lost", async () => {
      await using store = fresh();
      const host = "lost-mutations";
      const v1 = await other.create(host, "Host.lock", bytes("a"), { ttlMs: 30_000 });
      let cut = proxy.failNext(txn, "lose-answer");
      const v2 = await store.replace(host, "Host.lock", v1!, bytes("b"));
      await cut;
      assert.deepEqual(await other.read(host, "Host.lock"), { data: bytes("b"), version: v2 });

      await using again = fresh();
      cut = proxy.failNext(txn, "lose-answer");
      assert.equal(await again.archive(host, "Host.lock", v2!, "Host.lock-1", bytes("c")), true);
      await cut;
      assert.equal(text(await other.readHistory(host, "Host.lock-1")), "c");

      // a remove that went in cannot be told from one by someone else: the
      // entry named is gone either way (false, as the contract says)
      const v3 = await other.create(host, "Host.lock", bytes("d"));
      await using third = fresh();
      cut = proxy.failNext(txn, "lose-answer");
      assert.equal(await third.remove(host, "Host.lock", v3!), false);
      await cut;
      assert.equal(await other.read(host, "Host.lock"), undefined);
    });

    await t.step(
      "replace, archive, remove: never arrived, the entry still that version: an error",
      async () => {
        const host = "dropped-mutations";
        const v1 = await other.create(host, "Host.lock", bytes("a"));
        for (
          const act of [
            (s: LockStore) => s.replace(host, "Host.lock", v1!, bytes("b")),
            (s: LockStore) => s.archive(host, "Host.lock", v1!, "Host.lock-1", bytes("c")),
            (s: LockStore) => s.remove(host, "Host.lock", v1!),
          ]
        ) {
          await using store = fresh();
          const cut = proxy.failNext(txn, "drop-request");
          const error = await errorWithin(3000, () => act(store));
          await cut;
          assert.ok(error instanceof StoreError, String(error));
          assert.deepEqual(await other.read(host, "Host.lock"), { data: bytes("a"), version: v1 });
        }
      },
    );
  },
);

sharedTest(
  "etcd store: waitForChange() wakes on a change, times out, aborts",
  async (_etcd, open) => {
    await using store = open();
    await using other = open();
    await store.list("dc01");
    // a change after the list wakes the waiter at once
    const started = Date.now();
    const waiting = store.waitForChange("dc01", 5000);
    await sleep(200);
    const version = await other.create("dc01", "Host.lock", bytes("h"));
    await waiting;
    const took = Date.now() - started;
    assert.ok(took < 2000, `woke after ${took} ms`);

    // a change between list() and waitForChange() is not missed
    await store.list("dc01");
    assert.ok(await other.remove("dc01", "Host.lock", version!));
    const t1 = Date.now();
    await store.waitForChange("dc01", 5000);
    assert.ok(Date.now() - t1 < 1000, "missed a change made before the wait");

    // nothing changes: resolves after ms
    await store.list("dc01");
    assert.ok(await other.create("dc02", "Host.lock", bytes("elsewhere")));
    const t2 = Date.now();
    await store.waitForChange("dc01", 400);
    const waited = Date.now() - t2;
    assert.ok(waited >= 350 && waited < 1500, `waited ${waited} ms`);

    // the signal aborts it
    const controller = new AbortController();
    const aborted = store.waitForChange("dc01", 5000, controller.signal);
    setTimeout(() => controller.abort(new Error("stop")), 100);
    await assert.rejects(aborted, /stop/);

    // closing the store ends a wait
    const pending = store.waitForChange("dc01", 5000);
    await sleep(100);
    const t3 = Date.now();
    await store.close();
    await pending;
    assert.ok(Date.now() - t3 < 1000);
  },
);

/** The watch streams a store has open (one per host prefix). */
function openWatches(store: LockStore): string[] {
  return (store as unknown as { openWatches: string[] }).openWatches;
}

/** Counts the watch streams a store sets up (the seam before each), until disposed. */
function countStreams() {
  const counter = { streams: 0, [Symbol.dispose]: () => setSeamHook(previous) };
  const previous = setSeamHook((event) => {
    if (event.point === "etcd.watch.stream") counter.streams++;
    return previous?.(event);
  });
  return counter;
}

sharedTest(
  "etcd store: one watch stream per host however many waiters; all wake, with the removed entry",
  async (_etcd, open) => {
    await using store = open();
    await using other = open();
    using counter = countStreams();
    const version = await other.create("dc01", "Host.lock", bytes("h"));
    await store.list("dc01");
    // each hands its hint to onHint as the event is read, before it resolves
    const early: { hint: unknown; resolvedBefore: boolean }[] = [];
    const resolved = new Set<number>();
    const waiters = Array.from(
      { length: 5 },
      (_, i) =>
        store.waitForChange("dc01", 10_000, undefined, (hint) => {
          early.push({ hint, resolvedBefore: resolved.has(i) });
        }).finally(() => resolved.add(i)),
    );
    await sleep(200);
    assert.equal(openWatches(store).length, 1, openWatches(store).join(", "));
    assert.equal(counter.streams, 1);
    assert.ok(await other.archive("dc01", "Host.lock", version!, "Host.lock-1", bytes("u")));
    const hints = await Promise.all(waiters);
    for (const hint of hints) assert.deepEqual(hint, { removed: ["Host.lock"] });
    assert.deepEqual(early, hints.map((hint) => ({ hint, resolvedBefore: false })));
    // the stream lingers a moment for a waiter that looks and waits again
    await store.list("dc01");
    let hinted = false;
    const again = store.waitForChange("dc01", 10_000, undefined, () => (hinted = true));
    assert.ok(await other.create("dc01", "Generic-1.lock", bytes("g")));
    assert.equal(await again, undefined); // a put: no entry removed
    assert.equal(hinted, false, "a put was handed on as a removal");
    assert.equal(counter.streams, 1, "a wait right after a wake set up a new stream");
    // and is closed once nobody waits: nothing keeps the process alive
    assert.ok(await eventually(() => openWatches(store).length === 0, 3000), "still open");
  },
);

sharedTest(
  "etcd store: a waiter that leaves does not take the stream from one still waiting",
  async (_etcd, open) => {
    await using store = open();
    await using other = open();
    await store.list("dc01");
    const stop = new AbortController();
    const leaving = store.waitForChange("dc01", 10_000, stop.signal);
    const staying = store.waitForChange("dc01", 10_000);
    await sleep(100);
    stop.abort(new Error("left"));
    await assert.rejects(leaving, /left/);
    // past the linger: the stream is kept for the waiter still there
    await sleep(1300);
    assert.equal(openWatches(store).length, 1);
    const started = Date.now();
    assert.ok(await other.create("dc01", "Host.lock", bytes("h")));
    await staying;
    assert.ok(Date.now() - started < 2000, "the waiter still there did not wake");
  },
);

sharedTest(
  "etcd store: a change made while the watch stream is being set up still wakes the waiter",
  async (_etcd, open) => {
    await using store = open();
    await using other = open();
    const version = await other.create("dc01", "Host.lock", bytes("h"));
    await store.read("dc01", "Host.lock");
    using paused = pauseAt("etcd.watch.stream");
    const waiting = store.waitForChange("dc01", 10_000);
    await paused.reached;
    // the stream is not asked for yet: the change is made before it exists
    assert.ok(await other.remove("dc01", "Host.lock", version!));
    paused.release();
    const started = Date.now();
    assert.deepEqual(await waiting, { removed: ["Host.lock"] });
    assert.ok(Date.now() - started < 2000);
  },
);

ownTest(
  "etcd store: etcd stopped gives StoreError in bounded time; a restart keeps entries",
  async (etcd, open) => {
    await using store = open({ timeoutMs: 1500 });
    const version = await store.create("dc01", "Host.lock", bytes("h"));
    const g1 = await store.create("dc01", "Generic-1.lock", bytes("g"));
    assert.ok(await store.archive("dc01", "Generic-1.lock", g1!, "Generic-1.lock", bytes("u")));
    await etcd.stop();
    const calls: [string, () => Promise<unknown>][] = [
      ["create", () => store.create("dc01", "Generic-2.lock", bytes("g"))],
      [
        "create ttl",
        () => store.create("dc01", "G.lock", bytes("g"), { ttlMs: 5000 }),
      ],
      ["list", () => store.list("dc01")],
      ["read", () => store.read("dc01", "Host.lock")],
      ["replace", () => store.replace("dc01", "Host.lock", version!, bytes("x"))],
      ["archive", () => store.archive("dc01", "Host.lock", version!, "H", bytes("x"))],
      ["remove", () => store.remove("dc01", "Host.lock", version!)],
      ["listHistory", () => store.listHistory("dc01")],
      ["readHistory", () => store.readHistory("dc01", "Generic-1.lock")],
      ["waitForChange", () => store.waitForChange("dc01", 5000)],
    ];
    for (const [what, call] of calls) {
      const error = await errorWithin(3000, call);
      assert.ok(error instanceof StoreError, `${what}: ${error}`);
      assert.equal(error.code, "STORE_UNREACHABLE");
      assert.ok(error.message.includes(etcd.endpoint), error.message);
      assert.ok(!error.message.includes("\n"), error.message);
    }
    await etcd.restart();
    assert.deepEqual(await store.list("dc01"), ["Host.lock"]);
    assert.deepEqual(await store.read("dc01", "Host.lock"), { data: bytes("h"), version });
    assert.equal(text(await store.readHistory("dc01", "Generic-1.lock")), "u");
    assert.ok(await store.replace("dc01", "Host.lock", version!, bytes("h2")));
    // after a restart the next create goes in on a new connection
    assert.ok(await store.create("dc01", "Generic-2.lock", bytes("g"), { ttlMs: 5000 }));
  },
);

sharedTest(
  "etcd store: a server that stops answering times out with StoreError; the next endpoint is used",
  async (etcd, _open, prefix) => {
    // accepts connections, never answers
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const connections: Deno.Conn[] = [];
    const accepting = (async () => {
      try {
        for await (const conn of listener) connections.push(conn);
      } catch {
        // listener closed
      }
    })();
    const store = watching(
      openEtcdStore(`etcd://127.0.0.1:${port}${prefix}/{0}`, {
        historyFolderName: "History",
        timeoutMs: 500,
      }),
    );
    try {
      const error = await errorWithin(2000, () => store.list("dc01"));
      assert.ok(error instanceof StoreError, String(error));
      assert.match(error.message, /no answer within 500 ms/);
      assert.ok(error.message.includes(`127.0.0.1:${port}`), error.message);
      const waitError = await errorWithin(
        2000,
        () => store.waitForChange("dc01", 10_000),
      );
      assert.ok(waitError instanceof StoreError, String(waitError));
    } finally {
      await store.close();
      listener.close();
      await accepting;
      for (const conn of connections) conn.close();
    }
    // a dead first endpoint: the next one is used
    const dead = watching(
      openEtcdStore(`etcd://127.0.0.1:${port}${prefix}/{0}`, {
        historyFolderName: "History",
        endpoints: [etcd.endpoint],
      }),
    );
    try {
      assert.ok(await dead.create("dc01", "Host.lock", bytes("h")));
      assert.deepEqual(await dead.list("dc01"), ["Host.lock"]);
      await dead.waitForChange("dc01", 50);
    } finally {
      await dead.close();
    }
  },
);

sharedTest(
  "etcd store: a TTL entry never rides a lease it did not grant (a taken lease id)",
  async (etcd, open, prefix) => {
    await using store = open();
    const next = _leaseIds.next;
    try {
      // someone else's lease, with the id the store picks first
      const taken = "4242424242";
      const granted = await etcdGateway(etcd, "/v3/lease/grant", { TTL: "60", ID: taken });
      assert.equal(granted.ID, taken);
      const ids = [taken];
      _leaseIds.next = () => ids.shift() ?? next();
      const version = await store.create("dc01", "Host.lock", bytes("h"), { ttlMs: 5000 });
      assert.ok(version);
      const entry = await rawKey(etcd, prefix, "dc01", "Host.lock");
      assert.notEqual(entry!.lease, "0");
      assert.notEqual(entry!.lease, taken);
      const foreign = await etcdGateway(etcd, "/v3/lease/timetolive", { ID: taken, keys: true });
      assert.deepEqual(foreign.keys ?? [], [], "a key was left on the foreign lease");
      // it renews on its own lease
      const renewed = await store.replace("dc01", "Host.lock", version, bytes("h2"));
      assert.ok(renewed);
      assert.equal(text((await store.read("dc01", "Host.lock"))?.data), "h2");
      await etcdGateway(etcd, "/v3/lease/revoke", { ID: taken });
    } finally {
      _leaseIds.next = next;
    }
  },
);

/**
 * Two stores: `holder` holds dc01's Host.lock, `waiter` tried to create it
 * too (with `waiterTtlMs`) and was refused, its lease id being `spare`. Runs `fn`, then puts the
 * lease ids back.
 */
async function afterRefusedCreate(
  open: OpenStore,
  spare: string,
  fn: (holder: LockStore, waiter: LockStore, held: string) => Promise<void>,
  waiterTtlMs = 30_000,
): Promise<void> {
  await using holder = open();
  await using waiter = open();
  const next = _leaseIds.next;
  try {
    const held = await holder.create("dc01", "Host.lock", bytes("h"), { ttlMs: 30_000 });
    assert.ok(held);
    const ids = [spare];
    _leaseIds.next = () => ids.shift() ?? next();
    assert.equal(
      await waiter.create("dc01", "Host.lock", bytes("w"), { ttlMs: waiterTtlMs }),
      undefined,
    );
    await fn(holder, waiter, held);
  } finally {
    _leaseIds.next = next;
  }
}

sharedTest(
  "etcd store: a create that finds its key taken keeps its lease for the next create, renewed instead of granted again",
  (etcd, open, prefix) =>
    afterRefusedCreate(open, "5151515151", async (holder, waiter, held) => {
      // not revoked: kept, with no key on it
      const kept = await etcdGateway(etcd, "/v3/lease/timetolive", {
        ID: "5151515151",
        keys: true,
      });
      assert.ok(Number(kept.TTL) > 0, "the spare lease was revoked");
      assert.deepEqual(kept.keys ?? [], []);
      assert.ok(await holder.archive("dc01", "Host.lock", held, "Host.lock-s.1", bytes("h")));
      const version = await waiter.create("dc01", "Host.lock", bytes("w"), { ttlMs: 30_000 });
      assert.ok(version);
      assert.equal((await rawKey(etcd, prefix, "dc01", "Host.lock"))!.lease, "5151515151");
      assert.equal(text((await waiter.read("dc01", "Host.lock"))?.data), "w");
      // used once: the next taken create keeps a new one
      assert.equal(
        await holder.create("dc01", "Host.lock", bytes("x"), { ttlMs: 30_000 }),
        undefined,
      );
      assert.ok(await waiter.remove("dc01", "Host.lock", version));
    }),
);

sharedTest(
  "etcd store: a spare lease revoked before the create is not used: the create grants a lease and succeeds",
  (etcd, open, prefix) =>
    afterRefusedCreate(open, "5252525252", async (holder, waiter, held) => {
      assert.ok(await holder.remove("dc01", "Host.lock", held));
      // the spare runs out (revoked here) between the two creates
      await etcdGateway(etcd, "/v3/lease/revoke", { ID: "5252525252" });
      assert.ok(await waiter.create("dc01", "Host.lock", bytes("w"), { ttlMs: 30_000 }));
      const entry = await rawKey(etcd, prefix, "dc01", "Host.lock");
      assert.notEqual(entry!.lease, "0");
      assert.notEqual(entry!.lease, "5252525252");
      const alive = await etcdGateway(etcd, "/v3/lease/timetolive", { ID: entry!.lease });
      assert.ok(Number(alive.TTL) > 25, `the entry's lease has ${alive.TTL} s`);
    }),
);

sharedTest(
  "etcd store: a spare lease is not used by a create with another TTL, nor once older than half its TTL",
  async (etcd, open, prefix) => {
    const leaseOfEntry = async () => (await rawKey(etcd, prefix, "dc01", "Host.lock"))!.lease;
    await afterRefusedCreate(open, "5353535353", async (holder, waiter, held) => {
      assert.ok(await holder.remove("dc01", "Host.lock", held));
      const version = await waiter.create("dc01", "Host.lock", bytes("w"), { ttlMs: 60_000 });
      assert.ok(version);
      assert.notEqual(await leaseOfEntry(), "5353535353");
      assert.ok(await waiter.remove("dc01", "Host.lock", version));
    });
    // a spare of a 1 s TTL, 0.6 s old: still alive in etcd, but too old to use
    await afterRefusedCreate(open, "5454545454", async (holder, waiter, held) => {
      assert.ok(await holder.remove("dc01", "Host.lock", held));
      await new Promise((resolve) => setTimeout(resolve, 600));
      assert.ok(await waiter.create("dc01", "Host.lock", bytes("w"), { ttlMs: 1_000 }));
      assert.notEqual(await leaseOfEntry(), "5454545454");
    }, 1_000);
  },
);

Deno.test("etcd store: an endpoint's error text is shown with its control characters escaped, never raw", async () => {
  // answers every request with a gRPC-gateway error whose message carries escape sequences
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      Response.json({ error: "x", code: 7, message: "denied \u001b[2J\u001b]0;owned\u0007 here" }, {
        status: 403,
      }),
  );
  const store = openEtcdStore(`etcd://127.0.0.1:${server.addr.port}/locks/{0}`, {
    historyFolderName: "History",
    timeoutMs: 2_000,
  });
  try {
    const error = await store.list("dc01").then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof StoreError, String(error));
    assert.match(error.message, /denied .*here/);
    assertNoRawControl(error.message, "the error");
  } finally {
    await store.close();
    await server.shutdown();
  }
});

Deno.test("etcd store: a closed store refuses calls with StoreError", async () => {
  const store = openEtcdStore("etcd://127.0.0.1:1/locks/{0}", {
    historyFolderName: "History",
  });
  await store.close();
  await assert.rejects(store.list("dc01"), StoreError);
});
