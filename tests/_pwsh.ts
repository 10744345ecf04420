/**
 * PowerShell 7 and the original PowerShell module ResourceLocker, for the
 * interoperability tests: finding `pwsh` and the module, a private copy of
 * the module whose `Config.ps1` points it at a test's store, and a PowerShell
 * session that runs one script after another.
 *
 * The session is one `pwsh -NoProfile -NonInteractive -Command …` process
 * (PowerShell takes a second or more to start, so a test starts one and sends
 * it every PowerShell step). Each step is a script sent on stdin; its output
 * comes back as one JSON line. A script can pause PowerShell in the middle of
 * a module function with a breakpoint whose action calls `Wait-Interop`: the
 * test sees the pause, looks at the store at that instant, and resumes it.
 *
 * The module's code is never copied into the project: the tests copy it from
 * `RESOURCE_LOCKER_PS_MODULE` or `../shared/reference/ResourceLocker` (next to
 * the repository) into a temporary folder at run time.
 *
 * @module
 */

import { join } from "node:path";
import { REPO_ROOT } from "./_cli_helpers.ts";

/** The PowerShell version the suite is written for (`.ci/run` installs it). */
export const PWSH_VERSION = "7.6.9";

import { underCi } from "./_helpers.ts";
export { underCi };

function isExecutable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** `pwsh` on PATH, else `~/.dotnet/tools/pwsh` (where `dotnet tool install --global` puts it). */
export function findPwsh(): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir && isExecutable(join(dir, "pwsh"))) return join(dir, "pwsh");
  }
  const home = Deno.env.get("HOME");
  if (home && isExecutable(join(home, ".dotnet", "tools", "pwsh"))) {
    return join(home, ".dotnet", "tools", "pwsh");
  }
  return undefined;
}

/** The original module's folder: `RESOURCE_LOCKER_PS_MODULE`, else `../shared/reference/ResourceLocker`. */
export function psModuleSource(): string {
  const named = Deno.env.get("RESOURCE_LOCKER_PS_MODULE");
  return named ? named : join(REPO_ROOT, "..", "shared", "reference", "ResourceLocker");
}

/** Why the interop suite cannot run here, or undefined when it can. */
export function pwshMissing(): string | undefined {
  const module = psModuleSource();
  const missing: string[] = [];
  if (!findPwsh()) {
    missing.push(
      `pwsh not found on PATH or in ~/.dotnet/tools (dotnet tool install --global PowerShell --version ${PWSH_VERSION})`,
    );
  }
  for (const file of ["ResourceLocker.psd1", "ResourceLocker.psm1"]) {
    try {
      Deno.statSync(join(module, file));
    } catch {
      missing.push(
        `the PowerShell module ResourceLocker is not at ${module} (no ${file}; set RESOURCE_LOCKER_PS_MODULE)`,
      );
      break;
    }
  }
  return missing.length ? missing.join("; ") : undefined;
}

let warned = false;
let shared: Promise<PwshSession> | undefined;

/**
 * The file's one PowerShell session, started on first use with `TZ` set as
 * given (PowerShell writes local-clock ticks) and killed when the file's
 * tests are over (`unload`). Each test imports its own module copy into it.
 */
export function sharedPwsh(env: Record<string, string> = {}): Promise<PwshSession> {
  if (!shared) {
    shared = PwshSession.start(env);
    shared.then(
      (session) => globalThis.addEventListener("unload", () => session.killSync()),
      () => {},
    );
  }
  return shared;
}

/**
 * `Deno.test` for a test that needs PowerShell 7 and the original module:
 * skipped with a visible message when either is missing, except under CI
 * (see {@linkcode underCi}), where the test fails naming what is missing.
 * The file's PowerShell session ({@linkcode sharedPwsh}) outlives each test,
 * so the op and resource sanitizers are off.
 */
export function pwshTest(name: string, fn: (t: Deno.TestContext) => Promise<void>): void {
  const missing = pwshMissing();
  if (missing === undefined) {
    Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false });
    return;
  }
  if (underCi()) {
    Deno.test(name, () => {
      throw new Error(
        `PowerShell interop needs pwsh and the module under CI (CI=${
          Deno.env.get("CI")
        }): ${missing}`,
      );
    });
    return;
  }
  if (!warned) {
    warned = true;
    console.warn(`%cSkipping PowerShell interop tests: ${missing}`, "color: yellow");
  }
  Deno.test({ name: `${name} (skipped: ${missing})`, ignore: true, fn });
}

/** A string as a PowerShell single-quoted literal. */
export function psQuote(text: string): string {
  return `'${text.replace(/['\u2018\u2019\u201a\u201b]/g, (c) => c + c)}'`;
}

/** The module-wide settings a test's `Config.ps1` sets (the ones of `Config-Example.ps1`). */
export interface PsModuleConfig {
  /** `$ModuleWideLockFolderPathTemplate`: the test's store, `<root>/{0}`. */
  store: string;
  /** `$ModuleWideResourceDependenciesFilePath`: a missing file means no dependencies. */
  dependencies: string;
  /** `$ModuleWideLockTimeout`, seconds between attempts. @default 0 (the original's 10 would make a refused lock take 20 s) */
  timeoutSeconds?: number;
  /** `$ModuleWideLockRetries`, attempts in all. @default 1 */
  retries?: number;
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.name === ".git" || entry.name === "Config.ps1") continue;
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory) await copyTree(source, target);
    else if (entry.isFile) await Deno.copyFile(source, target);
  }
}

/**
 * Copies the original module into `folder`/ResourceLocker and writes its
 * `Config.ps1` (which the module dot-sources after its defaults).
 *
 * @returns the path of the copy's `ResourceLocker.psd1`
 */
export async function installPsModule(folder: string, config: PsModuleConfig): Promise<string> {
  const target = join(folder, "ResourceLocker");
  await copyTree(psModuleSource(), target);
  await Deno.writeTextFile(
    join(target, "Config.ps1"),
    [
      "# Written by the interop tests: the settings of Config-Example.ps1, pointed at a test's store.",
      `[string]$ModuleWideResourceDependenciesFilePath = ${psQuote(config.dependencies)}`,
      `[int]$ModuleWideLockTimeout = ${config.timeoutSeconds ?? 0}`,
      `[int]$ModuleWideLockRetries = ${config.retries ?? 1}`,
      "[string]$ModuleWideLockHistoryFolderName = 'History'",
      "[string]$ModuleWideLockFileNameTemplate = '{0}.lock'",
      `[string]$ModuleWideLockFolderPathTemplate = ${psQuote(config.store)}`,
      "",
    ].join("\n"),
  );
  return join(target, "ResourceLocker.psd1");
}

/** A PowerShell step that threw: its exception's message and type. */
export class PwshError extends Error {
  /** The .NET type of the exception, e.g. `System.TimeoutException`. */
  readonly type: string;
  /** The script that threw. */
  readonly script: string;
  constructor(message: string, type: string, script: string) {
    super(message);
    this.name = "PwshError";
    this.type = type;
    this.script = script;
  }
}

/** What a step gave: its output (file objects as full paths), or the error it threw. */
export type PwshResult =
  | { ok: true; output: unknown[] }
  | { ok: false; error: string; type: string };

/** How to run one step. */
export interface PwshRunOptions {
  /** Called when the script pauses in `Wait-Interop`; PowerShell resumes when it resolves. */
  onPause?: (value: unknown) => Promise<void> | void;
  /** Kills PowerShell when the step takes longer. @default 90000 */
  timeoutMs?: number;
}

const BOOTSTRAP = String.raw`
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = [Text.UTF8Encoding]::new($false)
function global:Send-InteropLine([string]$Tag, $Value) {
  [Console]::Out.WriteLine($Tag + ' ' + (ConvertTo-Json -InputObject $Value -Compress -Depth 8 -EscapeHandling EscapeNonAscii))
  [Console]::Out.Flush()
}
function global:Wait-Interop($Value) {
  Send-InteropLine '@@PAUSE' $Value
  $null = [Console]::In.ReadLine()
}
Send-InteropLine '@@READY' $PSVersionTable.PSVersion.ToString()
while ($null -ne ($line = [Console]::In.ReadLine())) {
  $script = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($line))
  try {
    $out = @(& ([scriptblock]::Create($script)) | ForEach-Object -Process {
      if ($_ -is [IO.FileSystemInfo]) { $_.FullName } else { $_ }
    })
    $result = [ordered]@{ ok = $true; output = $out }
  }
  catch {
    $result = [ordered]@{ ok = $false; error = $_.Exception.Message; type = $_.Exception.GetType().FullName }
  }
  Send-InteropLine '@@RESULT' $result
}
`;

/**
 * One PowerShell 7 process with the module imported, running the scripts it
 * is sent one after another (see the module documentation).
 */
export class PwshSession implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: string[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #stderr = "";
  readonly #noise: string[] = [];
  readonly #pumps: Promise<void>[];
  /** PowerShell's version, as `$PSVersionTable.PSVersion` says. */
  version = "";

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#pumps = [this.#pumpOut(), this.#pumpErr()];
  }

  /**
   * Starts `pwsh -NoProfile -NonInteractive -Command <bootstrap>`; import a
   * module copy with {@linkcode PwshSession.importModule}.
   *
   * @param env more environment (`TZ`, …)
   */
  static async start(env: Record<string, string> = {}): Promise<PwshSession> {
    const pwsh = findPwsh();
    if (!pwsh) throw new Error(pwshMissing());
    const child = new Deno.Command(pwsh, {
      args: ["-NoProfile", "-NonInteractive", "-Command", BOOTSTRAP],
      env: {
        POWERSHELL_TELEMETRY_OPTOUT: "1",
        POWERSHELL_UPDATECHECK: "Off",
        DOTNET_CLI_TELEMETRY_OPTOUT: "1",
        // Profile-guided JIT costs PowerShell's generated code a third of its CPU time here.
        DOTNET_TieredPGO: "0",
        ...env,
      },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const session = new PwshSession(child);
    try {
      const ready = await session.#next(120_000, "PowerShell to start and import the module");
      if (!ready.startsWith("@@READY ")) throw new Error(`unexpected first line: ${ready}`);
      session.version = JSON.parse(ready.slice(8));
    } catch (error) {
      await session.close();
      throw new Error(`${(error as Error).message}\n${session.#diagnostics()}`);
    }
    return session;
  }

  async #pumpOut(): Promise<void> {
    let buffer = "";
    const decoder = new TextDecoder();
    try {
      for await (const chunk of this.#child.stdout) {
        buffer += decoder.decode(chunk, { stream: true });
        let at;
        while ((at = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, at).replace(/\r$/, "");
          buffer = buffer.slice(at + 1);
          if (line.startsWith("@@")) this.#lines.push(line);
          else if (line.trim()) this.#noise.push(line);
          this.#wake?.();
        }
      }
    } finally {
      this.#ended = true;
      this.#wake?.();
    }
  }

  async #pumpErr(): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of this.#child.stderr) {
      this.#stderr += decoder.decode(chunk, { stream: true });
    }
  }

  #diagnostics(): string {
    return [
      this.#noise.length ? `PowerShell output:\n${this.#noise.slice(-20).join("\n")}` : "",
      this.#stderr ? `PowerShell stderr:\n${this.#stderr.slice(-4000)}` : "",
    ].filter(Boolean).join("\n");
  }

  async #next(timeoutMs: number, what: string): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.#lines.length === 0) {
      if (this.#ended) throw new Error(`PowerShell ended while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        this.#child.kill("SIGKILL");
        throw new Error(`PowerShell did not answer in ${timeoutMs} ms while waiting for ${what}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, Math.min(left, 1000));
      });
      clearTimeout(timer);
      this.#wake = undefined;
    }
    return this.#lines.shift()!;
  }

  async #send(text: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(text + "\n"));
  }

  /**
   * Runs a script in the session and returns what it gave, or the error it
   * threw (`$ErrorActionPreference` is `Stop`, so errors throw).
   */
  async try(script: string, options: PwshRunOptions = {}): Promise<PwshResult> {
    const bytes = new TextEncoder().encode(script);
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    await this.#send(btoa(binary));
    const timeoutMs = options.timeoutMs ?? 90_000;
    try {
      for (;;) {
        const line = await this.#next(timeoutMs, `the script: ${script.trim().split("\n")[0]}`);
        if (line.startsWith("@@PAUSE ")) {
          try {
            await options.onPause?.(JSON.parse(line.slice(8)));
          } finally {
            await this.#send("go");
          }
          continue;
        }
        if (!line.startsWith("@@RESULT ")) throw new Error(`unexpected line: ${line}`);
        const result = JSON.parse(line.slice(9));
        return result.ok
          ? { ok: true, output: result.output ?? [] }
          : { ok: false, error: String(result.error), type: String(result.type) };
      }
    } catch (error) {
      if (error instanceof Error && !error.message.includes("PowerShell stderr")) {
        error.message += `\n${this.#diagnostics()}`;
      }
      throw error;
    }
  }

  /**
   * Runs a script in the session and returns its output.
   *
   * @throws {PwshError} when the script threw
   */
  async run(script: string, options: PwshRunOptions = {}): Promise<unknown[]> {
    const result = await this.try(script, options);
    if (!result.ok) throw new PwshError(result.error, result.type, script);
    return result.output;
  }

  /**
   * Imports a module copy (see {@linkcode installPsModule}) in place of the
   * one imported before: the module runs again, with the copy's `Config.ps1`.
   */
  async importModule(manifest: string): Promise<void> {
    await this.run(
      `Get-PSBreakpoint | Remove-PSBreakpoint
Remove-Module -Name ResourceLocker -Force -ErrorAction SilentlyContinue
Import-Module -Name ${psQuote(manifest)} -Force`,
    );
  }

  /** Kills PowerShell now (for an `unload` handler, where nothing can be awaited). */
  killSync(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already ended
    }
  }

  /** Ends PowerShell (end of input), killing it if it does not end within 10 s. */
  async close(): Promise<void> {
    try {
      await this.#writer.close();
    } catch {
      // already closed or PowerShell gone
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // already ended
      }
    }, 10_000);
    try {
      await this.#child.status;
      await Promise.allSettled(this.#pumps);
    } finally {
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
