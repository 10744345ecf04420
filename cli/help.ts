/**
 * `--help` and the README's command-line reference, both written from the
 * declarations.
 *
 * @module
 */

import { RENAMED_SETTINGS } from "../src/config.ts";
import {
  type CommandDeclaration,
  type FlagDeclaration,
  flagHelp,
  flagLabel,
  usageOf,
} from "./command.ts";

const TIME_NOTE = "TIME is seconds (fractions allowed) or a number with ms, s, m or h.";

const EXIT_CODES =
  `Exit codes: 0 done, 1 not locked (test), 2 bad usage or input, 3 lock not acquired,
4 store unreachable or I/O error, 5 lock lost while run held it; run: the command's own.`;

/** What help adds after a flag's text: its default, the setting and variable it shares a name with. */
export function flagNote(flag: FlagDeclaration): string {
  const parts = [
    ...flag.default !== undefined ? [`default: ${flag.default}`] : [],
    ...flag.setting !== undefined ? [`config "${flag.setting}"`] : [],
    ...flag.env !== undefined ? [`env ${flag.env}`] : [],
  ];
  return parts.length ? ` (${parts.join("; ")})` : "";
}

/** Help lines are kept to this width where they can be: a note too long goes on a line of its own. */
const HELP_WIDTH = 100;

function optionLines(flags: readonly FlagDeclaration[]): string[] {
  const width = Math.max(...flags.map((flag) => flagLabel(flag).length));
  return flags.flatMap((flag) => {
    const line = `  ${flagLabel(flag).padEnd(width)}   ${flagHelp(flag)}`;
    const note = flagNote(flag);
    return line.length + note.length <= HELP_WIDTH
      ? [line + note]
      : [line, `${" ".repeat(width + 5)}${note.trimStart()}`];
  });
}

function deprecatedNames(flags: readonly FlagDeclaration[]): string[] {
  return flags.flatMap((flag) =>
    (flag.deprecated ?? []).map((old) => `--${old} (use --${flag.name})`)
  );
}

/** The main `--help`: commands, exit codes, global options. */
export function mainHelp(
  commands: readonly CommandDeclaration[],
  globals: readonly FlagDeclaration[],
  version: string,
): string {
  const width = Math.max(...commands.map((c) => `${c.name} ${c.operands}`.length));
  return [
    `resource-locker ${version}: locks on network hosts, compatible with the PowerShell module ResourceLocker`,
    "",
    "Usage: resource-locker <command> [options]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${`${c.name} ${c.operands}`.padEnd(width)}   ${c.summary}`),
    "",
    EXIT_CODES,
    "",
    "Global options:",
    ...optionLines(globals),
    "",
    'Run "resource-locker <command> --help" for a command\'s options.',
  ].join("\n");
}

/** A command's `--help`: usage, what it does, its options, the global options. */
export function commandHelp(
  command: CommandDeclaration,
  globals: readonly FlagDeclaration[],
): string {
  const all = [...command.flags, ...globals];
  const deprecated = deprecatedNames(all);
  return [
    `Usage: resource-locker ${usageOf(command)}`,
    "",
    command.description,
    ...command.flags.length ? ["", "Options:", ...optionLines(command.flags)] : [],
    "",
    "Global options:",
    ...optionLines(globals),
    ...all.some((flag) => flag.value === "TIME") ? ["", TIME_NOTE] : [],
    ...deprecated.length ? ["", `Old names, still accepted: ${deprecated.join(", ")}.`] : [],
  ].join("\n");
}

// ---------------------------------------------------------------------------
// The README's reference

/** The first line of the README's generated reference. */
export const README_BEGIN =
  "<!-- Generated from cli/commands.ts by `deno task readme`; tests/cli_table_test.ts checks it. -->";
/** The line after it. */
export const README_END = "<!-- End of the generated reference. -->";

/** Text for a Markdown table cell: what Markdown would read as markup is escaped. */
function cell(text: string): string {
  return text.replace(/[\\|*_<>[\]`]/g, (char) => `\\${char}`);
}

function code(text: string): string {
  return `\`${text}\``;
}

function table(header: string[], rows: string[][]): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(3, ...all.map((row) => row[i]!.length)));
  const line = (row: string[]) => `| ${row.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)];
}

/** One row per distinct flag declaration, with the commands that take it. */
function flagRows(
  commands: readonly CommandDeclaration[],
  globals: readonly FlagDeclaration[],
): { flag: FlagDeclaration; commands: string[] }[] {
  const rows: { flag: FlagDeclaration; commands: string[] }[] = globals.map((flag) => ({
    flag,
    commands: ["all"],
  }));
  const byDeclaration = new Map<string, { flag: FlagDeclaration; commands: string[] }>();
  for (const command of commands) {
    for (const flag of command.flags) {
      const key = JSON.stringify([flagLabel(flag), flagHelp(flag), flag.default, flag.setting]);
      let row = byDeclaration.get(key);
      if (!row) {
        row = { flag, commands: [] };
        byDeclaration.set(key, row);
        rows.push(row);
      }
      row.commands.push(command.name);
    }
  }
  return rows;
}

/**
 * The README's command-line reference: every command's usage and summary,
 * every flag with the commands taking it, its default, and the setting and
 * environment variable of the same name; then the old names still accepted.
 * Formatted as `deno fmt` leaves it.
 */
export function readmeReference(
  commands: readonly CommandDeclaration[],
  globals: readonly FlagDeclaration[],
): string {
  const usages = commands.map((c) => `resource-locker ${usageOf(c)}`);
  const width = Math.max(...usages.map((u) => u.length));
  const flags = flagRows(commands, globals).map(({ flag, commands }) => [
    code(flagLabel(flag)),
    commands.join(", "),
    cell(flagHelp(flag)),
    flag.default !== undefined ? cell(flag.default) : "",
    [...flag.setting ? [code(flag.setting)] : [], ...flag.env ? [code(flag.env)] : []].join(", "),
  ]);
  const renamed = [
    ...[...globals, ...commands.flatMap((c) => c.flags)].flatMap((flag) =>
      (flag.deprecated ?? []).map((old) => [code(`--${old}`), code(`--${flag.name}`), "flag"])
    ),
    ...[...RENAMED_SETTINGS].map(([old, now]) => [code(old), code(now), "setting"]),
  ];
  const unique = [...new Map(renamed.map((row) => [row.join("|"), row])).values()];
  return [
    README_BEGIN,
    "",
    "```",
    ...commands.map((c, i) => `${usages[i]!.padEnd(width)}   ${c.summary}`),
    "```",
    "",
    ...table(["option", "commands", "what it does", "default", "config, environment"], flags),
    "",
    "Old names, still accepted, each with one deprecation line on stderr:",
    "",
    ...table(["old name", "name", "of a"], unique),
    "",
    README_END,
  ].join("\n");
}
