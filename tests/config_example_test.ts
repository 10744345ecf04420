/**
 * `config.example.ts` is safe to copy: as it stands it yields exactly the
 * defaults, and every setting in it is shown commented with its default
 * (checked by uncommenting those lines: still exactly the defaults), or,
 * where the default has no fixed value, with an example marked `// example`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadConfigModule, resolveConfig, type ResolvedConfig } from "../src/config.ts";
import { REPO_ROOT } from "./_cli_helpers.ts";

const EXAMPLE = join(REPO_ROOT, "config.example.ts");
const MOD_URL = new URL("../mod.ts", import.meta.url).href;

/** Every setting, by the names the docs use; nested ones under their object. */
const SETTINGS = {
  top: [
    "dependenciesFile",
    "timeout",
    "retries",
    "historyFolderName",
    "fileNameTemplate",
    "store",
    "drain",
    "watch",
    "drainTimeout",
    "ttl",
    "runTtl",
    "clockSkew",
    "concurrency",
    "groups",
    "hosts",
    "hostsFile",
    "staleEmptyAfter",
    "stalePowerShellAfter",
  ],
  smb: ["username", "password", "domain", "port", "timeout", "signing", "encrypt"],
  etcd: ["endpoints", "historyLimit", "timeout", "ca", "cert", "key", "username", "password"],
  serve: ["tokens"],
} as const;

/** A commented setting: `// name: value,` with an optional `// example` mark. */
const SETTING_LINE = /^\s*\/\/ +(\w+): (.+?),( \/\/ example)?$/;
/** A commented object's first and last lines. */
const OBJECT_OPEN = /^(\s*)\/\/ (smb|etcd|serve): \{$/;
const OBJECT_CLOSE = /^(\s*)\/\/ \},$/;

/** The example's commented settings, each with whether it is an example. */
function commentedSettings(text: string): { path: string; example: boolean }[] {
  const found: { path: string; example: boolean }[] = [];
  let object: string | undefined;
  for (const line of text.split("\n")) {
    const open = OBJECT_OPEN.exec(line);
    if (open) {
      object = open[2];
      continue;
    }
    if (OBJECT_CLOSE.test(line)) {
      object = undefined;
      continue;
    }
    const setting = SETTING_LINE.exec(line);
    if (setting) {
      found.push({
        path: object ? `${object}.${setting[1]}` : setting[1]!,
        example: setting[3] !== undefined,
      });
    }
  }
  return found;
}

/** The example with its default lines (not the `// example` ones) uncommented. */
function withDefaultsUncommented(text: string): string {
  return text.split("\n").map((line) => {
    const setting = SETTING_LINE.exec(line);
    const uncomment = (setting && setting[3] === undefined) || OBJECT_OPEN.test(line) ||
      OBJECT_CLOSE.test(line);
    return uncomment ? line.replace("// ", "") : line;
  }).join("\n").replace(`from "./mod.ts"`, `from ${JSON.stringify(MOD_URL)}`);
}

/** Settings resolved from a config file, the SMB port filled in as the store does (445). */
async function resolvedWith(file?: string): Promise<ResolvedConfig> {
  const resolved = await resolveConfig({}, file);
  resolved.smb.port ??= 445;
  return resolved;
}

/** Writes `text` as a config module in a temporary folder and hands its path to `fn`. */
async function withConfigFile(text: string, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "rl-config-example-" });
  try {
    const path = join(dir, "config.ts");
    await Deno.writeTextFile(path, text);
    await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("config.example.ts copied as it is sets nothing: the settings are exactly the defaults", async () => {
  assert.deepEqual(await loadConfigModule(EXAMPLE), {});
  assert.deepEqual(await resolvedWith(EXAMPLE), await resolvedWith());
});

Deno.test("config.example.ts shows every setting, commented", async () => {
  const shown = commentedSettings(await Deno.readTextFile(EXAMPLE)).map((s) => s.path);
  const expected = [
    ...SETTINGS.top,
    ...SETTINGS.smb.map((name) => `smb.${name}`),
    ...SETTINGS.etcd.map((name) => `etcd.${name}`),
    ...SETTINGS.serve.map((name) => `serve.${name}`),
  ];
  assert.deepEqual([...shown].sort(), [...expected].sort());
});

Deno.test("config.example.ts: the settings shown with a value, uncommented, give exactly the defaults", async () => {
  const text = await Deno.readTextFile(EXAMPLE);
  const defaults = commentedSettings(text).filter((s) => !s.example).map((s) => s.path);
  // The ones whose default has no fixed value are examples; all others show their value.
  assert.deepEqual(defaults, [
    "timeout",
    "retries",
    "historyFolderName",
    "fileNameTemplate",
    "drain",
    "watch",
    "drainTimeout",
    "runTtl",
    "clockSkew",
    "concurrency",
    "staleEmptyAfter",
    "stalePowerShellAfter",
    "smb.port",
    "smb.timeout",
    "smb.signing",
    "smb.encrypt",
    "etcd.endpoints",
    "etcd.historyLimit",
    "etcd.timeout",
    "serve.tokens",
  ]);
  const uncommented = withDefaultsUncommented(text);
  await withConfigFile(uncommented, async (path) => {
    const loaded = (await loadConfigModule(path))! as Record<string, Record<string, unknown>>;
    const paths = Object.entries(loaded).flatMap(([key, value]) =>
      key === "smb" || key === "etcd" || key === "serve"
        ? Object.keys(value).map((sub) => `${key}.${sub}`)
        : [key]
    );
    assert.deepEqual(paths.sort(), [...defaults].sort(), "every default line was uncommented");
    assert.deepEqual(await resolvedWith(path), await resolvedWith());
  });
  // The comparison can fail: one value off its default is seen.
  await withConfigFile(uncommented.replace("retries: 3,", "retries: 4,"), async (path) => {
    assert.notDeepEqual(await resolvedWith(path), await resolvedWith());
  });
});
