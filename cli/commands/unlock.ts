/**
 * `unlock <ref>... | -`: release locks, each only if it is still its
 * session's; every ref is tried.
 *
 * @module
 */

import { parseLockRef, unlockResource } from "../../mod.ts";
import { showField } from "../../src/_text.ts";
import type { CommandDeclaration } from "../command.ts";
import { errorJson, errorMessage, EXIT, exitCodeOf, UsageError } from "../errors.ts";
import { printJson } from "../io.ts";

/** `unlock <ref>... | -`. */
export const UNLOCK: CommandDeclaration = {
  name: "unlock",
  operands: "<ref>... | -",
  usage: "<ref>... | - [--force]",
  summary: "release locks (refs from stdin with -)",
  description: `Releases locks into History. "-" reads refs from stdin, one per line.
A lock is released only if it still belongs to the session in its ref;
a ref without a session (a plain dc01/Host, a lock written by PowerShell)
needs --force. Already released: a warning, exit 0.`,
  flags: [{
    name: "force",
    help: "release a lock whose session cannot be checked, or another session's",
  }],
  async handler({ operands, values, io, storeOptions }) {
    let refs = operands;
    if (refs.length === 1 && refs[0] === "-") {
      refs = (await io.stdin()).split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
      if (refs.length === 0) throw new UsageError("No refs on stdin: expected one ref per line");
    } else if (refs.includes("-")) {
      throw new UsageError('"-" reads refs from stdin and stands alone');
    }
    if (refs.length === 0) throw new UsageError("Missing ref: resource-locker unlock <ref>... | -");
    refs.forEach(parseLockRef); // a malformed ref is a usage error: nothing released
    // Every ref is tried, whatever happens to the others: a failure is one
    // line, and the exit code is the first failure's.
    const results: Record<string, unknown>[] = [];
    let exit: number = EXIT.OK;
    for (const ref of refs) {
      try {
        const [result] = await unlockResource(ref, {
          ...storeOptions,
          force: values.force === true,
        });
        results.push({ ...result! });
        if (result!.status === "lost" && exit === EXIT.OK) exit = EXIT.LOST;
        if (values.json || values.quiet) continue;
        io.err(
          result!.status === "released"
            ? `Released ${result!.ref}`
            : result!.status === "lost"
            ? `Lost: ${result!.ref} was broken by ${showField(String(result!.brokenBy))}${
              result!.brokenAt ? ` at ${result!.brokenAt.toISOString()}` : ""
            }${
              result!.breakReason ? ` (${showField(result!.breakReason)})` : ""
            } before this unlock`
            : `Warning: ${result!.ref} was already released`,
        );
      } catch (error) {
        if (exit === EXIT.OK) exit = exitCodeOf(error);
        results.push({ ref, status: "failed", error: errorJson(error) });
        if (!values.json) io.err(`Error: ${errorMessage(error)}`);
      }
    }
    if (values.json) printJson(io, { command: "unlock", results });
    return exit;
  },
};
