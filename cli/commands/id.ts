/**
 * `id <ref>`: the lock id of a ref or a lock file name.
 *
 * @module
 */

import { getResourceLockId } from "../../src/api.ts";
import type { CommandDeclaration } from "../command.ts";
import { EXIT } from "../errors.ts";
import { oneOperand } from "../format.ts";
import { printJson } from "../io.ts";

/** `id <ref>`. */
export const ID: CommandDeclaration = {
  name: "id",
  operands: "<ref>",
  summary: "lock id of a ref or lock file name",
  description:
    "Prints the lock id (Host, Generic-<session>, File-<session>) of a ref or lock file name.",
  flags: [],
  handler({ operands, values, io }) {
    const id = getResourceLockId(oneOperand(operands, "ref", "id"));
    if (values.json) printJson(io, { command: "id", lockId: id });
    else io.out(id);
    return EXIT.OK;
  },
};
