/**
 * The `resource-locker` command line: a thin layer over `mod.ts` that parses
 * arguments, calls the library, prints, and maps errors to exit codes.
 *
 * Exit codes: 0 done; 1 `test` found no lock; 2 bad usage or input; 3 lock
 * not acquired; 4 store unreachable or I/O error; 5 lock lost while `run`
 * held it; otherwise `run` exits with its child's code.
 *
 * @module
 */

import { installSeamFromEnv } from "./src/_seam.ts";
import { LIGHT_CLOCK } from "./src/clock.ts";
import {
  escapeControl,
  escapeJson,
  maskSecrets,
  registerSecret,
  registerUrlSecrets,
  showField,
  truncate,
} from "./src/_text.ts";
import denoJson from "./deno.json" with { type: "json" };
import { runCommand } from "./cli/run.ts";
import {
  breakResourceLock,
  type Clock,
  closeStores,
  formatDuration,
  getResolvedConfig,
  getResourceDependence,
  getResourceLockHistory,
  getResourceLockId,
  getResourceLockStatus,
  type HistoryEntry,
  InputError,
  lockFileResource,
  type LockInfo,
  type LockProgress,
  lockResource,
  type LockResourceOptions,
  type LockType,
  parseLockRef,
  type ResourceLock,
  ResourceLockerError,
  type StoreOptions,
  testHostResourceLock,
  unlockResource,
} from "./mod.ts";

/** Exit codes of the command line. */
export const EXIT = {
  OK: 0,
  NOT_LOCKED: 1,
  USAGE: 2,
  NOT_ACQUIRED: 3,
  STORE: 4,
  LOST: 5,
} as const;

const GLOBAL_HELP = `Global options:
  --store TEMPLATE   folder template choosing the store (/path/{0}, \\\\{0}\\share, smb://…, etcd://…)
  --config FILE      config module (as config.example.ts)
  --json             one JSON document on stdout ("version": 1)
  --quiet            no messages on stderr
  --verbose          more messages on stderr
  --help, --version`;

const LOCK_OPTIONS = `  --hard                 exclusive Host lock (same as --type host)
  --type host|generic|file   lock type (default generic)
  --caller NAME          who takes the lock
  --description TEXT     why
  --session ID           session id (default: a new GUID)
  --no-dependencies      lock only the host
  --file DEPS.json       dependency map (default from config)
  --timeout TIME         time between attempts (default 10s)
  --retries N            attempts in all (default 3)
  --ttl TIME             lease: the lock expires unless renewed
  --no-drain             do not wait for shared locks (Host locks)
  --drain-timeout TIME   how long a Host lock waits for shared locks (default 1h)
TIME is seconds (fractions allowed) or a number with ms, s, m or h.`;

const HELP: Record<string, string> = {
  main:
    `resource-locker ${denoJson.version}: locks on network hosts, compatible with the PowerShell module ResourceLocker

Usage: resource-locker <command> [options]

Commands:
  lock <host>              lock a host and its dependencies; prints one ref per line
  lock-file <path>         File lock on the server a file is on
  unlock <ref>... | -      release locks (refs from stdin with -)
  test <host>              exit 0 when locked, 1 when not
  deps <host>              hosts locked together with <host>
  id <ref>                 lock id of a ref or lock file name
  status <host>...         current locks
  history <host>           released and broken locks
  break <ref>              break a stale lock (any lock with --force)
  run <host> -- <command>  lock, run the command, renew, unlock

Exit codes: 0 done, 1 not locked (test), 2 bad usage or input, 3 lock not acquired,
4 store unreachable or I/O error, 5 lock lost while run held it.

${GLOBAL_HELP}

Run "resource-locker <command> --help" for a command's options.`,
  lock: `Usage: resource-locker lock <host> [options]

Locks <host> and the hosts it depends on, all or nothing, and prints one
ref per line, the dependencies' first, so "unlock -" can read them.

${LOCK_OPTIONS}

${GLOBAL_HELP}`,
  "lock-file": `Usage: resource-locker lock-file <path> [--caller NAME] [lock options]

Puts a File lock on the server a file is on (\\\\server\\share\\file locks server;
a local path locks this machine); the path becomes the description.

${GLOBAL_HELP}`,
  unlock: `Usage: resource-locker unlock <ref>... | - [--force]

Releases locks into History. "-" reads refs from stdin, one per line.
A lock is released only if it still belongs to the session in its ref;
a ref without a session (a plain dc01/Host, a lock written by PowerShell)
needs --force. Already released: a warning, exit 0.

${GLOBAL_HELP}`,
  test: `Usage: resource-locker test <host> [--type host,generic,file|any]

Exit 0 when the host has a live lock of those types, 1 when not.

${GLOBAL_HELP}`,
  deps: `Usage: resource-locker deps <host> [--file DEPS.json] [--format list|json|dot|mermaid]

Lists the hosts locked together with <host>, in the original's order.

${GLOBAL_HELP}`,
  id: `Usage: resource-locker id <ref>

Prints the lock id (Host, Generic-<session>, File-<session>) of a ref or lock file name.

${GLOBAL_HELP}`,
  status: `Usage: resource-locker status <host>...

Shows current locks: type, caller, description, age, expiry, session.

${GLOBAL_HELP}`,
  history: `Usage: resource-locker history <host> [--limit N]

Shows released and broken locks, newest first.

${GLOBAL_HELP}`,
  break: `Usage: resource-locker break <ref> [--reason TEXT] [--force]

Breaks a lock whose lease expired, moving it into History with who broke
it and why. --force breaks any lock.

${GLOBAL_HELP}`,
  run: `Usage: resource-locker run <host> [lock options] -- <command> [args]

Locks <host> (with dependencies), runs the command with
RESOURCE_LOCKER_SESSION and RESOURCE_LOCKER_REFS in its environment,
renews the lease while it runs, and exits with the command's code. On
lock loss (exit 5), SIGTERM, SIGINT, SIGHUP or SIGQUIT it signals the
command's whole process tree, SIGKILLs what is left after --grace, and
releases the lock only once the tree is gone.

${LOCK_OPTIONS}
  --grace TIME           time the command's processes have to end after a signal (lock lost,
                         SIGTERM, SIGINT, SIGHUP) before SIGKILL (default 10s)
  run's lease defaults to the config's runLease (60s).

${GLOBAL_HELP}`,
};

const GLOBAL_FLAGS = {
  store: { type: "string" },
  config: { type: "string" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  verbose: { type: "boolean", short: "v" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

const LOCK_FLAGS = {
  hard: { type: "boolean" },
  type: { type: "string" },
  caller: { type: "string" },
  description: { type: "string" },
  session: { type: "string" },
  "no-dependencies": { type: "boolean" },
  file: { type: "string" },
  timeout: { type: "string" },
  retries: { type: "string" },
  ttl: { type: "string" },
  "no-drain": { type: "boolean" },
  "drain-timeout": { type: "string" },
} as const;

const COMMAND_FLAGS = {
  lock: LOCK_FLAGS,
  "lock-file": LOCK_FLAGS,
  run: { ...LOCK_FLAGS, grace: { type: "string" } },
  unlock: { force: { type: "boolean" } },
  test: { type: { type: "string" } },
  deps: { file: { type: "string" }, format: { type: "string" } },
  id: {},
  status: {},
  history: { limit: { type: "string" } },
  break: { reason: { type: "string" }, force: { type: "boolean" } },
} as const;

type Command = keyof typeof COMMAND_FLAGS;
type Values = Record<string, string | boolean | undefined>;

/** What a command needs to talk to the world; tests run commands in-process through it. */
interface Io {
  out(text: string): void;
  err(text: string): void;
  stdin(): Promise<string>;
  /** A JSON document for stdout (see {@linkcode terminalIo}); `out` when absent. */
  outJson?(text: string): void;
}

/** Longest line written to stderr; a message quoting a huge lock file is cut. */
const MAX_ERR_LINE = 1000;
/** Longest line written to stdout in text form (table cells are cut before). */
const MAX_OUT_LINE = 4000;

/**
 * The one way out to the terminal. Every output passes here once, so no
 * command can forget it: secrets are masked everywhere (text, JSON,
 * `--verbose`, errors); text has control characters shown instead of sent
 * and over-long lines cut, and each `err` call stays one line; a JSON
 * document keeps its values exactly (only escapes JSON reads back the same).
 */
function terminalIo(io: Io): Io {
  return {
    out: (text) =>
      io.out(
        text.split("\n").map((line) => escapeControl(truncate(maskSecrets(line), MAX_OUT_LINE)))
          .join("\n"),
      ),
    err: (text) => io.err(escapeControl(truncate(maskSecrets(text), MAX_ERR_LINE))),
    outJson: (text) => io.out(escapeJson(maskSecrets(text))),
    stdin: () => io.stdin(),
  };
}

/** Remembers the secrets this run can see before any config is read, so that even a usage error masks them. */
function registerVisibleSecrets(args: readonly string[]): void {
  try {
    registerSecret(Deno.env.get("RESOURCE_LOCKER_SMB_PASSWORD"));
    for (const name of ["RESOURCE_LOCKER_STORE", "RESOURCE_LOCKER_ETCD_ENDPOINTS"]) {
      registerUrlSecrets(Deno.env.get(name) ?? "");
    }
  } catch { /* no --allow-env: nothing from the environment is used either */ }
  for (const arg of args) registerUrlSecrets(arg);
}

/** A spec's own entry: `constructor` or `__proto__` is no flag, command or type. */
function own<T>(table: Readonly<Record<string, T>>, key: string | undefined): T | undefined {
  return key !== undefined && Object.hasOwn(table, key) ? table[key] : undefined;
}

class UsageError extends InputError {
  override name = "UsageError";
}

/** The command line's clock: see {@linkcode LIGHT_CLOCK}. */
const CLI_CLOCK: Clock = LIGHT_CLOCK;

type FlagSpec = Record<string, { type: "string" | "boolean"; short?: string }>;

/**
 * Parses flags strictly: `--name value`, `--name=value`, booleans, short
 * aliases, positionals. (`node:util` parseArgs would load Node's
 * compatibility layer, about 3 ms of every start.)
 */
function parseFlags(args: string[], spec: FlagSpec): { values: Values; positionals: string[] } {
  const values: Values = {};
  const positionals: string[] = [];
  const shorts = Object.fromEntries(
    Object.entries(spec).filter(([, f]) => f.short).map(([name, f]) => [f.short!, name]),
  );
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const raw = arg.startsWith("--")
      ? arg.slice(2, eq > 0 ? eq : undefined)
      : own(shorts, arg.slice(1));
    const flag = own(spec, raw);
    if (!raw || !flag) throw new UsageError(`Unknown option "${arg.split("=")[0]}": see --help`);
    if (flag.type === "boolean") {
      if (eq > 0) throw new UsageError(`Option "--${raw}" takes no value`);
      values[raw] = true;
    } else if (eq > 0) values[raw] = arg.slice(eq + 1);
    else {
      const next = args[++i];
      if (next === undefined) throw new UsageError(`Option "--${raw}" needs a value`);
      values[raw] = next;
    }
  }
  return { values, positionals };
}

function storeOptions(values: Values): StoreOptions {
  const options: StoreOptions = { clock: CLI_CLOCK };
  if (typeof values.store === "string") options.store = values.store;
  if (typeof values.config === "string") options.configFile = values.config;
  return options;
}

function lockType(
  value: string | boolean | undefined,
  hard: boolean,
): LockType {
  if (hard) {
    if (value !== undefined && String(value).toLowerCase() !== "host") {
      throw new UsageError(
        `--hard and --type ${value} disagree: --hard means a Host lock`,
      );
    }
    return "Host";
  }
  if (value === undefined) return "Generic";
  const type = own<LockType>(
    { host: "Host", generic: "Generic", file: "File" },
    String(value).toLowerCase(),
  );
  if (!type) {
    throw new UsageError(
      `Invalid lock type ${JSON.stringify(value)}: expected host, generic or file`,
    );
  }
  return type;
}

function lockOptions(
  values: Values,
  io: Io,
  quiet: boolean,
): LockResourceOptions {
  const options: LockResourceOptions = { ...storeOptions(values) };
  options.type = lockType(values.type, values.hard === true);
  if (typeof values.caller === "string") options.caller = values.caller;
  if (typeof values.description === "string") {
    options.description = values.description;
  }
  if (typeof values.session === "string") options.sessionId = values.session;
  if (values["no-dependencies"]) options.noDependencies = true;
  if (typeof values.file === "string") options.dependenciesFile = values.file;
  if (typeof values.timeout === "string") options.timeout = values.timeout;
  if (typeof values.retries === "string") {
    if (!/^\d+$/.test(values.retries)) {
      throw new UsageError(
        `Invalid --retries ${JSON.stringify(values.retries)}: expected a whole number`,
      );
    }
    options.retries = Number(values.retries);
  }
  if (typeof values.ttl === "string") options.ttl = values.ttl;
  if (values["no-drain"]) {
    if (values["drain-timeout"] !== undefined) {
      throw new UsageError("--no-drain and --drain-timeout exclude each other");
    }
    options.drain = false;
  }
  if (typeof values["drain-timeout"] === "string") {
    options.drainTimeout = values["drain-timeout"];
  }
  if (!quiet) {
    options.onProgress = (progress) => io.err(describeProgress(progress));
  }
  return options;
}

function describeHolder(
  info: { lockId: string; caller?: string; lockedAt?: Date },
): string {
  const who = info.caller !== undefined ? `"${showField(info.caller)}"` : "an unknown caller";
  const since = info.lockedAt ? ` since ${info.lockedAt.toISOString()}` : "";
  return `${
    info.lockId === "Host" ? "Host" : showField(info.lockId.split("-")[0]!)
  } lock by ${who}${since}`;
}

function describeProgress(progress: LockProgress): string {
  const holders = progress.holders.slice(0, 2).map(describeHolder).join("; ") ||
    "a lock";
  if (progress.phase === "retry") {
    return `Waiting for "${progress.host}": ${holders} (attempt ${progress.attempt} of ${progress.attempts}, next in ${
      formatDuration(progress.waitMs)
    })`;
  }
  return `Draining "${progress.host}": waiting for ${progress.holders.length} shared lock${
    progress.holders.length === 1 ? "" : "s"
  } (${holders}; giving up in ${formatDuration(progress.waitMs)})`;
}

function json(io: Io, document: Record<string, unknown>): void {
  const text = JSON.stringify({ version: 1, ...document }, null, 2);
  if (io.outJson) io.outJson(text);
  else io.out(text);
}

function lockJson(info: LockInfo, now: number): Record<string, unknown> {
  return {
    host: info.host,
    ref: info.ref,
    lockId: info.lockId,
    type: info.type,
    sessionId: info.sessionId ?? null,
    caller: info.caller ?? null,
    description: info.description ?? null,
    lockedAt: info.lockedAt?.toISOString() ?? null,
    ageSeconds: info.lockedAt ? Math.round((now - info.lockedAt.getTime()) / 1000) : null,
    expiresAt: info.expiresAt?.toISOString() ?? null,
    expired: info.expired,
    content: info.state,
    holder: info.holder ?? null,
  };
}

/** A table of values from the store: each cell cut and escaped before the columns are measured. */
function table(cells: string[][]): string {
  const rows = cells.map((row) => row.map(showField));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join(
    "\n",
  );
}

function one(positionals: string[], what: string, command: string): string {
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? `Missing ${what}: resource-locker ${command} <${what}>`
        : `Too many arguments: ${command} takes one ${what}, got ${positionals.length}`,
    );
  }
  return positionals[0]!;
}

async function lockCommand(
  command: "lock" | "lock-file",
  positionals: string[],
  values: Values,
  io: Io,
) {
  const target = one(
    positionals,
    command === "lock" ? "host" : "path",
    command,
  );
  const options = lockOptions(values, io, values.quiet === true);
  let lock: ResourceLock;
  if (command === "lock-file") {
    if (
      values.type !== undefined || values.hard ||
      values.description !== undefined
    ) {
      throw new UsageError(
        "lock-file takes a File lock with the path as description: no --type, --hard or --description",
      );
    }
    const { type: _t, description: _d, ...rest } = options;
    lock = await lockFileResource(target, rest);
  } else lock = await lockResource(target, options);
  if (values.json) {
    json(io, {
      command,
      host: lock.host,
      type: lock.type,
      sessionId: lock.sessionId,
      refs: lock.refs,
    });
  } else io.out(lock.refs.join("\n"));
  return EXIT.OK;
}

async function unlockCommand(positionals: string[], values: Values, io: Io) {
  let refs = positionals;
  if (refs.length === 1 && refs[0] === "-") {
    refs = (await io.stdin()).split(/\r?\n/).map((line) => line.trim()).filter(
      Boolean,
    );
    if (refs.length === 0) {
      throw new UsageError("No refs on stdin: expected one ref per line");
    }
  } else if (refs.includes("-")) {
    throw new UsageError('"-" reads refs from stdin and stands alone');
  }
  if (refs.length === 0) {
    throw new UsageError("Missing ref: resource-locker unlock <ref>... | -");
  }
  refs.forEach(parseLockRef); // a malformed ref is a usage error: nothing released
  // Every ref is tried, whatever happens to the others: a failure is one
  // line, and the exit code is the first failure's.
  const results: Record<string, unknown>[] = [];
  let exit: number = EXIT.OK;
  for (const ref of refs) {
    try {
      const [result] = await unlockResource(ref, {
        ...storeOptions(values),
        force: values.force === true,
      });
      results.push({ ...result! });
      if (result!.status === "lost" && exit === EXIT.OK) exit = EXIT.LOST;
      if (values.json || values.quiet) continue;
      io.err(
        result!.status === "released"
          ? `Released ${result!.ref}`
          : result!.status === "lost"
          ? `Lost: ${result!.ref} was broken by ${showField(String(result!.brokenBy))}${
            result!.brokenAt ? ` at ${result!.brokenAt.toISOString()}` : ""
          }${result!.breakReason ? ` (${showField(result!.breakReason)})` : ""} before this unlock`
          : `Warning: ${result!.ref} was already released`,
      );
    } catch (error) {
      if (exit === EXIT.OK) exit = exitCodeOf(error);
      results.push({ ref, status: "failed", error: errorJson(error) });
      if (!values.json) io.err(`Error: ${message(error)}`);
    }
  }
  if (values.json) json(io, { command: "unlock", results });
  return exit;
}

async function testCommand(positionals: string[], values: Values, io: Io) {
  const host = one(positionals, "host", "test");
  const types = typeof values.type === "string"
    ? values.type.split(",").map((t) => t.trim())
    : ["Any"];
  const known = ["host", "generic", "file", "any"];
  for (const type of types) {
    if (!known.includes(type.toLowerCase())) {
      throw new UsageError(
        `Invalid lock type ${JSON.stringify(type)}: expected host, generic, file or any`,
      );
    }
  }
  const locked = await testHostResourceLock(host, {
    ...storeOptions(values),
    type: types.map((t) => (t[0]!.toUpperCase() + t.slice(1).toLowerCase()) as LockType | "Any"),
  });
  if (values.json) {
    json(io, { command: "test", host: host.toLowerCase(), locked });
  } else if (!values.quiet) io.out(locked ? "locked" : "not locked");
  return locked ? EXIT.OK : EXIT.NOT_LOCKED;
}

async function depsCommand(positionals: string[], values: Values, io: Io) {
  const host = one(positionals, "host", "deps").toLowerCase();
  const format = typeof values.format === "string" ? values.format : values.json ? "json" : "list";
  if (!["list", "json", "dot", "mermaid"].includes(format)) {
    throw new UsageError(
      `Invalid --format ${JSON.stringify(format)}: expected list, json, dot or mermaid`,
    );
  }
  const hosts = await getResourceDependence(host, {
    ...storeOptions(values),
    ...typeof values.file === "string" ? { file: values.file } : {},
  });
  if (format === "json") {
    json(io, { command: "deps", host, dependencies: hosts });
  } else if (format === "dot") {
    io.out(
      [
        "digraph dependencies {",
        ...hosts.map((h) => `  "${host}" -> "${h}";`),
        "}",
      ].join("\n"),
    );
  } else if (format === "mermaid") {
    const id = (h: string) => h.replace(/[^A-Za-z0-9_]/g, "_");
    io.out(
      [
        "graph LR",
        ...hosts.map((h) => `  ${id(host)}["${host}"] --> ${id(h)}["${h}"]`),
      ].join("\n"),
    );
  } else if (hosts.length) io.out(hosts.join("\n"));
  return EXIT.OK;
}

function idCommand(positionals: string[], values: Values, io: Io) {
  const id = getResourceLockId(one(positionals, "ref", "id"));
  if (values.json) json(io, { command: "id", lockId: id });
  else io.out(id);
  return EXIT.OK;
}

function age(date: Date | undefined, now: number): string {
  return date ? formatDuration(now - date.getTime()) : "?";
}

async function statusCommand(positionals: string[], values: Values, io: Io) {
  if (positionals.length === 0) {
    throw new UsageError("Missing host: resource-locker status <host>...");
  }
  const locks = await getResourceLockStatus(positionals, storeOptions(values));
  const now = Date.now();
  if (values.json) {
    json(io, {
      command: "status",
      hosts: positionals.map((h) => h.toLowerCase()),
      locks: locks.map((l) => lockJson(l, now)),
    });
    return EXIT.OK;
  }
  if (locks.length === 0) {
    if (!values.quiet) {
      io.err(
        `No locks on ${positionals.map((h) => `"${h.toLowerCase()}"`).join(", ")}`,
      );
    }
    return EXIT.OK;
  }
  const rows = [[
    "HOST",
    "TYPE",
    "CALLER",
    "DESCRIPTION",
    "AGE",
    "EXPIRES",
    "SESSION",
  ]];
  for (const l of locks) {
    rows.push([
      l.host,
      l.type,
      l.caller ?? (l.state === "ok" ? "-" : `(unknown: ${l.state} file)`),
      l.description ?? "-",
      age(l.lockedAt, now),
      l.expiresAt
        ? (l.expired ? "expired" : `in ${formatDuration(l.expiresAt.getTime() - now)}`)
        : "never",
      l.sessionId ?? "?",
    ]);
  }
  io.out(table(rows));
  return EXIT.OK;
}

async function historyCommand(positionals: string[], values: Values, io: Io) {
  const host = one(positionals, "host", "history");
  let limit: number | undefined;
  if (typeof values.limit === "string") {
    if (!/^[1-9]\d*$/.test(values.limit)) {
      throw new UsageError(
        `Invalid --limit ${JSON.stringify(values.limit)}: expected a whole number >= 1`,
      );
    }
    limit = Number(values.limit);
  }
  const entries: HistoryEntry[] = await getResourceLockHistory(host, {
    ...storeOptions(values),
    ...limit ? { limit } : {},
  });
  const now = Date.now();
  if (values.json) {
    json(io, {
      command: "history",
      host: host.toLowerCase(),
      entries: entries.map((e) => ({
        ...lockJson(e, now),
        name: e.name,
        unlockedAt: e.unlockedAt?.toISOString() ?? null,
        brokenBy: e.brokenBy ?? null,
        breakReason: e.breakReason ?? null,
      })),
    });
    return EXIT.OK;
  }
  if (entries.length === 0) {
    if (!values.quiet) io.err(`No history for "${host.toLowerCase()}"`);
    return EXIT.OK;
  }
  const rows = [[
    "TYPE",
    "CALLER",
    "DESCRIPTION",
    "LOCKED",
    "RELEASED",
    "HELD",
    "BROKEN BY",
    "SESSION",
  ]];
  for (const e of entries) {
    rows.push([
      e.type,
      e.caller ?? "-",
      e.description ?? "-",
      e.lockedAt?.toISOString() ?? "?",
      e.unlockedAt?.toISOString() ?? "?",
      e.lockedAt && e.unlockedAt
        ? formatDuration(e.unlockedAt.getTime() - e.lockedAt.getTime())
        : "?",
      e.brokenBy ? `${e.brokenBy} (${e.breakReason ?? "no reason"})` : "-",
      e.sessionId ?? "?",
    ]);
  }
  io.out(table(rows));
  return EXIT.OK;
}

async function breakCommand(positionals: string[], values: Values, io: Io) {
  const ref = one(positionals, "ref", "break");
  const info = await breakResourceLock(ref, {
    ...storeOptions(values),
    force: values.force === true,
    ...typeof values.reason === "string" ? { reason: values.reason } : {},
  });
  if (values.json) {
    json(io, { command: "break", broken: lockJson(info, Date.now()) });
  } else if (!values.quiet) {
    io.err(`Broke ${info.ref} (${describeHolder(info)})`);
  }
  return EXIT.OK;
}

function errorJson(error: unknown): Record<string, unknown> {
  return {
    code: (error as { code?: string }).code ?? "ERROR",
    message: message(error),
    exitCode: exitCodeOf(error),
  };
}

/** The flag for each library option or setting an error names as its remedy. */
const REMEDY_FLAGS: Readonly<Record<string, string>> = {
  force: "--force",
  dependenciesFile: "--dependencies-file",
  store: "--store",
};

/**
 * An error's message for one line. Ours are one line by construction, so a
 * line break in one came from data (a lock file's caller) and is kept, to be
 * shown escaped; a foreign error keeps its first line (no stack trace). The
 * library names its remedies as options (`force`); the flags are added here.
 */
function message(error: unknown): string {
  if (error instanceof ResourceLockerError) {
    const flags = error.remedies.map((name) => own(REMEDY_FLAGS, name)).filter((f) => f);
    return flags.length ? `${error.message} (${flags.join(", ")})` : error.message;
  }
  return error instanceof Error ? String(error.message).split("\n")[0]! : String(error);
}

/**
 * Maps an error to its exit code.
 *
 * @param error what was thrown
 * @returns the exit code
 */
export function exitCodeOf(error: unknown): number {
  if (error instanceof ResourceLockerError) {
    switch (error.code) {
      case "BAD_INPUT":
        return EXIT.USAGE;
      case "LOCK_BUSY":
      case "DRAIN_TIMEOUT":
      case "LOCK_NOT_OWNED":
        return EXIT.NOT_ACQUIRED;
      case "LOCK_LOST":
        return EXIT.LOST;
      default:
        return EXIT.STORE;
    }
  }
  return EXIT.STORE;
}

/**
 * Runs the command line.
 *
 * @param args arguments after the program name
 * @param io where output goes
 * @returns the exit code
 */
export async function main(args: string[], rawIo: Io): Promise<number> {
  registerVisibleSecrets(args);
  const io = terminalIo(rawIo);
  const split = args.indexOf("--");
  const head = split >= 0 ? args.slice(0, split) : args;
  const rest = split >= 0 ? args.slice(split + 1) : [];
  let at = 0;
  while (at < head.length && head[at]!.startsWith("-") && head[at] !== "-") {
    const flag = own<{ type: string }>(GLOBAL_FLAGS, head[at]!.slice(2));
    at += flag?.type === "string" ? 2 : 1; // a global flag's value is not the command
  }
  const command = head[at];
  // Known before parsing, so even a usage error answers in JSON.
  let values: Values = head.includes("--json") ? { json: true } : {};
  try {
    if (!command) {
      const { values: globals } = parseFlags(head, GLOBAL_FLAGS);
      if (globals.version) io.out(denoJson.version);
      else if (globals.help) io.out(HELP.main!);
      else {
        for (const line of HELP.main!.split("\n")) io.err(line);
        return EXIT.USAGE;
      }
      return EXIT.OK;
    }
    if (!Object.hasOwn(COMMAND_FLAGS, command)) {
      throw new UsageError(
        `Unknown command ${JSON.stringify(command)}: see resource-locker --help`,
      );
    }
    const name = command as Command;
    const parsed = parseFlags([...head.slice(0, at), ...head.slice(at + 1)], {
      ...GLOBAL_FLAGS,
      ...COMMAND_FLAGS[name],
    });
    values = parsed.values;
    if (values.help) {
      io.out(HELP[name]!);
      return EXIT.OK;
    }
    if (values.version) {
      io.out(denoJson.version);
      return EXIT.OK;
    }
    if (split >= 0 && name !== "run") {
      throw new UsageError(`"--" is only for run`);
    }
    if (values.verbose && !values.quiet) {
      const config = await getResolvedConfig(storeOptions(values));
      io.err(
        `Store: ${config.folderPathTemplate}${config.defaultStore ? " (default)" : ""}`,
      );
    }
    const positionals = parsed.positionals;
    switch (name) {
      case "lock":
      case "lock-file":
        return await lockCommand(name, positionals, values, io);
      case "unlock":
        return await unlockCommand(positionals, values, io);
      case "test":
        return await testCommand(positionals, values, io);
      case "deps":
        return await depsCommand(positionals, values, io);
      case "id":
        return idCommand(positionals, values, io);
      case "status":
        return await statusCommand(positionals, values, io);
      case "history":
        return await historyCommand(positionals, values, io);
      case "break":
        return await breakCommand(positionals, values, io);
      case "run":
        return await runCommand({
          host: one(positionals, "host", "run"),
          command: rest,
          values,
          lockOptions: () => lockOptions(values, io, values.quiet === true),
          storeOptions: storeOptions(values),
        }, io);
    }
  } catch (error) {
    const code = exitCodeOf(error);
    if (values.json) json(io, { error: errorJson(error) });
    io.err(`Error: ${message(error)}`);
    if (values.verbose && error instanceof Error && error.stack) {
      for (const line of error.stack.split("\n")) io.err(line);
    }
    return code;
  } finally {
    await closeStores();
  }
  return EXIT.OK;
}

if (import.meta.main) {
  installSeamFromEnv(); // tests only: RESOURCE_LOCKER_TEST_SEAM pauses one step
  const encoder = new TextEncoder();
  const io: Io = {
    out: (text) => Deno.stdout.writeSync(encoder.encode(text + "\n")),
    err: (text) => Deno.stderr.writeSync(encoder.encode(text + "\n")),
    stdin: async () =>
      new TextDecoder().decode(
        await new Response(Deno.stdin.readable).arrayBuffer(),
      ),
  };
  Deno.exit(await main(Deno.args, io));
}
