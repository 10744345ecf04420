/**
 * Secrets never reach an output (issue 10): a password planted in a
 * template, a config file, the environment or a misspelled config key is
 * looked for in every output channel (stdout, stderr, `--json`, `--verbose`)
 * of every command. Each source plants its own password, so one source's
 * masking cannot hide another's leak. Stores point at a closed port: every
 * command fails fast, through its error path.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { InputError, lockResource } from "../mod.ts";
import { runCli, runCliInProcess } from "./_cli_helpers.ts";

/** A closed port on this machine: connections are refused at once. */
const CLOSED = "127.0.0.1:1";

interface Source {
  /** Where the password is planted. */
  name: string;
  /** The password, unique to this source. */
  password: string;
  /** Global flags. */
  args: string[];
  /** Environment variables. */
  env?: Record<string, string>;
  /** A config module's text, passed with --config. */
  config?: string;
  /** The masked form `--verbose` shows on its Store line, when the store's template is the carrier. */
  masked?: string;
}

function sources(): Source[] {
  const list: Source[] = [];
  const add = (source: Omit<Source, "password">, password: string) =>
    list.push({ ...source, password });
  const p1 = "TmplPw-4b1e9";
  add({
    name: "SMB template user:password@",
    args: ["--store", `smb://svc:${p1}@${CLOSED}/{0}`],
    masked: `smb://svc:***@${CLOSED}/{0}`,
  }, p1);
  const p2 = "QueryPw-7c2d1";
  add({
    name: "SMB template ?password=",
    args: ["--store", `smb://${CLOSED}/{0}?password=${p2}`],
    env: { RESOURCE_LOCKER_SMB_USERNAME: "svc" },
    masked: `smb://${CLOSED}/{0}?password=***`,
  }, p2);
  const p3 = "p@ss:w/rd%Etcd-91";
  add({
    name: "etcd template with a percent-encoded password",
    args: ["--store", `etcd://user:${encodeURIComponent(p3)}@${CLOSED}/locks/{0}`],
  }, p3);
  const p4 = "EndpointPw-0a8f";
  add({
    name: "RESOURCE_LOCKER_ETCD_ENDPOINTS with credentials",
    args: ["--store", `etcd://${CLOSED}/locks/{0}`],
    env: { RESOURCE_LOCKER_ETCD_ENDPOINTS: `http://user:${p4}@127.0.0.1:2` },
  }, p4);
  const p5 = "ConfigPw-55e1c";
  add({
    name: "config smb.password",
    args: ["--store", `smb://${CLOSED}/{0}`],
    config: `export default { smb: { username: "svc", password: ${JSON.stringify(p5)} } };`,
  }, p5);
  const p6 = "EnvPw-31d9a";
  add({
    name: "RESOURCE_LOCKER_SMB_PASSWORD",
    args: ["--store", `smb://${CLOSED}/{0}`],
    env: { RESOURCE_LOCKER_SMB_USERNAME: "svc", RESOURCE_LOCKER_SMB_PASSWORD: p6 },
  }, p6);
  const p7 = "MisspeltPw-8e0b2";
  add({
    name: "misspelled config key smb.Password",
    args: ["--store", `smb://${CLOSED}/{0}`],
    config: `export default { smb: { username: "svc", Password: ${JSON.stringify(p7)} } };`,
  }, p7);
  const p8 = "WrongTypePw-2f7";
  add({
    name: "config smb.username given the password's place by mistake (wrong type)",
    args: ["--store", `smb://${CLOSED}/{0}`],
    config: `export default { smb: { username: ${JSON.stringify(p8)}, port: ${
      JSON.stringify(p8)
    } } };`,
  }, p8);
  const p9 = "EtcdKeyPw-6a3c";
  add({
    name: "misspelled config key etcd.Password",
    args: ["--store", `etcd://${CLOSED}/locks/{0}`],
    config: `export default { etcd: { username: "svc", Password: ${JSON.stringify(p9)} } };`,
  }, p9);
  const p11 = "EtcdConfigPw-4e2b";
  add({
    name: "config etcd.password",
    args: ["--store", `etcd://${CLOSED}/locks/{0}`],
    config: `export default { etcd: { username: "svc", password: ${JSON.stringify(p11)} } };`,
  }, p11);
  const p12 = "EtcdEnvPw-8c31f";
  add({
    name: "RESOURCE_LOCKER_ETCD_PASSWORD",
    args: ["--store", `etcd://${CLOSED}/locks/{0}`],
    env: { RESOURCE_LOCKER_ETCD_USERNAME: "svc", RESOURCE_LOCKER_ETCD_PASSWORD: p12 },
  }, p12);
  const p10 = "ConfigTmplPw-19b";
  add({
    name: "config folderPathTemplate with credentials",
    args: [],
    config: `export default { folderPathTemplate: ${
      JSON.stringify(`smb://svc:${p10}@${CLOSED}/{0}`)
    } };`,
  }, p10);
  // Credentials without a scheme, as a careless hand writes them.
  const p13 = "BareEndpointPw-3d1";
  add({
    name: "config etcd endpoint user:password@host:port without a scheme",
    args: ["--store", `etcd://${CLOSED}/locks/{0}`],
    config: `export default { etcd: { endpoints: [${JSON.stringify(`svc:${p13}@${CLOSED}`)}] } };`,
  }, p13);
  const p14 = "BareEnvEndpointPw-7a";
  add({
    name: "RESOURCE_LOCKER_ETCD_ENDPOINTS user:password@host:port without a scheme",
    args: ["--store", `etcd://${CLOSED}/locks/{0}`],
    env: { RESOURCE_LOCKER_ETCD_ENDPOINTS: `svc:${p14}@127.0.0.1:2` },
  }, p14);
  const p15 = "SchemelessTmplPw-9c";
  add({
    name: "template //user:password@host/{0} without a scheme",
    args: ["--store", `//svc:${p15}@127.0.0.1/{0}`],
  }, p15);
  const p16 = "OneSlashTmplPw-2b";
  add({
    name: "template smb:/user:password@host/{0} (one slash)",
    args: ["--store", `smb:/svc:${p16}@127.0.0.1/{0}`],
  }, p16);
  const p17 = "PastedPw-5e8d";
  add({
    name: "config smb.password also pasted into another setting (its error shows the value)",
    args: ["--store", `smb://${CLOSED}/{0}`],
    config: `const pw = ${JSON.stringify(p17)};
export default { smb: { username: "svc", password: pw }, timeout: pw };`,
  }, p17);
  const p18 = "ThrownPw-71c4";
  add({
    name: "config module that throws an error naming its password (never loaded)",
    args: ["--store", `smb://${CLOSED}/{0}`],
    config: `const pw = ${JSON.stringify(p18)};
if (pw) throw new Error("cannot reach the vault with " + pw);
export default { smb: { username: "svc", password: pw } };`,
  }, p18);
  const p19 = "SyntaxPw-0d2e";
  add({
    name: "config module with a syntax error beside its password",
    args: ["--store", `smb://${CLOSED}/{0}`],
    config: `export default { smb: { username: "svc", password: ${JSON.stringify(p19)} ,, } };`,
  }, p19);
  const p20 = 'Esc\\aped"Pw-3f';
  add({
    name: "config module that throws its password, written escaped (a quote and a backslash)",
    args: ["--store", `smb://${CLOSED}/{0}`],
    config: `const pw = ${JSON.stringify(p20)};
if (pw) throw new Error("cannot reach the vault with " + pw);
export default { smb: { username: "svc", password: pw } };`,
  }, p20);
  return list;
}

const COMMANDS: string[][] = [
  ["lock", "hv01"],
  ["lock", "hv01", "--hard", "--ttl", "5s", "--retries", "1"],
  ["lock-file", "\\\\fs01\\share\\file.wim"],
  ["unlock", "hv01/Host@s1"],
  ["unlock", "hv01/Host", "--force"],
  ["test", "hv01"],
  ["deps", "hv01"],
  ["id", "hv01/Host@s1"],
  ["status", "hv01", "dc01"],
  ["history", "hv01"],
  ["break", "hv01/Host@s1", "--force", "--reason", "test"],
  ["run", "hv01", "--", "true"],
];

const MODES: string[][] = [[], ["--json"], ["--verbose"], ["--verbose", "--json"]];

/** Every form a password could be printed in. */
function forms(password: string): string[] {
  return [
    password,
    encodeURIComponent(password),
    JSON.stringify(password).slice(1, -1),
  ];
}

function assertNoLeak(text: string, password: string, context: string): void {
  for (const form of forms(password)) {
    assert.ok(!text.includes(form), `${context}: the password appears as ${form}:\n${text}`);
  }
}

const ENV_NAMES = [
  "RESOURCE_LOCKER_STORE",
  "RESOURCE_LOCKER_CONFIG",
  "RESOURCE_LOCKER_DEPENDENCIES",
  "RESOURCE_LOCKER_SMB_USERNAME",
  "RESOURCE_LOCKER_SMB_PASSWORD",
  "RESOURCE_LOCKER_SMB_DOMAIN",
  "RESOURCE_LOCKER_ETCD_ENDPOINTS",
  "RESOURCE_LOCKER_ETCD_USERNAME",
  "RESOURCE_LOCKER_ETCD_PASSWORD",
  "XDG_STATE_HOME",
];

/** Sets the source's environment for `fn` in this process, clearing every other RESOURCE_LOCKER_ variable. */
async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = new Map(ENV_NAMES.map((name) => [name, Deno.env.get(name)]));
  try {
    for (const name of ENV_NAMES) Deno.env.delete(name);
    for (const [name, value] of Object.entries(env)) Deno.env.set(name, value);
    return await fn();
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
}

async function withSources(fn: (source: Source, args: string[]) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "rl-secrets-" });
  try {
    let n = 0;
    for (const source of sources()) {
      const args = [...source.args];
      if (source.config !== undefined) {
        const file = join(dir, `config-${n++}.ts`);
        await Deno.writeTextFile(file, source.config);
        args.push("--config-file", file);
      }
      await fn(source, args);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("no command prints a planted password on stdout, stderr, --json or --verbose", async () => {
  let runs = 0;
  let verboseStoreLines = 0;
  await withSources(async (source, globals) => {
    await withEnv({ ...source.env, XDG_STATE_HOME: "/nonexistent-state" }, async () => {
      for (const command of COMMANDS) {
        for (const mode of MODES) {
          const args = [...globals, ...mode, ...command];
          const result = await runCliInProcess(args);
          runs++;
          const context = `${source.name}: ${args.join(" ")} (exit ${result.code})`;
          assertNoLeak(result.stdout, source.password, `${context}, stdout`);
          assertNoLeak(result.stderr, source.password, `${context}, stderr`);
          if (mode.includes("--json") && result.stdout !== "") JSON.parse(result.stdout);
          if (mode.includes("--verbose") && source.masked && result.stderr.includes("Store: ")) {
            assert.ok(
              result.stderr.includes(`Store: ${source.masked}`),
              `${context}: ${result.stderr}`,
            );
            verboseStoreLines++;
          }
        }
      }
    });
  });
  assert.equal(runs, sources().length * COMMANDS.length * MODES.length);
  assert.ok(verboseStoreLines > 0, "--verbose printed the masked store");
});

Deno.test("the spawned command line leaks no planted password either, with --verbose's stack trace", async () => {
  await withSources(async (source, globals) => {
    for (const args of [["--verbose", "lock", "hv01"], ["--verbose", "--json", "status", "hv01"]]) {
      const result = await runCli([...globals, ...args], {
        env: { ...source.env, XDG_STATE_HOME: "/nonexistent-state" },
      });
      const context = `${source.name}: ${args.join(" ")} (exit ${result.code})`;
      assert.notEqual(result.code, 0, context);
      assertNoLeak(result.stdout + result.stderr, source.password, context);
    }
  });
});

Deno.test("config errors name the misspelled key and suggest the right one, without its value", async () => {
  await withSources(async (source, globals) => {
    if (!source.name.startsWith("misspelled")) return;
    const result = await withEnv(
      source.env ?? {},
      () => runCliInProcess([...globals, "status", "hv01"]),
    );
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /unknown setting "(?:smb|etcd)\.Password" \(did you mean "password"\?\)/,
    );
  });
});

Deno.test("a store's refusal of a template with credentials is masked in the library's error too", async () => {
  const password = "LibTmplPw-c41d";
  const error = await lockResource("hv01", {
    store: `etcd://user:${password}@${CLOSED}/locks/{0}`,
    dependencies: {},
  }).then(() => undefined, (error) => error);
  assert.ok(error instanceof InputError, String(error));
  assertNoLeak(error.message, password, "library error");
});

Deno.test("serve: a token from a config file is in no response, log line or error of the server", async () => {
  const token = "CfgServeTok-9e2b7a61";
  const dir = await Deno.makeTempDir({ prefix: "rl-secrets-serve-" });
  try {
    const config = join(dir, "config.ts");
    await Deno.writeTextFile(
      config,
      `export default { serve: { tokens: [{ name: "ops", token: ${JSON.stringify(token)} }] } };\n`,
    );
    const { spawnCli } = await import("./_cli_helpers.ts");
    const child = spawnCli(
      ["serve", "--listen", "127.0.0.1:0", "--verbose", "--config-file", config],
      { store: `${dir}/{0}` },
    );
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    let url: string | undefined;
    while (!url) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`serve ended: ${stderr}`);
      stderr += value;
      url = /Listening on (\S+)/.exec(stderr)?.[1];
    }
    const bodies: string[] = [];
    const auth = { authorization: `Bearer ${token}` };
    for (
      const [method, path, headers, body] of [
        ["POST", "/v1/locks", auth, '{"host":"hv01","type":"host"}'],
        ["POST", "/v1/locks", auth, '{"host":"hv01","type":"host"}'], // busy: an error
        ["POST", "/v1/locks", auth, `{"host":"${token}!"}`], // the token in bad input
        ["POST", "/v1/locks", { authorization: `Bearer ${token}x` }, "{}"],
        ["GET", `/v1/hosts/${token}`, {}, null],
        ["GET", "/v1/locks", {}, null],
        ["GET", "/metrics", {}, null],
        ["GET", "/v1/openapi.json", {}, null],
      ] as const
    ) {
      const response = await fetch(`${url}${path}`, { method, headers, body });
      bodies.push(`${response.status} ${[...response.headers].join(";")} ${await response.text()}`);
    }
    child.kill("SIGTERM");
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      stderr += value;
    }
    const { code } = await child.status;
    clearTimeout(timer);
    assert.equal(code, 0, stderr);
    assert.ok(bodies[0]!.startsWith("200"), bodies[0]);
    assert.ok(bodies[2]!.startsWith("400"), bodies[2]);
    for (const text of [...bodies, stderr]) assertNoLeak(text, token, text.slice(0, 200));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
