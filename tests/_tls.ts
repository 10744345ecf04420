/**
 * Test helper: certificates made with `openssl` into a temp folder, for etcd
 * over TLS (EC P-256 keys, valid two days):
 *
 * - `ca`: the CA the tests trust; it signs `server` (127.0.0.1 and
 *   localhost, server and client use: etcd's gateway connects to its own
 *   gRPC port with it), `client` (client use, no Common Name: with
 *   authentication on, etcd's gateway refuses a client certificate that has
 *   one), `namedClient` (one with a Common Name) and `wrongName` (only
 *   `wrong.example`);
 * - `otherCa`: a CA nobody trusts; it signs `rogueClient`.
 *
 * ```ts ignore
 * await using certs = await makeCertificates();
 * Deno.readTextFileSync(certs.ca.cert);
 * ```
 *
 * @module
 */

/** A certificate and its key, as PEM files. */
export interface CertFiles {
  /** Path of the certificate. */
  cert: string;
  /** Path of its private key. */
  key: string;
}

/** The certificates of a test, in a temp folder removed on dispose. */
export interface TestCertificates extends AsyncDisposable {
  /** The folder. */
  dir: string;
  /** The trusted CA. */
  ca: CertFiles;
  /** etcd's certificate: 127.0.0.1 and localhost, signed by `ca`. */
  server: CertFiles;
  /** A client certificate signed by `ca`, without a Common Name. */
  client: CertFiles;
  /** A client certificate signed by `ca`, with a Common Name. */
  namedClient: CertFiles;
  /** A server certificate for `wrong.example` only, signed by `ca`. */
  wrongName: CertFiles;
  /** A CA nobody trusts. */
  otherCa: CertFiles;
  /** A client certificate signed by `otherCa`. */
  rogueClient: CertFiles;
}

const OPENSSL = Deno.env.get("OPENSSL_BINARY") ?? "openssl";
const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/**
 * Whether `openssl` can be run here.
 * @returns true when `openssl version` succeeds
 */
export async function opensslInstalled(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(OPENSSL, {
      args: ["version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

async function openssl(args: string[]): Promise<void> {
  const output = await new Deno.Command(OPENSSL, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `openssl ${args[0]} failed: ${new TextDecoder().decode(output.stderr).trim()}`,
    );
  }
}

async function makeCa(dir: string, name: string, subject: string): Promise<CertFiles> {
  const files = { cert: `${dir}/${name}.pem`, key: `${dir}/${name}.key` };
  await openssl([
    "req",
    "-x509",
    ...EC,
    "-keyout",
    files.key,
    "-out",
    files.cert,
    "-days",
    "2",
    "-subj",
    `/CN=${subject}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return files;
}

async function makeLeaf(
  dir: string,
  name: string,
  init: { subject: string; names?: string; usage: string; ca: CertFiles },
): Promise<CertFiles> {
  const files = { cert: `${dir}/${name}.pem`, key: `${dir}/${name}.key` };
  const csr = `${dir}/${name}.csr`;
  const ext = `${dir}/${name}.ext`;
  await openssl([
    "req",
    "-new",
    ...EC,
    "-keyout",
    files.key,
    "-out",
    csr,
    "-subj",
    init.subject,
  ]);
  await Deno.writeTextFile(
    ext,
    [
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature",
      `extendedKeyUsage=${init.usage}`,
      ...init.names ? [`subjectAltName=${init.names}`] : [],
    ].join("\n") + "\n",
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    init.ca.cert,
    "-CAkey",
    init.ca.key,
    // each its own serial: the leaves are signed at once, a serial file would race
    "-set_serial",
    `0x${
      crypto.getRandomValues(new Uint8Array(12)).reduce((t, b) =>
        t + b.toString(16).padStart(2, "0"), "")
    }`,
    "-out",
    files.cert,
    "-days",
    "2",
    "-extfile",
    ext,
  ]);
  return files;
}

/**
 * Makes the certificates of a test in a temp folder.
 * @returns their paths; `await using` removes them
 * @throws {Error} when openssl fails (with its message)
 */
export async function makeCertificates(): Promise<TestCertificates> {
  const dir = await Deno.makeTempDir({ prefix: "resource-locker-tls-" });
  try {
    const [ca, otherCa] = await Promise.all([
      makeCa(dir, "ca", "resource-locker test CA"),
      makeCa(dir, "other-ca", "untrusted test CA"),
    ]);
    const [server, client, namedClient, wrongName, rogueClient] = await Promise.all([
      makeLeaf(dir, "server", {
        subject: "/CN=etcd-server",
        names: "IP:127.0.0.1,DNS:localhost",
        usage: "serverAuth,clientAuth",
        ca,
      }),
      makeLeaf(dir, "client", { subject: "/O=resource-locker", usage: "clientAuth", ca }),
      makeLeaf(dir, "named-client", { subject: "/CN=locker", usage: "clientAuth", ca }),
      makeLeaf(dir, "wrong-name", {
        subject: "/CN=etcd-server",
        names: "DNS:wrong.example",
        usage: "serverAuth,clientAuth",
        ca,
      }),
      makeLeaf(dir, "rogue-client", {
        subject: "/O=resource-locker",
        usage: "clientAuth",
        ca: otherCa,
      }),
    ]);
    return {
      dir,
      ca,
      server,
      client,
      namedClient,
      wrongName,
      otherCa,
      rogueClient,
      [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
    };
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}
