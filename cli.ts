/**
 * The `resource-locker` command line: a thin layer over `mod.ts` that parses
 * arguments, calls the library, prints, and maps errors to exit codes. Each
 * command is declared once in `cli/commands.ts`; the parser, `--help` and
 * the shell completions are written from those declarations.
 *
 * Exit codes: 0 done; 1 `test` found no lock; 2 bad usage or input; 3 lock
 * not acquired; 4 store unreachable or I/O error; 5 lock lost while `run`
 * held it; otherwise `run` exits with its child's code.
 *
 * @example Run it in-process
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXIT, main } from "./cli.ts";
 * const errors: string[] = [];
 * const code = await main(["frobnicate"], {
 *   out: () => {},
 *   err: (text) => errors.push(text),
 *   stdin: () => Promise.resolve(""),
 * });
 * assert.equal(code, EXIT.USAGE);
 * assert.match(errors[0]!, /^Error: Unknown command "frobnicate"/);
 * ```
 *
 * @module
 */

import { installSeamFromEnv } from "./src/_seam.ts";
import { main } from "./cli/main.ts";
import { processIo } from "./cli/io.ts";

export { main } from "./cli/main.ts";
export type { Io } from "./cli/io.ts";
export { EXIT, exitCodeOf } from "./cli/errors.ts";

if (import.meta.main) {
  installSeamFromEnv(); // tests only: RESOURCE_LOCKER_TEST_SEAM pauses one step
  Deno.exit(await main(Deno.args, processIo()));
}
