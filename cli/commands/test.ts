/**
 * `test <host>`: exit 0 when the host has a live lock of the types asked, 1
 * when not.
 *
 * @module
 */

import { getGroupStatus, type LockType, testGroupSlot, testHostResourceLock } from "../../mod.ts";
import type { CommandDeclaration } from "../command.ts";
import { EXIT, UsageError } from "../errors.ts";
import { DEPENDENCIES_FILE, GROUP_FLAG } from "../flags.ts";
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
  usage: "<host> | --group NAME [options]",
  summary: "exit 0 when locked, 1 when not; --group NAME: 0 when the group has a free slot",
  description: `Exit 0 when the host has a live lock of those types, 1 when not.
With --group: exit 0 when the maintenance group has a free slot (a Host
lock on a member not yet in maintenance would get past the group now),
1 when all its slots are taken.`,
  flags: [
    {
      name: "type",
      value: "TYPES",
      help: "lock types that count, comma-separated",
      choices: [...TYPES.keys()],
      default: "any",
    },
    GROUP_FLAG,
    DEPENDENCIES_FILE,
  ],
  async handler({ operands, values, io, storeOptions }) {
    const file = values["dependencies-file"];
    if (values.group !== undefined) {
      if (operands.length > 0 || values.type !== undefined) {
        throw new UsageError("test --group NAME takes no host and no --type");
      }
      const name = String(values.group);
      const options = {
        ...storeOptions,
        ...typeof file === "string" ? { dependenciesFile: file } : {},
      };
      const free = await testGroupSlot(name, options);
      if (values.json) {
        const status = await getGroupStatus(name, options);
        printJson(io, {
          command: "test",
          group: status.name,
          free,
          used: status.used,
          max: status.max,
        });
      } else if (!values.quiet) io.out(free ? "free slot" : "no free slot");
      return free ? EXIT.OK : EXIT.NOT_LOCKED;
    }
    if (file !== undefined) throw new UsageError("--dependencies-file goes with --group");
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
