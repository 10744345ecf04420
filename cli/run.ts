/**
 * `resource-locker run <host> [lock options] -- <command> [args]`: takes the
 * lock, runs the command while the lease is renewed, stops the command's
 * whole process tree when it must, and releases the lock only after that.
 *
 * The contract:
 *
 * - The command gets `RESOURCE_LOCKER_SESSION`, `RESOURCE_LOCKER_REFS` (one
 *   ref per line) and `RESOURCE_LOCKER_RUN_TREE` (the mark of its tree, see
 *   `process_tree.ts`), and `run` exits with its code (128 + n when a signal
 *   ended it; 127 when it cannot be found, 126 when it cannot be started).
 * - With a controlling terminal the command shares `run`'s terminal and
 *   process group, as if started without `run`; otherwise it runs in a new
 *   session, one process group that `run` signals as a whole.
 * - Lock lost while the command runs (broken, taken over, or not renewed
 *   before it expired): one line saying when and what was found, SIGTERM to
 *   the tree, SIGKILL after `--grace`, exit 5, whatever the command's code.
 *   A loss found only when releasing after the command is exit 5 too.
 * - SIGTERM, SIGINT, SIGHUP or SIGQUIT while the command runs: passed on to
 *   the tree, SIGKILL after `--grace`; exit with the command's code. Later
 *   signals change nothing: the grace is already counting. One exception:
 *   with a terminal, a SIGINT or SIGQUIT that finds `run` in the terminal's
 *   foreground process group came from the keyboard (Ctrl-C, Ctrl-\) to the
 *   command as well; it is left to the command, as without `run` (a REPL or
 *   an editor lives on, a script's critical section that ignores SIGINT is
 *   not killed). Such a `run` stops on SIGTERM, not on `kill -INT`.
 * - A signal `run` was started with ignored (`nohup`, a script's background
 *   job) stays ignored by `run` and by the command (Linux; elsewhere `run`
 *   listens to all four).
 * - The command's processes still running when the command itself ended
 *   are stopped in the same way before the release (without a terminal:
 *   those left in its process group).
 * - The lock is released only once no process of the tree is left; when
 *   some survive SIGKILL (another user's, stuck in the kernel) it is not
 *   released but left to expire with its lease, and `run` says so.
 * - Interrupted while waiting for the lock: exit 128 + n, nothing locked.
 *
 * Signals are `run_signals.ts`, lease loss `run_loss.ts`, the command's
 * process tree `process_tree.ts`; this module puts them in order.
 *
 * @module
 */

import {
  getResolvedConfig,
  InputError,
  lockResource,
  type LockResourceOptions,
  parseDuration,
  type ResourceLock,
  type StoreOptions,
} from "../mod.ts";
import {
  CommandTree,
  hasControllingTerminal,
  ignoredSignals,
  type TreeProcess,
} from "./process_tree.ts";
import { releaseOrLoss, watchForLoss } from "./run_loss.ts";
import { RunSignals } from "./run_signals.ts";

/** Exit code of a lock lost while `run` held it. */
const EXIT_LOST = 5;

/** Default time between the first signal and SIGKILL. */
export const DEFAULT_GRACE_MS = 10_000;

/** What `cli.ts` hands over: the parsed command line and its helpers. */
export interface RunRequest {
  /** The host to lock. */
  host: string;
  /** The command and its arguments (after `--`). */
  command: string[];
  /** Parsed flags. */
  values: Record<string, string | boolean | undefined>;
  /** Builds the lock options from the flags (may throw a usage error). */
  lockOptions: () => LockResourceOptions;
  /** Store options from the flags (for the config's `runTtl`). */
  storeOptions: StoreOptions;
}

/** Where `run` writes its own messages. */
export interface RunIo {
  /** One line on stderr. */
  err(text: string): void;
}

const SIGNAL_NUMBERS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGSEGV: 11,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  ...(Deno.build.os === "linux" ? { SIGBUS: 7, SIGUSR1: 10, SIGUSR2: 12 } : {}),
};

/** The POSIX number of a signal (1 when unknown), for exit codes 128 + n. */
export function signalNumber(signal: string): number {
  return SIGNAL_NUMBERS[signal] ?? 1;
}

function pids(processes: TreeProcess[]): string {
  const list = processes.map((p) => (p.pid < 0 ? `group ${-p.pid}` : String(p.pid)));
  return list.length > 8 ? `${list.slice(0, 8).join(", ")}, …` : list.join(", ");
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * Starts the command with the lock's session and refs in its environment.
 *
 * @returns its tree, or the exit code and line when it cannot start (127: not found, 126: not started)
 */
function startCommand(
  command: string[],
  held: ResourceLock,
  ignored: ReadonlySet<Deno.Signal>,
): CommandTree | { code: number; why: string } {
  try {
    return CommandTree.start(
      command,
      {
        RESOURCE_LOCKER_SESSION: held.sessionId,
        RESOURCE_LOCKER_REFS: held.refs.join("\n"),
      },
      hasControllingTerminal(),
      ignored as Set<Deno.Signal>,
    );
  } catch (error) {
    const found = !(error instanceof Deno.errors.NotFound);
    const reason = found ? (error as Error).message : "command not found";
    return { code: found ? 126 : 127, why: `Cannot run ${JSON.stringify(command[0])}: ${reason}` };
  }
}

/**
 * Runs `run`: takes the lock (a signal meanwhile aborts the wait), starts
 * the command ({@linkcode startCommand}), passes signals on to its tree
 * ({@linkcode RunSignals}), stops it on lease loss ({@linkcode watchForLoss}),
 * and releases once the tree is gone.
 *
 * @param request the parsed command line
 * @param io where messages go
 * @returns the exit code
 * @throws {InputError} for bad usage
 * @throws {ResourceLockerError} when the lock cannot be taken or released
 */
export async function runCommand(request: RunRequest, io: RunIo): Promise<number> {
  const { host, command, values } = request;
  if (command.length === 0) {
    throw new InputError(
      "Missing command: resource-locker run <host> [options] -- <command> [args]",
    );
  }
  if (values.json) {
    throw new InputError("run passes its stdout to the command: --json is not supported");
  }
  const graceMs = typeof values.grace === "string"
    ? parseDuration(values.grace, "--grace")
    : DEFAULT_GRACE_MS;
  const quiet = values.quiet === true;
  const say = (text: string) => {
    if (!quiet) io.err(text);
  };
  const options = request.lockOptions();
  // Signals ignored from the start (nohup) stay ignored, for run and its command.
  const ignoring = ignoredSignals();
  let ignored: Set<Deno.Signal>;
  try {
    if (options.ttl === undefined) {
      options.ttl = (await getResolvedConfig(request.storeOptions)).runLeaseMs / 1000;
    }
  } finally {
    ignored = await ignoring;
  }

  // While waiting a signal aborts the wait; while the command runs it stops its tree.
  const signals = new RunSignals(ignored);
  let lock: ResourceLock | undefined;
  try {
    try {
      lock = await lockResource(host, { ...options, signal: signals.waiting });
    } catch (error) {
      if (signals.received) {
        say(`Interrupted by ${signals.received} while waiting for the lock: nothing is locked`);
        return 128 + signalNumber(signals.received);
      }
      throw error;
    }
    const held = lock;
    const beforeStart = async (code: number, why: string): Promise<number> => {
      lock = undefined;
      const loss = await releaseOrLoss(held);
      if (loss) {
        io.err(`${new Date().toISOString()}: ${loss}`);
        return EXIT_LOST;
      }
      io.err(why);
      return code;
    };
    if (signals.received) {
      return await beforeStart(
        128 + signalNumber(signals.received),
        `Interrupted by ${signals.received} before the command started: nothing is locked`,
      );
    }

    const tree = startCommand(command, held, ignored);
    if (!(tree instanceof CommandTree)) return await beforeStart(tree.code, tree.why);

    // Stopping the tree: the first stop goes on, its grace already counting.
    let stopping: Promise<TreeProcess[]> | undefined;
    const stop = (first: Deno.Signal) => {
      stopping ??= tree.stop(
        first,
        graceMs,
        (running) =>
          say(`Still running after ${seconds(graceMs)}: ${pids(running)}; sending SIGKILL`),
      );
    };
    const stopOn = (signal: Deno.Signal) => {
      if (stopping) return;
      say(`Received ${signal}: stopping the command (SIGKILL after ${seconds(graceMs)})`);
      stop(signal);
    };
    signals.whileRunning((signal) => {
      if (stopping) return;
      if (!tree.terminal || (signal !== "SIGINT" && signal !== "SIGQUIT")) return stopOn(signal);
      // Ctrl-C or Ctrl-\ in the terminal reached the command as well: what it does with
      // it is its own business, as without run (a REPL, an editor, a critical section).
      void tree.inForeground().then((foreground) => {
        if (!foreground) return stopOn(signal);
        if (values.verbose) say(`${signal} from the terminal: left to the command`);
      });
    });
    const loss = watchForLoss(held, {
      store: request.storeOptions,
      stop: () => stop("SIGTERM"),
      tell: (line) => io.err(line),
      grace: seconds(graceMs),
    });

    const status = await tree.status;
    if (!stopping) {
      const left = await tree.leftovers();
      if (left.length) {
        say(
          `The command ended, leaving ${left.length} process(es) running (${
            pids(left)
          }): stopping them`,
        );
        stop("SIGTERM");
      }
    }
    const survivors = stopping ? await stopping : [];
    await loss.end();
    const code = status.signal ? 128 + signalNumber(status.signal) : status.code;
    if (survivors.length) {
      lock = undefined; // not released: it expires with its lease
      io.err(
        `Processes of the command survived SIGKILL (${
          pids(survivors)
        }): the lock is not released; it expires with its lease (${seconds(held.ttlMs ?? 0)})`,
      );
      return loss.lost ? EXIT_LOST : code;
    }
    lock = undefined;
    const lossAtRelease = !loss.lost ? await releaseOrLoss(held) : await releaseOrLoss(held).then(
      () => undefined,
      () => undefined, // the loss is already told; the other locks are released
    );
    if (lossAtRelease !== undefined) {
      io.err(`${new Date().toISOString()}: ${lossAtRelease} (the command had ended with ${code})`);
    }
    return loss.lost || lossAtRelease !== undefined ? EXIT_LOST : code;
  } finally {
    signals.close();
    if (lock && !lock.released) {
      const left = lock;
      await left.release().catch((error) =>
        io.err(`Could not release ${left.refs.join(", ")}: ${(error as Error).message}`)
      );
    }
  }
}
