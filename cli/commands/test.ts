/**
 * `test <host>`: exit 0 when the host has a live lock of the types asked, 1
 * when not.
 *
 * @module
 */

import { type LockType, testHostResourceLock } from "../../mod.ts";
import type { CommandDeclaration } from "../command.ts";
import { EXIT, UsageError } from "../errors.ts";
import { oneOperand } from "../format.ts";
import { printJson } from "../io.ts";

/** A Map, so an inherited name is no lock type. */
const TYPES: ReadonlyMap<string, LockType | "Any"> = new Map([
  ["host", "Host"],
  ["generic", "Generic"],
  ["file", "File"],
  ["any", "Any"],
]);

/** `test <host>`. */
export const TEST: CommandDeclaration = {
  name: "test",
  operands: "<host>",
  summary: "exit 0 when locked, 1 when not",
  description: "Exit 0 when the host has a live lock of those types, 1 when not.",
  flags: [{
    name: "type",
    value: "TYPES",
    help: "lock types that count, comma-separated",
    choices: [...TYPES.keys()],
    default: "any",
  }],
  async handler({ operands, values, io, storeOptions }) {
    const host = oneOperand(operands, "host", "test");
    const names = typeof values.type === "string"
      ? values.type.split(",").map((t) => t.trim())
      : ["any"];
    const types = names.map((name) => {
      const type = TYPES.get(name.toLowerCase());
      if (!type) {
        throw new UsageError(
          `Invalid lock type ${JSON.stringify(name)}: expected host, generic, file or any`,
        );
      }
      return type;
    });
    const locked = await testHostResourceLock(host, { ...storeOptions, type: types });
    if (values.json) printJson(io, { command: "test", host: host.toLowerCase(), locked });
    else if (!values.quiet) io.out(locked ? "locked" : "not locked");
    return locked ? EXIT.OK : EXIT.NOT_LOCKED;
  },
};
