/**
 * Store-level tests of the etcd store against a real etcd on loopback.
 * Without `etcd` installed they skip with a message, except under CI=true,
 * where they fail.
 */

import assert from "node:assert/strict";
import { InputError, StoreError } from "../src/errors.ts";
import type { LockStore } from "../src/store.ts";
import { _leaseIds, type EtcdStoreOptions, openEtcdStore } from "../src/stores/etcd.ts";
import { etcdGateway, etcdKeys, type EtcdServer, etcdTemplate, etcdTestGate } from "./_etcd.ts";
import { eventually, sleep } from "./_helpers.ts";

const { test: etcdTest } = await etcdTestGate();
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

/** A store on the private etcd, closed by `await using` (closing twice is harmless). */
function openStore(
  etcd: EtcdServer,
  options: Partial<EtcdStoreOptions> = {},
): WatchingStore & AsyncDisposable {
  const store = watching(openEtcdStore(etcdTemplate(etcd), {
    historyFolderName: "History",
    timeoutMs: 2000,
    ...options,
  }));
  return Object.assign(store, { [Symbol.asyncDispose]: () => store.close() });
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

Deno.test("openEtcdStore() rejects malformed templates with InputError", () => {
  const options = { historyFolderName: "History" };
  for (
    const template of [
      "etcd://127.0.0.1:2379/resource-locks",
      "etcd://{0}:2379/resource-locks",
      "etcd:///resource-locks/{0}",
      "etcd://127.0.0.1:2379/locks/{0}?x=1",
      "http://127.0.0.1:2379/locks/{0}",
    ]
  ) {
    assert.throws(() => openEtcdStore(template, options), InputError, template);
  }
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

etcdTest(
  "etcd store: entries, history and exclusion against a real etcd",
  async (etcd, t) => {
    await using store = openStore(etcd, { historyLimit: 3 });
    await using other = openStore(etcd);
    await t.step("create() of an existing entry returns false", async () => {
      assert.equal(await store.create("dc01", "Host.lock", bytes("a")), true);
      assert.equal(
        await other.create("dc01", "Host.lock", bytes("b")),
        false,
      );
      assert.equal(text(await store.read("dc01", "Host.lock")), "a");
    });

    await t.step("entries are keys under the template's prefix", async () => {
      const [entry] = await etcdKeys(etcd, "/resource-locks/dc01/Host.lock", { exact: true });
      assert.equal(entry!.value, "a");
    });

    await t.step(
      "list() names live entries, not history, not other hosts",
      async () => {
        assert.ok(await store.create("dc01", "Generic-1.lock", bytes("g")));
        assert.ok(await store.create("dc0", "Generic-2.lock", bytes("x")));
        assert.ok(await store.create("dc011", "Generic-3.lock", bytes("y")));
        assert.ok(await store.archive("dc01", "Generic-1.lock", "Generic-1.lock", bytes("u")));
        assert.deepEqual(await store.list("dc01"), ["Host.lock"]);
        assert.deepEqual(await store.list("dc0"), ["Generic-2.lock"]);
        assert.deepEqual(await store.list("nohost"), []);
      },
    );

    await t.step("read() of a missing entry is undefined", async () => {
      assert.equal(await store.read("dc01", "Missing.lock"), undefined);
      assert.equal(
        await store.readHistory("dc01", "Missing.lock"),
        undefined,
      );
    });

    await t.step(
      "replace() rewrites an entry; false when it is gone",
      async () => {
        assert.equal(
          await other.replace("dc01", "Host.lock", bytes("a2")),
          true,
        );
        assert.equal(text(await store.read("dc01", "Host.lock")), "a2");
        assert.equal(
          await other.replace("dc01", "Nope.lock", bytes("z")),
          false,
        );
        assert.deepEqual(await store.list("dc01"), ["Host.lock"]);
      },
    );

    await t.step(
      "archive() moves an entry into history with new content",
      async () => {
        assert.ok(
          await store.archive(
            "dc01",
            "Host.lock",
            "Host.lock-g1",
            bytes("done"),
          ),
        );
        assert.deepEqual(await store.list("dc01"), []);
        assert.equal(await store.read("dc01", "Host.lock"), undefined);
        assert.deepEqual(await store.listHistory("dc01"), [
          "Generic-1.lock",
          "Host.lock-g1",
        ]);
        assert.equal(
          text(await store.readHistory("dc01", "Host.lock-g1")),
          "done",
        );
        assert.equal(
          await store.archive(
            "dc01",
            "Host.lock",
            "Host.lock-g2",
            bytes("x"),
          ),
          false,
        );
        assert.deepEqual(await store.listHistory("nohost"), []);
      },
    );

    await t.step(
      "history keeps the newest historyLimit entries",
      async () => {
        for (const n of [3, 4, 5]) {
          assert.ok(
            await store.create("dc01", `Generic-${n}.lock`, bytes("g")),
          );
          assert.ok(
            await store.archive(
              "dc01",
              `Generic-${n}.lock`,
              `Generic-${n}.lock`,
              bytes(`h${n}`),
            ),
          );
        }
        assert.deepEqual(await store.listHistory("dc01"), [
          "Generic-3.lock",
          "Generic-4.lock",
          "Generic-5.lock",
        ]);
      },
    );

    await t.step("remove() deletes an entry once", async () => {
      assert.ok(await store.create("dc02", "Host.lock", bytes("h")));
      assert.equal(await store.remove("dc02", "Host.lock"), true);
      assert.equal(await store.remove("dc02", "Host.lock"), false);
      assert.deepEqual(await store.list("dc02"), []);
      assert.deepEqual(await store.listHistory("dc02"), []);
    });

    await t.step(
      "an entry taken again by another session is never removed by the first",
      async () => {
        assert.ok(await store.create("dc03", "Host.lock", bytes("mine")));
        // it disappears (lease expiry, a break) and someone else takes it
        assert.ok(await other.remove("dc03", "Host.lock"));
        assert.ok(await other.create("dc03", "Host.lock", bytes("theirs")));
        assert.equal(
          await store.replace("dc03", "Host.lock", bytes("m2")),
          false,
        );
        assert.equal(await store.remove("dc03", "Host.lock"), false);
        assert.equal(
          await store.archive("dc03", "Host.lock", "Host.lock-x", bytes("m")),
          false,
        );
        assert.equal(text(await other.read("dc03", "Host.lock")), "theirs");
        // once read, the store acts on what it saw
        assert.equal(text(await store.read("dc03", "Host.lock")), "theirs");
        assert.ok(
          await store.archive("dc03", "Host.lock", "Host.lock-y", bytes("b")),
        );
      },
    );

    await t.step("binary content survives unchanged", async () => {
      const data = new Uint8Array(70_000).map((_, i) => (i * 7) % 256);
      assert.ok(await store.create("dc04", "File-1.lock", data));
      assert.deepEqual(await store.read("dc04", "File-1.lock"), data);
    });
  },
);

etcdTest(
  "etcd store: a TTL entry vanishes after its lease unless replace() renews it",
  async (etcd) => {
    await using store = openStore(etcd);
    assert.ok(
      await store.create("dc01", "Host.lock", bytes("h"), { ttlMs: 1000 }),
    );
    assert.ok(
      await store.create("dc01", "Generic-1.lock", bytes("g"), {
        ttlMs: 1000,
      }),
    );
    assert.ok(await store.create("dc01", "Generic-2.lock", bytes("forever")));
    // renew Host.lock every 300 ms for 2.5 s: Generic-1 expires meanwhile
    const until = Date.now() + 2500;
    while (Date.now() < until) {
      assert.equal(
        await store.replace("dc01", "Host.lock", bytes("h2")),
        true,
      );
      await sleep(300);
    }
    assert.equal(text(await store.read("dc01", "Host.lock")), "h2");
    assert.ok(
      await eventually(
        async () => (await store.read("dc01", "Generic-1.lock")) === undefined,
        3000,
      ),
      "Generic-1.lock outlived its lease",
    );
    // holder dies: no more renewals, the entry vanishes by itself
    assert.ok(
      await eventually(
        async () => (await store.list("dc01")).length === 1,
        4000,
      ),
      "Host.lock outlived its lease",
    );
    assert.deepEqual(await store.list("dc01"), ["Generic-2.lock"]);
    assert.equal(
      await store.replace("dc01", "Host.lock", bytes("late")),
      false,
    );
    // an entry without TTL stays
    assert.equal(text(await store.read("dc01", "Generic-2.lock")), "forever");
  },
);

etcdTest(
  "etcd store: waitForChange() wakes on a change, times out, aborts",
  async (etcd) => {
    await using store = openStore(etcd);
    await using other = openStore(etcd);
    await store.list("dc01");
    // a change after the list wakes the waiter at once
    const started = Date.now();
    const waiting = store.waitForChange("dc01", 5000);
    await sleep(200);
    assert.ok(await other.create("dc01", "Host.lock", bytes("h")));
    await waiting;
    const took = Date.now() - started;
    assert.ok(took < 2000, `woke after ${took} ms`);

    // a change between list() and waitForChange() is not missed
    await store.list("dc01");
    assert.ok(await other.remove("dc01", "Host.lock"));
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

etcdTest(
  "etcd store: etcd stopped gives StoreError in bounded time; a restart keeps entries",
  async (etcd) => {
    await using store = openStore(etcd, { timeoutMs: 1500 });
    assert.ok(await store.create("dc01", "Host.lock", bytes("h")));
    assert.ok(await store.create("dc01", "Generic-1.lock", bytes("g")));
    assert.ok(await store.archive("dc01", "Generic-1.lock", "Generic-1.lock", bytes("u")));
    await etcd.stop();
    const calls: [string, () => Promise<unknown>][] = [
      ["create", () => store.create("dc01", "Generic-2.lock", bytes("g"))],
      [
        "create ttl",
        () => store.create("dc01", "G.lock", bytes("g"), { ttlMs: 5000 }),
      ],
      ["list", () => store.list("dc01")],
      ["read", () => store.read("dc01", "Host.lock")],
      ["replace", () => store.replace("dc01", "Host.lock", bytes("x"))],
      ["archive", () => store.archive("dc01", "Host.lock", "H", bytes("x"))],
      ["remove", () => store.remove("dc01", "Host.lock")],
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
    assert.equal(text(await store.read("dc01", "Host.lock")), "h");
    assert.equal(
      text(await store.readHistory("dc01", "Generic-1.lock")),
      "u",
    );
    assert.equal(await store.replace("dc01", "Host.lock", bytes("h2")), true);
  },
);

etcdTest(
  "etcd store: a server that stops answering times out with StoreError",
  async (etcd) => {
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
      openEtcdStore(`etcd://127.0.0.1:${port}/locks/{0}`, {
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
      openEtcdStore(`etcd://127.0.0.1:${port}/locks/{0}`, {
        historyFolderName: "History",
        endpoints: [etcd.endpoint],
      }),
    );
    try {
      assert.ok(await dead.create("dc01", "Host.lock", bytes("h")));
      assert.deepEqual(await dead.list("dc01"), ["Host.lock"]);
      await dead.list("dc01");
      await dead.waitForChange("dc01", 50);
    } finally {
      await dead.close();
    }
  },
);

etcdTest(
  "etcd store: a TTL entry never rides a lease it did not grant (a taken lease id)",
  async (etcd) => {
    await using store = openStore(etcd);
    const next = _leaseIds.next;
    try {
      // someone else's lease, with the id the store picks first
      const taken = "4242424242";
      const granted = await etcdGateway(etcd, "/v3/lease/grant", { TTL: "60", ID: taken });
      assert.equal(granted.ID, taken);
      const ids = [taken];
      _leaseIds.next = () => ids.shift() ?? next();
      assert.ok(await store.create("dc01", "Host.lock", bytes("h"), { ttlMs: 5000 }));
      const [entry] = await etcdKeys(etcd, "/resource-locks/dc01/Host.lock", { exact: true });
      const lease = entry!.lease;
      assert.notEqual(lease, "0");
      assert.notEqual(lease, taken);
      const foreign = await etcdGateway(etcd, "/v3/lease/timetolive", { ID: taken, keys: true });
      assert.deepEqual(foreign.keys ?? [], [], "a key was left on the foreign lease");
      // it renews on its own lease
      assert.equal(await store.replace("dc01", "Host.lock", bytes("h2")), true);
      assert.equal(text(await store.read("dc01", "Host.lock")), "h2");
    } finally {
      _leaseIds.next = next;
    }
  },
);

etcdTest(
  "etcd store: after an etcd restart the next create goes in on a new connection",
  async (etcd) => {
    await using store = openStore(etcd);
    assert.ok(await store.create("dc01", "Generic-1.lock", bytes("g")));
    // the kept-alive connection dies with the server
    await etcd.restart();
    assert.ok(await store.create("dc01", "Generic-2.lock", bytes("g"), { ttlMs: 5000 }));
    assert.deepEqual((await store.list("dc01")).sort(), ["Generic-1.lock", "Generic-2.lock"]);
  },
);

Deno.test("etcd store: a closed store refuses calls with StoreError", async () => {
  const store = openEtcdStore("etcd://127.0.0.1:1/locks/{0}", {
    historyFolderName: "History",
  });
  await store.close();
  await assert.rejects(store.list("dc01"), StoreError);
});
