/**
 * The etcd store as production runs etcd: over TLS, the server's
 * certificate checked against the CA given, a client certificate demanded
 * (`--client-cert-auth`), and authentication on: a root user, and users
 * whose roles hold exactly the grants the README asks for (`locker`: read
 * and write on `/locks/`, the tests' lock prefix, and nothing else), so a
 * permission the store needs and the role lacks fails a test. Certificates
 * are made for the test with `openssl` (tests/_tls.ts).
 *
 * Lock cycles pass through the command line and the library; an untrusted
 * CA, a missing or foreign client certificate, a server certificate for
 * another name, a wrong password, no user, and a role without write each
 * give one line and exit 4. A token that expires or is revoked is replaced
 * by logging in again; a password changed meanwhile is one clear error.
 *
 * One etcd serves the file, each test under its own key prefix. Without
 * `etcd` or `openssl` the tests skip with a message, except under CI, where
 * a failing test says so.
 *
 * @module
 */

import assert from "node:assert/strict";
import { closeStores, lockResource, StoreError } from "../mod.ts";
import { openEtcdStore } from "../src/stores/etcd.ts";
import { lines, runCli } from "./_cli_helpers.ts";
import {
  enableAuth,
  etcdGateway,
  etcdInstalled,
  etcdKeys,
  type EtcdServer,
  startEtcd,
  underCi,
} from "./_etcd.ts";
import { sleep } from "./_helpers.ts";
import { makeCertificates, opensslInstalled, type TestCertificates } from "./_tls.ts";

const missing = [
  ...await etcdInstalled() ? [] : ["etcd (apt-get install etcd-server)"],
  ...await opensslInstalled() ? [] : ["openssl (apt-get install openssl)"],
];
const ignore = missing.length > 0;
if (ignore) {
  const message = `${missing.join(" and ")} not installed`;
  if (underCi()) {
    Deno.test("etcd over TLS: etcd and openssl are installed (required under CI)", () => {
      throw new Error(`etcd TLS tests cannot run under CI: ${message}`);
    });
  } else console.error(`%cSKIP etcd TLS tests: ${message}`, "color: yellow");
}

/** Where every test's locks go: the one prefix the users' roles grant. */
const LOCKS = "/locks/";
const ROOT_PASSWORD = "Root-Pw-5c1e0a";
/** The user the README's minimal role describes: read and write on the lock prefix. */
const LOCKER = { name: "locker", password: "Locker-Pw-9d2f47" };
/** A user whose role may only read the lock prefix. */
const READER = { name: "reader", password: "Reader-Pw-03b8e6" };
/** A user whose password a test changes. */
const ROTATING = { name: "rotating", password: "Rotating-Pw-77a1c2" };

/** The file's certificates and its etcd (TLS, client certificates demanded, authentication on). */
const setup = ignore ? undefined : await (async () => {
  const certs = await makeCertificates();
  const etcd = await startEtcd({
    quiet: true,
    tls: { server: certs.server, ca: certs.ca.cert, clientCertAuth: true, client: certs.client },
  });
  globalThis.addEventListener("unload", () => {
    etcd.killSync();
    Deno.removeSync(certs.dir, { recursive: true });
  });
  await enableAuth(etcd, ROOT_PASSWORD, [
    { ...LOCKER, grants: [{ prefix: LOCKS, permission: "READWRITE" }] },
    { ...READER, grants: [{ prefix: LOCKS, permission: "READ" }] },
    { ...ROTATING, grants: [{ prefix: LOCKS, permission: "READWRITE" }] },
  ]);
  return { certs, etcd };
})();

/** The settings of a client with the trusted CA, a client certificate and the locker user. */
function lockerSettings(certs: TestCertificates): Record<string, string> {
  return {
    ca: certs.ca.cert,
    cert: certs.client.cert,
    key: certs.client.key,
    username: LOCKER.name,
    password: LOCKER.password,
  };
}

let prefixes = 0;

/** A test on the file's etcd with a key prefix of its own. */
function tlsTest(
  name: string,
  fn: (
    context: { etcd: EtcdServer; certs: TestCertificates; prefix: string; template: string },
  ) => Promise<void>,
): void {
  const prefix = `${LOCKS}t${++prefixes}`;
  Deno.test({
    name,
    ignore,
    async fn() {
      const { etcd, certs } = setup!;
      try {
        await fn({
          etcd,
          certs,
          prefix,
          template: `etcd://127.0.0.1:${new URL(etcd.endpoint).port}${prefix}/{0}`,
        });
      } finally {
        await closeStores();
      }
    },
  });
}

/** A config module in a temp folder; removed by `await using`. */
async function configFile(etcd: Record<string, unknown>) {
  const dir = await Deno.makeTempDir({ prefix: "rl-etcd-config-" });
  const path = `${dir}/config.ts`;
  await Deno.writeTextFile(path, `export default ${JSON.stringify({ etcd })};\n`);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

/** The CLI's one line on stderr, asserted with exit 4. */
function assertStoreFailure(
  result: { code: number; stdout: string; stderr: string },
  reason: RegExp,
): void {
  assert.equal(result.code, 4, `exit ${result.code}: ${result.stderr}`);
  assert.equal(lines(result.stderr).length, 1, result.stderr);
  assert.match(result.stderr, /^Error: Cannot .* in etcd at "https:\/\/127\.0\.0\.1:\d+": TLS: /);
  assert.match(result.stderr, reason);
  assert.doesNotMatch(result.stderr, /\bat .*\.ts:\d+/, "a stack trace");
}

tlsTest(
  "etcd over TLS: lock, status, run and unlock pass with the CA and a client certificate",
  async ({ etcd, certs, prefix, template }) => {
    // a config module beside the certificates, naming them relative to itself
    const config = { path: `${certs.dir}/relative-config.ts` };
    await Deno.writeTextFile(
      config.path,
      `export default { etcd: { ca: "./ca.pem", cert: "client.pem", key: "client.key" } };\n`,
    );
    // the user from the environment
    const env = {
      RESOURCE_LOCKER_ETCD_USERNAME: LOCKER.name,
      RESOURCE_LOCKER_ETCD_PASSWORD: LOCKER.password,
    };
    const cli = (args: string[]) => runCli(args, { env });
    const base = ["--store", template, "--config-file", config.path, "--no-dependencies"];
    const locked = await cli(["lock", "hv01", "--hard", "--caller", "tls", ...base]);
    assert.equal(locked.code, 0, locked.stderr);
    const [key] = await etcdKeys(etcd, `${prefix}/hv01/Host.lock`, { exact: true });
    assert.match(key!.value, /"Caller": "tls"/);
    const status = await cli([
      "status",
      "hv01",
      "--json",
      "--store",
      template,
      "--config-file",
      config.path,
    ]);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).locks[0].caller, "tls");
    const busy = await cli(["run", "hv01", "--retries", "1", ...base, "--", "true"]);
    assert.equal(busy.code, 3, busy.stderr);
    const unlocked = await cli([
      "unlock",
      locked.stdout.trim(),
      "--store",
      template,
      "--config-file",
      config.path,
    ]);
    assert.equal(unlocked.code, 0, unlocked.stderr);
    const ran = await cli(["run", "hv01", "--ttl", "5s", ...base, "--", "sh", "-c", "exit 7"]);
    assert.equal(ran.code, 7, ran.stderr);
    for (const output of [locked, status, busy, unlocked, ran]) {
      assert.ok(
        !(output.stdout + output.stderr).includes(LOCKER.password),
        "the password was shown",
      );
    }
    // released twice: two History entries, nothing live
    assert.deepEqual(
      (await etcdKeys(etcd, `${prefix}/hv01/`)).map((kv) =>
        kv.key.slice(`${prefix}/hv01/`.length).split("/")[0]
      ),
      ["History", "History"],
    );
  },
);

tlsTest(
  "etcd over TLS: the library takes and releases a lock with the same settings",
  async ({ etcd, certs, prefix, template }) => {
    const lock = await lockResource("dc01", {
      store: template,
      type: "Host",
      ttl: "5s",
      dependencies: {},
      config: { etcd: lockerSettings(certs) },
    });
    const [live] = await etcdKeys(etcd, `${prefix}/dc01/Host.lock`, { exact: true });
    assert.notEqual(live!.lease, "0");
    const [released] = await lock.release();
    assert.equal(released?.status, "released");
    assert.deepEqual(await etcdKeys(etcd, `${prefix}/dc01/Host.lock`, { exact: true }), []);
    // the role let the release revoke the lock's lease too
    const lease = await etcdGateway(etcd, "/v3/lease/timetolive", { ID: live!.lease });
    assert.equal(Number(lease.TTL ?? -1), -1, "the lease outlived the release");
  },
);

tlsTest(
  "etcd over TLS: a server certificate from a CA not trusted gives one line and exit 4",
  async ({ certs, template }) => {
    // the other CA, and no CA at all (Deno's root store alone)
    for (
      const settings of [
        { ca: certs.otherCa.cert, cert: certs.client.cert, key: certs.client.key },
        { cert: certs.client.cert, key: certs.client.key },
      ]
    ) {
      await using config = await configFile(settings);
      const result = await runCli([
        "status",
        "hv01",
        "--store",
        template,
        "--config-file",
        config.path,
      ]);
      assertStoreFailure(result, /the server's certificate is not signed by a trusted CA/);
    }
  },
);

tlsTest(
  "etcd over TLS: no client certificate, or one from a CA etcd does not trust: one line, exit 4",
  async ({ certs, template }) => {
    for (
      const settings of [
        { ca: certs.ca.cert },
        { ca: certs.ca.cert, cert: certs.rogueClient.cert, key: certs.rogueClient.key },
      ]
    ) {
      await using config = await configFile(settings);
      for (
        const args of [
          ["status", "hv01"],
          ["lock", "hv01", "--hard", "--no-dependencies", "--retries", "1"],
        ]
      ) {
        const result = await runCli([...args, "--store", template, "--config-file", config.path]);
        assertStoreFailure(result, /the server refused the client certificate/);
      }
    }
  },
);

tlsTest(
  "etcd over TLS: a server certificate for another name gives one line and exit 4",
  async ({ certs, prefix }) => {
    // a TLS server showing a certificate for wrong.example only, signed by the trusted CA
    const listener = Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: await Deno.readTextFile(certs.wrongName.cert),
      key: await Deno.readTextFile(certs.wrongName.key),
    });
    const accepting = (async () => {
      for await (const conn of listener) {
        await conn.handshake().catch(() => {});
        conn.close();
      }
    })().catch(() => {});
    try {
      const port = (listener.addr as Deno.NetAddr).port;
      await using config = await configFile({
        ca: certs.ca.cert,
        cert: certs.client.cert,
        key: certs.client.key,
      });
      const result = await runCli([
        "status",
        "hv01",
        "--store",
        `etcd://127.0.0.1:${port}${prefix}/{0}`,
        "--config-file",
        config.path,
      ]);
      assertStoreFailure(
        result,
        /the server's certificate is not valid for "127\.0\.0\.1" \(it names "wrong\.example"\)$/m,
      );
    } finally {
      listener.close();
      await accepting;
    }
  },
);

tlsTest(
  "etcd over TLS: the library reports a refused certificate as StoreError, nothing left behind",
  async ({ etcd, certs, prefix, template }) => {
    await assert.rejects(
      lockResource("dc02", {
        store: template,
        type: "Host",
        dependencies: {},
        config: { etcd: { ca: certs.ca.cert } },
      }),
      (error: unknown) =>
        error instanceof StoreError && error.unchanged &&
        /refused the client certificate/.test(error.message),
    );
    assert.deepEqual(await etcdKeys(etcd, `${prefix}/`), []);
  },
);

tlsTest(
  "etcd TLS settings: a missing file, a file without PEM, a certificate without its key: exit 2",
  async ({ certs, template }) => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ca: `${certs.dir}/missing.pem` }, /Cannot read etcd\.ca ".*missing\.pem": No such file/],
      [{ ca: certs.client.key }, /Invalid etcd\.ca ".*client\.key": no PEM certificate in it/],
      [{ key: certs.client.key }, /etcd\.cert and etcd\.key go together/],
      [
        { ca: certs.ca.cert, cert: certs.client.cert, key: certs.ca.cert },
        /Invalid etcd\.key ".*ca\.pem": no PEM private key in it/,
      ],
    ];
    for (const [settings, message] of cases) {
      await using config = await configFile(settings);
      const result = await runCli([
        "status",
        "hv01",
        "--store",
        template,
        "--config-file",
        config.path,
      ]);
      assert.equal(result.code, 2, result.stderr);
      assert.equal(lines(result.stderr).length, 1, result.stderr);
      assert.match(result.stderr, message);
      assert.doesNotMatch(result.stderr, /BEGIN/, "a key or certificate was printed");
    }
    // http:// beside TLS settings: one cluster speaks one or the other
    await using config = await configFile({ ca: certs.ca.cert, endpoints: ["http://127.0.0.1:1"] });
    const mixed = await runCli([
      "status",
      "hv01",
      "--store",
      template,
      "--config-file",
      config.path,
    ]);
    assert.equal(mixed.code, 2, mixed.stderr);
    assert.match(mixed.stderr, /use https:\/\/ for every endpoint/);
  },
);

tlsTest(
  "etcd with authentication: a wrong password, or no user, gives one line and exit 4",
  async ({ etcd, certs, prefix, template }) => {
    await using config = await configFile({
      ca: certs.ca.cert,
      cert: certs.client.cert,
      key: certs.client.key,
    });
    const wrong = "Not-The-Pw-4417";
    for (
      const [env, message] of [
        [
          { RESOURCE_LOCKER_ETCD_USERNAME: LOCKER.name, RESOURCE_LOCKER_ETCD_PASSWORD: wrong },
          /^Error: Cannot log in as "locker" in etcd at "https:\/\/127\.0\.0\.1:\d+": HTTP \d+: etcdserver: authentication failed, invalid user ID or password$/m,
        ],
        [
          {},
          // (with client certificates demanded etcd says "permission denied", else "user name is empty")
          /^Error: Cannot create ".*Host\.lock" in etcd at "https:\/\/127\.0\.0\.1:\d+": HTTP \d+: etcdserver: (?:permission denied|user name is empty) \(no etcd user given: set etcd\.username and etcd\.password\)$/m,
        ],
      ] as const
    ) {
      for (const verbose of [[], ["--verbose"], ["--json"]]) {
        const result = await runCli([
          "lock",
          "hv01",
          "--hard",
          "--no-dependencies",
          "--retries",
          "1",
          "--store",
          template,
          "--config-file",
          config.path,
          ...verbose,
        ], { env });
        assert.equal(result.code, 4, result.stderr);
        if (verbose[0] !== "--json") assert.match(result.stderr, message);
        if (verbose.length === 0) assert.equal(lines(result.stderr).length, 1, result.stderr);
        const output = result.stdout + result.stderr;
        for (const secret of [wrong, LOCKER.password]) {
          assert.ok(!output.includes(secret), `a password was shown: ${output}`);
        }
      }
    }
    assert.deepEqual(await etcdKeys(etcd, `${prefix}/`), []);
  },
);

tlsTest(
  "etcd with authentication: a role that may only read: status works, locking is refused with exit 4",
  async ({ etcd, certs, prefix, template }) => {
    // a lock the reader can see
    await using writer = await configFile(lockerSettings(certs));
    const held = await runCli([
      "lock",
      "hv01",
      "--caller",
      "writer",
      "--no-dependencies",
      "--store",
      template,
      "--config-file",
      writer.path,
    ]);
    assert.equal(held.code, 0, held.stderr);
    await using reader = await configFile({
      ...lockerSettings(certs),
      username: READER.name,
      password: READER.password,
    });
    const base = ["--store", template, "--config-file", reader.path];
    const status = await runCli(["status", "hv01", "--json", ...base]);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).locks[0].caller, "writer");
    for (
      const args of [
        ["lock", "hv02", "--hard", "--no-dependencies", ...base],
        ["run", "hv02", "--ttl", "5s", "--no-dependencies", ...base, "--", "true"],
        ["unlock", held.stdout.trim(), ...base],
      ]
    ) {
      const result = await runCli(args);
      assert.equal(result.code, 4, `${args[0]}: ${result.stderr}`);
      assert.equal(lines(result.stderr).length, 1, result.stderr);
      assert.match(
        result.stderr,
        /etcdserver: permission denied \(the etcd user "reader" needs read and write on the lock prefix\)$/m,
      );
    }
    assert.deepEqual(await etcdKeys(etcd, `${prefix}/hv02/`), []);
    assert.equal((await etcdKeys(etcd, `${prefix}/hv01/`)).length, 1);
    // the locker user outside its prefix: refused the same way
    const outside = await runCli([
      "lock",
      "hv01",
      "--no-dependencies",
      "--store",
      template.replace(LOCKS, "/elsewhere/"),
      "--config-file",
      writer.path,
    ]);
    assert.equal(outside.code, 4, outside.stderr);
    assert.match(outside.stderr, /permission denied \(the etcd user "locker" needs read and write/);
  },
);

tlsTest(
  "etcd with authentication: a revoked token is replaced by logging in again; a changed password is one clear error",
  async ({ etcd, certs, template }) => {
    const open = () =>
      openEtcdStore(template, {
        historyFolderName: "History",
        timeoutMs: 3000,
        ...lockerSettings(certs),
        username: ROTATING.name,
        password: ROTATING.password,
      });
    const store = open();
    const other = open();
    try {
      const data = new TextEncoder().encode("h");
      let version = await store.create("dc01", "Host.lock", data, { ttlMs: 30_000 });
      assert.ok(version);
      // (with authentication off, no login: TLS alone)
      const anonymous = { endpoint: etcd.endpoint, access: { client: etcd.access.client! } };
      const revokeTokens = async () => {
        await etcdGateway(etcd, "/v3/auth/disable", {});
        await etcdGateway(anonymous, "/v3/auth/enable", {});
      };
      const login = { name: ROTATING.name, password: ROTATING.password };
      const token = (await etcdGateway(anonymous, "/v3/auth/authenticate", login)).token as string;
      // auth disable and enable revoke every token
      await revokeTokens();
      await assert.rejects(
        etcdGateway(anonymous, "/v3/kv/range", { key: btoa(LOCKS) }, 2000, token),
        /invalid auth token/,
      );
      // a renewal, a watch and a list go on with a new token
      version = await store.replace("dc01", "Host.lock", version, data);
      assert.ok(version, "the renewal after the revocation failed");
      await store.list("dc01");
      const waking = store.waitForChange!("dc01", 5000);
      await sleep(100);
      await revokeTokens();
      const started = Date.now();
      assert.ok(await other.create("dc01", "Generic-1.lock", data));
      await waking;
      assert.ok(Date.now() - started < 3000, "the waiter did not wake");
      // the password changed: logging in again fails, one line, nothing shown
      await etcdGateway(etcd, "/v3/auth/user/changepw", {
        name: ROTATING.name,
        password: "Changed-Pw-1b9",
      });
      const error = await store.replace("dc01", "Host.lock", version, data).then(
        () => undefined,
        (error: unknown) => error,
      );
      assert.ok(error instanceof StoreError, String(error));
      assert.match(
        error.message,
        /^Cannot log in as "rotating" in etcd at ".*": HTTP \d+: etcdserver: authentication failed, invalid user ID or password$/,
      );
      assert.ok(error.unchanged);
    } finally {
      await store.close();
      await other.close();
    }
  },
);

Deno.test({
  name: "etcd with authentication: a token that expired unused is replaced by logging in again",
  ignore,
  async fn() {
    // tokens of 1 s: a renewal a third of a 6 s lease later finds its token expired
    await using etcd = await startEtcd({ args: ["--auth-token-ttl=1"] });
    await enableAuth(etcd, ROOT_PASSWORD, [
      { ...LOCKER, grants: [{ prefix: LOCKS, permission: "READWRITE" }] },
    ]);
    const template = `etcd://127.0.0.1:${etcd.clientPort}${LOCKS}expiry/{0}`;
    const store = openEtcdStore(template, {
      historyFolderName: "History",
      timeoutMs: 3000,
      username: LOCKER.name,
      password: LOCKER.password,
    });
    try {
      const data = new TextEncoder().encode("h");
      const version = await store.create("dc01", "Host.lock", data, { ttlMs: 6000 });
      assert.ok(version);
      // a token taken now is refused once unused for longer than its TTL
      const anonymous = { endpoint: etcd.endpoint };
      const token = (await etcdGateway(anonymous, "/v3/auth/authenticate", LOCKER)).token as string;
      await sleep(2200);
      await assert.rejects(
        etcdGateway(anonymous, "/v3/kv/range", { key: btoa(LOCKS) }, 2000, token),
        /invalid auth token/,
      );
      const renewed = await store.replace("dc01", "Host.lock", version, data);
      assert.ok(renewed, "the renewal with an expired token failed");
      await sleep(2200);
      assert.deepEqual(await store.list("dc01"), ["Host.lock"]);
      await sleep(2200);
      // a watch set up with an expired token wakes on the change all the same
      const waking = store.waitForChange!("dc01", 5000);
      await sleep(200);
      const started = Date.now();
      assert.ok(await store.archive("dc01", "Host.lock", renewed, "Host.lock-1", data));
      await waking;
      assert.ok(Date.now() - started < 3000, "the waiter did not wake");
    } finally {
      await store.close();
    }
  },
});
