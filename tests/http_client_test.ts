/**
 * Tests of the etcd store's HTTP/1.1 client against small servers on
 * loopback that answer byte by byte as the test says: kept-alive and reused
 * connections, chunked answers cut anywhere, pipelined requests, a dropped
 * idle connection, timeouts, refused connections.
 */

import assert from "node:assert/strict";
import { HttpClient, HttpTransportError } from "../src/stores/_http_client.ts";
import { freePort } from "./_etcd.ts";
import { sleep } from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One request as the server saw it. */
interface Seen {
  path: string;
  /** The request line and header fields. */
  head: string;
  body: string;
  connection: number;
}

type Reply = (
  seen: Seen,
  conn: Deno.Conn,
  stopped: Promise<void>,
) => Promise<void | "close">;

/**
 * A server that parses requests (Content-Length bodies, pipelined or not) and
 * lets `reply` write whatever bytes it likes.
 */
function serve(reply: Reply) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const origin = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  const seen: Seen[] = [];
  const conns = new Set<Deno.Conn>();
  let stop = () => {};
  const stopped = new Promise<void>((resolve) => stop = resolve);
  let connections = 0;
  const handle = async (conn: Deno.Conn, id: number) => {
    let buffer = new Uint8Array(0);
    const chunk = new Uint8Array(4096);
    try {
      while (true) {
        const text = decoder.decode(buffer);
        const end = text.indexOf("\r\n\r\n");
        const length = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
        if (end >= 0 && buffer.length >= end + 4 + length) {
          const head = text.slice(0, end);
          const request: Seen = {
            path: head.split(" ")[1]!,
            head,
            body: decoder.decode(buffer.subarray(end + 4, end + 4 + length)),
            connection: id,
          };
          buffer = buffer.slice(end + 4 + length);
          seen.push(request);
          if (await reply(request, conn, stopped) === "close") break;
          continue;
        }
        const n = await conn.read(chunk);
        if (n === null) break;
        const grown = new Uint8Array(buffer.length + n);
        grown.set(buffer);
        grown.set(chunk.subarray(0, n), buffer.length);
        buffer = grown;
      }
    } catch {
      // the client went away
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const handlers: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        handlers.push(handle(conn, ++connections));
      }
    } catch {
      // closed
    }
  })();
  return {
    origin,
    seen,
    get connections() {
      return connections;
    },
    /** Closes every open connection from the server side. */
    dropAll() {
      for (const conn of conns) conn.close();
      conns.clear();
    },
    async close() {
      stop();
      listener.close();
      for (const conn of conns) conn.close();
      await accepting;
      await Promise.all(handlers);
    },
  };
}

async function write(conn: Deno.Conn, text: string): Promise<void> {
  const bytes = encoder.encode(text);
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

function json(body: string): string {
  return `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${
    encoder.encode(body).length
  }\r\n\r\n${body}`;
}

const timeout = () => AbortSignal.timeout(5000);

Deno.test("HttpClient reuses a kept-alive connection for the next request", async () => {
  const server = serve(async (seen, conn) => {
    await write(conn, json(`{"echo":${seen.body}}`));
  });
  const client = new HttpClient();
  try {
    const first = await client.request(server.origin, "/v3/kv/range", '{"n":1}', timeout());
    const second = await client.request(server.origin, "/v3/kv/range", '{"n":2}', timeout());
    assert.deepEqual(first, { status: 200, text: '{"echo":{"n":1}}' });
    assert.equal(second.text, '{"echo":{"n":2}}');
    assert.equal(server.connections, 1);
    assert.deepEqual(server.seen.map((s) => s.path), ["/v3/kv/range", "/v3/kv/range"]);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("HttpClient sends a request's extra header fields with it alone, and refuses line breaks in them", async () => {
  const server = serve(async (_seen, conn) => {
    await write(conn, json("{}"));
  });
  const client = new HttpClient();
  try {
    await client.requestAll(server.origin, [
      { path: "/v3/kv/range", body: "{}", headers: { Authorization: "token-1" } },
      { path: "/v3/kv/txn", body: "{}" },
    ], timeout());
    assert.match(server.seen[0]!.head, /\r\nAuthorization: token-1(\r\n|$)/);
    assert.doesNotMatch(server.seen[1]!.head, /Authorization/);
    await assert.rejects(
      client.request(server.origin, "/v3/kv/range", "{}", timeout(), false, {
        Authorization: "token\r\nX-Injected: 1",
      }),
      TypeError,
    );
    assert.equal(server.seen.length, 2, "a request with a line break in a field went out");
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("HttpClient reads chunked answers cut at any byte", async () => {
  const body = JSON.stringify({ value: "x".repeat(5000), end: "é" });
  const server = serve(async (_seen, conn) => {
    const bytes = encoder.encode(body);
    let wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (let i = 0; i < bytes.length; i += 1500) {
      const part = bytes.subarray(i, i + 1500);
      wire += `${part.length.toString(16)};ext=1\r\n${decoder.decode(part)}\r\n`;
    }
    wire += "0\r\nX-Trailer: 1\r\n\r\n";
    // dribble it out in 7-byte pieces
    const raw = encoder.encode(wire);
    for (let i = 0; i < raw.length; i += 7) await conn.write(raw.subarray(i, i + 7));
  });
  const client = new HttpClient();
  try {
    for (let round = 0; round < 2; round++) {
      const answer = await client.request(server.origin, "/v3/kv/range", "{}", timeout());
      assert.equal(answer.text, body);
    }
    assert.equal(server.connections, 1, "a chunked answer leaves the connection reusable");
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("HttpClient pipelines requests and gets the answers in order", async () => {
  const server = serve(async (seen, conn) => {
    await write(conn, json(`{"path":"${seen.path}"}`));
  });
  const client = new HttpClient();
  try {
    const { answers, error } = await client.requestAll(server.origin, [
      { path: "/v3/lease/grant", body: "{}" },
      { path: "/v3/kv/txn", body: "{}" },
      { path: "/v3/kv/range", body: "{}" },
    ], timeout());
    assert.equal(error, undefined);
    assert.deepEqual(answers.map((a) => JSON.parse(a.text).path), [
      "/v3/lease/grant",
      "/v3/kv/txn",
      "/v3/kv/range",
    ]);
    assert.equal(server.connections, 1);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("HttpClient gives the answers that came when a pipeline breaks", async () => {
  const server = serve(async (seen, conn) => {
    if (seen.path === "/second") return "close";
    await write(conn, json("{}"));
  });
  const client = new HttpClient();
  try {
    const { answers, error } = await client.requestAll(server.origin, [
      { path: "/first", body: "{}" },
      { path: "/second", body: "{}" },
    ], timeout());
    assert.equal(answers.length, 1);
    assert.ok(error instanceof HttpTransportError);
    assert.equal(error.sent, true);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("HttpClient after the server dropped an idle connection: reads are sent again, changes are reported as maybe sent", async () => {
  const server = serve(async (_seen, conn) => {
    await write(conn, json("{}"));
  });
  const client = new HttpClient();
  try {
    await client.request(server.origin, "/a", "{}", timeout());
    server.dropAll(); // as a server restart or an idle timeout does
    await sleep(20);
    // A change written into a closed connection may have been applied (the
    // server may have died after applying it): never sent twice, reported as
    // sent, so the caller reads back what happened.
    await assert.rejects(
      client.request(server.origin, "/b", "{}", timeout()),
      (error: unknown) => error instanceof HttpTransportError && error.sent,
    );
    // The next one goes out on a new connection.
    const answer = await client.request(server.origin, "/c", "{}", timeout());
    assert.equal(answer.status, 200);
    server.dropAll();
    await sleep(20);
    // A read is safe to send twice: once more on a new connection.
    const read = await client.request(server.origin, "/d", "{}", timeout(), true);
    assert.equal(read.status, 200);
    assert.deepEqual(server.seen.map((s) => s.path), ["/a", "/c", "/d"]);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("HttpClient throws the signal's reason when no answer comes in time", async () => {
  const server = serve((_seen, _conn, stopped) => stopped); // never answers
  const client = new HttpClient();
  try {
    const started = Date.now();
    const signal = AbortSignal.timeout(200);
    await assert.rejects(
      client.request(server.origin, "/slow", "{}", signal),
      (error: unknown) => error === signal.reason,
    );
    assert.ok(Date.now() - started < 2000);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("HttpClient says a refused connection was never sent", async () => {
  const client = new HttpClient();
  try {
    await assert.rejects(
      client.request(`http://127.0.0.1:${freePort()}`, "/x", "{}", timeout()),
      (error: unknown) =>
        error instanceof HttpTransportError && error.sent === false &&
        error.message === "Connection refused",
    );
  } finally {
    client.close();
  }
});

Deno.test("HttpClient streams a chunked answer until its end, and close() ends it early", async () => {
  const server = serve(async (seen, conn) => {
    await write(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    await write(conn, "6\r\nevent1\r\n");
    if (seen.body === '"end"') await write(conn, "6\r\nevent2\r\n0\r\n\r\n");
    else await sleep(100);
    return "close";
  });
  const client = new HttpClient();
  try {
    const ended = await client.stream(server.origin, "/v3/watch", '"end"', timeout());
    assert.equal(ended.status, 200);
    assert.equal(decoder.decode(await ended.read()), "event1");
    assert.equal(decoder.decode(await ended.read()), "event2");
    assert.equal(await ended.read(), undefined);
    ended.close();

    const open = await client.stream(server.origin, "/v3/watch", '"open"', timeout());
    assert.equal(decoder.decode(await open.read()), "event1");
    open.close();
    await assert.rejects(open.read(), HttpTransportError);
  } finally {
    client.close();
    await server.close();
  }
});
