import {
  assertEquals,
  assertOk,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "./_assert.ts";
import { defineConfig, InputError } from "../mod.ts";
import { configWarnings, loadConfigModule, resolveConfig, validateConfig } from "../src/config.ts";
import { parseDuration } from "../src/duration.ts";
import { storeKindOf } from "../src/stores/open.ts";

function withEnv(
  vars: Record<string, string | undefined>,
  fn: () => Promise<void>,
): () => Promise<void> {
  return async () => {
    const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
    for (const [k, v] of Object.entries(vars)) {
      v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    }
    try {
      await fn();
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
      }
    }
  };
}

const CLEAN = {
  RESOURCE_LOCKER_STORE: undefined,
  RESOURCE_LOCKER_CONFIG: undefined,
  RESOURCE_LOCKER_DEPENDENCIES: undefined,
  RESOURCE_LOCKER_SMB_USERNAME: undefined,
  RESOURCE_LOCKER_SMB_PASSWORD: undefined,
  RESOURCE_LOCKER_SMB_DOMAIN: undefined,
};

Deno.test(
  "resolveConfig() starts from the original's defaults",
  withEnv(CLEAN, async () => {
    const config = await resolveConfig();
    assertEquals(config.lockTimeoutMs, 10_000);
    assertEquals(config.lockRetries, 3);
    assertEquals(config.historyFolderName, "History");
    assertEquals(config.fileNameTemplate, "{0}.lock");
    assertEquals(config.defaultStore, true);
    assertStringIncludes(config.folderPathTemplate, "resource-locker");
    assertEquals(config.leaseMs, undefined);
    assertEquals(config.drain, true);
  }),
);

Deno.test(
  "resolveConfig() lets a config file, then the environment, then options win",
  withEnv(CLEAN, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const file = `${dir}/rl.config.ts`;
      await Deno.writeTextFile(
        file,
        `export default { lockRetries: 7, lockTimeout: "250ms", folderPathTemplate: "/from-file/{0}", smb: { username: "file-user" } };`,
      );
      let config = await resolveConfig({}, file);
      assertEquals(config.lockRetries, 7);
      assertEquals(config.lockTimeoutMs, 250);
      assertEquals(config.folderPathTemplate, "/from-file/{0}");
      assertEquals(config.defaultStore, false);
      assertEquals([config.smb.signing, config.smb.encrypt], ["auto", "auto"], "SMB defaults");
      Deno.env.set("RESOURCE_LOCKER_STORE", "/from-env/{0}");
      Deno.env.set("RESOURCE_LOCKER_SMB_USERNAME", "env-user");
      config = await resolveConfig({}, file);
      assertEquals(config.folderPathTemplate, "/from-env/{0}");
      assertEquals(config.smb.username, "env-user");
      config = await resolveConfig(
        { folderPathTemplate: "/from-options/{0}", lockRetries: 1 },
        file,
      );
      assertEquals(config.folderPathTemplate, "/from-options/{0}");
      assertEquals(config.lockRetries, 1);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
);

Deno.test("validateConfig() names the setting at fault", () => {
  const cases: [unknown, string][] = [
    [{ lockRetries: -1 }, '"lockRetries"'],
    [{ lockTimeout: "soon" }, '"lockTimeout"'],
    [{ historyFolderName: "../x" }, '"historyFolderName"'],
    [{ drain: "yes" }, '"drain"'],
    [{ lockTimeOut: 5 }, 'unknown setting "lockTimeOut"'],
    [{ smb: { port: 70000 } }, '"smb.port"'],
    [{ smb: { signing: "off" } }, '"smb.signing"'],
    [{ smb: { encrypt: true } }, '"smb.encrypt"'],
    [{ etcd: { endpoints: "x" } }, '"etcd.endpoints"'],
    [{ etcd: { ca: 1 } }, '"etcd.ca" must be a file path'],
    [{ etcd: { cert: "" } }, '"etcd.cert" must be a file path'],
  ];
  for (const [config, expected] of cases) {
    const error = assertThrows(() => validateConfig(config, "my.config.ts"), InputError);
    assertStringIncludes(error.message, expected);
    assertStringIncludes(error.message, "my.config.ts");
  }
});

Deno.test("validateConfig() never shows an SMB password", () => {
  const error = assertThrows(
    () => validateConfig({ smb: { password: 12345678 } }, "c.ts"),
    InputError,
  );
  assertOk(!error.message.includes("12345678"), error.message);
});

Deno.test("loadConfigModule() reports a file that does not load, in one line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.ts`, "export default {");
    const error = await assertRejects(() => loadConfigModule(`${dir}/bad.ts`), InputError);
    assertStringIncludes(error.message, "bad.ts");
    assertEquals(error.message.includes("\n"), false);
    const missing = await assertRejects(() => loadConfigModule(`${dir}/none.ts`), InputError);
    assertStringIncludes(missing.message, "none.ts");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfigModule() masks a password written escaped in a module that fails to load", async () => {
  // Generated passwords hold quotes and backslashes: written escaped in the
  // module, while its error shows the value (and maybe its JSON or URL form).
  const cases: [literal: string, value: string][] = [
    [String.raw`"Xy7\\q#\"9!kLm"`, 'Xy7\\q#"9!kLm'],
    [String.raw`'ab\'cd\u0065fg9'`, "ab'cdefg9"],
    [String.raw`"T\u{1F600}\x6Fk-42"`, "T\u{1F600}ok-42"],
  ];
  const dir = await Deno.makeTempDir();
  try {
    for (const [i, [literal, value]] of cases.entries()) {
      const file = `${dir}/escaped-${i}.ts`;
      await Deno.writeTextFile(
        file,
        `const pw = ${literal};
if (pw) throw new Error("vault said no to " + pw + " " + JSON.stringify(pw) + " " + encodeURIComponent(pw));
export default { smb: { username: "svc", password: pw } };`,
      );
      const error = await assertRejects(() => loadConfigModule(file), InputError);
      for (const form of [value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]) {
        assertOk(!error.message.includes(form), `${form} in: ${error.message}`);
      }
      assertStringIncludes(error.message, "vault said no to ***");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("defineConfig() returns its settings unchanged", () => {
  const config = { lockRetries: 5 };
  assertEquals(defineConfig(config), config);
});

Deno.test("parseDuration() takes seconds and units and refuses the rest", () => {
  assertEquals(parseDuration("1.5", "t"), 1500);
  assertEquals(parseDuration("250ms", "t"), 250);
  assertEquals(parseDuration("5m", "t"), 300_000);
  assertEquals(parseDuration("2h", "t"), 7_200_000);
  for (const bad of ["", "abc", "-1", "5 days", "1e3"]) {
    assertThrows(() => parseDuration(bad, "t"), InputError);
  }
  assertThrows(() => parseDuration(-1, "t"), InputError);
});

Deno.test("storeKindOf() chooses the store from the folder template", () => {
  assertEquals(storeKindOf("/var/lib/locks/{0}", "linux"), "fs");
  assertEquals(storeKindOf("C:\\locks\\{0}", "windows"), "fs");
  assertEquals(storeKindOf("\\\\{0}\\ResourceLocks", "windows"), "fs");
  assertEquals(storeKindOf("\\\\{0}\\ResourceLocks", "linux"), "smb");
  assertEquals(storeKindOf("smb://fileserver:4445/{host}", "linux"), "smb");
  assertEquals(storeKindOf("etcd://127.0.0.1:2379/resource-locks/{0}", "linux"), "etcd");
  assertThrows(() => storeKindOf("/var/lib/locks", "linux"), InputError);
  assertThrows(() => storeKindOf("ftp://{0}/x", "linux"), InputError);
});

Deno.test("validateConfig() takes the old setting names under the new ones and records one warning each", () => {
  const checked = validateConfig(
    { lockRetries: 2, lockTimeout: "1s", folderPathTemplate: "/l/{0}", lease: "1m", drain: false },
    "old.ts",
  );
  assertEquals(
    checked,
    {
      retries: 2,
      timeout: "1s",
      store: "/l/{0}",
      ttl: "1m",
      drain: false,
    } as typeof checked,
  );
  assertEquals(configWarnings(checked), [
    'Setting "lockRetries" of config "old.ts" is deprecated: use "retries"',
    'Setting "lockTimeout" of config "old.ts" is deprecated: use "timeout"',
    'Setting "folderPathTemplate" of config "old.ts" is deprecated: use "store"',
    'Setting "lease" of config "old.ts" is deprecated: use "ttl"',
  ]);
  assertEquals(configWarnings(validateConfig({ retries: 2 }, "new.ts")), []);
  const both = assertThrows(() => validateConfig({ lease: 1, ttl: 2 }, "c.ts"), InputError);
  assertStringIncludes(both.message, '"lease" and "ttl" are one setting');
  const typo = assertThrows(() => validateConfig({ LockRetries: 1 }, "c.ts"), InputError);
  assertStringIncludes(typo.message, 'did you mean "retries"?');
});
