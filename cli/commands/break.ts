/**
 * `break <ref>`: break a lock whose lease expired (any lock with `--force`),
 * recording who and why.
 *
 * @module
 */

import { breakResourceLock, DEFAULT_BREAK_REASON } from "../../src/api.ts";
import { describeHolder } from "../../src/_text.ts";
import type { CommandDeclaration } from "../command.ts";
import { EXIT } from "../errors.ts";
import { oneOperand } from "../format.ts";
import { breakDocument } from "../../src/documents.ts";
import { printJson } from "../io.ts";

/** `break <ref>`. */
export const BREAK: CommandDeclaration = {
  name: "break",
  operands: "<ref>",
  summary: "break a stale lock (any lock with --force)",
  description: `Breaks a lock whose lease expired, moving it into History with who broke
it and why. --force breaks any lock.`,
  flags: [
    {
      name: "reason",
      value: "TEXT",
      help: "why, recorded in History",
      default: DEFAULT_BREAK_REASON,
    },
    { name: "force", help: "break a lock that has not expired" },
  ],
  async handler({ operands, values, io, storeOptions }) {
    const ref = oneOperand(operands, "ref", "break");
    const info = await breakResourceLock(ref, {
      ...storeOptions,
      force: values.force === true,
      ...typeof values.reason === "string" ? { reason: values.reason } : {},
    });
    if (values.json) printJson(io, breakDocument(info, Date.now()));
    else if (!values.quiet) {
      io.err(`Broke ${info.ref} (${describeHolder(info, { description: false })})`);
    }
    return EXIT.OK;
  },
};
