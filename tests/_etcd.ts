/**
 * Test helper: starts a private `etcd` on free loopback ports with a temp data
 * folder, and stops it afterwards. Supports stop and restart mid-test (same
 * data folder, same ports) for fault tests.
 *
 * ```ts ignore
 * await using etcd = await startEtcd();
 * const template = etcdTemplate(etcd); // etcd://127.0.0.1:<port>/resource-locks/{0}
 * const keys = await liveKeys(etcd, "dc01"); // read straight over HTTP
 * ```
 *
 * @module
 */

import { eventually } from "./_helpers.ts";

/**
 * How the helpers here reach an etcd straight (not through the tool): a
 * `fetch` client trusting its CA and showing a client certificate (TLS),
 * and the root user's credentials once authentication is on.
 */
export interface EtcdAccess {
  /** For `fetch` over TLS. */
  client?: Deno.HttpClient;
  /** The root user, once {@linkcode enableAuth} turned authentication on. */
  root?: { name: string; password: string };
}

/** TLS of a private etcd's client port. */
export interface EtcdTlsOptions {
  /** The server's certificate and key (PEM files). */
  server: { cert: string; key: string };
  /** The CA (PEM file) that signs the clients' certificates, and the helpers' trust. */
  ca: string;
  /** Whether etcd demands a client certificate signed by `ca` (`--client-cert-auth`). */
  clientCertAuth: boolean;
  /** The helpers' own client certificate (needed with `clientCertAuth`). */
  client?: { cert: string; key: string };
}

/** A running (or stopped) private etcd. */
export interface EtcdServer extends AsyncDisposable {
  /** Client URL, e.g. `http://127.0.0.1:41234` (`https://` with TLS). */
  readonly endpoint: string;
  /** How the helpers reach it straight. */
  readonly access: EtcdAccess;
  /** Client port on 127.0.0.1. */
  readonly clientPort: number;
  /** Peer port on 127.0.0.1. */
  readonly peerPort: number;
  /** The data folder (kept across restart, removed by close). */
  readonly dataDir: string;
  /** Whether the process is running. */
  readonly running: boolean;
  /** Stops the process (SIGTERM, then SIGKILL); keeps the data folder. */
  stop(): Promise<void>;
  /** Kills the process with SIGKILL at once (a crash); keeps the data folder. */
  kill(): Promise<void>;
  /** Starts it again on the same ports and data folder; waits until healthy. */
  restart(): Promise<void>;
  /** Stops it and removes the data folder. */
  close(): Promise<void>;
  /** The last lines etcd wrote to stderr, for failure messages. */
  log(): string;
  /**
   * Kills the process (SIGKILL) and removes the data folder, synchronously:
   * for an `unload` handler, where nothing can be awaited.
   */
  killSync(): void;
}

/** Options for {@linkcode startEtcd}. */
export interface StartEtcdOptions {
  /**
   * How long to wait for etcd to answer `/health`, in milliseconds.
   * @default {15000}
   */
  readyTimeoutMs?: number;
  /**
   * Grace period between SIGTERM and SIGKILL, in milliseconds.
   * @default {3000}
   */
  stopGraceMs?: number;
  /**
   * Log to a file in the data folder instead of a pipe, so that no read of
   * the pipe is ever pending: for an etcd shared by several tests, whose
   * sanitizers would take such a read for a leak of theirs.
   * @default {false}
   */
  quiet?: boolean;
  /** TLS on the client port; plain HTTP without. */
  tls?: EtcdTlsOptions;
  /** More etcd flags, e.g. `--auth-token-ttl=1`. */
  args?: string[];
}

const ETCD_BINARY = Deno.env.get("ETCD_BINARY") ?? "etcd";
const LOG_KEEP = 8192;

/**
 * Whether an `etcd` binary can be run here.
 * @returns true when `etcd --version` succeeds
 */
export async function etcdInstalled(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(ETCD_BINARY, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

import { underCi } from "./_helpers.ts";
export { underCi };

/** What {@linkcode etcdTestGate} decided. */
export interface EtcdTestGate {
  /** For the options of `Deno.test`: true when etcd tests cannot run here. */
  ignore: boolean;
  /**
   * Registers a test against a private etcd of its own, started for it and
   * stopped after it; skipped as `ignore` says.
   */
  test(name: string, fn: (etcd: EtcdServer, t: Deno.TestContext) => Promise<void>): void;
}

/**
 * What a suite needing etcd should do here: run, or skip with a visible
 * message. Under CI ({@linkcode underCi}) a missing etcd is a failure (SPEC
 * §12): a failing test saying so is registered, and the etcd tests are skipped.
 * @returns `ignore` for the options of `Deno.test`, and `test` to register one
 */
export async function etcdTestGate(): Promise<EtcdTestGate> {
  const ignore = !await etcdInstalled();
  if (ignore) {
    const message = `"${ETCD_BINARY}" is not installed (apt-get install etcd-server)`;
    if (underCi()) {
      Deno.test("etcd is installed (required under CI)", () => {
        throw new Error(`etcd tests cannot run under CI: ${message}`);
      });
    } else {
      console.error(`%cSKIP etcd tests: ${message}`, "color: yellow");
    }
  }
  return {
    ignore,
    test(name, fn) {
      Deno.test({
        name,
        ignore,
        async fn(t) {
          await using etcd = await startEtcd();
          await fn(etcd, t);
        },
      });
    },
  };
}

/**
 * A free TCP port on 127.0.0.1 (bound, read, released).
 * @returns the port number
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Reads a stream to its end, keeping the last LOG_KEEP characters. */
async function drain(
  stream: ReadableStream<Uint8Array>,
  sink: { text: string },
): Promise<void> {
  const decoder = new TextDecoder();
  try {
    for await (const chunk of stream) {
      sink.text = (sink.text + decoder.decode(chunk, { stream: true }))
        .slice(-LOG_KEEP);
    }
  } catch {
    // the process went away; what we have is enough
  }
}

/** One GET /health with its own timeout; true when etcd says healthy. */
async function healthy(endpoint: string, access: EtcdAccess): Promise<boolean> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 1000);
  try {
    const response = await fetch(`${endpoint}/health`, {
      signal: controller.signal,
      ...access.client ? { client: access.client } : {},
    });
    const body = await response.text();
    return response.ok && body.includes('"true"');
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts a private single-member etcd on free loopback ports with a temp data
 * folder and waits (bounded) until it answers `/health`.
 *
 * @param options timeouts
 * @returns the running server; `await using` stops it and removes its folder
 * @throws {Error} when etcd does not become healthy in time (with its log)
 */
export async function startEtcd(
  options: StartEtcdOptions = {},
): Promise<EtcdServer> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 15_000;
  const stopGraceMs = options.stopGraceMs ?? 3_000;
  const quiet = options.quiet ?? false;
  const tls = options.tls;
  const access: EtcdAccess = {};
  if (tls) {
    access.client = Deno.createHttpClient({
      caCerts: [await Deno.readTextFile(tls.ca)],
      ...tls.client
        ? {
          cert: await Deno.readTextFile(tls.client.cert),
          key: await Deno.readTextFile(tls.client.key),
        }
        : {},
    });
  }
  const dataDir = await Deno.makeTempDir({ prefix: "resource-locker-etcd-" });
  let clientPort = 0;
  let peerPort = 0;
  let child: Deno.ChildProcess | undefined;
  let drained: Promise<void> = Promise.resolve();
  let exited: Promise<Deno.CommandStatus> | undefined;
  let exitedNow = true;
  const sink = { text: "" };

  function endpointOf(): string {
    return `${tls ? "https" : "http"}://127.0.0.1:${clientPort}`;
  }

  function spawn(): void {
    const client = endpointOf();
    const peer = `http://127.0.0.1:${peerPort}`;
    child = new Deno.Command(ETCD_BINARY, {
      args: [
        "--name=test",
        `--data-dir=${dataDir}/data`,
        `--listen-client-urls=${client}`,
        `--advertise-client-urls=${client}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=test=${peer}`,
        "--initial-cluster-state=new",
        "--logger=zap",
        `--log-outputs=${quiet ? `${dataDir}/etcd.log` : "stderr"}`,
        "--log-level=warn",
        // a single member on loopback: short raft timers make leases and
        // leader election quick (minimum lease TTL is 1.5 election timeouts)
        "--heartbeat-interval=50",
        "--election-timeout=500",
        // users' passwords checked fast (etcd's default cost takes 50-100 ms a check)
        "--bcrypt-cost=4",
        ...tls
          ? [
            `--cert-file=${tls.server.cert}`,
            `--key-file=${tls.server.key}`,
            // a trusted CA file alone makes etcd demand client certificates
            ...tls.clientCertAuth ? [`--trusted-ca-file=${tls.ca}`, "--client-cert-auth=true"] : [],
          ]
          : [],
        ...options.args ?? [],
      ],
      stdin: "null",
      stdout: "null",
      stderr: quiet ? "null" : "piped",
    }).spawn();
    exitedNow = false;
    const current = child;
    exited = current.status.then((status) => {
      exitedNow = true;
      return status;
    });
    drained = quiet ? Promise.resolve() : drain(current.stderr, sink);
  }

  /** What etcd logged: the pipe's tail, or the log file's. */
  function logText(): string {
    if (!quiet) return sink.text;
    try {
      return Deno.readTextFileSync(`${dataDir}/etcd.log`).slice(-LOG_KEEP);
    } catch {
      return "";
    }
  }

  async function waitReady(): Promise<void> {
    const ready = await eventually(
      async () => {
        if (exitedNow) {
          const status = await exited;
          await drained;
          throw new Error(
            `etcd exited with code ${status?.code} before it was ready:\n${logText()}`,
          );
        }
        return await healthy(endpointOf(), access);
      },
      readyTimeoutMs,
      50,
    );
    if (ready) return;
    await halt("SIGKILL");
    throw new Error(
      `etcd did not become healthy within ${readyTimeoutMs} ms at ${endpointOf()}:\n${logText()}`,
    );
  }

  async function halt(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    if (!child) return;
    const current = child;
    if (!exitedNow) {
      try {
        current.kill(signal);
      } catch {
        // already gone
      }
      if (signal === "SIGTERM") {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timedOut = await Promise.race([
          exited!.then(() => false),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(true), stopGraceMs);
          }),
        ]);
        clearTimeout(timer);
        if (timedOut) {
          try {
            current.kill("SIGKILL");
          } catch {
            // gone meanwhile
          }
        }
      }
    }
    await exited;
    await drained;
    child = undefined;
  }

  // A free port can be taken between our probe and etcd's bind: retry a few times.
  for (let attempt = 1;; attempt++) {
    clientPort = freePort();
    peerPort = freePort();
    if (peerPort === clientPort) continue;
    spawn();
    try {
      await waitReady();
      break;
    } catch (error) {
      await halt("SIGKILL");
      const portClash = /address already in use/i.test(logText());
      if (!portClash || attempt >= 3) {
        await Deno.remove(dataDir, { recursive: true }).catch(() => {});
        access.client?.close();
        throw error;
      }
      await Deno.remove(`${dataDir}/data`, { recursive: true }).catch(() => {});
      sink.text = "";
      await Deno.remove(`${dataDir}/etcd.log`).catch(() => {});
    }
  }

  let closed = false;
  const server: EtcdServer = {
    get endpoint() {
      return endpointOf();
    },
    access,
    get clientPort() {
      return clientPort;
    },
    get peerPort() {
      return peerPort;
    },
    dataDir,
    get running() {
      return child !== undefined && !exitedNow;
    },
    stop: () => halt("SIGTERM"),
    kill: () => halt("SIGKILL"),
    async restart() {
      if (closed) throw new Error("etcd helper is closed");
      await halt("SIGTERM");
      spawn();
      await waitReady();
    },
    async close() {
      if (closed) return;
      closed = true;
      await halt("SIGTERM");
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      access.client?.close();
    },
    log: logText,
    killSync() {
      closed = true;
      access.client?.close();
      if (child && !exitedNow) {
        try {
          child.kill("SIGKILL");
        } catch {
          // gone meanwhile
        }
      }
      try {
        Deno.removeSync(dataDir, { recursive: true });
      } catch {
        // already removed
      }
    },
    [Symbol.asyncDispose]() {
      return server.close();
    },
  };
  return server;
}

/** The key prefix the tests' templates put their hosts under. */
export const ETCD_PREFIX = "/resource-locks";

/**
 * The folder template of a private etcd, one key prefix per host.
 * @param prefix where the hosts' keys go; another per test on a shared etcd
 * @returns `etcd://127.0.0.1:<client port>/resource-locks/{0}`
 */
export function etcdTemplate(etcd: EtcdServer, prefix: string = ETCD_PREFIX): string {
  return `etcd://127.0.0.1:${etcd.clientPort}${prefix}/{0}`;
}

/**
 * One POST to etcd's HTTP gateway, straight, not through the tool.
 *
 * @param path e.g. `/v3/kv/range`
 * @param body the request, sent as JSON
 * @param timeoutMs bound on the whole request
 * @param token the token to send; by default root's, once authentication is on
 * @returns the JSON answer
 * @throws {Error} on an HTTP error status
 */
export async function etcdGateway(
  etcd: Pick<EtcdServer, "endpoint"> & { access?: EtcdAccess },
  path: string,
  body: unknown,
  timeoutMs = 2000,
  token?: string,
): Promise<Record<string, unknown>> {
  const signal = AbortSignal.timeout(timeoutMs);
  const access = etcd.access ?? {};
  const post = async (to: string, json: unknown, token?: string) => {
    const response = await fetch(`${etcd.endpoint}${to}`, {
      method: "POST",
      body: JSON.stringify(json),
      signal,
      ...token ? { headers: { Authorization: token } } : {},
      ...access.client ? { client: access.client } : {},
    });
    if (!response.ok) {
      throw new Error(`etcd ${to}: HTTP ${response.status}: ${await response.text()}`);
    }
    return await response.json() as Record<string, unknown>;
  };
  // as root, logged in for each call (a token may have expired meanwhile)
  token ??= access.root
    ? (await post("/v3/auth/authenticate", access.root)).token as string
    : undefined;
  return await post(path, body, token);
}

/** A user of {@linkcode enableAuth} and the key prefixes it may use. */
export interface EtcdUser {
  /** User name. */
  name: string;
  /** Password. */
  password: string;
  /** Its role's permissions: a key prefix each, read or read and write. */
  grants: { prefix: string; permission: "READ" | "READWRITE" }[];
}

/**
 * Turns etcd's authentication on, as an operator would: a root user (with
 * etcd's root role), then for each user a role of its own holding exactly
 * the grants given (`role grant-permission --prefix=true`), and `auth
 * enable`. The helpers then log in as root.
 *
 * @param rootPassword the root user's password
 * @param users the users to add
 */
export async function enableAuth(
  etcd: EtcdServer,
  rootPassword: string,
  users: EtcdUser[],
): Promise<void> {
  await etcdGateway(etcd, "/v3/auth/user/add", { name: "root", password: rootPassword });
  await etcdGateway(etcd, "/v3/auth/user/grant", { user: "root", role: "root" });
  for (const user of users) {
    const role = `${user.name}-role`;
    await etcdGateway(etcd, "/v3/auth/role/add", { name: role });
    for (const grant of user.grants) {
      await etcdGateway(etcd, "/v3/auth/role/grant", {
        name: role,
        perm: {
          key: btoa(grant.prefix),
          range_end: btoa(prefixEnd(grant.prefix)),
          permType: grant.permission,
        },
      });
    }
    await etcdGateway(etcd, "/v3/auth/user/add", { name: user.name, password: user.password });
    await etcdGateway(etcd, "/v3/auth/user/grant", { user: user.name, role });
  }
  await etcdGateway(etcd, "/v3/auth/enable", {});
  etcd.access.root = { name: "root", password: rootPassword };
}

/** A key of etcd as read straight from it, decoded. */
export interface EtcdKv {
  /** The key. */
  key: string;
  /** Its value ("" with `keysOnly`). */
  value: string;
  /** Its lease id, "0" for none. */
  lease: string;
}

/** The smallest key above every key starting with `prefix` (ASCII prefixes). */
function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/**
 * Keys read straight from etcd over its HTTP gateway, not through the tool:
 * every key starting with `key`, or with `exact` that key alone.
 *
 * @returns the keys in etcd's (byte) order
 */
export async function etcdKeys(
  etcd: Pick<EtcdServer, "endpoint"> & { access?: EtcdAccess },
  key: string,
  options: { exact?: boolean; keysOnly?: boolean; timeoutMs?: number } = {},
): Promise<EtcdKv[]> {
  const body = await etcdGateway(etcd, "/v3/kv/range", {
    key: btoa(key),
    ...(options.exact ? {} : { range_end: btoa(prefixEnd(key)) }),
    ...(options.keysOnly ? { keys_only: true } : {}),
  }, options.timeoutMs) as { kvs?: { key: string; value?: string; lease?: string }[] };
  return (body.kvs ?? []).map((kv) => ({
    key: atob(kv.key),
    value: atob(kv.value ?? ""),
    lease: kv.lease ?? "0",
  }));
}

/** Live (non-History) keys of a host under {@linkcode ETCD_PREFIX}, read straight from etcd. */
export async function liveKeys(
  etcd: Pick<EtcdServer, "endpoint"> & { access?: EtcdAccess },
  host: string,
): Promise<EtcdKv[]> {
  return (await etcdKeys(etcd, `${ETCD_PREFIX}/${host}/`)).filter((kv) =>
    !kv.key.includes("/History/")
  );
}

/**
 * One private etcd for all the tests of a file that neither stop nor restart
 * it: started when the file loads (await it at the top level), so that no
 * test owns its process and the tests' sanitizers stay quiet, and killed
 * when the file's tests are over (`unload`, also after `--filter` or a
 * failure). Tests share it by taking a key prefix each (`etcdTemplate(etcd,
 * prefix)`). Saves starting an etcd per test (about 0.35 s each).
 *
 * @param gate the file's gate
 * @returns the server, or undefined when `gate.ignore`
 */
export async function fileEtcd(gate: EtcdTestGate): Promise<EtcdServer | undefined> {
  if (gate.ignore) return undefined;
  const etcd = await startEtcd({ quiet: true });
  globalThis.addEventListener("unload", () => etcd.killSync());
  return etcd;
}

/** What {@linkcode EtcdProxy.failNext} does to the request it matches. */
export type EtcdProxyFault =
  /** Forward it, wait for etcd's answers (to every request pipelined with
   * it), and close the connection without passing them on: applied, but the
   * client cannot know. */
  | "lose-answer"
  /** Close the connection without forwarding it: the client has sent it and
   * cannot know that etcd never saw it. */
  | "drop-request";

/** A loopback forwarder in front of an etcd that can cut one exchange. */
export interface EtcdProxy extends AsyncDisposable {
  /** Template with the proxy's port, e.g. for `openEtcdStore`. */
  template(prefix?: string): string;
  /**
   * Arms a fault for the next request whose bytes (HTTP head and JSON body,
   * as latin1) contain `match`; the connection it came on is closed.
   * @returns resolves once the fault has happened
   */
  failNext(match: string, fault: EtcdProxyFault): Promise<void>;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/**
 * Starts a TCP forwarder on a free loopback port in front of `etcd`.
 * Requests that share one write (pipelined ones) share their fate.
 *
 * @returns the proxy; `await using` closes it
 */
export function startEtcdProxy(etcd: Pick<EtcdServer, "clientPort">): EtcdProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const open = new Set<Deno.Conn>();
  const pumps: Promise<void>[] = [];
  let armed:
    | { match: string; fault: EtcdProxyFault; done: () => void }
    | undefined;
  const latin1 = new TextDecoder("latin1");
  const closeAll = (...conns: Deno.Conn[]) => {
    for (const conn of conns) {
      open.delete(conn);
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  };

  async function serve(client: Deno.Conn): Promise<void> {
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: etcd.clientPort });
    } catch {
      closeAll(client);
      return;
    }
    open.add(server);
    /**
     * Set by a "lose-answer" fault: answers are swallowed until one head per
     * request of the faulted write has come (then all of them were applied),
     * and the exchange ends there.
     */
    let swallow: { heads: number; seen: string; done: () => void } | undefined;
    const upstream = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await client.read(buffer);
          if (n === null) break;
          const chunk = buffer.slice(0, n);
          const rule = armed;
          const sent = latin1.decode(chunk);
          if (rule && sent.includes(rule.match)) {
            armed = undefined;
            if (rule.fault === "drop-request") {
              closeAll(client, server);
              rule.done();
              return;
            }
            swallow = { heads: sent.split("POST /").length - 1, seen: "", done: rule.done };
          }
          let offset = 0;
          while (offset < n) offset += await server.write(chunk.subarray(offset));
        }
      } catch {
        // a side closed
      }
      closeAll(client, server);
    })();
    const downstream = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await server.read(buffer);
          if (n === null) break;
          if (swallow) {
            swallow.seen += latin1.decode(buffer.subarray(0, n));
            if (swallow.seen.split("HTTP/1.1 ").length - 1 < swallow.heads) continue;
            const done = swallow.done;
            swallow = undefined;
            closeAll(client, server);
            done();
            return;
          }
          let offset = 0;
          while (offset < n) offset += await client.write(buffer.subarray(offset, n));
        }
      } catch {
        // a side closed
      }
      closeAll(client, server);
    })();
    await Promise.all([upstream, downstream]);
  }

  const accepting = (async () => {
    try {
      for await (const client of listener) {
        open.add(client);
        pumps.push(serve(client));
      }
    } catch {
      // listener closed
    }
  })();

  const proxy: EtcdProxy = {
    template: (prefix = ETCD_PREFIX) => `etcd://127.0.0.1:${port}${prefix}/{0}`,
    failNext(match, fault) {
      return new Promise<void>((resolve) => {
        armed = { match, fault, done: resolve };
      });
    },
    async close() {
      armed = undefined;
      try {
        listener.close();
      } catch {
        // closed already
      }
      await accepting;
      closeAll(...open);
      await Promise.all(pumps);
    },
    [Symbol.asyncDispose]() {
      return proxy.close();
    },
  };
  return proxy;
}

/** A member of a private cluster ({@linkcode startEtcdCluster}). */
export interface EtcdMember {
  /** Member name, `m0`, `m1`, … */
  readonly name: string;
  /** Client URL, e.g. `http://127.0.0.1:41234`. */
  readonly endpoint: string;
  /** Client port on 127.0.0.1. */
  readonly clientPort: number;
  /** Whether its process runs (paused counts as running). */
  readonly running: boolean;
  /** Whether it is paused (SIGSTOP). */
  readonly paused: boolean;
  /** Stops it with SIGTERM (a leader hands over its leadership first), SIGKILL after a grace. */
  stop(): Promise<void>;
  /** Kills it with SIGKILL: a crash. */
  kill(): Promise<void>;
  /** Starts it again on its ports and data; waits until it answers `/health`. */
  restart(): Promise<void>;
  /** Freezes it (SIGSTOP): its sockets stay open and nothing answers. */
  pause(): void;
  /** Thaws it (SIGCONT). */
  resume(): void;
  /** Its log's tail. */
  log(): string;
}

/** A private etcd cluster on loopback. */
export interface EtcdCluster extends AsyncDisposable {
  /** Its members. */
  readonly members: readonly EtcdMember[];
  /** How the helpers reach it (any running member). */
  readonly access: EtcdAccess;
  /** A running, unpaused member's client URL, for the helpers. */
  readonly endpoint: string;
  /**
   * The index of the member that leads now, as the running members see it.
   * @throws {Error} when none knows a leader within `ms`
   */
  leader(ms?: number): Promise<number>;
  /** Kills every member and removes the data. */
  close(): Promise<void>;
  /** Kills every member and removes the data, synchronously (for `unload`). */
  killSync(): void;
}

/**
 * Starts a private cluster of `members` etcd members on loopback (client and
 * peer ports of their own, a data folder each) and waits until every member
 * answers `/health`. Raft timers are set for a loaded machine: heartbeat
 * 100 ms, election 1 s.
 *
 * @returns the cluster; `await using` kills it and removes its folders
 */
export async function startEtcdCluster(
  options: { members?: number; readyTimeoutMs?: number } = {},
): Promise<EtcdCluster> {
  const size = options.members ?? 3;
  const readyTimeoutMs = options.readyTimeoutMs ?? 20_000;
  const base = await Deno.makeTempDir({ prefix: "resource-locker-etcd-cluster-" });
  const access: EtcdAccess = {};
  const token = `rl-${crypto.randomUUID()}`;

  interface State {
    name: string;
    clientPort: number;
    peerPort: number;
    child: Deno.ChildProcess | undefined;
    exited: Promise<Deno.CommandStatus> | undefined;
    done: boolean;
    paused: boolean;
    /** Started once: a restart joins the existing cluster. */
    started: boolean;
  }
  let states: State[] = [];

  const endpointOf = (state: State) => `http://127.0.0.1:${state.clientPort}`;
  const logOf = (state: State) => {
    try {
      return Deno.readTextFileSync(`${base}/${state.name}.log`).slice(-LOG_KEEP);
    } catch {
      return "";
    }
  };

  function spawn(state: State): void {
    const client = endpointOf(state);
    const peer = `http://127.0.0.1:${state.peerPort}`;
    state.child = new Deno.Command(ETCD_BINARY, {
      args: [
        `--name=${state.name}`,
        `--data-dir=${base}/${state.name}`,
        `--listen-client-urls=${client}`,
        `--advertise-client-urls=${client}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=${
          states.map((s) => `${s.name}=http://127.0.0.1:${s.peerPort}`).join(",")
        }`,
        `--initial-cluster-state=${state.started ? "existing" : "new"}`,
        `--initial-cluster-token=${token}`,
        "--logger=zap",
        `--log-outputs=${base}/${state.name}.log`,
        "--log-level=warn",
        "--heartbeat-interval=100",
        "--election-timeout=1000",
        "--bcrypt-cost=4",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    state.started = true;
    state.done = false;
    state.paused = false;
    state.exited = state.child.status.then((status) => {
      state.done = true;
      return status;
    });
  }

  async function halt(state: State, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    if (!state.child) return;
    if (!state.done) {
      try {
        if (state.paused && signal === "SIGTERM") state.child.kill("SIGCONT");
        state.child.kill(signal);
      } catch { /* gone */ }
      if (signal === "SIGTERM") {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = await Promise.race([
          state.exited!.then(() => false),
          new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), 5000)),
        ]);
        clearTimeout(timer);
        if (late) {
          try {
            state.child.kill("SIGKILL");
          } catch { /* gone */ }
        }
      }
    }
    await state.exited;
    state.child = undefined;
    state.paused = false;
  }

  async function waitHealthy(state: State): Promise<void> {
    const ok = await eventually(
      async () => {
        if (state.done) {
          throw new Error(`etcd member ${state.name} exited:\n${logOf(state)}`);
        }
        return await healthy(endpointOf(state), access);
      },
      readyTimeoutMs,
      100,
    );
    if (!ok) {
      throw new Error(`etcd member ${state.name} not healthy in time:\n${logOf(state)}`);
    }
  }

  for (let attempt = 1;; attempt++) {
    const ports = new Set<number>();
    while (ports.size < size * 2) ports.add(freePort());
    const list = [...ports];
    states = Array.from({ length: size }, (_, i) => ({
      name: `m${i}`,
      clientPort: list[2 * i]!,
      peerPort: list[2 * i + 1]!,
      child: undefined,
      exited: undefined,
      done: true,
      paused: false,
      started: false,
    }));
    states.forEach(spawn);
    try {
      await Promise.all(states.map(waitHealthy));
      break;
    } catch (error) {
      await Promise.all(states.map((state) => halt(state, "SIGKILL")));
      const clash = states.some((state) => /address already in use/i.test(logOf(state)));
      for (const state of states) {
        await Deno.remove(`${base}/${state.name}`, { recursive: true }).catch(() => {});
        await Deno.remove(`${base}/${state.name}.log`).catch(() => {});
      }
      if (!clash || attempt >= 3) {
        await Deno.remove(base, { recursive: true }).catch(() => {});
        throw error;
      }
    }
  }

  const members: EtcdMember[] = states.map((state) => ({
    name: state.name,
    endpoint: endpointOf(state),
    clientPort: state.clientPort,
    get running() {
      return state.child !== undefined && !state.done;
    },
    get paused() {
      return state.paused;
    },
    stop: () => halt(state, "SIGTERM"),
    kill: () => halt(state, "SIGKILL"),
    async restart() {
      await halt(state, "SIGTERM");
      spawn(state);
      await waitHealthy(state);
    },
    pause() {
      if (state.child && !state.done && !state.paused) {
        state.child.kill("SIGSTOP");
        state.paused = true;
      }
    },
    resume() {
      if (state.child && !state.done && state.paused) {
        state.child.kill("SIGCONT");
        state.paused = false;
      }
    },
    log: () => logOf(state),
  }));

  const available = () => {
    const state = states.find((s) => s.child && !s.done && !s.paused);
    if (!state) throw new Error("no etcd member is running");
    return endpointOf(state);
  };

  let closed = false;
  const cluster: EtcdCluster = {
    members,
    access,
    get endpoint() {
      return available();
    },
    async leader(ms = 10_000) {
      let found = -1;
      const ok = await eventually(
        async () => {
          for (const [i, state] of states.entries()) {
            if (!state.child || state.done || state.paused) continue;
            try {
              const status = await etcdGateway(
                { endpoint: endpointOf(state), access },
                "/v3/maintenance/status",
                {},
                1000,
              ) as { leader?: string; header?: { member_id?: string } };
              if (
                status.leader && status.leader !== "0" && status.leader === status.header?.member_id
              ) {
                found = i;
                return true;
              }
            } catch { /* this one cannot tell */ }
          }
          return false;
        },
        ms,
        100,
      );
      if (!ok) throw new Error(`no etcd member leads within ${ms} ms`);
      return found;
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all(states.map((state) => halt(state, "SIGKILL")));
      await Deno.remove(base, { recursive: true }).catch(() => {});
    },
    killSync() {
      closed = true;
      for (const state of states) {
        try {
          if (state.child && !state.done) state.child.kill("SIGKILL");
        } catch { /* gone */ }
      }
      try {
        Deno.removeSync(base, { recursive: true });
      } catch { /* removed */ }
    },
    [Symbol.asyncDispose]() {
      return cluster.close();
    },
  };
  return cluster;
}
