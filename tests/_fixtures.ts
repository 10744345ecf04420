/**
 * Lock files as the PowerShell module ResourceLocker leaves them, built byte
 * by byte: Windows PowerShell 5.1 (ANSI code page, CRLF, its pretty print with
 * two spaces after the colon), PowerShell 7 (UTF-8 without BOM), UTF-16 LE
 * with BOM (`-Encoding Unicode`), UTF-8 with BOM, and the two intermediate
 * states of the original's two-step write (an empty file, then a file holding
 * only the caller name: `New-Item -Value $CallerName`).
 *
 * @module
 */

import { concatBytes } from "../src/_bytes.ts";

/** Ticks of a PowerShell `(Get-Date).Ticks`; above 2^53, not a double, so only an exact reader keeps it. */
export const PS_LOCKED_AT = 639317187537041237n;

/** Caller name with characters of the Windows-1252 code page. */
export const PS_CALLER = "Gérard Dupré";

/** Description with Windows-1252 characters outside Latin-1 (en dash 0x96, euro 0x80). */
export const PS_DESCRIPTION = "Wartung – Köln €5";

/** A field of a PowerShell lock file, in the order written. */
export type PsField = [name: string, value: string | bigint];

/** The fields the original writes: `LockedAt`, `Caller`, `Description` (hashtable order). */
export function psFields(
  caller: string = PS_CALLER,
  description: string = PS_DESCRIPTION,
): PsField[] {
  return [
    ["LockedAt", PS_LOCKED_AT],
    ["Caller", caller],
    ["Description", description],
  ];
}

const CP1252_HIGH: Record<string, number> = {
  "€": 0x80,
  "‚": 0x82,
  "ƒ": 0x83,
  "„": 0x84,
  "…": 0x85,
  "†": 0x86,
  "‡": 0x87,
  "ˆ": 0x88,
  "‰": 0x89,
  "Š": 0x8a,
  "‹": 0x8b,
  "Œ": 0x8c,
  "Ž": 0x8e,
  "‘": 0x91,
  "’": 0x92,
  "“": 0x93,
  "”": 0x94,
  "•": 0x95,
  "–": 0x96,
  "—": 0x97,
  "˜": 0x98,
  "™": 0x99,
  "š": 0x9a,
  "›": 0x9b,
  "œ": 0x9c,
  "ž": 0x9e,
  "Ÿ": 0x9f,
};

/**
 * Encodes text in the Windows-1252 code page (the ANSI code page of western
 * Windows), as Windows PowerShell 5.1's `Set-Content` does.
 *
 * @throws {RangeError} for a character the code page lacks
 */
export function encodeWindows1252(text: string): Uint8Array {
  const bytes: number[] = [];
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (code < 0x80 || (code >= 0xa0 && code <= 0xff)) bytes.push(code);
    else if (CP1252_HIGH[char] !== undefined) bytes.push(CP1252_HIGH[char]);
    else throw new RangeError(`Not in Windows-1252: ${JSON.stringify(char)}`);
  }
  return new Uint8Array(bytes);
}

/** Encodes text as UTF-16 little endian, without a BOM. */
export function encodeUtf16Le(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    bytes[2 * i] = unit & 0xff;
    bytes[2 * i + 1] = unit >> 8;
  }
  return bytes;
}

/** A JSON string literal as PowerShell writes it: non-ASCII characters left as they are. */
function psString(value: string): string {
  return JSON.stringify(value);
}

function psValue(value: string | bigint): string {
  return typeof value === "bigint" ? value.toString() : psString(value);
}

/**
 * `ConvertTo-Json` text of Windows PowerShell 5.1: four-space indent, two
 * spaces after the colon, CRLF, and the CRLF `Set-Content` appends.
 */
export function ps51Json(fields: readonly PsField[]): string {
  const lines = fields.map(([name, value], i) =>
    `    ${psString(name)}:  ${psValue(value)}${i < fields.length - 1 ? "," : ""}`
  );
  return `{\r\n${lines.join("\r\n")}\r\n}\r\n`;
}

/**
 * `ConvertTo-Json` text of PowerShell 7: two-space indent, one space after
 * the colon; LF line ends as PowerShell 7 writes them on Linux.
 */
export function ps7Json(fields: readonly PsField[]): string {
  const lines = fields.map(([name, value], i) =>
    `  ${psString(name)}: ${psValue(value)}${i < fields.length - 1 ? "," : ""}`
  );
  return `{\n${lines.join("\n")}\n}\n`;
}

/** Windows PowerShell 5.1, `Set-Content` default: ANSI code page (Windows-1252), CRLF. */
export function windowsPowerShell51Lock(
  fields: readonly PsField[] = psFields(),
): Uint8Array {
  return encodeWindows1252(ps51Json(fields));
}

/** PowerShell 7: UTF-8 without BOM. */
export function powerShell7Lock(
  fields: readonly PsField[] = psFields("Дмитрий Петров", "Обновление ОС"),
): Uint8Array {
  return new TextEncoder().encode(ps7Json(fields));
}

/** `-Encoding Unicode`: UTF-16 LE with BOM (a caller name outside Windows-1252). */
export function utf16LeBomLock(
  fields: readonly PsField[] = psFields("Łukasz Żółw", "Przegląd — 東京"),
): Uint8Array {
  return concatBytes([new Uint8Array([0xff, 0xfe]), encodeUtf16Le(ps51Json(fields))]);
}

/** Windows PowerShell 5.1 `-Encoding UTF8`: UTF-8 with BOM. */
export function utf8BomLock(
  fields: readonly PsField[] = psFields("José Núñez", "Patch ✓"),
): Uint8Array {
  return concatBytes([
    new Uint8Array([0xef, 0xbb, 0xbf]),
    new TextEncoder().encode(ps51Json(fields)),
  ]);
}

/** The first moment of the original's write: the file exists, empty. */
export function emptyLock(): Uint8Array {
  return new Uint8Array(0);
}

/** The original's first write step: `New-Item -Value $CallerName`, no newline. */
export function callerOnlyLock(caller = "Invoke-Maintenance"): Uint8Array {
  return encodeWindows1252(caller);
}

/** What a reader should see in a fixture. */
export interface FixtureExpectation {
  /** Content state: `ok`, `empty`, `partial`. */
  state: "ok" | "empty" | "partial";
  /** Caller name, when readable. */
  caller?: string;
  /** Description, when readable. */
  description?: string;
  /** The fields of the file, ticks as bigint; {} when there are none. */
  fields: Record<string, string | bigint>;
}

/** A fixture: its name, its bytes and what it holds. */
export interface Fixture {
  /** Short name for test names. */
  name: string;
  /** The file's bytes. */
  bytes: Uint8Array;
  /** What a reader should find. */
  expected: FixtureExpectation;
}

function okFixture(name: string, bytes: Uint8Array, fields: PsField[]): Fixture {
  const record = Object.fromEntries(fields);
  return {
    name,
    bytes,
    expected: {
      state: "ok",
      caller: record.Caller as string,
      description: record.Description as string,
      fields: record,
    },
  };
}

/** Every PowerShell fixture. */
export function psFixtures(): Fixture[] {
  return [
    okFixture(
      "Windows PowerShell 5.1 (ANSI, CRLF)",
      windowsPowerShell51Lock(),
      psFields(),
    ),
    okFixture(
      "PowerShell 7 (UTF-8 without BOM)",
      powerShell7Lock(),
      psFields("Дмитрий Петров", "Обновление ОС"),
    ),
    okFixture(
      "UTF-16 LE with BOM",
      utf16LeBomLock(),
      psFields("Łukasz Żółw", "Przegląd — 東京"),
    ),
    okFixture(
      "UTF-8 with BOM",
      utf8BomLock(),
      psFields("José Núñez", "Patch ✓"),
    ),
    {
      name: "empty file (first write step)",
      bytes: emptyLock(),
      expected: { state: "empty", fields: {} },
    },
    {
      name: "caller name only (New-Item -Value)",
      bytes: callerOnlyLock(),
      expected: {
        state: "partial",
        caller: "Invoke-Maintenance",
        fields: {},
      },
    },
  ];
}
