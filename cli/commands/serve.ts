/**
 * `serve`: the status page, the JSON API, FleetLock and metrics over HTTP,
 * until SIGINT or SIGTERM.
 *
 * @module
 */

import { TOKEN_ENV } from "../../src/serve/token_env.ts";
import type { CommandDeclaration } from "../command.ts";
import { EXIT, UsageError } from "../errors.ts";
import { DEPENDENCIES_FILE } from "../flags.ts";

/** The address `serve` listens on unless told otherwise. */
export const DEFAULT_LISTEN = "127.0.0.1:8080";

/** `HOST:PORT`, `[v6]:PORT` or `:PORT` (loopback). */
export function parseListen(text: string): { hostname: string; port: number } {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw new UsageError(
      `Invalid --listen ${
        JSON.stringify(text.slice(0, 80))
      }: expected HOST:PORT (${DEFAULT_LISTEN})`,
    );
  }
  return { hostname: match[1] ?? (match[2] || "127.0.0.1"), port };
}

/** True for an address only this machine reaches. */
export function isLoopback(hostname: string): boolean {
  return /^127\./.test(hostname) || hostname === "::1" || hostname === "localhost";
}

async function readPem(path: string, flag: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new UsageError(
      `Cannot read ${flag} ${JSON.stringify(path)}: ${(error as Error).message.split("\n")[0]}`,
    );
  }
}

/** `serve`. */
export const SERVE: CommandDeclaration = {
  name: "serve",
  operands: "",
  usage: "[--listen ADDRESS] [--tls-cert FILE --tls-key FILE] [options]",
  summary: "status page, JSON API, FleetLock and metrics over HTTP",
  description: `Serves the status page (/), the JSON API (/v1/, described at
/v1/openapi.json), FleetLock for Zincati (/v1/pre-reboot, /v1/steady-state)
and Prometheus metrics (/metrics) until SIGINT or SIGTERM.

Read-only unless a token is configured (config "serve.tokens" or
${TOKEN_ENV}); writes need it as "Authorization: Bearer <token>" and are
recorded as serve:<token name>@<client address>. Listens on loopback unless
--listen names another address; without --tls-cert and --tls-key a
non-loopback address is served in clear text (a warning says so).`,
  flags: [
    {
      name: "listen",
      value: "ADDRESS",
      help: "HOST:PORT to listen on (port 0: any free one)",
      default: DEFAULT_LISTEN,
    },
    {
      name: "tls-cert",
      value: "FILE",
      help: "PEM certificate for HTTPS, with --tls-key",
      file: true,
    },
    { name: "tls-key", value: "FILE", help: "PEM private key for HTTPS", file: true },
    {
      name: "hosts",
      value: "FILE",
      help: "a file naming more hosts for the fleet view, one per line",
      file: true,
      setting: "hostsFile",
      default: "none",
    },
    DEPENDENCIES_FILE,
  ],
  async handler({ operands, values, io, storeOptions }) {
    if (operands.length > 0) throw new UsageError("serve takes no operands");
    if (values.json) throw new UsageError("serve prints no document: --json is not supported");
    const { hostname, port } = parseListen(
      typeof values.listen === "string" ? values.listen : DEFAULT_LISTEN,
    );
    const certFile = values["tls-cert"], keyFile = values["tls-key"];
    if ((typeof certFile === "string") !== (typeof keyFile === "string")) {
      throw new UsageError("--tls-cert and --tls-key go together");
    }
    const tls = typeof certFile === "string"
      ? {
        cert: await readPem(certFile, "--tls-cert"),
        key: await readPem(keyFile as string, "--tls-key"),
      }
      : {};
    // Loaded here: the server (with Node's crypto module) costs every other
    // command 20-30 ms of start-up when imported with the command table.
    const { startServer } = await import("../../src/serve/server.ts");
    const server = await startServer({
      ...storeOptions,
      hostname,
      port,
      ...tls,
      ...typeof values.hosts === "string" ? { hostsFile: values.hosts } : {},
      ...typeof values["dependencies-file"] === "string"
        ? { dependenciesFile: values["dependencies-file"] }
        : {},
      ...values.verbose
        ? {
          onRequest: (r) =>
            io.err(
              `${
                new Date().toISOString()
              } ${r.client} ${r.method} ${r.route} ${r.status} ${r.ms}ms${
                r.token !== undefined ? ` token ${r.token}` : ""
              }`,
            ),
        }
        : {},
    });
    const stop = () => void server.shutdown();
    const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
    for (const signal of signals) Deno.addSignalListener(signal, stop);
    try {
      if (!isLoopback(server.hostname) && !tls.cert) {
        io.err(
          `Warning: listening on ${server.hostname} without TLS: tokens and pages travel in clear text (--tls-cert, --tls-key)`,
        );
      }
      if (!values.quiet) {
        io.err(
          `Listening on ${server.url} (${
            server.writable ? "writes need a token" : "read-only: no token configured"
          })`,
        );
      }
      await server.finished;
    } finally {
      for (const signal of signals) Deno.removeSignalListener(signal, stop);
      await server.shutdown();
    }
    if (!values.quiet) io.err("Stopped");
    return EXIT.OK;
  },
};
