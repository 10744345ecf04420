/**
 * The argument parser, built from the declarations: `--name value`,
 * `--name=value`, switches, one-letter aliases, operands, and `--` before a
 * command to run. Names are looked up in `Map`s, so an inherited name
 * (`constructor`, `__proto__`, `hasOwnProperty`) is never a command or a
 * flag. (`node:util` parseArgs would load Node's compatibility layer, about
 * 3 ms of every start.)
 *
 * @module
 */

import type { CommandDeclaration, FlagDeclaration, Values } from "./command.ts";
import { UsageError } from "./errors.ts";

/** A flag as the parser finds it: by its name, an old name, or its letter. */
interface FlagEntry {
  flag: FlagDeclaration;
  /** The old name it was written with, when deprecated. */
  deprecated?: string;
}

/** What the parser found. */
export interface ParsedArgs {
  /** The command, or undefined when only global flags were given. */
  command: CommandDeclaration | undefined;
  /** Flags by their current name. */
  values: Values;
  /** Operands, in order. */
  operands: string[];
  /** Words after `--`, or undefined when there was no `--`. */
  rest: string[] | undefined;
  /** One line per old flag name used: `"--file" is deprecated: use "--dependencies-file"`. */
  deprecations: string[];
}

/** Commands by name; a Map, so inherited names are no command. */
export function commandTable(
  commands: readonly CommandDeclaration[],
): ReadonlyMap<string, CommandDeclaration> {
  return new Map(commands.map((command) => [command.name, command]));
}

function flagTables(flags: readonly FlagDeclaration[]) {
  const long = new Map<string, FlagEntry>();
  const short = new Map<string, FlagEntry>();
  for (const flag of flags) {
    long.set(flag.name, { flag });
    for (const old of flag.deprecated ?? []) long.set(old, { flag, deprecated: old });
    if (flag.short) short.set(flag.short, { flag });
  }
  return { long, short };
}

/**
 * Parses flags and operands against `flags`, strictly: an unknown flag, a
 * value given to a switch or missing after a flag is a {@linkcode UsageError}.
 */
export function parseFlags(
  args: readonly string[],
  flags: readonly FlagDeclaration[],
  seeHelp: string,
): { values: Values; operands: string[]; deprecations: string[] } {
  const { long, short } = flagTables(flags);
  const values: Values = {};
  const operands: string[] = [];
  const deprecations: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("-") || arg === "-") {
      operands.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const entry = arg.startsWith("--")
      ? long.get(arg.slice(2, eq > 0 ? eq : undefined))
      : short.get(arg.slice(1));
    if (!entry) {
      throw new UsageError(`Unknown option "${arg.split("=")[0]}": see ${seeHelp}`);
    }
    const { flag } = entry;
    const written = `--${entry.deprecated ?? flag.name}`;
    if (entry.deprecated !== undefined) {
      deprecations.push(`"${written}" is deprecated: use "--${flag.name}"`);
    }
    if (!flag.value) {
      if (eq > 0 && arg.startsWith("--")) {
        throw new UsageError(`Option "${written}" takes no value`);
      }
      values[flag.name] = true;
    } else if (eq > 0 && arg.startsWith("--")) values[flag.name] = arg.slice(eq + 1);
    else {
      const next = args[++i];
      if (next === undefined) throw new UsageError(`Option "${written}" needs a value`);
      values[flag.name] = next;
    }
  }
  return { values, operands, deprecations: [...new Set(deprecations)] };
}

/**
 * Parses a command line: global flags may come before the command; the
 * command's own flags and the global ones anywhere after it; `--` ends the
 * flags (its words are the command `run` starts).
 *
 * @throws {UsageError} on an unknown command or flag, or a flag's value missing
 */
export function parseArgs(
  args: readonly string[],
  commands: readonly CommandDeclaration[],
  globals: readonly FlagDeclaration[],
): ParsedArgs {
  const split = args.indexOf("--");
  const head = split >= 0 ? args.slice(0, split) : [...args];
  const rest = split >= 0 ? args.slice(split + 1) : undefined;
  const globalTable = flagTables(globals).long;
  let at = 0;
  while (at < head.length && head[at]!.startsWith("-") && head[at] !== "-") {
    const flag = globalTable.get(head[at]!.slice(2))?.flag;
    at += flag?.value ? 2 : 1; // a global flag's value is not the command
  }
  const name = head[at];
  if (name === undefined) {
    return { command: undefined, ...parseFlags(head, globals, "resource-locker --help"), rest };
  }
  const command = commandTable(commands).get(name);
  if (!command) {
    throw new UsageError(`Unknown command ${JSON.stringify(name)}: see resource-locker --help`);
  }
  const parsed = parseFlags(
    [...head.slice(0, at), ...head.slice(at + 1)],
    [...globals, ...command.flags],
    `resource-locker ${command.name} --help`,
  );
  return { command, ...parsed, rest };
}
