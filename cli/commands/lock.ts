/**
 * `lock <host>` and `lock-file <path>`: take locks and print their refs.
 *
 * @module
 */

import { lockFileResource, lockResource, type LockResourceOptions } from "../../src/api.ts";
import { ResourceLockerError } from "../../src/errors.ts";
import type { ResourceLock } from "../../src/resource_lock.ts";
import type { CommandContext, CommandDeclaration } from "../command.ts";
import { errorMessage, EXIT } from "../errors.ts";
import { ignoredSignals } from "../process_tree.ts";
import { signalNumber } from "../run.ts";
import { RunSignals } from "../run_signals.ts";
import { LOCK_FLAGS, lockFlags } from "../flags.ts";
import { oneOperand } from "../format.ts";
import { lockDocument } from "../../src/documents.ts";
import { printJson } from "../io.ts";
import { lockOptions } from "../options.ts";

function printLock(command: string, lock: ResourceLock, { values, io }: CommandContext): number {
  if (values.json) {
    printJson(io, lockDocument(command, lock));
  } else io.out(lock.refs.join("\n"));
  return EXIT.OK;
}

/**
 * Takes the lock with SIGINT, SIGTERM and SIGHUP aborting the wait, as `run`
 * does: else a signal (Ctrl-C) while a Host lock drains kills the process
 * with the Host lock in place, never to expire without a lease, and its ref
 * never printed. Interrupted: exit 128 + n, nothing locked (a lock taken just
 * as the signal came is released). Signals ignored from the start (`nohup`,
 * a script's background job) stay ignored: they are read (a `grep`, a few
 * ms) before the listeners go on, and the listeners go on before the first
 * attempt: a signal before then finds nothing taken, one after finds them.
 */
async function lockInterruptibly(
  command: string,
  take: (options: LockResourceOptions) => Promise<ResourceLock>,
  context: CommandContext,
): Promise<number> {
  const options = lockOptions(context.values, context.storeOptions, context.io);
  const signals = new RunSignals(await ignoredSignals());
  try {
    let lock: ResourceLock;
    try {
      lock = await take({ ...options, signal: signals.waiting });
    } catch (error) {
      const signal = signals.received;
      if (!signal) throw error;
      // What the rollback could not release is named, with its remedy.
      const left = error instanceof ResourceLockerError && error.remedies.includes("force");
      return interrupted(
        context,
        signal,
        left
          ? errorMessage(error)
          : `Interrupted by ${signal} while waiting for the lock: nothing is locked`,
        left,
      );
    }
    const signal = signals.received;
    if (signal) {
      await lock.release();
      return interrupted(
        context,
        signal,
        `Interrupted by ${signal} as the lock was taken: released, nothing is locked`,
      );
    }
    return printLock(command, lock, context);
  } finally {
    signals.close();
  }
}

/**
 * Says that a signal ended the command (with `--json` also as an error
 * document, code `INTERRUPTED`), and gives its exit code, 128 + n.
 */
function interrupted(
  { values, io }: CommandContext,
  signal: Deno.Signal,
  message: string,
  error = false,
): number {
  const exitCode = 128 + signalNumber(signal);
  if (values.json) printJson(io, { error: { code: "INTERRUPTED", message, exitCode } });
  io.err(error ? `Error: ${message}` : message);
  return exitCode;
}

/** `lock <host>`. */
export const LOCK: CommandDeclaration = {
  name: "lock",
  operands: "<host>",
  summary: "lock a host and its dependencies; prints one ref per line",
  description: `Locks <host> and the hosts it depends on, all or nothing, and prints one
ref per line, the dependencies' first, so "unlock -" can read them.`,
  flags: LOCK_FLAGS,
  async handler(context) {
    const host = oneOperand(context.operands, "host", "lock");
    return await lockInterruptibly("lock", (options) => lockResource(host, options), context);
  },
};

/** `lock-file <path>`. */
export const LOCK_FILE: CommandDeclaration = {
  name: "lock-file",
  operands: "<path>",
  summary: "File lock on the server a file is on",
  description: `Puts a File lock on the server a file is on (\\\\server\\share\\file locks server;
a local path locks this machine); the path becomes the description.`,
  flags: lockFlags(
    "caller",
    "session-id",
    "no-dependencies",
    "dependencies-file",
    "timeout",
    "retries",
    "wait",
    "ttl",
  ),
  completeOperands: "file",
  async handler(context) {
    const path = oneOperand(context.operands, "path", "lock-file");
    return await lockInterruptibly(
      "lock-file",
      (options) => lockFileResource(path, options),
      context,
    );
  },
};
