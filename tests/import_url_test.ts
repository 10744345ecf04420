/**
 * Import by URL (SPEC §2): a script outside the project imports `mod.ts`
 * over HTTP from a static server on 127.0.0.1, with an empty module cache,
 * and locks and unlocks a host. Bare specifiers, files missing beside
 * `mod.ts` or imports a remote importer cannot resolve would fail it.
 */

import assert from "node:assert/strict";
import { extname, join, normalize } from "node:path";
import { listNames, parseJsonExact, REPO_ROOT } from "./_cli_helpers.ts";

const TYPES: Record<string, string> = {
  ".ts": "application/typescript; charset=utf-8",
  ".js": "application/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
};

/** What the server was asked for. */
interface Served {
  path: string;
  status: number;
}

/**
 * Serves the repository's files read-only on 127.0.0.1. `config.ts` is
 * always missing, as beside a published `mod.ts` (it is the user's own file).
 */
function serveRepository(signal: AbortSignal, served: Served[]) {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal, onListen: () => {} },
    async (request) => {
      const path = decodeURIComponent(new URL(request.url).pathname);
      const file = normalize(join(REPO_ROOT, path));
      let status = 404;
      let body: Uint8Array<ArrayBuffer> | undefined;
      if (
        request.method === "GET" && file.startsWith(REPO_ROOT) && path !== "/config.ts" &&
        !path.split("/").some((part) => part.startsWith("."))
      ) {
        try {
          body = await Deno.readFile(file);
          status = 200;
        } catch {
          status = 404;
        }
      }
      served.push({ path, status });
      return body === undefined ? new Response("not found", { status }) : new Response(body, {
        headers: { "content-type": TYPES[extname(file)] ?? "application/octet-stream" },
      });
    },
  );
}

const SCRIPT = (port: number) => `
import {
  lockResource,
  testHostResourceLock,
  unlockResource,
} from "http://127.0.0.1:${port}/mod.ts";

const store = Deno.args[0];
const lock = await lockResource("web01", { type: "Host", caller: "url-import", store });
const during = await testHostResourceLock("web01", { store, type: "Host" });
const results = await unlockResource(lock);
const after = await testHostResourceLock("web01", { store });
console.log(JSON.stringify({ refs: lock.refs, during, after, results }));
`;

/** What one run of the script gave. */
interface Scenario {
  code: number;
  stdout: string;
  stderr: string;
  served: Served[];
  /** The store root the script used. */
  root: string;
  /** Everything, for assertion messages. */
  context: string;
}

/**
 * Serves the repository, runs the script from a folder outside the project
 * with an empty module cache and an npm registry that has nothing (this
 * server), then hands the result to `check` while the temp folder exists.
 */
async function runScenario(check: (scenario: Scenario) => Promise<void>): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "rl-url-" });
  const stop = new AbortController();
  const lifetime = setTimeout(() => stop.abort(), 60_000);
  const served: Served[] = [];
  const server = serveRepository(stop.signal, served);
  try {
    const port = server.addr.port;
    const scriptDir = join(tmp, "elsewhere");
    const root = join(tmp, "store");
    await Deno.mkdir(scriptDir);
    await Deno.mkdir(root);
    const script = join(scriptDir, "use_locker.ts");
    await Deno.writeTextFile(script, SCRIPT(port));

    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(Deno.env.toObject())) {
      if (!/^(RESOURCE_LOCKER_|DENO_|NPM_CONFIG_)/i.test(key)) env[key] = value;
    }
    env.DENO_DIR = join(tmp, "deno-dir");
    env.NO_COLOR = "1";
    env.XDG_STATE_HOME = join(tmp, "state");
    // Tests talk only to 127.0.0.1: npm packages, if any are fetched, are asked of
    // this server, which has none (the build machines cannot reach a registry either).
    env.NPM_CONFIG_REGISTRY = `http://127.0.0.1:${port}/npm-registry/`;
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        `--allow-import=127.0.0.1:${port}`,
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--allow-sys",
        "--allow-net",
        script,
        join(root, "{0}"),
      ],
      cwd: scriptDir,
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: stop.signal,
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    const context = `exit ${output.code}\nstdout: ${stdout}\nstderr: ${stderr}\nserved: ${
      served.map((s) => `${s.status} ${s.path}`).join(", ")
    }`;
    assert.ok(!stop.signal.aborted, `timed out\n${context}`);
    await check({ code: output.code, stdout, stderr, served, root, context });
  } finally {
    clearTimeout(lifetime);
    stop.abort();
    await server.finished;
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("a script outside the project imports mod.ts by URL with an empty cache, locks and unlocks a host", async () => {
  await runScenario(async ({ code, stdout, stderr, served, root, context }) => {
    // Every module the graph asks for exists beside mod.ts; config.ts, absent, is simply absent.
    const missing = served.filter((s) =>
      s.status !== 200 && s.path !== "/config.ts" && !s.path.startsWith("/npm-registry/")
    );
    assert.deepEqual(missing, [], context);
    assert.equal(code, 0, context);
    const messages = stderr.split("\n").filter((line) => line && !line.startsWith("Download "));
    assert.deepEqual(messages, [], context);
    assert.ok(served.some((s) => s.path === "/mod.ts" && s.status === 200), context);
    // Nothing of the project's own configuration travels: no import map, no deno.json.
    assert.ok(!served.some((s) => s.path === "/deno.json"), context);

    const result = JSON.parse(stdout);
    assert.equal(result.refs.length, 1);
    assert.match(result.refs[0], /^web01\/Host@[0-9a-f-]{36}$/);
    assert.equal(result.during, true);
    assert.equal(result.after, false);
    assert.deepEqual(result.results, [{ ref: result.refs[0], status: "released" }]);

    assert.deepEqual(await listNames(join(root, "web01")), ["History"]);
    const history = await listNames(join(root, "web01", "History"));
    assert.equal(history.length, 1);
    assert.match(history[0]!, /^Host\.lock-[0-9a-f-]{36}\.[0-9a-f-]{36}$/);
    const fields = parseJsonExact(
      await Deno.readTextFile(join(root, "web01", "History", history[0]!)),
    ) as Record<string, unknown>;
    assert.equal(fields.Caller, "url-import");
    assert.equal(fields.SessionId, result.refs[0].split("@")[1]);
    assert.equal(typeof fields.UnlockedAt, "bigint");
  });
});

Deno.test("importing mod.ts by URL for the local store asks no npm registry for anything", async () => {
  await runScenario(({ code, served, context }) => {
    assert.equal(code, 0, context);
    // SPEC §2: a store's dependencies load only when that store is used. A registry
    // that does not answer (a firewalled build machine) would stall the first run.
    assert.deepEqual(
      served.map((s) => s.path).filter((path) => path.startsWith("/npm-registry/")),
      [],
      context,
    );
    return Promise.resolve();
  });
});
