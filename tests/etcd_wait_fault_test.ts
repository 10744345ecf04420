/**
 * Hostile tests of waiting on the etcd store: a watch that etcd (or what
 * stands in front of it) refuses, ends or answers oddly must neither end a
 * wait early nor turn it into a busy loop of looks.
 *
 * A fake endpoint on loopback forwards every call to a real etcd but answers
 * the watch itself as the test says.
 *
 * @module
 */

import assert from "node:assert/strict";
import { closeStores, LockBusyError, lockResource } from "../mod.ts";
import { etcdTestGate, fileEtcd } from "./_etcd.ts";

const gate = await etcdTestGate();
const etcd = await fileEtcd(gate);

/** How a fake endpoint answers `/v3/watch`. */
type WatchAnswer = (request: Request) => Response | Promise<Response>;

/**
 * An endpoint on loopback that forwards to the etcd, but answers watches
 * with `watch`; counts the calls it forwarded.
 */
function frontOf(watch: WatchAnswer) {
  const counts = { forwarded: 0, watches: 0 };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      const url = new URL(request.url);
      if (url.pathname === "/v3/watch") {
        counts.watches++;
        return await watch(request);
      }
      counts.forwarded++;
      const answer = await fetch(`${etcd!.endpoint}${url.pathname}`, {
        method: request.method,
        headers: { "content-type": "application/json" },
        body: await request.text(),
      });
      return new Response(await answer.text(), {
        status: answer.status,
        headers: { "content-type": "application/json" },
      });
    },
  );
  return {
    counts,
    template: (prefix: string) => `etcd://127.0.0.1:${server.addr.port}${prefix}/{0}`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

let prefixes = 0;

/**
 * A waiter waits `waitMs` on a host held by another: how many calls its
 * store made meanwhile (the looks), and how long it took to give up.
 */
async function waitOnHeld(watch: WatchAnswer, waitMs: number) {
  await using front = frontOf(watch);
  const options = {
    store: front.template(`/wait-fault-${prefixes++}`),
    dependencies: {},
    config: { clockSkew: "100ms" },
  };
  const holder = await lockResource("hv01", { ...options, type: "Host" });
  try {
    const before = front.counts.forwarded;
    const started = Date.now();
    await assert.rejects(
      () => lockResource("hv01", { ...options, type: "Host", wait: `${waitMs}ms` }),
      LockBusyError,
    );
    return {
      tookMs: Date.now() - started,
      calls: front.counts.forwarded - before,
      watches: front.counts.watches,
    };
  } finally {
    await holder.release();
    await closeStores();
  }
}

for (
  const [what, answer] of [
    ["refused (HTTP 404)", () => new Response("no such path", { status: 404 })],
    ["unavailable (HTTP 503)", () => new Response("busy", { status: 503 })],
    [
      "cancelled at once",
      () =>
        new Response(
          JSON.stringify({ result: { header: { revision: "1" }, created: true } }) + "\n" +
            JSON.stringify({ result: { header: { revision: "1" }, canceled: true } }) + "\n",
        ),
    ],
    ["ended at once", () => new Response("")],
    ["answered with odd JSON", () => new Response("{not json\n")],
  ] as [string, WatchAnswer][]
) {
  Deno.test({
    name: `etcd wait: a watch ${what} does not turn the wait into a busy loop of looks`,
    ignore: gate.ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const { tookMs, calls, watches } = await waitOnHeld(answer, 2_000);
      assert.ok(tookMs >= 2_000 && tookMs < 6_000, `gave up after ${tookMs} ms`);
      // polling every 500 ms makes a handful of looks (a few calls each);
      // a busy loop makes hundreds
      assert.ok(calls < 60, `${calls} calls and ${watches} watches in a 2 s wait`);
    },
  });
}

/**
 * A TCP forwarder on loopback in front of the etcd that can freeze: from
 * then on nothing passes either way and every connection stays open, as
 * with a member that hangs (SIGSTOP) or a network that drops its packets.
 */
function freezable() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  let frozen = false;
  const thaw = Promise.withResolvers<void>();
  const pump = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        if (frozen) await thaw.promise;
        if (frozen) return;
        let offset = 0;
        while (offset < n) offset += await to.write(buffer.subarray(offset, n));
      }
    } catch {
      // a side closed
    }
    for (const conn of [from, to]) {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  };
  const accepting = (async () => {
    try {
      for await (const client of listener) {
        conns.add(client);
        const server = await Deno.connect({ hostname: "127.0.0.1", port: etcd!.clientPort });
        conns.add(server);
        void pump(client, server);
        void pump(server, client);
      }
    } catch {
      // listener closed
    }
  })();
  return {
    endpoint: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    freeze: () => (frozen = true),
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed already
        }
      }
      thaw.resolve();
    },
  };
}

Deno.test({
  name:
    "etcd wait: a member that hangs under a watch (sockets open, nothing said) does not make the waiter sleep through a release",
  ignore: gate.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { openEtcdStore } = await import("../src/stores/etcd.ts");
    await using member = freezable();
    const prefix = `/wait-fault-${prefixes++}`;
    // the waiter's first endpoint is the one that will hang, the second is sound
    const waiter = openEtcdStore(`${member.endpoint.replace("http", "etcd")}${prefix}/{0}`, {
      historyFolderName: "History",
      timeoutMs: 1_000,
      endpoints: [etcd!.endpoint],
    });
    const holder = openEtcdStore(`etcd://127.0.0.1:${etcd!.clientPort}${prefix}/{0}`, {
      historyFolderName: "History",
      timeoutMs: 1_000,
    });
    try {
      const version = await holder.create("dc01", "Host.lock", new Uint8Array([1]));
      assert.ok(version);
      await waiter.list("dc01");
      const waiting = waiter.waitForChange!("dc01", 20_000);
      await new Promise((resolve) => setTimeout(resolve, 300)); // the watch set up
      member.freeze();
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.ok(await holder.remove("dc01", "Host.lock", version));
      const releasedAt = Date.now();
      await waiting;
      const tookMs = Date.now() - releasedAt;
      // a few times the request timeout, not the wait's 20 s
      assert.ok(tookMs < 8_000, `woken ${tookMs} ms after the release`);
    } finally {
      await waiter.close();
      await holder.close();
    }
  },
});
