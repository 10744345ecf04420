/**
 * Helpers for tests that spawn `deno run cli.ts`: the one way to start it
 * (a hermetic environment) and a runner with a bounded lifetime, a snapshot of a folder tree, an exact
 * (bigint-keeping) JSON reader and .NET tick arithmetic written
 * independently of the library.
 *
 * @module
 */

import { GUARD_FILE } from "./_helpers.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (where `cli.ts` is). */
export const REPO_ROOT: string = fileURLToPath(new URL("..", import.meta.url));

/** What a run of the command line gave. */
export interface CliResult {
  /** Exit code. */
  code: number;
  /** Standard output, decoded. */
  stdout: string;
  /** Standard error, decoded. */
  stderr: string;
  /** Milliseconds from the start of the process to its end. */
  ms: number;
}

/** The environment of the command line, for {@linkcode spawnCli} and {@linkcode runCli}. */
export interface CliEnvOptions {
  /** Folder template, passed as `RESOURCE_LOCKER_STORE`. */
  store?: string;
  /** Dependency map file, passed as `RESOURCE_LOCKER_DEPENDENCIES`. */
  dependencies?: string;
  /** More environment variables (`TZ`, `XDG_STATE_HOME`, credentials, …). */
  env?: Record<string, string>;
}

/** How to run the command line. */
export interface CliOptions extends CliEnvOptions {
  /** Text fed to stdin. */
  stdin?: string;
  /** Kill the process after this long. @default 20000 */
  timeoutMs?: number;
}

/** How to start the command line without waiting for it. */
export interface SpawnCliOptions extends CliEnvOptions {
  /** @default "null" */
  stdin?: "piped" | "null";
  /** @default "piped" */
  stdout?: "piped" | "null";
  /** @default "piped" */
  stderr?: "piped" | "null";
  /** Ends the process (SIGTERM) when aborted. */
  signal?: AbortSignal;
}

/**
 * Starts `deno run -A cli.ts …` from the repository root with `NO_COLOR=1`,
 * no inherited `RESOURCE_LOCKER_*` variables, and what `options` add; the
 * caller waits for it, signals it or kills it.
 */
export function spawnCli(
  args: string[],
  options: SpawnCliOptions = {},
): Deno.ChildProcess {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(Deno.env.toObject())) {
    if (!key.startsWith("RESOURCE_LOCKER_")) env[key] = value;
  }
  env.NO_COLOR = "1";
  if (options.store !== undefined) env.RESOURCE_LOCKER_STORE = options.store;
  if (options.dependencies !== undefined) {
    env.RESOURCE_LOCKER_DEPENDENCIES = options.dependencies;
  }
  Object.assign(env, options.env ?? {});
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli.ts", ...args],
    cwd: REPO_ROOT,
    env,
    clearEnv: true,
    stdin: options.stdin ?? "null",
    stdout: options.stdout ?? "piped",
    stderr: options.stderr ?? "piped",
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
  }).spawn();
}

/**
 * Runs `deno run -A cli.ts …` to its end (see {@linkcode spawnCli}) with a
 * kill timer.
 *
 * @throws {Error} when it did not finish within `timeoutMs`
 */
export async function runCli(
  args: string[],
  options: CliOptions = {},
): Promise<CliResult> {
  const { stdin, timeoutMs, ...environment } = options;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs ?? 20_000);
  const started = Date.now();
  try {
    const child = spawnCli(args, {
      ...environment,
      stdin: stdin !== undefined ? "piped" : "null",
      signal: abort.signal,
    });
    if (stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(stdin));
      await writer.close();
    }
    const output = await child.output();
    if (abort.signal.aborted) {
      throw new Error(`cli.ts ${args.join(" ")} did not finish in time`);
    }
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
      ms: Date.now() - started,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Non-empty lines of a text. */
export function lines(text: string): string[] {
  return text.split(/\r?\n/).filter((line) => line !== "");
}

/**
 * Every entry under `root`, as `relative path → kind, size and mtime`, so two
 * snapshots differ when anything was created, removed or written.
 */
export async function snapshotTree(
  root: string,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(dir: string, prefix: string): Promise<void> {
    for await (const entry of Deno.readDir(dir)) {
      const path = join(dir, entry.name);
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      const info = await Deno.lstat(path);
      out[rel] = info.isDirectory
        ? "dir"
        : `${info.isFile ? "file" : "other"}:${info.size}:${info.mtime?.getTime()}`;
      if (info.isDirectory) await walk(path, rel);
    }
  }
  await walk(root, "");
  return out;
}

/** Names of the entries of a folder, sorted, the local store's guard left out; [] when it does not exist. */
export async function listNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name !== GUARD_FILE) names.push(entry.name);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  return names.sort();
}

/**
 * Parses JSON keeping integers beyond 2^53 exact, as `bigint`. Written here,
 * not taken from the library, so the library's reader is checked against it.
 */
export function parseJsonExact(text: string): unknown {
  return JSON.parse(
    text,
    (_key, value, context?: { source?: string }) =>
      typeof value === "number" && !Number.isSafeInteger(value) &&
        context?.source !== undefined && /^-?\d+$/.test(context.source)
        ? BigInt(context.source)
        : value,
  );
}

/** Ticks (100 ns) from 0001-01-01 to 1970-01-01: 719162 days. */
export const UNIX_EPOCH_TICKS: bigint = 719_162n * 86_400n * 10_000_000n;

/** .NET ticks of the local clock at `epochMs`, for a local offset in minutes. */
export function expectedLocalTicks(
  epochMs: number,
  offsetMinutes: number,
): bigint {
  return UNIX_EPOCH_TICKS +
    (BigInt(epochMs) + BigInt(offsetMinutes) * 60_000n) * 10_000n;
}

/** A time zone without daylight saving and with a half-hour offset: local ticks differ from UTC ones. */
export const TEST_TZ = "Asia/Kolkata";
/** Its offset from UTC in minutes. */
export const TEST_TZ_OFFSET_MINUTES = 330;

/**
 * Runs the command line's `main` in this process (no spawn), collecting its
 * output lines; stdin is empty. For tests that need hundreds of calls.
 */
export async function runCliInProcess(args: string[]): Promise<Omit<CliResult, "ms">> {
  const { main } = await import("../cli.ts");
  let stdout = "";
  let stderr = "";
  const code = await main(args, {
    out: (text) => void (stdout += text + "\n"),
    err: (text) => void (stderr += text + "\n"),
    stdin: () => Promise.resolve(""),
  });
  return { code, stdout, stderr };
}
