/**
 * The etcd store as production runs etcd: over TLS, the server's
 * certificate checked against the CA given, a client certificate demanded
 * (`--client-cert-auth`). Certificates are made for the test with `openssl`
 * (tests/_tls.ts). Lock cycles pass through the command line and the
 * library; an untrusted CA, a missing or foreign client certificate and a
 * server certificate for another name each give one line and exit 4.
 *
 * One etcd serves the file, each test under its own key prefix. Without
 * `etcd` or `openssl` the tests skip with a message, except under CI, where
 * a failing test says so.
 *
 * @module
 */

import assert from "node:assert/strict";
import { closeStores, lockResource, StoreError } from "../mod.ts";
import { lines, runCli } from "./_cli_helpers.ts";
import { etcdInstalled, etcdKeys, type EtcdServer, startEtcd, underCi } from "./_etcd.ts";
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

/** The file's certificates and its etcd (TLS, client certificates demanded). */
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
  return { certs, etcd };
})();

let prefixes = 0;

/** A test on the file's etcd with a key prefix of its own. */
function tlsTest(
  name: string,
  fn: (
    context: { etcd: EtcdServer; certs: TestCertificates; prefix: string; template: string },
  ) => Promise<void>,
): void {
  const prefix = `/tls-${++prefixes}`;
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
    const base = ["--store", template, "--config", config.path, "--no-dependencies"];
    const locked = await runCli(["lock", "hv01", "--hard", "--caller", "tls", ...base]);
    assert.equal(locked.code, 0, locked.stderr);
    const [key] = await etcdKeys(etcd, `${prefix}/hv01/Host.lock`, { exact: true });
    assert.match(key!.value, /"Caller": "tls"/);
    const status = await runCli([
      "status",
      "hv01",
      "--json",
      "--store",
      template,
      "--config",
      config.path,
    ]);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).locks[0].caller, "tls");
    const busy = await runCli(["run", "hv01", "--retries", "1", ...base, "--", "true"]);
    assert.equal(busy.code, 3, busy.stderr);
    const unlocked = await runCli([
      "unlock",
      locked.stdout.trim(),
      "--store",
      template,
      "--config",
      config.path,
    ]);
    assert.equal(unlocked.code, 0, unlocked.stderr);
    const ran = await runCli(["run", "hv01", "--ttl", "5s", ...base, "--", "sh", "-c", "exit 7"]);
    assert.equal(ran.code, 7, ran.stderr);
    assert.deepEqual(
      (await etcdKeys(etcd, `${prefix}/hv01/`)).map((kv) =>
        kv.key.split("/").slice(3, -1).join("/")
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
      config: { etcd: { ca: certs.ca.cert, cert: certs.client.cert, key: certs.client.key } },
    });
    const [live] = await etcdKeys(etcd, `${prefix}/dc01/Host.lock`, { exact: true });
    assert.notEqual(live!.lease, "0");
    const [released] = await lock.release();
    assert.equal(released?.status, "released");
    assert.deepEqual(await etcdKeys(etcd, `${prefix}/dc01/Host.lock`, { exact: true }), []);
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
      const result = await runCli(["status", "hv01", "--store", template, "--config", config.path]);
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
        const result = await runCli([...args, "--store", template, "--config", config.path]);
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
        "--config",
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
      const result = await runCli(["status", "hv01", "--store", template, "--config", config.path]);
      assert.equal(result.code, 2, result.stderr);
      assert.equal(lines(result.stderr).length, 1, result.stderr);
      assert.match(result.stderr, message);
      assert.doesNotMatch(result.stderr, /BEGIN/, "a key or certificate was printed");
    }
    // http:// beside TLS settings: one cluster speaks one or the other
    await using config = await configFile({ ca: certs.ca.cert, endpoints: ["http://127.0.0.1:1"] });
    const mixed = await runCli(["status", "hv01", "--store", template, "--config", config.path]);
    assert.equal(mixed.code, 2, mixed.stderr);
    assert.match(mixed.stderr, /use https:\/\/ for every endpoint/);
  },
);
