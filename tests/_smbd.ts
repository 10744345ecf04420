/**
 * Test helper: a private Samba `smbd` on a free loopback port.
 *
 * Each call to {@linkcode startSmbd} writes its own `smb.conf` and state
 * folders under a fresh temp folder, one share per test host, adds users with
 * passwords, starts `smbd -F --no-process-group` and waits (bounded) until the
 * port accepts. Samba's default security settings stay as they are: NTLMv1 is
 * refused and the server's own protocol floor (SMB2_02 in 4.17) applies.
 *
 * smbd needs a Unix account for every SMB user. The helper fakes them with
 * `nss_wrapper` (Debian package `libnss-wrapper`, the tool Samba's own test
 * suite uses), so no account is ever added to the machine. smbd runs as the
 * test's user and needs root for its user switching, as `.ci/run` has it.
 * `RESOURCE_LOCKER_SMBD` names another smbd binary.
 *
 * @module
 */

import { join } from "node:path";
import { sleep, within } from "./_helpers.ts";

/** A user smbd accepts. */
export interface SmbdUser {
  /** User name. */
  name: string;
  /** Its password. */
  password: string;
}

/** Options for {@linkcode startSmbd}. */
export interface StartSmbdOptions {
  /** Share names, one per test host; each gets an empty folder. */
  shares: string[];
  /** Users with passwords. */
  users: SmbdUser[];
  /** Shares (from `shares`) that are read-only. @default [] */
  readOnlyShares?: string[];
  /**
   * More `[global]` lines of smb.conf, e.g. `server signing = mandatory`,
   * `server min protocol = SMB3_11`, `server smb encrypt = required`.
   * @default []
   */
  extraGlobal?: string[];
  /** More lines per share (from `shares`), e.g. `{ s1: ["smb encrypt = required"] }`. @default {} */
  shareOptions?: Record<string, string[]>;
  /** How long to wait for the port to accept, in ms. @default 15000 */
  startTimeoutMs?: number;
}

/** A running private smbd. */
export interface Smbd extends AsyncDisposable {
  /** Loopback address smbd listens on. */
  readonly hostname: string;
  /** Its TCP port. */
  readonly port: number;
  /** Folder on disk behind a share, to inspect files independently. */
  dir(share: string): string;
  /** Whether smbd runs now. */
  readonly running: boolean;
  /** Stops smbd (SIGTERM, then SIGKILL) and waits for it and its children. */
  stop(): Promise<void>;
  /** Starts smbd again on the same port with the same shares and users. */
  restart(): Promise<void>;
  /** Freezes smbd and its children (SIGSTOP): the server stops answering. */
  pause(): Promise<void>;
  /** Lets a paused smbd go on (SIGCONT). */
  resume(): Promise<void>;
  /** Makes smbd drop every client's connection to a share (`smbcontrol close-share`). */
  closeShare(share: string): Promise<void>;
  /**
   * What `smbstatus -s <conf> --json` says about the sessions and tree
   * connects now: dialect, signing and encryption of each, as the server
   * sees them.
   */
  status(): Promise<SmbdStatus>;
  /** Stops smbd and removes its temp folder. */
  close(): Promise<void>;
  /**
   * Kills smbd and its children (SIGKILL) and removes the temp folder,
   * synchronously: for an `unload` handler, where nothing can be awaited.
   */
  killSync(): void;
}

/** One session or tree connect as `smbstatus --json` shows it. */
export interface SmbdSecurity {
  /** E.g. "AES-128-GMAC", "AES-128-GCM", "-" (none). */
  cipher: string;
  /** E.g. "full", "partial", "-" (none). */
  degree: string;
}

/** One session in `smbstatus --json`. */
export interface SmbdSession {
  /** User name. */
  username: string;
  /** Dialect, e.g. "SMB3_11". */
  dialect: string;
  /** Signing of the session. */
  signing: SmbdSecurity;
  /** Encryption of the session. */
  encryption: SmbdSecurity;
}

/** One tree connect in `smbstatus --json`. */
export interface SmbdTreeConnect {
  /** Share name. */
  service: string;
  /** Signing on the share. */
  signing: SmbdSecurity;
  /** Encryption on the share. */
  encryption: SmbdSecurity;
}

/** Sessions and tree connects, from `smbstatus --json`. */
export interface SmbdStatus {
  /** The sessions. */
  sessions: SmbdSession[];
  /** The tree connects. */
  tcons: SmbdTreeConnect[];
  /** Paths of the files and folders clients hold open now. */
  openFiles: string[];
}

const SMBSTATUS_CANDIDATES = ["/usr/bin/smbstatus", "/usr/local/bin/smbstatus"];
const SMBD_CANDIDATES = ["/usr/sbin/smbd", "/usr/local/sbin/smbd"];
const SMBPASSWD_CANDIDATES = ["/usr/bin/smbpasswd", "/usr/local/bin/smbpasswd"];
const SMBCONTROL_CANDIDATES = ["/usr/bin/smbcontrol", "/usr/local/bin/smbcontrol"];
const SETSID_CANDIDATES = ["/usr/bin/setsid", "/bin/setsid"];
const NSS_WRAPPER_CANDIDATES = [
  "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
  "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
  "/usr/lib64/libnss_wrapper.so",
  "/usr/lib/libnss_wrapper.so",
];

interface Tools {
  setsid: string;
  smbd: string;
  smbpasswd: string;
  smbcontrol: string;
  smbstatus: string;
  nssWrapper: string;
}

function findFile(candidates: string[]): string | undefined {
  for (const path of candidates) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there
    }
  }
  return undefined;
}

function findTools(): Tools | string {
  const override = Deno.env.get("RESOURCE_LOCKER_SMBD");
  const smbd = findFile(override ? [override] : SMBD_CANDIDATES);
  if (smbd === undefined) return "smbd is not installed (Debian package samba)";
  const smbpasswd = findFile(SMBPASSWD_CANDIDATES);
  if (smbpasswd === undefined) {
    return "smbpasswd is not installed (Debian package samba-common-bin)";
  }
  const smbcontrol = findFile(SMBCONTROL_CANDIDATES);
  if (smbcontrol === undefined) {
    return "smbcontrol is not installed (Debian package samba-common-bin)";
  }
  const smbstatus = findFile(SMBSTATUS_CANDIDATES);
  if (smbstatus === undefined) {
    return "smbstatus is not installed (Debian package samba)";
  }
  const nssWrapper = findFile(NSS_WRAPPER_CANDIDATES);
  if (nssWrapper === undefined) {
    return "libnss_wrapper.so is not installed (Debian package libnss-wrapper)";
  }
  const setsid = findFile(SETSID_CANDIDATES);
  if (setsid === undefined) return "setsid is not installed (util-linux)";
  if (Deno.uid() !== 0) return "smbd tests need root (smbd switches users)";
  return { setsid, smbd, smbpasswd, smbcontrol, smbstatus, nssWrapper };
}

/**
 * Why smbd tests cannot run here, or undefined when they can.
 * @returns a reason, or undefined
 */
export function smbdMissing(): string | undefined {
  const tools = findTools();
  return typeof tools === "string" ? tools : undefined;
}

import { underCi } from "./_helpers.ts";
export { underCi };

/**
 * `Deno.test` for tests that need smbd: skipped with a visible message when
 * smbd (or nss_wrapper) is missing, except under CI (see {@linkcode underCi}),
 * where the missing tool fails the run.
 *
 * @param name test name
 * @param fn the test
 */
export function smbdTest(
  name: string,
  fn: (t: Deno.TestContext) => Promise<void>,
): void {
  const missing = smbdMissing();
  if (missing === undefined) {
    Deno.test(name, fn);
    return;
  }
  if (underCi()) {
    Deno.test(name, () => {
      throw new Error(`smbd is required under CI (CI=${Deno.env.get("CI")}): ${missing}`);
    });
    return;
  }
  warnSkipping(missing);
  Deno.test({ name: `${name} (skipped: ${missing})`, ignore: true, fn });
}
let warned = false;

function warnSkipping(missing: string): void {
  if (warned) return;
  warned = true;
  console.warn(`%cSkipping SMB tests: ${missing}`, "color: yellow");
}

/**
 * For test files that register their tests some other way (a shared suite
 * taking `ignore`): whether to ignore them. When smbd is missing, says so
 * once, and under CI registers a test that fails naming what is missing.
 *
 * @returns `ignore`: true when smbd cannot run here
 */
export function smbdGate(): { ignore: boolean } {
  const missing = smbdMissing();
  if (missing === undefined) return { ignore: false };
  if (underCi()) {
    Deno.test("smbd is installed (required under CI)", () => {
      throw new Error(`smbd is required under CI (CI=${Deno.env.get("CI")}): ${missing}`);
    });
  } else {
    warnSkipping(missing);
  }
  return { ignore: true };
}

/**
 * One smbd for a whole test file, started when the file loads (outside any
 * test, so that the tests' resource sanitizers do not take it for a leak of
 * theirs) and killed when the file's tests are over (`unload`, also after
 * `--filter` or a failure). Tests share it by using shares or folders of
 * their own. Saves starting an smbd per test.
 *
 * @param gate the file's {@linkcode smbdGate}
 * @param options shares and users
 * @returns the server, or undefined when `gate.ignore`
 */
export async function fileSmbd(
  gate: { ignore: boolean },
  options: StartSmbdOptions,
): Promise<Smbd | undefined> {
  if (gate.ignore) return undefined;
  const smbd = await startSmbd(options);
  globalThis.addEventListener("unload", () => smbd.killSync());
  return smbd;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * `[global]` lines from `RESOURCE_LOCKER_TEST_SMBD_GLOBAL` (separated by
 * `;`): runs every SMB suite against another server configuration, e.g.
 * `server min protocol = SMB3_00;server max protocol = SMB3_00`. With
 * encryption, the tests whose proxy (`_smb_proxy.ts`) picks a request by
 * its content cannot see it and fail; the rest pass.
 */
function globalFromEnv(): string[] {
  const value = Deno.env.get("RESOURCE_LOCKER_TEST_SMBD_GLOBAL") ?? "";
  return value.split(";").map((line) => line.trim()).filter((line) => line !== "");
}

function smbConf(root: string, port: number, options: StartSmbdOptions): string {
  const global = [
    "[global]",
    "  server role = standalone server",
    `  smb ports = ${port}`,
    "  interfaces = lo",
    "  bind interfaces only = yes",
    "  disable netbios = yes",
    `  state directory = ${join(root, "state")}`,
    `  lock directory = ${join(root, "lock")}`,
    `  pid directory = ${join(root, "pid")}`,
    `  cache directory = ${join(root, "cache")}`,
    `  private dir = ${join(root, "private")}`,
    `  ncalrpc dir = ${join(root, "ncalrpc")}`,
    `  binddns dir = ${join(root, "binddns")}`,
    `  usershare path = ${join(root, "usershares")}`,
    "  usershare max shares = 0",
    `  passdb backend = tdbsam:${join(root, "private", "passdb.tdb")}`,
    `  log file = ${join(root, "log", "smbd.log")}`,
    "  log level = 1",
    "  max log size = 1000",
    "  load printers = no",
    "  printing = bsd",
    "  printcap name = /dev/null",
    "  disable spoolss = yes",
    ...[...globalFromEnv(), ...options.extraGlobal ?? []].map((line) => `  ${line}`),
    "",
  ];
  const readOnly = new Set(options.readOnlyShares ?? []);
  const shares = options.shares.flatMap((share) => [
    `[${share}]`,
    `  path = ${join(root, "shares", share)}`,
    `  read only = ${readOnly.has(share) ? "yes" : "no"}`,
    "  browseable = yes",
    ...(options.shareOptions?.[share] ?? []).map((line) => `  ${line}`),
    "",
  ]);
  return [...global, ...shares].join("\n");
}

const SHARE_NAME = /^[A-Za-z0-9._-]{1,80}$/;
const USER_NAME = /^[A-Za-z0-9._-]{1,20}$/;

/**
 * Starts a private smbd on a free loopback port.
 *
 * @param options shares, users, read-only shares
 * @returns the running server; stop it with `close()` or `await using`
 * @throws {Error} when smbd is not installed or does not come up in time
 */
export async function startSmbd(options: StartSmbdOptions): Promise<Smbd> {
  const tools = findTools();
  if (typeof tools === "string") throw new Error(`Cannot start smbd: ${tools}`);
  for (const share of options.shares) {
    if (!SHARE_NAME.test(share)) throw new TypeError(`Bad share name "${share}"`);
  }
  for (const user of options.users) {
    if (!USER_NAME.test(user.name)) {
      throw new TypeError(`Bad user name "${user.name}"`);
    }
  }
  const root = await Deno.makeTempDir({ prefix: "resource-locker-smbd-" });
  try {
    return await setUp(root, tools, options);
  } catch (error) {
    await Deno.remove(root, { recursive: true }).catch(() => {});
    throw error;
  }
}

async function setUp(
  root: string,
  tools: Tools,
  options: StartSmbdOptions,
): Promise<Smbd> {
  for (
    const dir of [
      "state",
      "lock",
      "pid",
      "cache",
      "private",
      "ncalrpc",
      "binddns",
      "usershares",
      "log",
      "shares",
    ]
  ) {
    await Deno.mkdir(join(root, dir));
  }
  for (const share of options.shares) {
    await Deno.mkdir(join(root, "shares", share));
  }
  // Every SMB user is a Unix user of the test's own uid, seen only by smbd.
  const uid = Deno.uid() ?? 0;
  const gid = Deno.gid() ?? 0;
  const passwd = [
    `root:x:0:0:root:/root:/bin/false`,
    ...options.users.filter((u) => u.name !== "root").map((u) =>
      `${u.name}:x:${uid}:${gid}:${u.name}:${root}:/bin/false`
    ),
    `nobody:x:65534:65534:nobody:/nonexistent:/bin/false`,
    "",
  ].join("\n");
  const group = [`root:x:0:`, `nogroup:x:65534:`, ""].join("\n");
  await Deno.writeTextFile(join(root, "passwd"), passwd);
  await Deno.writeTextFile(join(root, "group"), group);
  const conf = join(root, "smb.conf");
  let port = freePort();
  await Deno.writeTextFile(conf, smbConf(root, port, options));
  const env = {
    LD_PRELOAD: tools.nssWrapper,
    NSS_WRAPPER_PASSWD: join(root, "passwd"),
    NSS_WRAPPER_GROUP: join(root, "group"),
  };
  for (const user of options.users) {
    await addUser(tools, conf, env, user);
  }

  const timeoutMs = options.startTimeoutMs ?? 15_000;
  let child: Deno.ChildProcess | undefined;
  let paused = false;

  async function launch(): Promise<void> {
    // setsid: smbd signals its whole process group when it shuts down, so
    // it gets a group of its own, never the test runner's.
    const process = new Deno.Command(tools.setsid, {
      args: [tools.smbd, "-F", "--no-process-group", "-s", conf],
      env,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    child = process;
    try {
      await waitForPort(port, process.status, timeoutMs);
    } catch (error) {
      await terminate(process);
      child = undefined;
      const log = await readLogTail(join(root, "log", "smbd.log"));
      throw new Error(
        `smbd did not come up on 127.0.0.1:${port}: ${(error as Error).message}${
          log ? `; log: ${log}` : ""
        }`,
      );
    }
  }

  // A port taken between freePort() and smbd's bind: try another one.
  for (let attempt = 1;; attempt++) {
    try {
      await launch();
      break;
    } catch (error) {
      if (attempt >= 3) throw error;
      port = freePort();
      await Deno.writeTextFile(conf, smbConf(root, port, options));
    }
  }

  async function stop(): Promise<void> {
    const process = child;
    child = undefined;
    if (process === undefined) return;
    if (paused) {
      await signalTree(process.pid, "SIGCONT");
      paused = false;
    }
    await terminate(process);
  }

  const smbd: Smbd = {
    hostname: "127.0.0.1",
    get port() {
      return port;
    },
    dir(share: string): string {
      if (!options.shares.includes(share)) {
        throw new RangeError(`No share "${share}"`);
      }
      return join(root, "shares", share);
    },
    get running() {
      return child !== undefined;
    },
    stop,
    async restart(): Promise<void> {
      await stop();
      await launch();
    },
    async pause(): Promise<void> {
      if (child === undefined || paused) return;
      await signalTree(child.pid, "SIGSTOP");
      paused = true;
    },
    async resume(): Promise<void> {
      if (child === undefined || !paused) return;
      await signalTree(child.pid, "SIGCONT");
      paused = false;
    },
    async closeShare(share: string): Promise<void> {
      const output = await new Deno.Command(tools.smbcontrol, {
        args: ["-s", conf, "smbd", "close-share", share],
        env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!output.success) {
        throw new Error(
          `smbcontrol close-share failed: ${new TextDecoder().decode(output.stderr).trim()}`,
        );
      }
    },
    async status(): Promise<SmbdStatus> {
      const output = await new Deno.Command(tools.smbstatus, {
        args: ["-s", conf, "--json"],
        env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!output.success) {
        throw new Error(
          `smbstatus failed: ${new TextDecoder().decode(output.stderr).trim()}`,
        );
      }
      const json = JSON.parse(new TextDecoder().decode(output.stdout));
      const security = (value: { cipher?: string; degree?: string } | undefined) => ({
        cipher: value?.cipher ?? "",
        degree: value?.degree ?? "",
      });
      return {
        openFiles: Object.keys(json.open_files ?? {}),
        sessions: Object.values(json.sessions ?? {}).map((s) => {
          const session = s as Record<string, never>;
          return {
            username: String(session["username"] ?? ""),
            dialect: String(session["session_dialect"] ?? ""),
            signing: security(session["signing"]),
            encryption: security(session["encryption"]),
          };
        }),
        tcons: Object.values(json.tcons ?? {}).map((t) => {
          const tcon = t as Record<string, never>;
          return {
            service: String(tcon["service"] ?? ""),
            signing: security(tcon["signing"]),
            encryption: security(tcon["encryption"]),
          };
        }),
      };
    },
    async close(): Promise<void> {
      try {
        await stop();
      } finally {
        await Deno.remove(root, { recursive: true }).catch(() => {});
      }
    },
    killSync(): void {
      const process = child;
      child = undefined;
      if (process !== undefined) {
        for (const id of processTreeSync(process.pid)) {
          try {
            Deno.kill(id, "SIGKILL");
          } catch {
            // exited meanwhile
          }
        }
      }
      try {
        Deno.removeSync(root, { recursive: true });
      } catch {
        // removed already
      }
    },
    [Symbol.asyncDispose](): Promise<void> {
      return this.close();
    },
  };
  return smbd;
}

async function addUser(
  tools: Tools,
  conf: string,
  env: Record<string, string>,
  user: SmbdUser,
): Promise<void> {
  const process = new Deno.Command(tools.smbpasswd, {
    args: ["-c", conf, "-s", "-a", user.name],
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = process.stdin.getWriter();
  await writer.write(
    new TextEncoder().encode(`${user.password}\n${user.password}\n`),
  );
  await writer.close();
  const result = await within(15_000, process.output(), () => {
    try {
      process.kill("SIGKILL");
    } catch {
      // gone already
    }
  });
  if (!result.success) {
    // smbpasswd never echoes the password; its stderr is safe to show.
    const stderr = new TextDecoder().decode(result.stderr).trim();
    throw new Error(`smbpasswd could not add "${user.name}": ${stderr}`);
  }
}

async function waitForPort(
  port: number,
  exited: Promise<Deno.CommandStatus>,
  timeoutMs: number,
): Promise<void> {
  let done: Deno.CommandStatus | undefined;
  const watch = exited.then((status) => {
    done = status;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (done !== undefined) {
      throw new Error(`smbd exited with code ${done.code}`);
    }
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await Promise.race([watch, sleep(50)]);
    }
  }
  throw new Error(`port ${port} did not accept within ${timeoutMs} ms`);
}

/** Process ids of `pid` and all its descendants, parents first. */
async function processTree(pid: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let stat: string;
    try {
      stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
    } catch {
      continue;
    }
    addChild(children, entry.name, stat);
  }
  return treeOf(pid, children);
}

/** {@linkcode processTree}, synchronously (for `unload`). */
function processTreeSync(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
    } catch {
      continue;
    }
    addChild(children, entry.name, stat);
  }
  return treeOf(pid, children);
}

function addChild(children: Map<number, number[]>, pid: string, stat: string): void {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ppid = Number(fields[1]);
  const list = children.get(ppid) ?? [];
  list.push(Number(pid));
  children.set(ppid, list);
}

function treeOf(pid: number, children: Map<number, number[]>): number[] {
  const tree: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const next = queue.shift()!;
    tree.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return tree;
}

async function signalTree(pid: number, signal: Deno.Signal): Promise<void> {
  for (const id of await processTree(pid)) {
    try {
      Deno.kill(id, signal);
    } catch {
      // exited meanwhile
    }
  }
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z";
  } catch {
    return false;
  }
}

/** SIGTERM smbd, SIGKILL what is left after 5 s, wait for every child. */
async function terminate(process: Deno.ChildProcess): Promise<void> {
  const tree = await processTree(process.pid);
  for (const id of tree) {
    try {
      Deno.kill(id, "SIGTERM");
    } catch {
      // exited meanwhile
    }
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stuck = await Promise.race([
    process.status.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), 5_000);
    }),
  ]);
  clearTimeout(timer);
  if (stuck) {
    for (const id of tree) {
      try {
        Deno.kill(id, "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    await process.status;
  }
  // Children (per-connection smbd, notifyd, cleanupd) hold the port briefly.
  const deadline = Date.now() + 5_000;
  for (const id of tree.slice(1)) {
    while (alive(id) && Date.now() < deadline) await sleep(20);
    if (alive(id)) {
      try {
        Deno.kill(id, "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
  }
}

async function readLogTail(path: string): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    return text.trim().split("\n").slice(-5).join(" | ");
  } catch {
    return "";
  }
}
