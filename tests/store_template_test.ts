/**
 * The one folder-template parser (`src/stores/_template.ts`): a table of
 * templates and what they give, on Linux and as if on Windows, each mistake
 * with its one exact line; the same line from store selection and from every
 * store; credentials never in a message; host names that cannot leave their
 * place in a template.
 *
 * @module
 */

import assert from "node:assert/strict";
import { InputError } from "../src/errors.ts";
import {
  fillHost,
  parseEtcdTemplate,
  parseFolderTemplate,
  parseSmbTemplate,
  parseStoreTemplate,
  type StoreTemplate,
} from "../src/stores/_template.ts";
import { storeKindOf } from "../src/stores/open.ts";
import { openFsStore } from "../src/stores/fs.ts";
import { openEtcdStore } from "../src/stores/etcd.ts";

/** The message a template gives, thrown as InputError (the test fails on anything else). */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof InputError, `expected InputError, got ${error}`);
    assert.equal(error.code, "BAD_INPUT");
    return error.message;
  }
  assert.fail("expected an InputError");
}

/** What a parse gives as a plain object (no undefined fields), for deepEqual. */
function plain(parsed: StoreTemplate): Record<string, unknown> {
  return JSON.parse(JSON.stringify(parsed));
}

const CREDENTIALS =
  "a user or password does not belong in a template; give SMB credentials in the config or RESOURCE_LOCKER_SMB_USERNAME and RESOURCE_LOCKER_SMB_PASSWORD (etcd takes none)";
const RELATIVE_LINUX =
  "not an absolute path, so the store would depend on the current folder; use an absolute folder such as /var/lib/locks/{0}";
const RELATIVE_WINDOWS =
  "not an absolute path, so the store would depend on the current folder; use an absolute folder such as C:\\locks\\{0}";
const WINDOWS_ON_LINUX =
  "a Windows path, and this system is linux; use an absolute folder such as /var/lib/locks/{0}, smb:// or \\\\{0}\\share";
const NO_PLACEHOLDER = 'it needs the host placeholder "{0}" or "{host}"';
const QUERY = 'a query or fragment ("?", "#") has no place in a template';
const DOTS = '"." and ".." are not allowed as path segments';
const BOTH = ["linux", "windows"] as const;

/** Templates that parse the same on both systems. */
const ANYWHERE: [string, Record<string, unknown>][] = [
  ["smb://{0}/ResourceLocks", {
    kind: "smb",
    placeholder: "{0}",
    server: "{0}",
    share: "ResourceLocks",
    folder: [],
  }],
  ["SMB://fileserver:4445/{host}", {
    kind: "smb",
    placeholder: "{host}",
    server: "fileserver",
    port: 4445,
    share: "{host}",
    folder: [],
  }],
  ["smb://fileserver/Locks/{0}/", {
    kind: "smb",
    placeholder: "{0}",
    server: "fileserver",
    share: "Locks",
    folder: ["{0}"],
  }],
  ["smb://fs-01.corp.example/Locks\\sub//{0}", {
    kind: "smb",
    placeholder: "{0}",
    server: "fs-01.corp.example",
    share: "Locks",
    folder: ["sub", "{0}"],
  }],
  ["smb://[::1]:4445/{0}", {
    kind: "smb",
    placeholder: "{0}",
    server: "::1",
    port: 4445,
    share: "{0}",
    folder: [],
  }],
  ["smb://{0}.corp/L-{host}/x", {
    kind: "smb",
    placeholder: "{0}",
    server: "{0}.corp",
    share: "L-{host}",
    folder: ["x"],
  }],
  ["etcd://127.0.0.1:2379/resource-locks/{0}", {
    kind: "etcd",
    placeholder: "{0}",
    server: "127.0.0.1",
    port: 2379,
    path: "/resource-locks/{0}",
  }],
  ["etcd://etcd1/x/{host}/y//", {
    kind: "etcd",
    placeholder: "{host}",
    server: "etcd1",
    path: "/x/{host}/y",
  }],
  ["etcd://[fe80::1%eth0]:2381/{0}", {
    kind: "etcd",
    placeholder: "{0}",
    server: "fe80::1%eth0",
    port: 2381,
    path: "/{0}",
  }],
];

/** Templates that parse differently on Linux and on Windows: [template, linux, windows]. */
const PER_SYSTEM: [string, Record<string, unknown>, Record<string, unknown>][] = [
  [
    "/var/lib/locks/{0}",
    { kind: "fs", placeholder: "{0}", folder: "/var/lib/locks/{0}" },
    { error: `Invalid folder template "/var/lib/locks/{0}": ${RELATIVE_WINDOWS}` },
  ],
  [
    "//nfs/locks/{host}",
    { kind: "fs", placeholder: "{host}", folder: "//nfs/locks/{host}" },
    { kind: "fs", placeholder: "{host}", folder: "//nfs/locks/{host}" },
  ],
  [
    "\\\\{0}\\ResourceLocks",
    { kind: "smb", placeholder: "{0}", server: "{0}", share: "ResourceLocks", folder: [] },
    { kind: "fs", placeholder: "{0}", folder: "\\\\{0}\\ResourceLocks" },
  ],
  [
    "\\\\fileserver\\Locks\\{0}\\",
    { kind: "smb", placeholder: "{0}", server: "fileserver", share: "Locks", folder: ["{0}"] },
    { kind: "fs", placeholder: "{0}", folder: "\\\\fileserver\\Locks\\{0}\\" },
  ],
  [
    "C:\\locks\\{0}",
    { error: `Invalid folder template "C:\\locks\\{0}": ${WINDOWS_ON_LINUX}` },
    { kind: "fs", placeholder: "{0}", folder: "C:\\locks\\{0}" },
  ],
  [
    "C:/locks/{0}",
    { error: `Invalid folder template "C:/locks/{0}": ${WINDOWS_ON_LINUX}` },
    { kind: "fs", placeholder: "{0}", folder: "C:/locks/{0}" },
  ],
  [
    "\\\\?\\C:\\locks\\{0}",
    { error: `Invalid folder template "\\\\?\\C:\\locks\\{0}": ${WINDOWS_ON_LINUX}` },
    { kind: "fs", placeholder: "{0}", folder: "\\\\?\\C:\\locks\\{0}" },
  ],
  [
    "locks\\{0}",
    { error: `Invalid folder template "locks\\{0}": ${WINDOWS_ON_LINUX}` },
    { error: `Invalid folder template "locks\\{0}": ${RELATIVE_WINDOWS}` },
  ],
  [
    "\\locks\\{0}",
    { error: `Invalid folder template "\\locks\\{0}": ${WINDOWS_ON_LINUX}` },
    { error: `Invalid folder template "\\locks\\{0}": ${RELATIVE_WINDOWS}` },
  ],
  [
    "{0}",
    { error: `Invalid folder template "{0}": ${RELATIVE_LINUX}` },
    { error: `Invalid folder template "{0}": ${RELATIVE_WINDOWS}` },
  ],
  [
    "../locks/{host}",
    { error: `Invalid folder template "../locks/{host}": ${RELATIVE_LINUX}` },
    { error: `Invalid folder template "../locks/{host}": ${RELATIVE_WINDOWS}` },
  ],
  [
    "\\\\{0}",
    { error: `Invalid folder template "\\\\{0}": it names no share` },
    { kind: "fs", placeholder: "{0}", folder: "\\\\{0}" },
  ],
  [
    "\\\\svc:Secret-1@fs01\\{0}",
    { error: `Invalid folder template "\\\\svc:***@fs01\\{0}": ${CREDENTIALS}` },
    { kind: "fs", placeholder: "{0}", folder: "\\\\svc:Secret-1@fs01\\{0}" },
  ],
];

/** Mistakes that are mistakes on every system, with their one line. */
const MISTAKES: [string, string][] = [
  ["", `Invalid folder template "": ${NO_PLACEHOLDER}`],
  ["/var/lib/locks", `Invalid folder template "/var/lib/locks": ${NO_PLACEHOLDER}`],
  ["/var/lib/{HOST}", `Invalid folder template "/var/lib/{HOST}": ${NO_PLACEHOLDER}`],
  ["smb://fileserver/Locks", `Invalid folder template "smb://fileserver/Locks": ${NO_PLACEHOLDER}`],
  [
    "ftp://{0}/locks",
    `Invalid folder template "ftp://{0}/locks": unknown scheme "ftp://"; use a folder, \\\\{0}\\share, smb:// or etcd://`,
  ],
  [
    "/var/lib/locks/{0}\r",
    `Invalid folder template "/var/lib/locks/{0}\\r": it holds control or invisible characters`,
  ],
  [
    "/var/lib/\u202elocks/{0}",
    `Invalid folder template "/var/lib/\\u{202e}locks/{0}": it holds control or invisible characters`,
  ],
  ["smb://{0}", `Invalid folder template "smb://{0}": it names no share`],
  ["smb://{0}//x", `Invalid folder template "smb://{0}//x": it names no share`],
  ["smb:///{0}", `Invalid folder template "smb:///{0}": it names no server`],
  ["smb://:445/{0}", `Invalid folder template "smb://:445/{0}": it names no server`],
  [
    "smb://{0}:99999/Locks",
    `Invalid folder template "smb://{0}:99999/Locks": port "99999" is not a number from 1 to 65535`,
  ],
  [
    "smb://{0}:0/Locks",
    `Invalid folder template "smb://{0}:0/Locks": port "0" is not a number from 1 to 65535`,
  ],
  [
    "smb://fs:/Locks/{0}",
    `Invalid folder template "smb://fs:/Locks/{0}": port "" is not a number from 1 to 65535`,
  ],
  [
    "smb://fs:44a5/Locks/{0}",
    `Invalid folder template "smb://fs:44a5/Locks/{0}": port "44a5" is not a number from 1 to 65535`,
  ],
  [
    "smb://file server/{0}",
    `Invalid folder template "smb://file server/{0}": "file server" is not a server name or address`,
  ],
  [
    "smb://[not-v6]/{0}",
    `Invalid folder template "smb://[not-v6]/{0}": "not-v6" is not a server name or address`,
  ],
  [
    "smb://fs]/{0}",
    `Invalid folder template "smb://fs]/{0}": "fs]" is not a server name or address`,
  ],
  ["smb://{0}/Locks/../x", `Invalid folder template "smb://{0}/Locks/../x": ${DOTS}`],
  ["smb://fs/./{0}", `Invalid folder template "smb://fs/./{0}": ${DOTS}`],
  ["smb://fs/{0}?x=1", `Invalid folder template "smb://fs/{0}?x=1": ${QUERY}`],
  ["smb://fs/{0}#top", `Invalid folder template "smb://fs/{0}#top": ${QUERY}`],
  [
    "smb://fs/{0}?password=Secret-2",
    `Invalid folder template "smb://fs/{0}?password=***": ${QUERY}`,
  ],
  [
    "smb://svc:Secret-3@{0}/Locks",
    `Invalid folder template "smb://svc:***@{0}/Locks": ${CREDENTIALS}`,
  ],
  ["smb://svc@{0}/Locks", `Invalid folder template "smb://svc@{0}/Locks": ${CREDENTIALS}`],
  ["smb://svc:Sec/ret-4@fs/{0}", `Invalid folder template "smb://***@fs/{0}": ${CREDENTIALS}`],
  [
    "etcd://user:p%40ss%2Fword@127.0.0.1/locks/{0}",
    `Invalid folder template "etcd://user:***@127.0.0.1/locks/{0}": ${CREDENTIALS}`,
  ],
  [
    "etcd://127.0.0.1:2379/resource-locks",
    `Invalid folder template "etcd://127.0.0.1:2379/resource-locks": ${NO_PLACEHOLDER}`,
  ],
  [
    "etcd://{0}:2379/resource-locks",
    `Invalid folder template "etcd://{0}:2379/resource-locks": the host placeholder belongs in the key path, not in the server`,
  ],
  [
    "etcd://etcd-{host}/locks/{0}",
    `Invalid folder template "etcd://etcd-{host}/locks/{0}": the host placeholder belongs in the key path, not in the server`,
  ],
  [
    "etcd:///resource-locks/{0}",
    `Invalid folder template "etcd:///resource-locks/{0}": it names no server`,
  ],
  [
    "etcd://127.0.0.1:70000/locks/{0}",
    `Invalid folder template "etcd://127.0.0.1:70000/locks/{0}": port "70000" is not a number from 1 to 65535`,
  ],
  [
    "etcd://127.0.0.1/locks/{0}?x=1",
    `Invalid folder template "etcd://127.0.0.1/locks/{0}?x=1": ${QUERY}`,
  ],
  [
    "etcd://127.0.0.1/locks/../{0}",
    `Invalid folder template "etcd://127.0.0.1/locks/../{0}": ${DOTS}`,
  ],
  [
    `/var/lib/locks/${"x".repeat(300)}`,
    `Invalid folder template "/var/lib/locks/${
      "x".repeat(185)
    }… (315 characters)": ${NO_PLACEHOLDER}`,
  ],
];

for (const os of BOTH) {
  Deno.test(`parseStoreTemplate(): the table of templates, as on ${os}`, () => {
    for (const [template, expected] of ANYWHERE) {
      assert.deepEqual(plain(parseStoreTemplate(template, os)), { ...expected, text: template });
      assert.equal(storeKindOf(template, os), expected.kind, template);
    }
    for (const [template, linux, windows] of PER_SYSTEM) {
      const expected = os === "windows" ? windows : linux;
      if (typeof expected.error === "string") {
        assert.equal(errorOf(() => parseStoreTemplate(template, os)), expected.error, template);
        assert.equal(errorOf(() => storeKindOf(template, os)), expected.error, template);
      } else {
        assert.deepEqual(plain(parseStoreTemplate(template, os)), { ...expected, text: template });
        assert.equal(storeKindOf(template, os), expected.kind, template);
      }
    }
  });

  Deno.test(`parseStoreTemplate(): every mistake is one exact line, as on ${os}`, () => {
    for (const [template, message] of MISTAKES) {
      const got = errorOf(() => parseStoreTemplate(template, os));
      assert.equal(got, message, template);
      assert.ok(!got.includes("\n"), "one line");
    }
    // a non-string (untyped JavaScript, a config file)
    assert.equal(
      errorOf(() => parseStoreTemplate(42 as unknown as string, os)),
      "Invalid folder template: expected a string, got a number",
    );
    assert.equal(
      errorOf(() => parseStoreTemplate(undefined as unknown as string, os)),
      "Invalid folder template: expected a string, got undefined",
    );
  });
}

Deno.test("a password in a template never reaches the message, whatever its form", () => {
  const secret = "Pw/x:y@z-Sec";
  const templates = [
    `smb://svc:${secret}@fs01/{0}`,
    `smb://svc:${encodeURIComponent(secret)}@fs01/{0}`,
    `smb://fs01/{0}?password=${encodeURIComponent(secret)}`,
    `etcd://u:${secret}@127.0.0.1/locks/{0}`,
    `\\\\svc:${secret}@fs01\\share\\{0}`,
    `smb://svc:${secret}@fs01/Locks`, // two mistakes: still masked
    `smb://svc:${secret}@fs01/{0}\n`,
  ];
  const parts = [secret, encodeURIComponent(secret), ...secret.split(/[/:@]/)].filter((part) =>
    part.length >= 3
  );
  for (const template of templates) {
    // \\server\share is a folder the OS reaches on Windows: a mistake only elsewhere
    for (const os of template.startsWith("\\\\") ? ["linux"] : BOTH) {
      const message = errorOf(() => parseStoreTemplate(template, os));
      for (const part of parts) {
        assert.ok(!message.includes(part), `${template}: ${part} in ${message}`);
      }
    }
  }
});

Deno.test("each store and store selection refuse a template with the same line", async () => {
  const { openSmbStore } = await import("../src/stores/smb.ts");
  const options = { username: "u", password: "p", historyFolderName: "History" };
  const stores: [string, (template: string) => unknown][] = [
    ["selection", (template) => storeKindOf(template, Deno.build.os)],
    ["fs", (template) => openFsStore(template, options)],
    ["smb", (template) => openSmbStore(template, options)],
    ["etcd", (template) => openEtcdStore(template, options)],
  ];
  for (const [template, message] of MISTAKES) {
    for (const [name, open] of stores) {
      assert.equal(errorOf(() => open(template)), message, `${name}: ${template}`);
    }
  }
});

Deno.test("a store given another store's template says which one it names", async () => {
  const { openSmbStore } = await import("../src/stores/smb.ts");
  const options = { username: "u", password: "p", historyFolderName: "History" };
  const folder = Deno.build.os === "windows" ? "C:\\locks\\{0}" : "/var/lib/locks/{0}";
  const cases: [() => unknown, string][] = [
    [
      () => openSmbStore(folder, options),
      `Invalid folder template "${folder}": it names a local folder, not an SMB share`,
    ],
    [
      () => openSmbStore("etcd://127.0.0.1/locks/{0}", options),
      `Invalid folder template "etcd://127.0.0.1/locks/{0}": it names an etcd store, not an SMB share`,
    ],
    [
      () => openEtcdStore("smb://{0}/Locks", options),
      `Invalid folder template "smb://{0}/Locks": it names an SMB share, not an etcd store`,
    ],
    [
      () => openFsStore("etcd://127.0.0.1/locks/{0}", options),
      `Invalid folder template "etcd://127.0.0.1/locks/{0}": it names an etcd store, not a local folder`,
    ],
    [
      () => parseFolderTemplate("smb://{0}/Locks"),
      `Invalid folder template "smb://{0}/Locks": it names an SMB share, not a local folder`,
    ],
    [
      () => parseEtcdTemplate("\\\\{0}\\Locks"),
      `Invalid folder template "\\\\{0}\\Locks": it names an SMB share, not an etcd store`,
    ],
  ];
  for (const [fn, message] of cases) assert.equal(errorOf(fn), message);
  // The SMB store reads \\server\share as a share on every system: it was asked for.
  assert.deepEqual(plain(parseSmbTemplate("\\\\{0}\\ResourceLocks")), {
    kind: "smb",
    text: "\\\\{0}\\ResourceLocks",
    placeholder: "{0}",
    server: "{0}",
    share: "ResourceLocks",
    folder: [],
  });
});

Deno.test("fillHost() puts a host name in every placeholder and refuses what could leave it", () => {
  assert.equal(fillHost("/var/lib/locks/{0}", "dc01"), "/var/lib/locks/dc01");
  assert.equal(fillHost("{host}.corp-{0}", "hv_01.a-b"), "hv_01.a-b.corp-hv_01.a-b");
  assert.equal(fillHost("no placeholder", "dc01"), "no placeholder");
  const hostile = [
    "",
    ".",
    "..",
    "a..b",
    "../etc",
    "a/b",
    "a\\b",
    "dc01:4445", // a port
    "svc@dc01", // a user
    "dc01?x=1", // a query
    "dc01#x", // a fragment
    "dc01%2f..", // encoded separator
    "dc 01",
    "dc01\n",
    "$&", // a replacement pattern
    "dç01",
    "x".repeat(254),
  ];
  for (const host of hostile) {
    const message = errorOf(() => fillHost("smb://{0}/Locks/{host}", host));
    assert.match(message, /^Invalid host name/, JSON.stringify(host));
  }
});

Deno.test("the stores put the host only where the template says, and refuse a host that would leave it", async () => {
  const root = await Deno.makeTempDir({ prefix: "rl-template-" });
  try {
    const fs = openFsStore(`${root}/locks/{0}`, { historyFolderName: "History", createRoot: true });
    const { openSmbStore } = await import("../src/stores/smb.ts");
    const smb = openSmbStore("smb://{0}:4445/Locks/{host}", {
      username: "u",
      password: "p",
      historyFolderName: "History",
    });
    const etcd = openEtcdStore("etcd://127.0.0.1:1/locks/{host}/x", {
      historyFolderName: "History",
    });
    try {
      assert.equal(fs.describe("dc01"), `${root}/locks/dc01`);
      assert.equal(smb.describe("dc01"), "smb://dc01:4445/Locks/dc01");
      assert.equal(etcd.describe("dc01"), "etcd://127.0.0.1:1/locks/dc01/x");
      for (const host of ["../escaped", "a/b", "dc01:1", "u@dc01"]) {
        for (const store of [fs, smb, etcd]) {
          assert.match(errorOf(() => store.describe(host)), /^Invalid host name/);
          // refused before anything is touched or sent, as a rejection like any failure
          for (
            const call of [
              () => store.list(host),
              () => store.read(host, "Host.lock"),
              () => store.create(host, "Host.lock", new Uint8Array()),
              () => store.listHistory(host),
            ]
          ) {
            let promise: Promise<unknown> | undefined;
            assert.doesNotThrow(() => promise = call());
            await assert.rejects(promise!, (error) => {
              assert.ok(error instanceof InputError, `${store.kind}: ${error}`);
              assert.match(error.message, /^Invalid host name/);
              return true;
            });
          }
        }
      }
      const made: string[] = [];
      for await (const entry of Deno.readDir(root)) made.push(entry.name);
      assert.deepEqual(made, [], "nothing was made anywhere");
    } finally {
      await smb.close();
      await etcd.close();
      await fs.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
