/**
 * `deno task demo` and `deno task cli` on the local store download nothing
 * they do not use. With an empty module cache and an npm registry that only
 * records what it is asked (a server on 127.0.0.1), the demo must run
 * without asking it for anything. The cause this guards: `deno task` caches
 * every npm package of the lockfile before it runs any task, so deno.json
 * sets `"lock": false` and each task passes `--lock=deno.lock` to the
 * command it runs. A control run of the SMB store (its NTLM package) shows
 * the registry does see requests, and that they follow the lockfile.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "./_cli_helpers.ts";

/** The SMB store's NTLM package, at the version deno.lock pins. */
const NTLM_TARBALL = "/@ewsjs/ntlm-client/-/ntlm-client-3.0.1.tgz";

/** What one run gave, and what the registry was asked meanwhile. */
interface TaskRun {
  code: number;
  stdout: string;
  stderr: string;
  asked: string[];
  context: string;
}

/**
 * Runs `deno task <args>` from the repository root with a fresh DENO_DIR
 * and a recording npm registry; environment variables of ours and Deno's
 * are left out.
 */
async function runTask(args: string[]): Promise<TaskRun> {
  const tmp = await Deno.makeTempDir({ prefix: "rl-task-" });
  const stop = new AbortController();
  const lifetime = setTimeout(() => stop.abort(), 120_000);
  const asked: string[] = [];
  // Deno fetches the lockfile's packages at once and gives up at the first
  // refusal: every answer waits (10 s at most) until the SMB store's NTLM
  // package was asked, so which one Deno asks first cannot hide it.
  let tarballAsked = () => {};
  const tarball = new Promise<void>((resolve) => tarballAsked = resolve);
  const registry = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: stop.signal, onListen: () => {} },
    async (request) => {
      const path = decodeURIComponent(new URL(request.url).pathname);
      asked.push(path);
      if (path === NTLM_TARBALL) tarballAsked();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([tarball, new Promise((r) => timer = setTimeout(r, 10_000))]);
      clearTimeout(timer);
      return new Response("not found", { status: 404 });
    },
  );
  try {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(Deno.env.toObject())) {
      if (!/^(RESOURCE_LOCKER_|DENO_|NPM_CONFIG_)/i.test(key)) env[key] = value;
    }
    env.DENO_DIR = join(tmp, "deno-dir");
    env.NO_COLOR = "1";
    env.XDG_STATE_HOME = join(tmp, "state");
    env.NPM_CONFIG_REGISTRY = `http://127.0.0.1:${registry.addr.port}/`;
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["task", ...args],
      cwd: REPO_ROOT,
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: stop.signal,
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    const context = `deno task ${args.join(" ")}: exit ${output.code}\nstdout: ${stdout}\nstderr: ${
      stderr.slice(0, 3000)
    }\nasked: ${asked.join(", ")}`;
    assert.ok(!stop.signal.aborted, `timed out\n${context}`);
    return { code: output.code, stdout, stderr, asked: [...asked], context };
  } finally {
    clearTimeout(lifetime);
    stop.abort();
    await registry.finished;
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("deno task demo with an empty cache runs its lock cycle and asks no npm registry for anything", async () => {
  const run = await runTask(["demo"]);
  assert.equal(run.code, 0, run.context);
  assert.deepEqual(run.asked, [], run.context);
  assert.doesNotMatch(run.stderr, /Download/, run.context);
  // It really ran: the lock, the refused contender and the release are there.
  assert.match(run.stdout, /\$ resource-locker lock dc01 --hard/, run.context);
  // Its map points as the README says: locking vm01 locks hv01, locking hv01 nothing else.
  assert.match(
    run.stdout,
    /\$ resource-locker deps vm01 .*\n {4}hv01\n {4}\(exit 0\)/,
    run.context,
  );
  assert.match(run.stdout, /\$ resource-locker deps hv01 .*\n {4}\(exit 0\)/, run.context);
  assert.match(run.stdout, /\$ resource-locker unlock -/, run.context);
  assert.match(run.stdout, /Released hv01\/Host@/, run.context);
});

Deno.test("deno task cli on a local store asks no npm registry; on the SMB store it asks for the lockfile's package", async () => {
  const store = await Deno.makeTempDir({ prefix: "rl-task-store-" });
  try {
    const local = await runTask(["cli", "status", "dc01", "--store", `${store}/{0}`]);
    assert.equal(local.code, 0, local.context);
    assert.deepEqual(local.asked, [], local.context);
  } finally {
    await Deno.remove(store, { recursive: true });
  }

  // The control: the SMB store needs its NTLM package, so the registry is
  // asked (and answers nothing, so the command fails), for the version
  // deno.lock pins: the task's command used the lockfile.
  const smb = await runTask(["cli", "status", "dc01", "--store", "smb://127.0.0.1:9/locks/{0}"]);
  assert.notEqual(smb.code, 0, smb.context);
  assert.ok(smb.asked.includes(NTLM_TARBALL), smb.context);
});
