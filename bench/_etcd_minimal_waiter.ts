/**
 * The least a Deno process does to take over an etcd key once it is free,
 * for the handoff benchmark's reference row: one watch on the host's keys
 * and one create transaction, each over its own kept-open HTTP/1.1
 * connection to etcd's JSON gateway, no library. It says `waiting` on
 * stderr once its watch is set up, and prints `got` when its create went in.
 *
 * `deno run --allow-net --v8-flags=--no-lazy bench/_etcd_minimal_waiter.ts <port> <key>`
 * (the V8 flags `lock` runs with, so that only the steps differ)
 *
 * It skips what the library does besides (lease, fence key, the host's
 * listing in the same transaction, the lock file's fields, the checks of
 * the command line), so the distance between it and `lock` is what our own
 * steps cost after a wake-up, not etcd or Deno.
 *
 * @module
 */

const [port, key] = [Number(Deno.args[0]), Deno.args[1]!];
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const base64 = (text: string) => encoder.encode(text).toBase64();

function post(conn: Deno.Conn, path: string, body: string): Promise<number> {
  const bytes = encoder.encode(body);
  const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${bytes.length}\r\n\r\n`;
  const request = new Uint8Array([...encoder.encode(head), ...bytes]);
  return conn.write(request);
}

const watching = await Deno.connect({ hostname: "127.0.0.1", port });
const creating = await Deno.connect({ hostname: "127.0.0.1", port });
const prefix = key.slice(0, key.lastIndexOf("/") + 1);
const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
await post(
  watching,
  "/v3/watch",
  JSON.stringify({ create_request: { key: base64(prefix), range_end: base64(end) } }),
);
const buffer = new Uint8Array(65536);
let text = "";
let created = false;
for (;;) {
  const n = await watching.read(buffer);
  if (n === null) throw new Error("the watch ended");
  text += decoder.decode(buffer.subarray(0, n));
  if (!created && text.includes('"created":true')) {
    created = true;
    text = "";
    console.error("waiting");
  } else if (created && text.includes('"DELETE"')) break;
}
const value = JSON.stringify({ SessionId: "minimal", LockedAtUtc: new Date().toISOString() });
await post(
  creating,
  "/v3/kv/txn",
  JSON.stringify({
    compare: [{ key: base64(key), target: "CREATE", create_revision: "0" }],
    success: [{ request_put: { key: base64(key), value: base64(value) } }],
  }),
);
let answer = "";
while (!answer.includes("\r\n\r\n{") || !answer.trimEnd().endsWith("}")) {
  const n = await creating.read(buffer);
  if (n === null) break;
  answer += decoder.decode(buffer.subarray(0, n));
}
console.log(answer.includes('"succeeded":true') ? "got" : "lost");
Deno.exit(0);
