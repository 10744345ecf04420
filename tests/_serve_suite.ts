/**
 * The `serve` suite (issue 17), registered for every store: the JSON API
 * over real HTTP answers the command line's `--json` documents; writes need
 * the token and record who made them; FleetLock as Zincati uses it, across a
 * server restart; the event stream follows the store without a reconnect;
 * the metrics parse and move.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { waitFor, within } from "./_helpers.ts";
import { runCliInProcess } from "./_cli_helpers.ts";
import { closeStores, getResourceLockHistory, lockResource, unlockResource } from "../mod.ts";
import { type RunningServer, startServer } from "../src/serve/server.ts";

/** A store for one test. */
export interface ServeStore extends AsyncDisposable {
  /** Folder template. */
  store: string;
  /** Settings the store needs (credentials), as config module text (an object literal). */
  config?: Record<string, unknown>;
}

/** The token the suite's servers accept. */
export const TOKEN = "suite-token-7f3a9c2e51";
const AUTH = { authorization: `Bearer ${TOKEN}` };
const GROUPS = [{ name: "workers", members: ["node-a", "node-b"], max: 1 }];

/** A config module for the CLI and the server: the store's settings and the suite's group. */
async function configFile(s: ServeStore, dir: string): Promise<string> {
  const path = join(dir, "config.ts");
  await Deno.writeTextFile(
    path,
    `export default ${JSON.stringify({ ...s.config, groups: GROUPS, clockSkew: "100ms" })};\n`,
  );
  return path;
}

/** Ages move with the clock: set to 0 so that two documents a moment apart compare. */
function timeless(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(timeless);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) =>
        k === "ageSeconds" || k === "leaseLeftSeconds" ? [k, 0] : [k, timeless(v)]
      ),
    );
  }
  return value;
}

/** A tiny Prometheus text parser: `name{labels}` to value; throws on a line it cannot read. */
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") {
        assert.match(meta[3]!, /^(counter|gauge|histogram|summary|untyped)$/, line);
        types.set(meta[2]!, meta[3]!);
      }
      continue;
    }
    const sample =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$/
        .exec(line);
    assert.ok(sample, `not a sample line: ${JSON.stringify(line)}`);
    const family = sample[1]!.replace(/_(bucket|sum|count)$/, "");
    assert.ok(types.has(sample[1]!) || types.has(family), `no TYPE before ${sample[1]}`);
    const value = sample[3] === "+Inf" ? Infinity : Number(sample[3]);
    assert.ok(!Number.isNaN(value), `bad value in ${line}`);
    values.set(`${sample[1]}${sample[2] ?? ""}`, value);
  }
  return values;
}

/** Reads server-sent events from a response, one `{event, data}` at a time. */
export function eventReader(response: Response) {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    async next(): Promise<{ event: string; data: string }> {
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event !== undefined && data !== undefined) return { event, data };
          continue; // a comment, or the retry line
        }
        const { done, value } = await reader.read();
        if (done) throw new Error("the event stream ended");
        buffer += value;
      }
    },
    cancel: () => reader.cancel().catch(() => {}),
  };
}

async function fleetLock(server: RunningServer, path: string, id: string, auth = AUTH) {
  const response = await fetch(`${server.url}/v1/${path}`, {
    method: "POST",
    headers: { ...auth, "fleet-lock-protocol": "true" },
    body: JSON.stringify({ client_params: { id, group: "workers" } }),
  });
  return { status: response.status, body: await response.json() };
}

/**
 * Registers the suite.
 * @param name store name shown in the tests' names
 * @param open a fresh store per test
 * @param options `ignore` when the store's server is missing (not under CI)
 */
export function registerServeSuite(
  name: string,
  open: () => Promise<ServeStore>,
  options: { ignore?: boolean } = {},
): void {
  const ignore = options.ignore ?? false;

  async function setUp() {
    const s = await open();
    const dir = await Deno.makeTempDir({ prefix: "serve-suite-" });
    const config = await configFile(s, dir);
    const lockOptions = { store: s.store, configFile: config, dependencies: {} };
    const server = await startServer({
      store: s.store,
      configFile: config,
      port: 0,
      tokens: [{ name: "ops", token: TOKEN }],
      refreshInterval: "100ms",
    });
    return {
      s,
      config,
      server,
      lockOptions,
      cli: (...args: string[]) =>
        runCliInProcess([...args, "--json", "--store", s.store, "--config-file", config]),
      async [Symbol.asyncDispose]() {
        await server.shutdown();
        await closeStores();
        await Deno.remove(dir, { recursive: true });
        await s[Symbol.asyncDispose]();
      },
    };
  }

  const test = (title: string, fn: () => Promise<void>) =>
    Deno.test({
      name: `[${name}] serve: ${title}`,
      ignore,
      sanitizeOps: false,
      sanitizeResources: false,
      fn,
    });

  test("the API answers the documents of status --all, status, history and status --group", async () => {
    await using t = await setUp();
    const host = await lockResource("node-a", {
      ...t.lockOptions,
      type: "Host",
      caller: "patch",
      description: "kernel",
      ttl: "5m",
    });
    const shared = await lockResource("web01", { ...t.lockOptions, caller: "deploy" });
    const gone = await lockResource("web01", { ...t.lockOptions, caller: "old" });
    await gone.release();
    const get = async (path: string) => {
      const response = await fetch(`${t.server.url}${path}`);
      assert.equal(response.status, 200, path);
      assert.match(response.headers.get("content-type")!, /^application\/json/);
      return await response.json();
    };
    const same = async (path: string, ...args: string[]) => {
      const served = await get(path);
      const printed = await t.cli(...args);
      assert.deepEqual(timeless(served), timeless(JSON.parse(printed.stdout)), path);
      return served;
    };
    const fleet = await same("/v1/locks", "status", "--all");
    assert.deepEqual(fleet.locks.map((l: { host: string }) => l.host).sort(), ["node-a", "web01"]);
    assert.deepEqual(fleet.groups[0].slots.map((s: { member: string }) => s.member), ["node-a"]);
    await same("/v1/hosts/NODE-A", "status", "node-a");
    await same("/v1/history/web01?limit=1", "history", "web01", "--limit", "1");
    await same("/v1/groups/workers", "status", "--group", "workers");
    // The CLI run in this process closed the stores the lock objects used: release by ref.
    await unlockResource([...host.refs, ...shared.refs], t.lockOptions);
    const after = await get("/v1/locks");
    assert.deepEqual(after.locks, [], "a released lock is gone at the next request");
  });

  test("writes need the token; each records who made it; no response shows the token", async () => {
    await using t = await setUp();
    const bodies: string[] = [];
    const call = async (method: string, path: string, headers: HeadersInit, body?: unknown) => {
      const response = await fetch(`${t.server.url}${path}`, {
        method,
        headers,
        ...body !== undefined ? { body: JSON.stringify(body) } : {},
      });
      const text = await response.text();
      bodies.push(text);
      return { status: response.status, json: JSON.parse(text) };
    };
    const wrong = { authorization: "Bearer not-the-token-at-all" };
    for (const headers of [{}, wrong, { authorization: `Basic ${btoa("x:nope-nope-nope-1")}` }]) {
      const refused = await call("POST", "/v1/locks", headers, { host: "web01" });
      assert.equal(refused.status, 401);
      assert.equal(refused.json.error.code, "BAD_INPUT");
    }
    const taken = await call("POST", "/v1/locks", AUTH, {
      host: "web01",
      type: "host",
      description: "from the API",
    });
    assert.equal(taken.status, 200);
    assert.equal(taken.json.command, "lock");
    const [ref] = taken.json.refs;
    const status = await call("GET", "/v1/hosts/web01", {});
    assert.equal(status.json.locks[0].caller, "serve/ops@127.0.0.1");
    assert.equal(status.json.locks[0].description, "from the API");
    // Busy: the second Host lock is refused at once, as 409.
    const busy = await call("POST", "/v1/locks", AUTH, { host: "web01", type: "Host" });
    assert.equal(busy.status, 409);
    assert.equal(busy.json.error.code, "LOCK_BUSY");
    assert.equal((await call("DELETE", `/v1/locks/${ref}`, {})).status, 401);
    assert.equal((await call("POST", `/v1/locks/${ref}/break`, wrong)).status, 401);
    const released = await call("DELETE", `/v1/locks/${encodeURIComponent(ref)}`, AUTH);
    assert.equal(released.status, 200);
    assert.deepEqual(released.json.results, [{ ref, status: "released" }]);
    // Breaking another's lock from the page: History says who and why.
    const other = await lockResource("web02", { ...t.lockOptions, caller: "script" });
    const broken = await call("POST", `/v1/locks/${other.refs[0]}/break`, AUTH, {
      reason: "stuck",
    });
    assert.equal(broken.status, 200);
    assert.equal(broken.json.broken.ref, other.refs[0]);
    const [entry] = await getResourceLockHistory("web02", { ...t.lockOptions, limit: 1 });
    assert.equal(entry!.breakReason, "stuck (by serve/ops@127.0.0.1)");
    // Basic credentials (a FleetLock base_url's user:token@) count as the token.
    const basic = await call("POST", "/v1/locks", {
      authorization: `Basic ${btoa(`zincati:${TOKEN}`)}`,
    }, { host: "web03" });
    assert.equal(basic.status, 200);
    await call("DELETE", `/v1/locks/${basic.json.refs[0]}`, AUTH);
    for (const body of bodies) assert.ok(!body.includes(TOKEN), `token in ${body}`);
  });

  test("FleetLock as Zincati runs it: two nodes in a max 1 group, across a server restart", async () => {
    await using t = await setUp();
    let server = t.server;
    assert.deepEqual(await fleetLock(server, "steady-state", "node-a"), {
      status: 200,
      body: {
        host: "node-a",
        group: "workers",
        sessionId: (await fleetLock(server, "steady-state", "node-a")).body.sessionId,
        changed: false,
      },
    }, "initialization: nothing held is success");
    const a = await fleetLock(server, "pre-reboot", "node-a");
    assert.equal(a.status, 200);
    assert.equal(a.body.changed, true);
    const b = await fleetLock(server, "pre-reboot", "node-b");
    assert.equal(b.status, 409);
    assert.deepEqual(Object.keys(b.body).sort(), ["kind", "value"]);
    assert.equal(b.body.kind, "failed_lock_semaphore_full");
    // Node A reboots; the server restarts meanwhile: the lock is in the store.
    await server.shutdown();
    await closeStores();
    const status = await t.cli("status", "node-a");
    assert.equal(JSON.parse(status.stdout).locks[0].type, "Host", "held through the restart");
    server = await startServer({
      store: t.s.store,
      configFile: t.config,
      port: 0,
      tokens: [{ name: "ops", token: TOKEN }],
    });
    try {
      const again = await fleetLock(server, "pre-reboot", "node-a");
      assert.deepEqual(again, { status: 200, body: { ...a.body, changed: false } });
      assert.equal((await fleetLock(server, "pre-reboot", "node-b")).status, 409);
      assert.equal((await fleetLock(server, "steady-state", "node-a")).body.changed, true);
      const nowB = await fleetLock(server, "pre-reboot", "node-b");
      assert.equal(nowB.status, 200);
      assert.equal(nowB.body.changed, true);
      const group = JSON.parse((await t.cli("status", "--group", "workers")).stdout);
      assert.deepEqual(group.group.slots.map((s: { member: string }) => s.member), ["node-b"]);
      assert.equal((await fleetLock(server, "steady-state", "node-b")).status, 200);
      assert.equal(JSON.parse((await t.cli("status", "--all")).stdout).locks.length, 0);
    } finally {
      await server.shutdown();
    }
  });

  test("the event stream sends a lock taken elsewhere, then its release, on one connection", async () => {
    await using t = await setUp();
    const response = await fetch(`${t.server.url}/v1/events`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type")!, /^text\/event-stream/);
    const events = eventReader(response);
    try {
      const first = await within(10_000, events.next(), () => void events.cancel());
      assert.equal(first.event, "locks");
      assert.deepEqual(JSON.parse(first.data).locks, []);
      const lock = await lockResource("db01", { ...t.lockOptions, type: "Host", caller: "cli" });
      let seen: { locks: { host: string; caller: string }[] } | undefined;
      await within(
        10_000,
        (async () => {
          for (;;) {
            const e = await events.next();
            seen = JSON.parse(e.data);
            if (seen!.locks.length > 0) return;
          }
        })(),
        () => void events.cancel(),
      );
      assert.deepEqual(seen!.locks.map((l) => [l.host, l.caller]), [["db01", "cli"]]);
      await lock.release();
      await within(
        10_000,
        (async () => {
          for (;;) {
            const e = await events.next();
            if (JSON.parse(e.data).locks.length === 0) return;
          }
        })(),
        () => void events.cancel(),
      );
    } finally {
      await events.cancel();
    }
    await waitFor("the stream's end to be noticed", async () => {
      const m = parseMetrics(await (await fetch(`${t.server.url}/metrics`)).text());
      return m.get("resource_locker_event_clients") === 0;
    });
  });

  test("/metrics parses and follows the locks", async () => {
    await using t = await setUp();
    const metrics = async () => {
      const response = await fetch(`${t.server.url}/metrics`);
      assert.equal(
        response.headers.get("content-type"),
        "text/plain; version=0.0.4; charset=utf-8",
      );
      return parseMetrics(await response.text());
    };
    const before = await metrics();
    assert.equal(before.get('resource_locker_locks{type="Host"}'), 0);
    assert.equal(before.get('resource_locker_group_slots_used{group="workers"}'), 0);
    const lock = await lockResource("node-b", { ...t.lockOptions, type: "Host" });
    const during = await metrics();
    assert.equal(during.get('resource_locker_locks{type="Host"}'), 1);
    assert.equal(during.get('resource_locker_group_slots_used{group="workers"}'), 1);
    assert.ok(during.get("resource_locker_oldest_lock_age_seconds")! >= 0);
    const count = during.get(
      'resource_locker_http_request_duration_seconds_count{route="/metrics",method="GET"}',
    );
    assert.ok(count! >= 1, "the first /metrics request is counted");
    await lock.release();
    assert.equal((await metrics()).get('resource_locker_locks{type="Host"}'), 0);
  });
}
