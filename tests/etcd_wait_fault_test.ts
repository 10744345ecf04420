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
