/**
 * The shape of the command line's one declaration: each command says once
 * its name, operands, summary, flags (with their help, their default and the
 * setting they override) and its handler. The parser (`parse.ts`), `--help`
 * (`help.ts`), the shell completions (`completions.ts`) and the README check
 * are all derived from these declarations, so they cannot drift apart.
 *
 * @module
 */

import type { StoreOptions } from "../src/api.ts";
import type { Io } from "./io.ts";

/** Parsed flags, by their current long name (`dependencies-file`, `quiet`). */
export type Values = Record<string, string | boolean | undefined>;

/** A flag, declared once. */
export interface FlagDeclaration {
  /** Long name without dashes: `dependencies-file` for `--dependencies-file`. */
  readonly name: string;
  /** One-letter alias: `q` for `-q`. */
  readonly short?: string;
  /** Placeholder of its value (`FILE`, `TIME`, `N`); a flag without one is a switch. */
  readonly value?: string;
  /** What it does, lower case, one line. */
  readonly help: string;
  /** The values it takes; shown in help and offered by completions (checked by the handler). */
  readonly choices?: readonly string[];
  /** Its value is a file path (completions offer files). */
  readonly file?: boolean;
  /** The config setting it overrides, whose name it shares (`dependenciesFile`). */
  readonly setting?: string;
  /** The environment variable that sets the same setting. */
  readonly env?: string;
  /** Its default as shown, read from the config defaults or the library, never retyped. */
  readonly default?: string;
  /** Names it had before, still accepted with a deprecation line on stderr. */
  readonly deprecated?: readonly string[];
}

/** What a handler gets. */
export interface CommandContext {
  /** Operands (positional arguments), in order. */
  readonly operands: string[];
  /** Flags given, by their current name. */
  readonly values: Values;
  /** Words after `--` (only commands with `rest` get any). */
  readonly rest: string[];
  /** Where output goes (already masked and escaped). */
  readonly io: Io;
  /** Every command's declaration (for `completions`). */
  readonly commands: readonly CommandDeclaration[];
  /** Store options from the global flags, warnings going to stderr. */
  readonly storeOptions: StoreOptions;
}

/** A command, declared once. */
export interface CommandDeclaration {
  /** Its name: `lock`. */
  readonly name: string;
  /** Its operands in the command list: `<host>`, `<ref>... | -`. */
  readonly operands: string;
  /** Its usage after the name, when it is not `<operands> [options]`. */
  readonly usage?: string;
  /** One line for the command list. */
  readonly summary: string;
  /** A few lines for its `--help`, between the usage line and the options. */
  readonly description: string;
  /** Its own flags (the global ones are added to every command). */
  readonly flags: readonly FlagDeclaration[];
  /** What its operands complete to: files, or a fixed list of words. Hosts and refs complete to nothing. */
  readonly completeOperands?: "file" | readonly string[];
  /** Takes `-- <command> [args]` after its operands (completed as a command). */
  readonly rest?: boolean;
  /** Runs it; returns the exit code. */
  readonly handler: (context: CommandContext) => Promise<number> | number;
}

/** The usage line of a command, after `resource-locker `. */
export function usageOf(command: CommandDeclaration): string {
  return `${command.name} ${command.usage ?? `${command.operands} [options]`}`;
}

/** How a flag is written in help and the README: `-q, --quiet`, `--timeout TIME`. */
export function flagLabel(flag: FlagDeclaration): string {
  const long = `--${flag.name}${flag.value ? ` ${flag.value}` : ""}`;
  return flag.short ? `-${flag.short}, ${long}` : long;
}

/** A flag's help with its choices: `lock type: host, generic or file`. */
export function flagHelp(flag: FlagDeclaration): string {
  if (!flag.choices?.length) return flag.help;
  const list = flag.choices.length === 1
    ? flag.choices[0]
    : `${flag.choices.slice(0, -1).join(", ")} or ${flag.choices.at(-1)}`;
  return `${flag.help}: ${list}`;
}
