/**
 * The etcd watcher's wake path against a fake endpoint on loopback whose
 * watch stream says what the test tells it: the clean-up a woken wait does
 * after its caller went on (its timer, its listener, the stream's linger).
 *
 * @module
 */

import { assertEquals, assertOk } from "./_assert.ts";
import { sleep, within } from "./_helpers.ts";
import { EtcdGateway } from "../src/stores/etcd/gateway.ts";
import { EtcdWatcher, LINGER_MS } from "../src/stores/etcd/watch.ts";

const encoder = new TextEncoder();
const b64 = (text: string) => btoa(text);

/** A fake etcd endpoint: every watch stream it opens, to write lines into. */
function fakeEtcd() {
  const streams: ReadableStreamDefaultController<Uint8Array>[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      const url = new URL(request.url);
      await request.text();
      if (url.pathname !== "/v3/watch") {
        return Response.json({ header: { revision: "1" }, count: "0" });
      }
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          streams.push(controller);
          controller.enqueue(
            encoder.encode(
              JSON.stringify({ result: { header: { revision: "10" }, created: true } }) + "\n",
            ),
          );
        },
        cancel() {},
      });
      return new Response(body, { headers: { "content-type": "application/json" } });
    },
  );
  const gateway = new EtcdGateway({
    endpoints: [`http://127.0.0.1:${server.addr.port}`],
    timeoutMs: 2_000,
    discover: false,
  });
  return {
    streams,
    gateway,
    /** Writes a line of events into the newest stream. */
    events(revision: number, ...removed: string[]) {
      const events = removed.length > 0
        ? removed.map((name) => ({
          type: "DELETE",
          kv: { key: b64(`/p/${name}`), mod_revision: String(revision) },
        }))
        : [{ kv: { key: b64("/p/x"), mod_revision: String(revision) } }];
      streams.at(-1)!.enqueue(
        encoder.encode(
          JSON.stringify({ result: { header: { revision: String(revision) }, events } }) + "\n",
        ),
      );
    },
    async [Symbol.asyncDispose]() {
      for (const stream of streams) {
        try {
          stream.close();
        } catch {
          // closed already
        }
      }
      gateway.close();
      await server.shutdown();
    },
  };
}

/** Whether `promise` settled by now (after a turn of the event loop). */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(() => done = true, () => done = true);
  await sleep(0);
  return done;
}

/** Once the watcher's stream is open and its created line read. */
async function streamSetUp(etcd: { streams: unknown[] }): Promise<void> {
  await within(
    2_000,
    (async () => {
      while (etcd.streams.length === 0) await sleep(5);
    })(),
  );
  await sleep(20); // the created line read
}

// Two waits on one prefix woken by one event each scheduled the stream's
// linger after their caller went on (setTimeout(leave, 0)); both saw nobody
// waiting, so the second linger replaced the first without clearing it. The
// first then ran out under the next waiter: its stream ended, the wait woke
// for nothing, and a store closed meanwhile kept that timer (1 s) alive.
Deno.test("two waits woken together leave one linger: a later wait on the stream is not ended by the other", async () => {
  await using etcd = fakeEtcd();
  const watcher = new EtcdWatcher(etcd.gateway);
  try {
    const first = watcher.wait("/p/", 11n, 20_000);
    const second = watcher.wait("/p/", 11n, 20_000);
    await streamSetUp(etcd);
    etcd.events(11);
    assertEquals(await within(2_000, first), []);
    assertEquals(await within(2_000, second), []);
    await sleep(10); // both clean-ups ran
    // the next waiter keeps the stream for as long as it waits
    const third = watcher.wait("/p/", 12n, 20_000);
    await sleep(LINGER_MS + 300);
    assertOk(!(await settled(third)), "the third wait is still waiting (nothing changed)");
    assertEquals(watcher.open, ["/p/"], "its stream is still open");
    etcd.events(12);
    assertEquals(await within(2_000, third), []);
  } finally {
    watcher.close();
  }
});

// An events line that came while nobody waited is read on a timer (or by the
// next waiter); one that does not read (odd JSON, a revision that is no
// number) threw there, out of a timer: an uncaught error that ended the
// process, lock holders included. Read at once, as before, it ends the
// stream and the waiters look again.
Deno.test("an events line that does not read, come in the chunk that woke the last waiter, ends the stream and not the process", async () => {
  await using etcd = fakeEtcd();
  const watcher = new EtcdWatcher(etcd.gateway);
  try {
    const first = watcher.wait("/p/", 11n, 20_000);
    await streamSetUp(etcd);
    // one chunk: the line that wakes the waiter, then one that does not read,
    // kept for later (nobody waits once the first is read)
    const wake = JSON.stringify({
      result: {
        header: { revision: "11" },
        events: [{ kv: { key: b64("/p/x"), mod_revision: "11" } }],
      },
    });
    const bad =
      '{"result":{"header":{"revision":"12"},"events":[{"kv":{"mod_revision":"twelve"}}]}}';
    etcd.streams.at(-1)!.enqueue(encoder.encode(`${wake}\n${bad}\n`));
    assertEquals(await within(2_000, first), []);
    await sleep(100);
    // the stream ended (as a line that does not read ends it when read at once)
    assertEquals(watcher.open, [], "the stream ended");
    // the next waiter starts a new stream and wakes at its first change
    const next = watcher.wait("/p/", 12n, 20_000);
    await within(
      2_000,
      (async () => {
        while (etcd.streams.length < 2) await sleep(5);
      })(),
    );
    await sleep(20);
    etcd.events(12);
    assertEquals(await within(2_000, next), []);
  } finally {
    watcher.close();
  }
});

// While nobody waits on a stream (the linger after a wake-up), it is not
// read: the woken caller's own change comes back on it, and reading that came
// before the caller's answer (0.1-0.5 ms in a process just woken). What comes
// meanwhile waits in the connection, for the next waiter to read first.
Deno.test("a stream nobody waits on is not read; the next waiter reads what came meanwhile, first", async () => {
  await using etcd = fakeEtcd();
  const watcher = new EtcdWatcher(etcd.gateway);
  try {
    const first = watcher.wait("/p/", 11n, 20_000);
    await streamSetUp(etcd);
    etcd.events(11);
    assertEquals(await within(2_000, first), []);
    // nobody waits: a removal, then a line that does not read
    etcd.events(12, "Host.lock");
    etcd.streams.at(-1)!.enqueue(
      encoder.encode(
        '{"result":{"header":{"revision":"13"},"events":[{"kv":{"mod_revision":"thirteen"}}]}}\n',
      ),
    );
    await sleep(150);
    // unread: the line that does not read has not ended the stream
    assertEquals(watcher.open, ["/p/"], "the stream was read while nobody waited");
    // the next waiter reads the removal first (it wakes with it), then the
    // bad line ends the stream
    assertEquals(await within(2_000, watcher.wait("/p/", 12n, 20_000)), ["Host.lock"]);
    await sleep(50);
    assertEquals(watcher.open, [], "the line that does not read did not end the stream");
  } finally {
    watcher.close();
  }
});
