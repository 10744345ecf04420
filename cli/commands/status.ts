/**
 * `status <host>...`: the current locks of hosts.
 *
 * @module
 */

import { getResourceLockStatus } from "../../src/api.ts";
import { formatDuration } from "../../src/duration.ts";
import type { CommandDeclaration } from "../command.ts";
import { EXIT, UsageError } from "../errors.ts";
import { age, lockJson, table } from "../format.ts";
import { printJson } from "../io.ts";

/** `status <host>...`. */
export const STATUS: CommandDeclaration = {
  name: "status",
  operands: "<host>...",
  summary: "current locks",
  description: "Shows current locks: type, caller, description, age, expiry, session.",
  flags: [],
  async handler({ operands, values, io, storeOptions }) {
    if (operands.length === 0) {
      throw new UsageError("Missing host: resource-locker status <host>...");
    }
    const locks = await getResourceLockStatus(operands, storeOptions);
    const now = Date.now();
    if (values.json) {
      printJson(io, {
        command: "status",
        hosts: operands.map((h) => h.toLowerCase()),
        locks: locks.map((l) => lockJson(l, now)),
      });
      return EXIT.OK;
    }
    if (locks.length === 0) {
      if (!values.quiet) {
        io.err(`No locks on ${operands.map((h) => `"${h.toLowerCase()}"`).join(", ")}`);
      }
      return EXIT.OK;
    }
    const rows = [["HOST", "TYPE", "CALLER", "DESCRIPTION", "AGE", "EXPIRES", "SESSION"]];
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
  },
};
