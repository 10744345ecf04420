/**
 * The process tree of the command `run` starts, and how to stop all of it.
 *
 * What is tracked (Linux):
 *
 * - The command's **process group**: with no controlling terminal, the
 *   command starts in a new session (Deno's `detached`, which calls
 *   `setsid`), so it and everything it starts share a process group that
 *   `run` signals as a whole (`kill(-pgid)`): orphans that were re-parented
 *   to init stay in it, and the kernel delivers a group signal even to a
 *   process being forked at that instant.
 * - The command's **descendants** by parent pid, read from `/proc`.
 * - An **environment mark**: every process of the tree inherits
 *   `RESOURCE_LOCKER_RUN_TREE`, to which each `run` appends a random token;
 *   `/proc/<pid>/environ` finds a process that left the group (`setsid`) and
 *   lost its parent, as long as it kept its environment.
 *
 * With a controlling terminal the command stays in `run`'s process group
 * and session, so it keeps the terminal exactly as if started without `run`
 * (stdin, Ctrl-C, job control, `/dev/tty` for password prompts); the tree is
 * then the command's descendants and the marked processes, each signalled
 * by pid.
 *
 * Deno 2.9 lets a program read `/proc` only with `--allow-all`; the command
 * line runs with `--allow-run`, so a short `sh` reads `/proc` for it (a few
 * ms on a host, 25-50 ms in a small loaded VM): when the tree is stopped,
 * once after the command ended (so a process that left the group with
 * `setsid` or `setpgid` is found by its mark), and with a terminal on each
 * Ctrl-C. `grep` reads
 * `run`'s ignored signals once at its start.
 *
 * What does not hold: a process that both left the group and cleared its
 * environment (`env -i`, `sudo`'s default, a double-forking daemon that
 * resets it) and whose parent died is not found; processes of another user (`sudo`) cannot be signalled by an
 * unprivileged `run`; a pid can be reused between a read of `/proc` and the
 * signal (milliseconds; pids wrap only after `pid_max`). Without `/proc`
 * (macOS, BSD) only the process group is signalled, and with a terminal
 * only the direct child; on Windows only the direct child. If `run` itself
 * is killed with SIGKILL nothing stops the tree; the lease frees the host
 * later while the work may go on.
 *
 * @module
 */

/** The environment variable that marks every process of a `run`'s tree. */
export const TREE_ENV = "RESOURCE_LOCKER_RUN_TREE";

/** How long processes may take to die after SIGKILL before they are reported. */
export const KILL_WAIT_MS = 5_000;

/** The longest one read of `/proc` may take. */
const SCAN_TIMEOUT_MS = 5_000;

const LINUX = Deno.build.os === "linux";
const WINDOWS = Deno.build.os === "windows";

/** A process of the tree, as `/proc/<pid>/stat` shows it. */
export interface TreeProcess {
  /** Process id. */
  pid: number;
  /** Parent process id. */
  ppid: number;
  /** Process group id. */
  pgid: number;
  /** Foreground process group of its terminal, or -1. */
  tpgid: number;
  /** One-letter state (`R`, `S`, `D`, `T`, `Z`, …); `?` when unknown. */
  state: string;
}

interface Scan {
  /** Live processes of the tree, `run` itself left out. */
  members: TreeProcess[];
  /** `run`'s own line. */
  self: TreeProcess | undefined;
}

/** A signal by name, or 0 to probe. */
type SignalOrProbe = Deno.Signal | 0;

/** Sends a signal; false when there was nobody to get it. */
function send(pid: number, signal: SignalOrProbe): "sent" | "gone" | "denied" {
  try {
    Deno.kill(pid, signal);
    return "sent";
  } catch (error) {
    return error instanceof Deno.errors.NotFound ? "gone" : "denied";
  }
}

/** Resolves after `ms` (a timer that keeps the process alive; long waits in steps). */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(ms, 2 ** 31 - 1))));
}

/** What `promise` resolves to within `ms`, else undefined; never rejects. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const result = await Promise.race([
    promise.catch(() => undefined),
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    }),
  ]);
  clearTimeout(timer);
  return result;
}

/**
 * Whether this process has a controlling terminal: `/dev/tty` opens only
 * then. Without the right to open it, whether a standard stream is a terminal.
 */
export function hasControllingTerminal(): boolean {
  const anyTerminal = () =>
    Deno.stdin.isTerminal() || Deno.stdout.isTerminal() || Deno.stderr.isTerminal();
  if (WINDOWS) return anyTerminal();
  try {
    Deno.openSync("/dev/tty", { read: true }).close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      return anyTerminal();
    }
    return false; // ENXIO: no controlling terminal
  }
}

const SIGNAL_BITS: [Deno.Signal, number][] = [
  ["SIGHUP", 1],
  ["SIGINT", 2],
  ["SIGQUIT", 3],
  ["SIGTERM", 15],
];

/**
 * The signals this process was started with ignored (`nohup`, a background
 * job of a script), read from `/proc/<pid>/status` by `grep`; empty when
 * not known (not Linux). Read before listening to any: Deno's first signal
 * listener replaces an ignored SIGHUP, SIGINT and SIGTERM with its handler
 * (and then dies of a SIGHUP nobody listens to).
 */
export async function ignoredSignals(): Promise<Set<Deno.Signal>> {
  const ignored = new Set<Deno.Signal>();
  if (!LINUX) return ignored;
  try {
    const output = await new Deno.Command("grep", {
      args: ["^SigIgn:", `/proc/${Deno.pid}/status`],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      detached: true,
    }).output();
    const mask = /^SigIgn:\s*([0-9a-fA-F]+)/.exec(new TextDecoder().decode(output.stdout))?.[1];
    if (mask === undefined) return ignored;
    const bits = BigInt(`0x${mask}`);
    for (const [signal, n] of SIGNAL_BITS) {
      if ((bits >> BigInt(n - 1)) & 1n) ignored.add(signal);
    }
  } catch { /* no grep: not known */ }
  return ignored;
}

/**
 * Reads every `/proc/<pid>/stat` and the pids whose environment holds
 * `token`, through `sh` (see the module notes).
 */
const SCAN_SCRIPT = "cat /proc/[0-9]*/stat 2>/dev/null; echo @; " +
  'grep -lsF -e "$1" /proc/[0-9]*/environ; exit 0';

/** Parses `/proc/<pid>/stat` lines: the name in parentheses may hold spaces and parentheses. */
function parseStat(text: string): Map<number, TreeProcess> {
  const processes = new Map<number, TreeProcess>();
  for (const line of text.split("\n")) {
    const open = line.indexOf(" (");
    const close = line.lastIndexOf(") ");
    if (open <= 0 || close < open) continue;
    const pid = Number(line.slice(0, open));
    const fields = line.slice(close + 2).split(" ");
    if (!Number.isInteger(pid) || fields.length < 6) continue;
    processes.set(pid, {
      pid,
      state: fields[0]!,
      ppid: Number(fields[1]),
      pgid: Number(fields[2]),
      tpgid: Number(fields[5]),
    });
  }
  return processes;
}

/** A running command and every process it started. */
export class CommandTree {
  /** The direct child. */
  readonly child: Deno.ChildProcess;
  /** Its process group when it has its own (no terminal); undefined with a terminal, on Windows. */
  readonly group: number | undefined;
  /** True when the command shares `run`'s terminal, process group and session. */
  readonly terminal: boolean;
  /** The direct child's end. */
  readonly status: Promise<Deno.CommandStatus>;
  readonly #token: string;
  #exited = false;
  #canScan = LINUX;

  private constructor(child: Deno.ChildProcess, terminal: boolean, token: string) {
    this.child = child;
    this.terminal = terminal;
    this.group = terminal || WINDOWS ? undefined : child.pid;
    this.#token = token;
    this.status = child.status.finally(() => {
      this.#exited = true;
    });
  }

  /**
   * Starts the command: in `run`'s own process group with a terminal
   * (`terminal`), otherwise in a new session, so in a new process group.
   *
   * @param command program and arguments
   * @param env variables added to the environment
   * @param terminal keep the command in `run`'s process group and session
   * @param ignore signals the command starts with ignored
   * @throws {Deno.errors.NotFound} when the program does not exist
   */
  static start(
    command: string[],
    env: Record<string, string>,
    terminal: boolean,
    ignore: Iterable<Deno.Signal> = [],
  ): CommandTree {
    const token = crypto.randomUUID();
    const inherited = Deno.env.get(TREE_ENV);
    const ignored = [...ignore].map((signal) => signal.slice(3));
    // Deno's first signal listener replaces an inherited "ignore" of SIGHUP,
    // SIGINT and SIGTERM with its handler, and the command would start with
    // the default: a shell gives the command its ignored signals back.
    const argv = ignored.length && !WINDOWS
      ? ["/bin/sh", "-c", `trap '' ${ignored.join(" ")}; exec "$@"`, "sh", ...command]
      : command;
    const child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      env: { ...env, [TREE_ENV]: inherited ? `${inherited} ${token}` : token },
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
      detached: !terminal && !WINDOWS,
    }).spawn();
    return new CommandTree(child, terminal, token);
  }

  /** True once the direct child has ended. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Reads `/proc`; undefined when it cannot (not Linux, no `sh`, no `/proc`). */
  async #scan(): Promise<Scan | undefined> {
    for (let attempt = 1; this.#canScan; attempt++) {
      let reader: Deno.ChildProcess;
      try {
        reader = new Deno.Command("/bin/sh", {
          args: ["-c", SCAN_SCRIPT, "sh", this.#token],
          env: { [TREE_ENV]: "" }, // the reader is not part of any tree
          stdin: "null",
          stdout: "piped",
          stderr: "null",
          detached: true, // out of the terminal's foreground group: Ctrl-C is not for it
        }).spawn();
      } catch {
        this.#canScan = false; // no sh
        return undefined;
      }
      // Bounded: reading a process's environ waits for its memory map, which a
      // process stuck in the kernel (a hung NFS mount) can hold for ever.
      const output = await within(reader.output(), SCAN_TIMEOUT_MS);
      if (output === undefined) {
        try {
          reader.kill("SIGKILL");
        } catch { /* gone */ }
      } else {
        const text = new TextDecoder().decode(output.stdout);
        const split = text.lastIndexOf("@\n");
        if (output.success && split >= 0 && (split === 0 || text[split - 1] === "\n")) {
          return this.#parse(text, split);
        }
      }
      if (attempt === 3) this.#canScan = false; // killed, or no /proc: not to be read here
    }
    return undefined;
  }

  #parse(text: string, split: number): Scan {
    const processes = parseStat(text.slice(0, split));
    const marked = text.slice(split + 2).split("\n").flatMap((line) => {
      const match = /^\/proc\/(\d+)\/environ$/.exec(line);
      return match ? [Number(match[1])] : [];
    });
    const children = new Map<number, number[]>();
    for (const p of processes.values()) {
      const list = children.get(p.ppid);
      if (list) list.push(p.pid);
      else children.set(p.ppid, [p.pid]);
    }
    // The command's descendants, while it lives (once it has ended and been
    // reaped its pid may be reused; its orphans are in the group or marked).
    // Not run's: run's other children are readers like this one.
    const found = new Set<number>();
    const pending = this.#exited ? [] : [this.child.pid];
    if (!this.#exited) found.add(this.child.pid);
    while (pending.length) {
      for (const pid of children.get(pending.pop()!) ?? []) {
        if (found.has(pid)) continue;
        found.add(pid);
        pending.push(pid);
      }
    }
    if (this.group !== undefined) {
      for (const p of processes.values()) if (p.pgid === this.group) found.add(p.pid);
    }
    for (const pid of marked) found.add(pid);
    found.delete(Deno.pid);
    const members: TreeProcess[] = [];
    for (const pid of found) {
      const p = processes.get(pid) ?? { pid, ppid: 0, pgid: 0, tpgid: -1, state: "?" };
      if (p.state !== "Z" && p.state !== "X" && p.state !== "x") members.push(p);
    }
    return { members, self: processes.get(Deno.pid) };
  }

  /**
   * The live processes of the tree (zombies are dead). Without `/proc`: the
   * process group as one entry while anything is in it, or the direct child.
   */
  async members(): Promise<TreeProcess[]> {
    const scan = await this.#scan();
    if (scan) return scan.members;
    if (this.group !== undefined) {
      return send(-this.group, 0) === "gone"
        ? []
        : [{ pid: -this.group, ppid: 0, pgid: this.group, tpgid: -1, state: "?" }];
    }
    return this.#exited
      ? []
      : [{ pid: this.child.pid, ppid: Deno.pid, pgid: 0, tpgid: -1, state: "?" }];
  }

  /**
   * What the command left running after it ended: on Linux always read from
   * `/proc` (a process that left the group with `setsid` or `setpgid` still
   * carries the tree's mark); elsewhere what is left in the process group.
   */
  async leftovers(): Promise<TreeProcess[]> {
    if (!this.#canScan) {
      if (this.group !== undefined && send(-this.group, 0) === "gone") return [];
      if (this.group === undefined) return [];
    }
    return await this.members();
  }

  /**
   * Whether `run` is in its terminal's foreground process group, where a
   * SIGINT or SIGQUIT most likely came from the keyboard and reached the
   * command too. True when it cannot be known (no `/proc`).
   */
  async inForeground(): Promise<boolean> {
    const self = (await this.#scan())?.self;
    return self ? self.tpgid > 0 && self.pgid === self.tpgid : true;
  }

  /**
   * Signals every process of the tree.
   *
   * @param signal the signal
   * @returns pids that could not be signalled (another user's processes)
   */
  async signal(signal: Deno.Signal): Promise<number[]> {
    if (WINDOWS) {
      if (!this.#exited) {
        try {
          this.child.kill(signal === "SIGKILL" ? "SIGKILL" : "SIGTERM");
        } catch { /* gone */ }
      }
      return [];
    }
    if (this.group !== undefined) send(-this.group, signal);
    const scan = await this.#scan();
    if (!scan) {
      if (this.group === undefined && !this.#exited) send(this.child.pid, signal);
      return [];
    }
    const denied: number[] = [];
    for (const p of scan.members) {
      if (this.group !== undefined && p.pgid === this.group) continue; // had the group's
      if (send(p.pid, signal) === "denied") denied.push(p.pid);
      // A stopped process acts on SIGTERM only once continued.
      if (signal !== "SIGKILL" && (p.state === "T" || p.state === "t")) send(p.pid, "SIGCONT");
    }
    if (this.group !== undefined && signal !== "SIGKILL") send(-this.group, "SIGCONT");
    return denied;
  }

  /** Waits until the tree is gone, at most until `deadline` (epoch ms); whether it is. */
  async #gone(deadline: number): Promise<boolean> {
    if (!this.#exited && !await within(this.status, deadline - Date.now())) return false;
    for (let interval = 10;; interval = Math.min(interval * 2, 200)) {
      if ((await this.members()).length === 0) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await delay(Math.min(interval, left));
    }
  }

  /**
   * Stops the whole tree: `first` to every process, then SIGKILL to whatever
   * is left after `graceMs`, again until nothing is left or
   * {@linkcode KILL_WAIT_MS} has passed.
   *
   * @param first the first signal
   * @param graceMs time the tree has to end after `first`
   * @param onKill called with what is still running when the grace ends
   * @returns what is still running at the end: nothing, unless processes
   * could not be killed (another user's, or stuck in the kernel)
   */
  async stop(
    first: Deno.Signal,
    graceMs: number,
    onKill?: (running: TreeProcess[]) => void,
  ): Promise<TreeProcess[]> {
    await this.signal(first);
    if (await this.#gone(Date.now() + graceMs)) return [];
    onKill?.(await this.members());
    const end = Date.now() + KILL_WAIT_MS;
    do {
      // Again and again: a process may have forked between a read and a kill.
      await this.signal("SIGKILL");
      if (await this.#gone(Math.min(Date.now() + 100, end))) return [];
    } while (Date.now() < end);
    return await this.members();
  }
}
