/**
 * SMB dialects, signing and encryption against real Samba servers set up as
 * hardened fleets have them (issue 11), and what an attacker on the wire can
 * and cannot do.
 *
 * The matrix: for each server configuration a private smbd (`_smbd.ts`,
 * `extraGlobal`), a Host lock taken through the library, the same host
 * refused to a second session (the command line, another process), the
 * lock released into History, and `smbstatus -s <conf> --json` read while
 * the lock is held: it shows, as the server sees them, the dialect and the
 * signing and encryption of every session and tree connect. The full SMB
 * suites (`smb_*_test.ts`) run on the defaults; with
 * `RESOURCE_LOCKER_TEST_SMBD_GLOBAL` (smb.conf lines separated by `;`) they
 * run against any configuration.
 *
 * Tampering: a proxy (`_smb_proxy.ts`) changes answers on their way back (a
 * byte flipped in a signed or sealed answer, a signature taken off): the
 * call fails with exit 4, names the cause, and leaves nothing on the share.
 *
 * @module
 */

import { join } from "node:path";
import { closeStores, InputError, lockResource } from "../mod.ts";
import { assertEquals, assertOk, assertRejects, assertStringIncludes } from "./_assert.ts";
import { lines, runCli } from "./_cli_helpers.ts";
import { filesOn, SMB_USER, smbCredentialsEnv, smbTemplate } from "./_smb_helpers.ts";
import { type AnswerAction, type SmbAnswerInfo, startSmbProxy } from "./_smb_proxy.ts";
import { type Smbd, type SmbdStatus, smbdTest, startSmbd } from "./_smbd.ts";

const HOST = "hv01";

/** One server configuration and what smbstatus must show for it. */
interface Case {
  name: string;
  /** `[global]` lines of smb.conf. */
  global: string[];
  /** Lines of the host's share. */
  share?: string[];
  /** Client settings beyond the credentials. */
  smb?: { encrypt?: "required"; signing?: "required" };
  /** smbstatus's dialect. */
  dialect: string;
  /** smbstatus's signing algorithm of the tree connect, "-" when none. */
  signing: string;
  /** smbstatus's cipher of the session and the tree connect, "-" when none. */
  encryption: string;
  /** The tree connect's cipher where smbstatus 4.17 names it otherwise (AES-256: "???"). */
  tconEncryption?: string;
  /**
   * Only the algorithm is new here: no second process (the command line's
   * contention is the same on every algorithm). @default false
   */
  light?: boolean;
}

const CASES: Case[] = [
  { name: "defaults", global: [], dialect: "SMB3_11", signing: "AES-128-GMAC", encryption: "-" },
  {
    name: "server signing = mandatory",
    global: ["server signing = mandatory"],
    dialect: "SMB3_11",
    signing: "AES-128-GMAC",
    encryption: "-",
  },
  {
    name: "server min protocol = SMB3_11",
    global: ["server min protocol = SMB3_11"],
    dialect: "SMB3_11",
    signing: "AES-128-GMAC",
    encryption: "-",
  },
  {
    name: "SMB3_00 only (AES-CMAC, validate negotiate)",
    global: ["server min protocol = SMB3_00", "server max protocol = SMB3_00"],
    dialect: "SMB3_00",
    signing: "AES-128-CMAC",
    encryption: "-",
  },
  {
    name: "server max protocol = SMB2_10, signing mandatory (HMAC-SHA256)",
    global: ["server max protocol = SMB2_10", "server signing = mandatory"],
    dialect: "SMB2_10",
    signing: "HMAC-SHA256",
    encryption: "-",
  },
  {
    name: "server smb encrypt = required on 3.1.1 (AES-128-GCM)",
    global: ["server smb encrypt = required"],
    dialect: "SMB3_11",
    signing: "AES-128-GMAC",
    encryption: "AES-128-GCM",
  },
  {
    name: "server smb encrypt = required on 3.0 (AES-128-CCM)",
    global: ["server smb encrypt = required", "server max protocol = SMB3_00"],
    dialect: "SMB3_00",
    signing: "AES-128-CMAC",
    encryption: "AES-128-CCM",
  },
  {
    name: "a share with smb encrypt = required",
    global: [],
    share: ["smb encrypt = required"],
    dialect: "SMB3_11",
    signing: "AES-128-GMAC",
    encryption: "AES-128-GCM",
  },
  {
    name: 'smb.encrypt = "required" against a server that does not ask',
    global: [],
    smb: { encrypt: "required" },
    dialect: "SMB3_11",
    signing: "AES-128-GMAC",
    encryption: "AES-128-GCM",
  },
  // The other ciphers and signing algorithms of 3.1.1, each the only one
  // the server allows.
  {
    name: "3.1.1 with AES-256-GCM only",
    global: ["server smb encrypt = required", "server smb3 encryption algorithms = aes-256-gcm"],
    dialect: "SMB3_11",
    signing: "AES-128-GMAC",
    encryption: "AES-256-GCM",
    tconEncryption: "???",
    light: true,
  },
  {
    name: "3.1.1 with AES-128-CCM only",
    global: ["server smb encrypt = required", "server smb3 encryption algorithms = aes-128-ccm"],
    dialect: "SMB3_11",
    signing: "AES-128-GMAC",
    encryption: "AES-128-CCM",
    light: true,
  },
  {
    name: "3.1.1 with AES-256-CCM only",
    global: ["server smb encrypt = required", "server smb3 encryption algorithms = aes-256-ccm"],
    dialect: "SMB3_11",
    signing: "AES-128-GMAC",
    encryption: "AES-256-CCM",
    tconEncryption: "???",
    light: true,
  },
  {
    name: "3.1.1 signing with AES-CMAC only",
    global: ["server smb3 signing algorithms = aes-128-cmac"],
    dialect: "SMB3_11",
    signing: "AES-128-CMAC",
    encryption: "-",
    light: true,
  },
  {
    name: "3.1.1 signing with HMAC-SHA256 only",
    global: ["server smb3 signing algorithms = hmac-sha-256"],
    dialect: "SMB3_11",
    signing: "HMAC-SHA256",
    encryption: "-",
    light: true,
  },
];

function startCaseSmbd(global: string[], share: string[] = []): Promise<Smbd> {
  return startSmbd({
    shares: [HOST],
    users: [SMB_USER],
    extraGlobal: global,
    shareOptions: { [HOST]: share },
  });
}

/** A config file for the command line with the case's SMB settings. */
async function configFile(smb: Case["smb"] = {}): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "rl-smb-sec-" });
  const file = join(dir, "config.ts");
  await Deno.writeTextFile(join(dir, "none.json"), "{}");
  await Deno.writeTextFile(
    file,
    `export default ${
      JSON.stringify({
        dependenciesFile: join(dir, "none.json"),
        smb: { timeout: "10s", ...smb },
      })
    };`,
  );
  return file;
}

function describeStatus(status: SmbdStatus): string {
  return JSON.stringify(status);
}

for (const c of CASES) {
  smbdTest(
    `SMB security matrix: ${c.name}: ${
      c.light ? "lock and release" : "lock, contention from another session, release"
    }; smbstatus shows ${c.dialect}, signing ${c.signing}, encryption ${c.encryption}`,
    async () => {
      await using smbd = await startCaseSmbd(c.global, c.share);
      const config = await configFile(c.smb);
      const store = smbTemplate(smbd.port);
      try {
        const lock = await lockResource(HOST, {
          store,
          config: {
            smb: { username: SMB_USER.name, password: SMB_USER.password, timeout: "10s", ...c.smb },
          },
          dependencies: {},
          type: "Host",
          caller: "matrix",
        });
        // As the server sees the session of the lock, held now.
        const status = await smbd.status();
        const shown = describeStatus(status);
        assertOk(status.sessions.length >= 1, shown);
        for (const session of status.sessions) {
          assertEquals(session.dialect, c.dialect, shown);
          if (c.encryption !== "-") assertEquals(session.encryption.cipher, c.encryption, shown);
        }
        const tcons = status.tcons.filter((t) => t.service === HOST);
        assertOk(tcons.length >= 1, shown);
        for (const tcon of tcons) {
          assertEquals(tcon.signing.cipher, c.signing, shown);
          assertEquals(tcon.signing.degree, "full", `every request signed: ${shown}`);
          assertEquals(tcon.encryption.cipher, c.tconEncryption ?? c.encryption, shown);
          if (c.encryption !== "-") {
            assertEquals(tcon.encryption.degree, "full", `every request sealed: ${shown}`);
          }
        }
        assertEquals(await filesOn(smbd, HOST), ["Host.lock"]);

        if (c.light) {
          await lock.release();
          assertEquals(await filesOn(smbd, HOST), []);
          return;
        }
        // Another process, another SMB session: the host is taken.
        const busy = await runCli(["lock", HOST, "--retries", "1", "--config-file", config], {
          store,
          env: smbCredentialsEnv(),
          timeoutMs: 60_000,
        });
        assertEquals(busy.code, 3, busy.stderr);
        assertStringIncludes(busy.stderr, "matrix");

        await lock.release();
        assertEquals(await filesOn(smbd, HOST), []);
        assertEquals((await filesOn(smbd, HOST, "History")).length, 1);

        // And the other process takes it now.
        const next = await runCli(["lock", HOST, "--hard", "--config-file", config], {
          store,
          env: smbCredentialsEnv(),
          timeoutMs: 60_000,
        });
        assertEquals(next.code, 0, next.stderr);
        assertEquals(await filesOn(smbd, HOST), ["Host.lock"]);
      } finally {
        await closeStores();
        await Deno.remove(join(config, ".."), { recursive: true });
      }
    },
  );
}

/** Runs `lock HOST` through a proxy that judges every answer; nothing is on the share after. */
async function lockThroughTamperer(
  smbd: Smbd,
  judge: (answer: SmbAnswerInfo) => AnswerAction,
  smb: Case["smb"] = {},
): Promise<{ code: number; stderr: string }> {
  await using proxy = startSmbProxy(smbd.port, { answer: judge });
  const config = await configFile(smb);
  try {
    return await runCli(["lock", HOST, "--hard", "--retries", "1", "--config-file", config], {
      store: smbTemplate(proxy.port),
      env: smbCredentialsEnv(),
      timeoutMs: 60_000,
    });
  } finally {
    await Deno.remove(join(config, ".."), { recursive: true });
  }
}

/** The answer to the compound that creates the lock file (its first request makes the temporary file). */
function createsLockFile(answer: SmbAnswerInfo): boolean {
  const request = answer.request;
  return request?.command === 5 && request.disposition === 2 &&
    (request.name ?? "").startsWith(".resource-locker-");
}

/** Judges that change the first answer `which` picks, once. */
function once(which: (answer: SmbAnswerInfo) => boolean, action: AnswerAction) {
  let done = false;
  return {
    judge: (answer: SmbAnswerInfo): AnswerAction => {
      if (done || !which(answer)) return "pass";
      done = true;
      return action;
    },
    fired: () => done,
  };
}

smbdTest(
  "SMB tampering: a flipped byte in the signed answer to the lock's create fails with exit 4 and leaves nothing",
  async () => {
    await using smbd = await startCaseSmbd([]);
    const tamper = once((a) => a.signed && createsLockFile(a), "flip");
    const result = await lockThroughTamperer(smbd, tamper.judge);
    assertOk(tamper.fired(), "the answer was changed");
    assertEquals(result.code, 4, result.stderr);
    assertEquals(lines(result.stderr).length, 1, result.stderr);
    assertStringIncludes(result.stderr, "bad signature");
    assertOk(!result.stderr.includes("unlock --force"), result.stderr);
    // The server made the lock file; the client, trusting nothing of the
    // answer, removed it again on a new connection.
    assertEquals(await filesOn(smbd, HOST), []);
    assertEquals(await filesOn(smbd, HOST, "History"), []);
  },
);

smbdTest(
  "SMB tampering: every signed answer changed after the logon: exit 4, nothing made, no unlock advice",
  async () => {
    await using smbd = await startCaseSmbd([]);
    const result = await lockThroughTamperer(
      smbd,
      (a) => a.signed && a.command !== 1 ? "flip" : "pass", // all but SESSION_SETUP
    );
    assertEquals(result.code, 4, result.stderr);
    assertEquals(lines(result.stderr).length, 1, result.stderr);
    assertStringIncludes(result.stderr, "bad signature");
    assertOk(!result.stderr.includes("unlock --force"), "nothing was created: " + result.stderr);
    assertEquals(await filesOn(smbd, HOST), []);
  },
);

smbdTest(
  "SMB tampering: a forged logon answer (3.1.1) is refused before anything is sent",
  async () => {
    await using smbd = await startCaseSmbd([]);
    // Every connection's logon answer (the command line reads the server's
    // clock first, and would connect again after one failure).
    let changed = 0;
    const result = await lockThroughTamperer(
      smbd,
      (a) => a.command === 1 && a.signed && ++changed > 0 ? "flip" : "pass",
    );
    assertOk(changed > 0);
    assertEquals(result.code, 4, result.stderr);
    assertStringIncludes(result.stderr, "logon answer with a bad signature");
    assertOk(!result.stderr.includes("unlock --force"), result.stderr);
    assertEquals(await filesOn(smbd, HOST), []);
  },
);

smbdTest(
  "SMB tampering: a signature taken off an answer is refused (unsigned while signing is in force)",
  async () => {
    await using smbd = await startCaseSmbd(["server max protocol = SMB2_10"]);
    let changed = 0; // every TREE_CONNECT answer
    const result = await lockThroughTamperer(
      smbd,
      (a) => a.signed && a.command === 3 && ++changed > 0 ? "unsign" : "pass",
    );
    assertOk(changed > 0);
    assertEquals(result.code, 4, result.stderr);
    assertStringIncludes(result.stderr, "unsigned answer while signing is in force");
    assertEquals(await filesOn(smbd, HOST), []);
  },
);

smbdTest(
  "SMB tampering: a flipped byte in an encrypted answer fails to decrypt: exit 4, nothing left",
  async () => {
    await using smbd = await startCaseSmbd(["server smb encrypt = required"]);
    // The encrypted answers are, in order: TREE_CONNECT, then the lock's
    // create; change the second.
    let encrypted = 0;
    const result = await lockThroughTamperer(
      smbd,
      (a) => a.encrypted && ++encrypted === 2 ? "flip" : "pass",
    );
    assertOk(encrypted >= 2);
    assertEquals(result.code, 4, result.stderr);
    assertEquals(lines(result.stderr).length, 1, result.stderr);
    assertStringIncludes(result.stderr, "does not decrypt");
    assertOk(!result.stderr.includes("unlock --force"), result.stderr);
    assertEquals(await filesOn(smbd, HOST), []);
  },
);

smbdTest(
  "SMB errors name the cause, exit 4, and never advise unlock --force: no dialect, encryption",
  async (t) => {
    const cases: { name: string; global: string[]; smb?: Case["smb"]; says: string }[] = [
      {
        name: "an SMB1-only server",
        global: ["server min protocol = NT1", "server max protocol = NT1"],
        says: "shares no dialect with this client",
      },
      {
        name: "encryption required by a server that speaks SMB 2.1 at most",
        global: ["server smb encrypt = required", "server max protocol = SMB2_10"],
        says: "the server may require encryption, which needs SMB 3",
      },
      {
        name: 'smb.encrypt = "required" against an SMB 2.1 server',
        global: ["server max protocol = SMB2_10"],
        smb: { encrypt: "required" },
        says: 'which has no encryption, and smb.encrypt is "required"',
      },
    ];
    for (const c of cases) {
      await t.step(c.name, async () => {
        await using smbd = await startCaseSmbd(c.global);
        const config = await configFile(c.smb);
        try {
          const result = await runCli(["lock", HOST, "--retries", "1", "--config-file", config], {
            store: smbTemplate(smbd.port),
            env: smbCredentialsEnv(),
            timeoutMs: 60_000,
          });
          assertEquals(result.code, 4, result.stderr);
          assertEquals(lines(result.stderr).length, 1, result.stderr);
          assertStringIncludes(result.stderr, c.says);
          assertOk(!result.stderr.includes("unlock --force"), result.stderr);
          assertEquals(await filesOn(smbd, HOST), []);
        } finally {
          await Deno.remove(join(config, ".."), { recursive: true });
        }
      });
    }
  },
);

smbdTest(
  "SMB store: smb.signing = required is accepted and signs; a bad setting is refused",
  async () => {
    await using smbd = await startCaseSmbd([]);
    const options = {
      store: smbTemplate(smbd.port),
      dependencies: {},
    };
    try {
      const lock = await lockResource(HOST, {
        ...options,
        config: {
          smb: { username: SMB_USER.name, password: SMB_USER.password, signing: "required" },
        },
      });
      const status = await smbd.status();
      assertEquals(status.tcons[0]?.signing.cipher, "AES-128-GMAC", describeStatus(status));
      assertEquals(status.sessions[0]?.signing.degree, "full", "the session requires signing");
      await lock.release();
      await assertRejects(
        () =>
          lockResource(HOST, {
            ...options,
            config: {
              smb: {
                username: SMB_USER.name,
                password: SMB_USER.password,
                signing: "sometimes" as "auto",
              },
            },
          }),
        InputError,
      );
    } finally {
      await closeStores();
    }
  },
);
