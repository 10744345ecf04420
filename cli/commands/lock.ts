/**
 * `lock <host>` and `lock-file <path>`: take locks and print their refs.
 *
 * @module
 */

import { lockFileResource, lockResource } from "../../src/api.ts";
import type { ResourceLock } from "../../src/resource_lock.ts";
import type { CommandContext, CommandDeclaration } from "../command.ts";
import { EXIT } from "../errors.ts";
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
    const options = lockOptions(context.values, context.storeOptions, context.io);
    return printLock("lock", await lockResource(host, options), context);
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
    const options = lockOptions(context.values, context.storeOptions, context.io);
    return printLock("lock-file", await lockFileResource(path, options), context);
  },
};
