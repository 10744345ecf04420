/**
 * `run <host> [options] -- <command> [args]`: the declaration; what `run`
 * does is `../run.ts`.
 *
 * @module
 */

import type { CommandDeclaration } from "../command.ts";
import { configDefault, LOCK_FLAGS } from "../flags.ts";
import { oneOperand } from "../format.ts";
import { lockOptions } from "../options.ts";
import { DEFAULT_GRACE_MS, runCommand } from "../run.ts";
import { formatDuration } from "../../src/duration.ts";

/** `run <host> -- <command>`. */
export const RUN: CommandDeclaration = {
  name: "run",
  operands: "<host> -- <command>",
  usage: "<host> [options] -- <command> [args]",
  summary: "lock, run the command, renew, unlock",
  description: `Locks <host> (with dependencies), runs the command with
RESOURCE_LOCKER_SESSION and RESOURCE_LOCKER_REFS in its environment,
renews the lease while it runs, and exits with the command's code. On
lock loss (exit 5), SIGTERM, SIGINT, SIGHUP or SIGQUIT it signals the
command's whole process tree, SIGKILLs what is left after --grace, and
releases the lock only once the tree is gone.`,
  flags: [
    ...LOCK_FLAGS.map((flag) =>
      flag.name === "ttl"
        ? {
          ...flag,
          help: "lease, renewed while the command runs",
          setting: "runTtl",
          default: configDefault("runTtl"),
        }
        : flag
    ),
    {
      name: "grace",
      value: "TIME",
      help: "time the command's processes have to end after a signal before SIGKILL",
      default: formatDuration(DEFAULT_GRACE_MS),
    },
  ],
  rest: true,
  handler({ operands, rest, values, io, storeOptions }) {
    return runCommand({
      host: oneOperand(operands, "host", "run"),
      command: rest,
      values,
      lockOptions: () => lockOptions(values, storeOptions, io),
      storeOptions,
    }, io);
  },
};
