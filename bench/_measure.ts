/**
 * Measuring helpers for the benchmarks: interleaved runs of a subject and
 * its baseline (so machine noise hits both alike), medians, spread, ratios.
 *
 * @module
 */

/** Timings of one side, in milliseconds. */
export interface Sample {
  /** Runs measured (after warm-up). */
  runs: number;
  /** Median. */
  median: number;
  /** Fastest. */
  min: number;
  /** Slowest. */
  max: number;
  /** Interquartile range relative to the median. */
  spread: number;
}

/** One benchmark figure: subject against baseline. */
export interface Figure {
  /** Section id, e.g. "local-overhead". */
  id: string;
  /** What the subject is. */
  subject: string;
  /** What the baseline is. */
  baseline: string;
  /** Subject timings. */
  subjectSample: Sample;
  /** Baseline timings. */
  baselineSample: Sample;
  /** subject median / baseline median; NaN (null in JSON) where that means nothing. */
  ratio: number;
  /** Target ratio, when the issue sets one. */
  target?: number;
  /** Unit the samples are in. */
  unit: "ms" | "KiB";
  /** How it was measured. */
  method: string;
  /** Extra numbers (time per host, and so on). */
  extra?: Record<string, number>;
}

/** Summarises numbers. */
export function sample(values: number[]): Sample {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1) + 0.5))]!;
  const median = at(0.5);
  return {
    runs: values.length,
    median,
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    spread: median > 0 ? (at(0.75) - at(0.25)) / median : 0,
  };
}

/**
 * Times `subject` and `baseline` alternately, `runs` times each after
 * `warmup` runs of each.
 */
export async function compare(
  subject: () => Promise<unknown>,
  baseline: () => Promise<unknown>,
  runs: number,
  warmup = 3,
): Promise<{ subject: Sample; baseline: Sample }> {
  for (let i = 0; i < warmup; i++) {
    await baseline();
    await subject();
  }
  const s: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? [0, 1] : [1, 0];
    for (const which of order) {
      const start = performance.now();
      await (which === 0 ? subject() : baseline());
      (which === 0 ? s : b).push(performance.now() - start);
    }
  }
  return { subject: sample(s), baseline: sample(b) };
}

/** Builds a figure from a comparison. */
export function figure(
  init: Omit<Figure, "subjectSample" | "baselineSample" | "ratio">,
  result: { subject: Sample; baseline: Sample },
): Figure {
  return {
    ...init,
    subjectSample: result.subject,
    baselineSample: result.baseline,
    ratio: result.subject.median / result.baseline.median,
  };
}

/** Prints figures as a table. */
export function printTable(figures: Figure[]): void {
  const rows = [["figure", "subject", "baseline", "ratio", "target", "runs", "spread s/b"]];
  for (const f of figures) {
    const fmt = (s: Sample) =>
      f.unit === "ms" ? `${s.median.toFixed(3)} ms` : `${Math.round(s.median)} KiB`;
    rows.push([
      f.id,
      fmt(f.subjectSample),
      fmt(f.baselineSample),
      Number.isFinite(f.ratio) ? `${f.ratio.toFixed(2)}x` : "-",
      f.target === undefined ? "-" : `<= ${f.target}x ${f.ratio <= f.target ? "met" : "MISSED"}`,
      String(f.subjectSample.runs),
      `${(f.subjectSample.spread * 100).toFixed(0)}%/${
        (f.baselineSample.spread * 100).toFixed(0)
      }%`,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join("  "));
  for (const f of figures) {
    if (f.extra) {
      console.log(
        `  ${f.id}: ${
          Object.entries(f.extra).map(([k, v]) => `${k}=${Number(v.toFixed(4))}`).join(" ")
        }`,
      );
    }
  }
}

/** Runs a command `runs` times; returns wall times in ms and peak RSS in KiB (GNU time), when available. */
export async function timeCommand(
  cmd: string[],
  env: Record<string, string> = {},
): Promise<{ ms: number; rssKiB?: number }> {
  const gnuTime = "/usr/bin/time";
  const useTime = await Deno.stat(gnuTime).then(() => true).catch(() => false);
  const args = useTime ? ["-f", "%M", ...cmd] : cmd.slice(1);
  const start = performance.now();
  const output = await new Deno.Command(useTime ? gnuTime : cmd[0]!, {
    args,
    env,
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - start;
  if (!output.success) {
    throw new Error(
      `${cmd.join(" ")} failed: ${new TextDecoder().decode(output.stderr).slice(-300)}`,
    );
  }
  if (!useTime) return { ms };
  const lines = new TextDecoder().decode(output.stderr).trim().split("\n");
  return { ms, rssKiB: Number(lines[lines.length - 1]) };
}

/**
 * Runs two commands alternately (which goes first alternates too, so drift
 * hits both alike) after warm-ups; returns the wall-time figure and, where
 * GNU time is present, the peak-RSS figure.
 */
export async function compareCommands(init: {
  id: string;
  subject: string;
  baseline: string;
  target?: number;
  subjectCmd: string[];
  baselineCmd: string[];
  env: Record<string, string>;
  runs: number;
  warmup?: number;
}): Promise<Figure[]> {
  const subject: { ms: number; rssKiB?: number }[] = [];
  const baseline: { ms: number; rssKiB?: number }[] = [];
  const warmup = init.warmup ?? 2;
  for (let i = 0; i < warmup; i++) {
    await timeCommand(init.subjectCmd, init.env);
    await timeCommand(init.baselineCmd, init.env);
  }
  for (let i = 0; i < init.runs; i++) {
    if (i % 2 === 0) {
      subject.push(await timeCommand(init.subjectCmd, init.env));
      baseline.push(await timeCommand(init.baselineCmd, init.env));
    } else {
      baseline.push(await timeCommand(init.baselineCmd, init.env));
      subject.push(await timeCommand(init.subjectCmd, init.env));
    }
  }
  const figures = [figure({
    id: init.id,
    subject: init.subject,
    baseline: init.baseline,
    ...init.target !== undefined ? { target: init.target } : {},
    unit: "ms",
    method: `${init.runs} interleaved process runs each after ${warmup} warm-ups, median wall time`,
  }, { subject: sample(subject.map((r) => r.ms)), baseline: sample(baseline.map((r) => r.ms)) })];
  if (subject[0]?.rssKiB !== undefined && baseline[0]?.rssKiB !== undefined) {
    figures.push(figure({
      id: `${init.id}-rss`,
      subject: `peak RSS of ${init.subject}`,
      baseline: `peak RSS of ${init.baseline}`,
      unit: "KiB",
      method: `${init.runs} runs each, GNU time %M, median`,
    }, {
      subject: sample(subject.map((r) => r.rssKiB!)),
      baseline: sample(baseline.map((r) => r.rssKiB!)),
    }));
  }
  return figures;
}

/**
 * The V8 flags the command line is run with wherever it is launched (the
 * `cli` and `compile` tasks, the README's install commands): every function
 * compiled at start-up, none after a wait.
 */
export const CLI_V8_FLAGS = "--v8-flags=--no-lazy";

/**
 * The permissions `deno task cli` grants and its V8 flags, for spawning the
 * command line as users run it.
 */
export const CLI_PERMISSIONS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-net",
  "--allow-run",
  CLI_V8_FLAGS,
];

/** Whether a program runs (`args` such as `--version` succeed). */
export async function canRun(
  program: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(program, {
      args,
      env,
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}
