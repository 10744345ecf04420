/**
 * The command line's one declaration: every command, in the order `--help`
 * lists them. The parser, `--help`, the completions and the README's
 * reference are all written from this table.
 *
 * @module
 */

import type { CommandDeclaration } from "./command.ts";
import { BREAK } from "./commands/break.ts";
import { COMPLETIONS } from "./commands/completions.ts";
import { DEPS } from "./commands/deps.ts";
import { HISTORY } from "./commands/history.ts";
import { ID } from "./commands/id.ts";
import { LOCK, LOCK_FILE } from "./commands/lock.ts";
import { RUN } from "./commands/run.ts";
import { SERVE } from "./commands/serve.ts";
import { STATUS } from "./commands/status.ts";
import { TEST } from "./commands/test.ts";
import { UNLOCK } from "./commands/unlock.ts";

export { GLOBAL_FLAGS } from "./flags.ts";

/** Every command. */
export const COMMANDS: readonly CommandDeclaration[] = [
  LOCK,
  LOCK_FILE,
  UNLOCK,
  TEST,
  DEPS,
  ID,
  STATUS,
  HISTORY,
  BREAK,
  RUN,
  SERVE,
  COMPLETIONS,
];
