/**
 * Where the command line's output goes: the {@linkcode Io} a command writes
 * to, the one filter every output passes ({@linkcode terminalIo}), and the
 * process's own stdin, stdout and stderr ({@linkcode processIo}).
 *
 * @module
 */

import { escapeControl, escapeJson, maskSecrets, truncate } from "../src/_text.ts";

/**
 * What a command needs to talk to the world. The command line uses the
 * process's streams; tests and scripts pass their own to run it in-process.
 */
export interface Io {
  /** Writes one line (or several, joined by `\n`) to stdout. */
  out(text: string): void;
  /** Writes one line to stderr. */
  err(text: string): void;
  /** Reads all of stdin (for `unlock -`). */
  stdin(): Promise<string>;
  /** Writes a JSON document to stdout; `out` when absent. */
  outJson?(text: string): void;
}

/** Longest line written to stderr; a message quoting a huge lock file is cut. */
const MAX_ERR_LINE = 1000;
/** Longest line written to stdout in text form (table cells are cut before). */
const MAX_OUT_LINE = 4000;

/**
 * The one way out to the terminal. Every output passes here once, so no
 * command can forget it: secrets are masked everywhere (text, JSON,
 * `--verbose`, errors); text has control characters shown instead of sent
 * and over-long lines cut, and each `err` call stays one line; a JSON
 * document keeps its values exactly (only escapes JSON reads back the same).
 */
export function terminalIo(io: Io): Io {
  return {
    out: (text) =>
      io.out(
        text.split("\n").map((line) => escapeControl(truncate(maskSecrets(line), MAX_OUT_LINE)))
          .join("\n"),
      ),
    err: (text) => io.err(escapeControl(truncate(maskSecrets(text), MAX_ERR_LINE))),
    outJson: (text) => io.out(escapeJson(maskSecrets(text))),
    stdin: () => io.stdin(),
  };
}

/** The process's stdin, stdout and stderr, written synchronously line by line. */
export function processIo(): Io {
  const encoder = new TextEncoder();
  return {
    out: (text) => void Deno.stdout.writeSync(encoder.encode(text + "\n")),
    err: (text) => void Deno.stderr.writeSync(encoder.encode(text + "\n")),
    stdin: async () =>
      new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer()),
  };
}

/** Prints a `--json` document: `"version": 1` first, then the fields. */
export function printJson(io: Io, document: Record<string, unknown>): void {
  const text = JSON.stringify({ version: 1, ...document }, null, 2);
  if (io.outJson) io.outJson(text);
  else io.out(text);
}
