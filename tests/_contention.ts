/**
 * Runs several contending processes (tests/_contender.ts) against one host
 * of a store and sums up what the independent oracle saw.
 *
 * @module
 */

/** What the contenders reported, summed. */
export interface ContentionResult {
  /** Locks taken in all. */
  acquired: number;
  /** Rounds that could not lock. */
  failed: number;
  /** Host rounds among them. */
  hostRounds: number;
  /** Overlaps the oracle saw, and lock failures. */
  violations: string[];
  /** Exit codes of the processes. */
  codes: number[];
}

/**
 * Starts `workers` processes, each taking `rounds` locks on `host`.
 *
 * @param options store template, host, counts, extra environment
 * @returns the summed result
 */
export async function runContention(options: {
  store: string;
  host: string;
  workers: number;
  rounds: number;
  holdMs?: number;
  env?: Record<string, string>;
  timeoutMs?: number;
}): Promise<ContentionResult> {
  const oracle = await Deno.makeTempDir({ prefix: "rl-oracle-" });
  const script = new URL("./_contender.ts", import.meta.url).pathname;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), options.timeoutMs ?? 120_000);
  try {
    const outputs = await Promise.all(
      Array.from({ length: options.workers }, (_, worker) =>
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            script,
            JSON.stringify({
              store: options.store,
              host: options.host,
              rounds: options.rounds,
              worker,
              oracle,
              holdMs: options.holdMs ?? 2,
            }),
          ],
          env: { NO_COLOR: "1", ...options.env },
          stdout: "piped",
          stderr: "piped",
          signal: abort.signal,
        }).output()),
    );
    const result: ContentionResult = {
      acquired: 0,
      failed: 0,
      hostRounds: 0,
      violations: [],
      codes: [],
    };
    for (const output of outputs) {
      result.codes.push(output.code);
      const text = new TextDecoder().decode(output.stdout).trim().split("\n").pop() ?? "";
      if (output.code !== 0 || !text.startsWith("{")) {
        result.violations.push(
          `worker exited ${output.code}: ${new TextDecoder().decode(output.stderr).slice(-500)}`,
        );
        continue;
      }
      const report = JSON.parse(text);
      result.acquired += report.acquired;
      result.failed += report.failed;
      result.hostRounds += report.hostRounds;
      result.violations.push(...report.violations);
    }
    return result;
  } finally {
    clearTimeout(timer);
    await Deno.remove(oracle, { recursive: true });
  }
}
