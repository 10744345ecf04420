/**
 * `main`: parses the arguments against the declarations, answers `--help`
 * and `--version`, dispatches to the command's handler through the table,
 * prints deprecation lines and errors, and returns the exit code.
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };
import { closeStores, getResolvedConfig } from "../src/api.ts";
import { SETTING_ENV } from "../src/config.ts";
import { registerSecret, registerUrlSecrets } from "../src/_text.ts";
import { COMMANDS, GLOBAL_FLAGS } from "./commands.ts";
import type { Values } from "./command.ts";
import { errorJson, errorMessage, EXIT, exitCodeOf, UsageError } from "./errors.ts";
import { commandHelp, mainHelp } from "./help.ts";
import { type Io, printJson, terminalIo } from "./io.ts";
import { storeOptions } from "./options.ts";
import { parseArgs } from "./parse.ts";

/** Remembers the secrets this run can see before any config is read, so that even a usage error masks them. */
function registerVisibleSecrets(args: readonly string[]): void {
  try {
    registerSecret(Deno.env.get(SETTING_ENV["smb.password"]));
    for (const name of [SETTING_ENV.store, SETTING_ENV["etcd.endpoints"]]) {
      registerUrlSecrets(Deno.env.get(name) ?? "");
    }
  } catch { /* no --allow-env: nothing from the environment is used either */ }
  for (const arg of args) registerUrlSecrets(arg);
}

/**
 * Runs the command line: `args` are the arguments after the program name.
 * Output goes to `io`, masked and escaped; the exit code is returned, never
 * `Deno.exit`ed, so scripts and tests can run it in-process.
 *
 * Exit codes: 0 done; 1 `test` found no lock; 2 bad usage or input; 3 lock
 * not acquired; 4 store unreachable or I/O error; 5 lock lost; otherwise
 * `run`'s command's own.
 *
 * @param args arguments after the program name
 * @param io where output goes
 * @returns the exit code
 *
 * @example The lock id of a ref
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 * const out: string[] = [];
 * const code = await main(["id", "dc01/Host@3f2a"], {
 *   out: (text) => out.push(text),
 *   err: () => {},
 *   stdin: () => Promise.resolve(""),
 * });
 * assert.equal(code, 0);
 * assert.deepEqual(out, ["Host"]);
 * ```
 */
export async function main(args: string[], io: Io): Promise<number> {
  registerVisibleSecrets(args);
  const out = terminalIo(io);
  // Known before parsing, so even a usage error answers in JSON.
  const split = args.indexOf("--");
  let values: Values = (split >= 0 ? args.slice(0, split) : args).includes("--json")
    ? { json: true }
    : {};
  const warned = new Set<string>();
  const warn = (message: string) => {
    if (warned.has(message)) return;
    warned.add(message);
    out.err(`Warning: ${message}`);
  };
  try {
    const parsed = parseArgs(args, COMMANDS, GLOBAL_FLAGS);
    values = parsed.values;
    parsed.deprecations.forEach(warn);
    const { command } = parsed;
    if (!command) {
      if (values.version) out.out(denoJson.version);
      else if (values.help) out.out(mainHelp(COMMANDS, GLOBAL_FLAGS, denoJson.version));
      else {
        for (const line of mainHelp(COMMANDS, GLOBAL_FLAGS, denoJson.version).split("\n")) {
          out.err(line);
        }
        return EXIT.USAGE;
      }
      return EXIT.OK;
    }
    if (values.help) {
      out.out(commandHelp(command, GLOBAL_FLAGS));
      return EXIT.OK;
    }
    if (values.version) {
      out.out(denoJson.version);
      return EXIT.OK;
    }
    if (parsed.rest !== undefined && !command.rest) {
      throw new UsageError(`"--" is only for run`);
    }
    const store = storeOptions(values, warn);
    if (values.verbose && !values.quiet) {
      const config = await getResolvedConfig(store);
      out.err(`Store: ${config.folderPathTemplate}${config.defaultStore ? " (default)" : ""}`);
    }
    return await command.handler({
      operands: parsed.operands,
      values,
      rest: parsed.rest ?? [],
      io: out,
      commands: COMMANDS,
      storeOptions: store,
    });
  } catch (error) {
    const code = exitCodeOf(error);
    if (values.json) printJson(out, { error: errorJson(error) });
    out.err(`Error: ${errorMessage(error)}`);
    if (values.verbose && error instanceof Error && error.stack) {
      for (const line of error.stack.split("\n")) out.err(line);
    }
    return code;
  } finally {
    await closeStores();
  }
}
