/**
 * Shell completion scripts for bash, zsh, fish and PowerShell, written from
 * the declarations: commands with their summaries, each command's flags
 * (old names left out), the values a flag takes (`--type`, `--format`),
 * files where a flag or operand is a path, and after `run … --` the
 * command to run.
 *
 * @module
 */

import type { CommandDeclaration, FlagDeclaration } from "./command.ts";

/** The shells {@linkcode completionScript} writes for. */
export const SHELLS = ["bash", "zsh", "fish", "powershell"] as const;
/** One of {@linkcode SHELLS}. */
export type Shell = typeof SHELLS[number];

const NAME = "resource-locker";

function longNames(flags: readonly FlagDeclaration[]): string[] {
  return flags.flatMap((f) => [`--${f.name}`, ...f.short ? [`-${f.short}`] : []]);
}

/** Every name a flag is written with, old ones too (so a value after `--file` is still a file). */
function allNames(flag: FlagDeclaration): string[] {
  return [
    `--${flag.name}`,
    ...(flag.deprecated ?? []).map((old) => `--${old}`),
    ...flag.short ? [`-${flag.short}`] : [],
  ];
}

// ---------------------------------------------------------------------------
// bash

function bashValueCases(flags: readonly FlagDeclaration[], indent: string): string[] {
  const lines: string[] = [];
  const free: string[] = [];
  for (const flag of flags) {
    if (!flag.value) continue;
    const names = allNames(flag).join("|");
    if (flag.choices) {
      lines.push(`${names}) _resource_locker_words "${flag.choices.join(" ")}"; return ;;`);
    } else if (flag.file) lines.push(`${names}) _resource_locker_files; return ;;`);
    else free.push(...allNames(flag));
  }
  if (free.length) lines.push(`${free.join("|")}) return ;;`);
  return lines.map((line) => indent + line);
}

function bashScript(
  commands: readonly CommandDeclaration[],
  globals: readonly FlagDeclaration[],
): string {
  const globalValueNames = globals.filter((f) => f.value).flatMap(allNames).join("|");
  const cases = commands.flatMap((command) => {
    const flags = [...command.flags, ...globals];
    const operands = command.completeOperands === "file"
      ? "_resource_locker_files"
      : command.completeOperands
      ? `_resource_locker_words "${command.completeOperands.join(" ")}"`
      : ":";
    return [
      `    ${command.name})`,
      "      case $prev in",
      ...bashValueCases(flags, "        "),
      "      esac",
      `      if [[ $cur == -* ]]; then _resource_locker_words "${longNames(flags).join(" ")}"`,
      `      else ${operands}; fi`,
      "      ;;",
    ];
  });
  return `# bash completion for ${NAME}, written by "${NAME} completions bash".
# Load it in ~/.bashrc:  source <(${NAME} completions bash)

_resource_locker_words() {
  mapfile -t COMPREPLY < <(compgen -W "$1" -- "$cur")
}

_resource_locker_files() {
  compopt -o filenames 2>/dev/null
  mapfile -t COMPREPLY < <(compgen -f -- "$cur")
}

_resource_locker() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} command= i
  COMPREPLY=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    case \${COMP_WORDS[i]} in
      --)
        [[ $command == run ]] || return
        if ((COMP_CWORD == i + 1)); then mapfile -t COMPREPLY < <(compgen -c -- "$cur")
        else _resource_locker_files; fi
        return ;;
      ${globalValueNames}) [[ -z $command ]] && ((i++)) ;;
      -*) ;;
      *) [[ -z $command ]] && command=\${COMP_WORDS[i]} ;;
    esac
  done
  case $command in
    "")
      case $prev in
${bashValueCases(globals, "        ").join("\n")}
      esac
      if [[ $cur == -* ]]; then _resource_locker_words "${longNames(globals).join(" ")}"
      else _resource_locker_words "${commands.map((c) => c.name).join(" ")}"; fi
      ;;
${cases.join("\n")}
  esac
}

complete -F _resource_locker ${NAME}`;
}

// ---------------------------------------------------------------------------
// zsh

/** Text for a zsh `_arguments` description inside single quotes. */
function zshText(text: string): string {
  return text.replace(/[\\[\]:]/g, (char) => `\\${char}`).replace(/'/g, `'\\''`);
}

function zshFlag(flag: FlagDeclaration): string {
  const help = zshText(flag.help);
  const value = !flag.value
    ? ""
    : `:${zshText(flag.value.toLowerCase())}:${
      flag.choices ? `(${flag.choices.join(" ")})` : flag.file ? "_files" : " "
    }`;
  const long = `--${flag.name}${flag.value ? "=" : ""}`;
  if (flag.short) {
    return `'(-${flag.short} --${flag.name})'{-${flag.short},${long}}'[${help}]${value}'`;
  }
  return `'${long}[${help}]${value}'`;
}

function zshScript(
  commands: readonly CommandDeclaration[],
  globals: readonly FlagDeclaration[],
): string {
  const cases = commands.map((command) => {
    const operand = command.completeOperands === "file"
      ? "'*:path:_files'"
      : command.completeOperands
      ? `'1:${zshText(command.operands.replace(/[<>]/g, ""))}:(${
        command.completeOperands.join(" ")
      })'`
      : `'*:${zshText(command.operands.replace(/[<>.|-]/g, "").trim() || "operand")}: '`;
    const specs = [
      ...command.flags.map(zshFlag),
      ...command.rest ? ["'1:host: '", "'*::command:_normal'"] : [operand],
    ];
    return `      (${command.name}) _arguments -s $globals ${specs.join(" ")} && ret=0 ;;`;
  });
  return `#compdef ${NAME}
# zsh completion for ${NAME}, written by "${NAME} completions zsh".
# Load it in ~/.zshrc after compinit:  source <(${NAME} completions zsh)
# or save it as _${NAME} in a folder of $fpath.

_resource_locker() {
  local curcontext=$curcontext state line ret=1
  local -a globals commands
  globals=(
${globals.map((flag) => `    ${zshFlag(flag)}`).join("\n")}
  )
  commands=(
${commands.map((c) => `    '${c.name}:${zshText(c.summary)}'`).join("\n")}
  )
  _arguments -C -s $globals '1:command:->command' '*::argument:->argument' && ret=0
  case $state in
    (command) _describe -t commands command commands && ret=0 ;;
    (argument)
      curcontext=\${curcontext%:*:*}:${NAME}-$words[1]:
      case $words[1] in
${cases.join("\n")}
      esac ;;
  esac
  return ret
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _resource_locker "$@"
else
  compdef _resource_locker ${NAME}
fi`;
}

// ---------------------------------------------------------------------------
// fish

/** Text inside fish single quotes. */
function fishText(text: string): string {
  return `'${text.replace(/[\\']/g, (char) => `\\${char}`)}'`;
}

function fishFlag(flag: FlagDeclaration, condition: string): string {
  const parts = [`complete -c ${NAME}`];
  if (condition) parts.push(`-n ${fishText(condition)}`);
  if (flag.short) parts.push(`-s ${flag.short}`);
  parts.push(`-l ${flag.name}`);
  if (flag.value) {
    if (flag.choices) parts.push(`-x -a ${fishText(flag.choices.join(" "))}`);
    else if (flag.file) parts.push("-r -F");
    else parts.push("-x");
  }
  parts.push(`-d ${fishText(flag.help)}`);
  return parts.join(" ");
}

function fishScript(
  commands: readonly CommandDeclaration[],
  globals: readonly FlagDeclaration[],
): string {
  const names = commands.map((c) => c.name).join(" ");
  const noCommand = `not __fish_seen_subcommand_from ${names}`;
  const lines = [
    `# fish completion for ${NAME}, written by "${NAME} completions fish".`,
    `# Save it:  ${NAME} completions fish > ~/.config/fish/completions/${NAME}.fish`,
    "",
    `complete -c ${NAME} -f`,
    ...commands.map((c) =>
      `complete -c ${NAME} -n ${fishText(noCommand)} -a ${c.name} -d ${fishText(c.summary)}`
    ),
    ...globals.map((flag) => fishFlag(flag, "")),
  ];
  for (const command of commands) {
    const on = `__fish_seen_subcommand_from ${command.name}`;
    lines.push(...command.flags.map((flag) => fishFlag(flag, on)));
    if (command.completeOperands === "file") {
      lines.push(`complete -c ${NAME} -n ${fishText(on)} -F`);
    } else if (command.completeOperands) {
      lines.push(
        `complete -c ${NAME} -n ${fishText(on)} -a ${fishText(command.completeOperands.join(" "))}`,
      );
    }
    if (command.rest) {
      lines.push(
        `complete -c ${NAME} -n ${
          fishText(`${on}; and contains -- -- (commandline -opc)`)
        } -a '(__fish_complete_command)'`,
      );
    }
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------
// PowerShell

/** Text inside PowerShell single quotes. */
function psText(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

function psFlags(flags: readonly FlagDeclaration[]): string {
  return `@(${
    flags.map((flag) =>
      `@{ n = ${psText(`--${flag.name}`)}; h = ${psText(flag.help)}; c = @(${
        (flag.choices ?? []).map(psText).join(", ")
      }) }`
    ).join(", ")
  })`;
}

function powershellScript(
  commands: readonly CommandDeclaration[],
  globals: readonly FlagDeclaration[],
): string {
  const valued = [...globals, ...commands.flatMap((c) => c.flags)].filter((f) => f.value);
  const aliases = [
    ...new Set(
      [...globals, ...commands.flatMap((c) => c.flags)].flatMap((flag) =>
        (flag.deprecated ?? []).map((old) => `${psText(`--${old}`)} = ${psText(`--${flag.name}`)}`)
      ),
    ),
  ];
  return `# PowerShell completion for ${NAME}, written by "${NAME} completions powershell".
# Load it in $PROFILE:  ${NAME} completions powershell | Out-String | Invoke-Expression

Register-ArgumentCompleter -Native -CommandName ${NAME} -ScriptBlock {
  param($wordToComplete, $commandAst, $cursorPosition)
  # Each command: summary, flags, operand values; each flag: name, help, the values it takes.
  $globals = ${psFlags(globals)}
  $commands = [ordered]@{
${
    commands.map((c) =>
      `    ${psText(c.name)} = @{ s = ${psText(c.summary)}; f = ${psFlags(c.flags)}; o = @(${
        Array.isArray(c.completeOperands) ? c.completeOperands.map(psText).join(", ") : ""
      }) }`
    ).join("\n")
  }
  }
  $globalValues = @(${globals.filter((f) => f.value).flatMap(allNames).map(psText).join(", ")})
  $valued = @(${[...new Set(valued.flatMap(allNames))].map(psText).join(", ")})
  $aliases = @{ ${aliases.join("; ")} }
  $words = @($commandAst.CommandElements | Where-Object { $_.Extent.StartOffset -lt $cursorPosition } |
    ForEach-Object { $_.Extent.Text })
  if ($wordToComplete -ne '' -and $words.Count -gt 0) { $words = @($words | Select-Object -SkipLast 1) }
  $command = $null
  for ($i = 1; $i -lt $words.Count; $i++) {
    $word = $words[$i]
    if ($word -eq '--') { return }
    if ($null -eq $command -and $globalValues -contains $word) { $i++; continue }
    if ($word.StartsWith('-')) { continue }
    if ($null -eq $command) { $command = $word }
  }
  $flags = $globals
  $operands = @()
  if ($null -ne $command) {
    if (-not $commands.Contains($command)) { return }
    $flags = @($commands[$command].f) + @($globals)
    $operands = @($commands[$command].o)
  }
  $previous = if ($words.Count -gt 1) { $words[-1] } else { '' }
  if ($aliases.ContainsKey($previous)) { $previous = $aliases[$previous] }
  if ($valued -contains $previous) {
    foreach ($flag in $flags) {
      if ($flag.n -eq $previous) {
        foreach ($value in $flag.c) {
          if ($value.StartsWith($wordToComplete)) {
            [System.Management.Automation.CompletionResult]::new($value, $value, 'ParameterValue', $value)
          }
        }
      }
    }
    return
  }
  if ($wordToComplete.StartsWith('-')) {
    foreach ($flag in $flags) {
      if ($flag.n.StartsWith($wordToComplete)) {
        [System.Management.Automation.CompletionResult]::new($flag.n, $flag.n, 'ParameterName', $flag.h)
      }
    }
  } elseif ($null -eq $command) {
    foreach ($name in $commands.Keys) {
      if ($name.StartsWith($wordToComplete)) {
        [System.Management.Automation.CompletionResult]::new($name, $name, 'Command', $commands[$name].s)
      }
    }
  } else {
    foreach ($value in $operands) {
      if ($value.StartsWith($wordToComplete)) {
        [System.Management.Automation.CompletionResult]::new($value, $value, 'ParameterValue', $value)
      }
    }
  }
}`;
}

/**
 * The completion script of `shell` for these commands.
 *
 * @param shell bash, zsh, fish or powershell
 * @param commands the declarations
 * @param globals the flags every command takes
 * @returns the script, to be sourced (bash, zsh, PowerShell) or saved (fish)
 */
export function completionScript(
  shell: Shell,
  commands: readonly CommandDeclaration[],
  globals: readonly FlagDeclaration[],
): string {
  switch (shell) {
    case "bash":
      return bashScript(commands, globals);
    case "zsh":
      return zshScript(commands, globals);
    case "fish":
      return fishScript(commands, globals);
    case "powershell":
      return powershellScript(commands, globals);
  }
}
