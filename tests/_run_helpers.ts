/**
 * Helpers for the `run` tests: start `cli.ts run` with exactly the
 * permissions `deno task cli` grants, in a session of its own (so without a
 * controlling terminal, whatever terminal the tests run from) or under a
 * pseudo-terminal (`script`), read its stderr as lines with deadlines, and
 * see every process of its tree independently of the tool.
 *
 * The tree oracle: the test puts a mark of its own into `run`'s
 * `RESOURCE_LOCKER_RUN_TREE`; every process the command starts inherits it,
 * and the test finds them by reading `/proc/<pid>/environ` itself (tests
 * run with `--allow-all`), so "the tree is gone" is checked without asking
 * `run`.
 *
 * @module
 */

import { REPO_ROOT } from "./_cli_helpers.ts";
import { within } from "./_helpers.ts";

/** The permission flags of `deno task cli`, read from deno.json. */
export async function cliPermissions(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}/deno.json`));
  return String(config.tasks.cli).split(/\s+/).filter((flag) => flag.startsWith("--allow-"));
}

/** Whether `pid` is a live process (a zombie is dead). */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(") ") + 2, stat.lastIndexOf(") ") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Live processes whose environment holds `mark`, except `except`. */
export function marked(mark: string, except: number[] = []): number[] {
  const found: number[] = [];
  const needle = new TextEncoder().encode(mark);
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    if (except.includes(pid) || pid === Deno.pid) continue;
    let environ: Uint8Array;
    try {
      environ = Deno.readFileSync(`/proc/${pid}/environ`);
    } catch {
      continue;
    }
    if (indexOf(environ, needle) >= 0 && alive(pid)) found.push(pid);
  }
  return found;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Lines of a stream, waited for with deadlines. */
export class LineReader {
  #text = "";
  #ended = false;
  #wake: (() => void) | undefined;
  /** Resolves with the whole text once the stream ends. */
  readonly done: Promise<string>;

  /** @param stream the stream to read to its end */
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of stream) {
          this.#text += decoder.decode(chunk, { stream: true }).replaceAll("\r", "");
          this.#wake?.();
        }
      } catch { /* the process was killed */ }
      this.#ended = true;
      this.#wake?.();
      return this.#text;
    })();
  }

  /** Everything read so far. */
  get text(): string {
    return this.#text;
  }

  /**
   * Waits for a line matching `pattern`.
   *
   * @throws {Error} when the stream ends or `ms` pass first, with what was read
   */
  async line(pattern: RegExp, ms = 15_000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.#text.split("\n").find((line) => pattern.test(line));
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (this.#ended || left <= 0) {
        throw new Error(`no line matching ${pattern} within ${ms} ms; got: ${this.#text}`);
      }
      await within(left, new Promise<void>((resolve) => this.#wake = resolve)).catch(() => {});
    }
  }
}

/** A `run` started by a test. */
export interface RunProcess extends AsyncDisposable {
  /** The process (`deno`, or `script` with a terminal). */
  process: Deno.ChildProcess;
  /** The mark every process of the command's tree carries. */
  mark: string;
  /** Its stderr (with a terminal: the terminal's output). */
  stderr: LineReader;
  /** Its stdout, when piped without a terminal. */
  stdout: LineReader | undefined;
  /** Waits for the end, killing everything after `ms`. */
  end(ms?: number): Promise<{ code: number; stderr: string; ms: number }>;
  /** Live processes of the command's tree (`run` itself left out). */
  tree(): number[];
}

/** How to start `run`. */
export interface SpawnRunOptions {
  /** Environment added (store, config, credentials). */
  env?: Record<string, string>;
  /** Pipe stdin (to feed the command). */
  stdin?: boolean;
  /** Run under a pseudo-terminal made by `script`, `run` its session leader. */
  terminal?: boolean;
  /** Start `run` with SIGHUP ignored, as `nohup` does. */
  ignoreHup?: boolean;
}

/** Whether `script` (util-linux) is there to make a pseudo-terminal. */
export function hasScript(): boolean {
  try {
    return new Deno.Command("script", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * Starts `cli.ts <args>` with the command line's permissions, a hermetic
 * environment and a fresh tree mark. Without `terminal` it runs in a new
 * session (no controlling terminal); with it, `script` gives it a
 * pseudo-terminal and feeds it stdin.
 */
export async function spawnRun(args: string[], options: SpawnRunOptions = {}): Promise<RunProcess> {
  const mark = `test-${crypto.randomUUID()}`;
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(Deno.env.toObject())) {
    if (!key.startsWith("RESOURCE_LOCKER_")) env[key] = value;
  }
  Object.assign(env, { NO_COLOR: "1", RESOURCE_LOCKER_RUN_TREE: mark }, options.env ?? {});
  const deno = [
    ...(options.ignoreHup ? ["sh", "-c", `trap '' HUP; exec "$@"`, "sh"] : []),
    Deno.execPath(),
    "run",
    ...await cliPermissions(),
    "cli.ts",
    ...args,
  ];
  const started = Date.now();
  const process = options.terminal
    ? new Deno.Command("script", {
      args: ["-qec", `exec ${deno.map(shellQuote).join(" ")}`, "/dev/null"],
      cwd: REPO_ROOT,
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn()
    : new Deno.Command(deno[0]!, {
      args: deno.slice(1),
      cwd: REPO_ROOT,
      env,
      clearEnv: true,
      stdin: options.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn();
  const stdout = new LineReader(process.stdout);
  const stderr = options.terminal ? stdout : new LineReader(process.stderr);
  if (options.terminal) process.stderr.cancel();
  const tree = () => marked(mark, [process.pid]).filter((pid) => !isRun(pid));
  const killAll = () => {
    for (const pid of [...marked(mark), process.pid]) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  };
  let ended: Promise<{ code: number; stderr: string; ms: number }> | undefined;
  const end = (ms = 30_000) =>
    ended ??= (async () => {
      const status = await within(ms, process.status, killAll);
      const elapsed = Date.now() - started;
      if (options.stdin || options.terminal) await process.stdin.close().catch(() => {});
      return { code: status.code, stderr: await stderr.done, ms: elapsed };
    })();
  return {
    process,
    mark,
    stderr,
    stdout: options.terminal ? undefined : stdout,
    end,
    tree,
    async [Symbol.asyncDispose]() {
      killAll();
      await end(10_000).catch(() => {});
      await Promise.all([stdout.done, stderr.done]);
    },
  };
}

/** Whether `pid` is a `deno` process running `cli.ts` (`run` itself, under `script`). */
function isRun(pid: number): boolean {
  try {
    const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
    return cmdline.includes("cli.ts") && cmdline.includes("run");
  } catch {
    return false;
  }
}
