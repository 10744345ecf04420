/**
 * `completions <shell>`: prints the completion script of a shell, written
 * from the declarations.
 *
 * @module
 */

import type { CommandDeclaration } from "../command.ts";
import { completionScript, type Shell, SHELLS } from "../completions.ts";
import { EXIT, UsageError } from "../errors.ts";
import { GLOBAL_FLAGS } from "../flags.ts";
import { oneOperand } from "../format.ts";

/** `completions <shell>`. */
export const COMPLETIONS: CommandDeclaration = {
  name: "completions",
  operands: "<shell>",
  summary: "shell completion script: bash, zsh, fish or powershell",
  description: `Prints the completion script of a shell. Load it with:
  bash        source <(resource-locker completions bash)        (in ~/.bashrc)
  zsh         source <(resource-locker completions zsh)         (in ~/.zshrc, after compinit)
  fish        resource-locker completions fish > ~/.config/fish/completions/resource-locker.fish
  powershell  resource-locker completions powershell | Out-String | Invoke-Expression  (in $PROFILE)`,
  flags: [],
  completeOperands: SHELLS,
  handler({ operands, values, io, commands }) {
    if (values.json) {
      throw new UsageError("completions prints a shell script: --json is not supported");
    }
    const shell = oneOperand(operands, "shell", "completions");
    if (!(SHELLS as readonly string[]).includes(shell)) {
      throw new UsageError(
        `Invalid shell ${JSON.stringify(shell)}: expected ${SHELLS.join(", ")}`,
      );
    }
    io.out(completionScript(shell as Shell, commands, GLOBAL_FLAGS));
    return EXIT.OK;
  },
};
