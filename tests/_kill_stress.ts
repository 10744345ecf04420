/**
 * The crash-and-race stress test of issue 9, written once and registered per
 * store (`kill_stress_test.ts`, `smb_kill_stress_test.ts`,
 * `etcd_kill_stress_test.ts`).
 *
 * A run is a few epochs. In each, six worker processes (`_kill_contender.ts`)
 * contend for one host with Host and Generic locks on a short lease (600 ms,
 * renewed every 200 ms by the lock object, 100 ms clock skew allowed), and
 * the parent kills them with SIGKILL:
 * - at random moments (half the time a worker that holds a lock), each
 *   replaced at once;
 * - deterministically inside the store's and the locker's critical steps:
 *   three more workers run with `RESOURCE_LOCKER_TEST_SEAM=<point>:<dir>`,
 *   each pauses at the first passage of its point and is killed there; the
 *   points are cycled, the least tried first (creation, renewal, release,
 *   break, back-off), and each run must kill inside creation, renewal and
 *   release;
 * - all at once at the end of the epoch, wherever they are.
 * After the mass kill, a probe process takes the Host lock: the host must be
 * free again within lease + skew of the last death, and every lock entry
 * left must be whole (JSON with a SessionId and an expiry).
 *
 * The oracle sits outside the tool: workers log what they did to their own
 * files (see `_kill_contender.ts`), the parent records kills, and a sampler
 * reads the store's entries independently (the folder on disk for the local
 * and SMB stores, etcd's HTTP gateway) every few tens of milliseconds.
 *
 * What the oracle checks, and why it is sound:
 * - **Exclusion.** A holding counts from `acquired` (A) until the earlier of
 *   `releasing` (R; never for a killed holder) and L + skew, where L is a
 *   lower bound of the lease the holder wrote last: the latest of the
 *   attempt's start (or its last retry) and the starts of its successful
 *   renewals, plus the lease. No two holdings of different sessions may
 *   overlap when either is a Host lock. Why a correct tool never shows one:
 *   to take the host past holder X, a taker must find X's lock gone or break
 *   it, and a break is compare-and-act on the version it judged; X's lock
 *   goes only by X's release (after R), or by a successful break, which needs
 *   `expiry + skew < now` and makes every later renewal of X fail. So a take
 *   before L + skew would need a break that succeeded before X's last
 *   successful renewal: impossible. This covers the killed holder (its
 *   holding runs until its lease and the skew ran out) and the slow holder
 *   whose lock looked expired for a moment and was then renewed: a taker
 *   whose break lost to that renewal must not go on as if it had won.
 *   Holdings a kill hid (killed before logging) make the check weaker, never
 *   wrong.
 * - **Liveness.** After the mass kill every lease the dead wrote ends by the
 *   last death + lease, so no check the probe starts after last death +
 *   lease + skew (+ a small margin) may find the host held: the probe
 *   reports each wait with the locks in its way, and a report that follows
 *   another one made after that bound proves such a check. A never-expiring
 *   leftover anywhere in the run (an empty file, a lock without a lease)
 *   fails it. How fast the probe gets through on a busy machine does not
 *   count; it is printed.
 * - **Whole entries.** Every lock entry the sampler reads parses as JSON with
 *   a SessionId and an ExpiresAtUtc. On SMB the server's folder is read
 *   underneath smbd, where a file being created by a compound request is
 *   empty for a moment that no SMB client can see (it is open without
 *   sharing): a bad entry counts there only when it stays the same for
 *   `badEntryGraceMs`.
 *
 * `KILL_STRESS_FAULT=steal` (the parent deletes live Host locks behind the
 * tool's back) or `=stuck` (it plants an empty Host.lock) show that the
 * oracle reports broken guarantees. `KILL_STRESS_SEED`, `KILL_STRESS_EPOCHS`
 * and `KILL_STRESS_EPOCH_MS` change the run.
 *
 * @module
 */

import { assertEquals, assertOk } from "./_assert.ts";
import { seededRandom as mulberry32 } from "./_helpers.ts";

/** One live entry of a host, read straight from the store. */
export interface RawEntry {
  /** Entry name, e.g. `Host.lock`. */
  name: string;
  /** Its bytes. */
  data: Uint8Array;
}

/** A store the stress suite runs on, with independent access to its entries. */
export interface KillStressStore extends AsyncDisposable {
  /** Folder template. */
  store: string;
  /** Extra environment for the workers (credentials). */
  env?: Record<string, string>;
  /** Live entries of a host (History excluded), read without the tool. */
  entries(host: string): Promise<RawEntry[]>;
  /** Contents of a host's History entries, read without the tool. */
  history(host: string): Promise<Uint8Array[]>;
  /** Fault injection: deletes an entry behind the tool's back. */
  removeEntry(host: string, name: string): Promise<void>;
  /** Fault injection: creates an entry if there is none; false when one exists. */
  createEntry(host: string, name: string, data: Uint8Array): Promise<boolean>;
}

/** Seam points a store's run kills workers at. */
export interface SeamPlan {
  /**
   * Groups of points, e.g. creation, renewal, release: every run must kill a
   * worker at a point of each group, or the test fails. Every point is tried,
   * the least tried first.
   */
  required: Record<string, string[]>;
  /** Points also tried, hit when the workload reaches them in time (breaks, back-offs). */
  optional: string[];
}

/** How a run goes. */
export interface KillStressOptions {
  /** Host contended for. @default "hv01" */
  host?: string;
  /** Worker processes at once, besides the seam worker. @default 6 */
  workers?: number;
  /** Epochs (contention, mass kill, probe). @default 3 */
  epochs?: number;
  /** Contention time of an epoch, in ms. @default 4000 */
  epochMs?: number;
  /** Lease, ms. @default 600 */
  ttlMs?: number;
  /** Clock skew allowed, ms. @default 100 */
  skewMs?: number;
  /** Overlap the oracle forgives: clock differences the tool does not see (SMB: the server-time offset each process measures). @default 0 */
  toleranceMs?: number;
  /** How long a bad entry must stay to count (see the module doc). @default 0 */
  badEntryGraceMs?: number;
  /** Slack of the liveness bound over lease + skew (clock reading and rounding). @default 100 */
  liveMarginMs?: number;
  /** Seam points to kill at. */
  seams: SeamPlan;
  /** Time between random kills, ms, drawn evenly from this range. @default [250, 800] */
  killEveryMs?: [number, number];
  /** Seam workers at once, besides the plain workers. @default 3 */
  seamSlots?: number;
  /** Warm workers kept waiting beyond those an epoch starts with. @default 2 */
  spares?: number;
  /** Seed; the run prints it. */
  seed?: number;
  /** Fault to inject (self-test of the oracle). */
  fault?: "steal" | "stuck";
}

/** What a run found. */
export interface KillStressReport {
  /** Broken guarantees. Empty when the tool held. */
  violations: string[];
  /** Facts worth reading, not failures. */
  notes: string[];
  /** Counts. */
  stats: Record<string, number>;
  /** Kills at each seam point that was reached. */
  seamHits: Record<string, number>;
  /** How long after lease + skew of the last death each probe got the host (negative: earlier). */
  probeLatenciesMs: number[];
  /** The seed. */
  seed: number;
  /** Wall time of the run, ms. */
  elapsedMs: number;
}

// ---------------------------------------------------------------------------
// The oracle: pure functions over the workers' logs and the parent's records.

/** A holding as the logs show it. */
export interface Holding {
  /** Worker id and holding number, for messages. */
  who: string;
  /** Lock type. */
  type: "Host" | "Generic";
  /** Session, when logged. */
  session?: string;
  /** `acquired` time. */
  acquiredAt: number;
  /** The create came after this (the call, or its last reported retry). */
  after: number;
  /** Start times of renewals that succeeded. */
  renewals: number[];
  /** `releasing` time, when logged. */
  releasingAt?: number;
  /** How the worker ended, for messages. */
  end?: string;
}

/** One log line of a worker. */
// deno-lint-ignore no-explicit-any
type LogEvent = { e: string; t: number; [key: string]: any };

/** Parses a worker's log, skipping a torn last line. */
export function parseLog(text: string): LogEvent[] {
  const events: LogEvent[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const event = JSON.parse(line);
      if (typeof event?.e === "string" && typeof event.t === "number") events.push(event);
    } catch {
      // a line the kill tore: nothing the worker acted on after it
    }
  }
  return events;
}

/** The holdings in one worker's log. */
export function holdingsOf(who: string, events: readonly LogEvent[], end?: string): Holding[] {
  const out: Holding[] = [];
  let current: Holding | undefined;
  for (const event of events) {
    if (event.e === "acquired") {
      current = {
        who: `${who}#${out.length + 1}`,
        type: event.type === "Host" ? "Host" : "Generic",
        acquiredAt: event.t,
        after: typeof event.after === "number" ? event.after : event.t,
        renewals: [],
        ...(typeof event.session === "string" ? { session: event.session } : {}),
      };
      out.push(current);
    } else if (event.e === "renewed" && current) {
      current.renewals.push(event.t);
    } else if (event.e === "releasing" && current) {
      current.releasingAt = event.t;
      current = undefined;
    }
  }
  if (current && end !== undefined) current.end = end;
  return out;
}

/** The window in which a holding is certainly in force (see the module doc). */
export function windowOf(
  h: Holding,
  ttlMs: number,
  skewMs: number,
): { start: number; end: number } {
  const lease = Math.max(h.after, ...h.renewals) + ttlMs;
  return { start: h.acquiredAt, end: Math.min(h.releasingAt ?? Infinity, lease + skewMs) };
}

/**
 * Pairs of holdings of different sessions in force at once where one is a
 * Host lock.
 * @returns one message per pair
 */
export function exclusionViolations(
  holdings: readonly Holding[],
  o: { ttlMs: number; skewMs: number; toleranceMs: number },
): string[] {
  const windows = holdings.map((h) => ({ h, ...windowOf(h, o.ttlMs, o.skewMs) }))
    .filter((w) => w.end > w.start)
    .sort((a, b) => a.start - b.start);
  const out: string[] = [];
  const iso = (t: number) => Number.isFinite(t) ? new Date(t).toISOString().slice(11, 23) : "∞";
  const show = (w: (typeof windows)[number]) =>
    `${w.h.type} holding ${w.h.who} [${iso(w.start)}, ${iso(w.end)}]${
      w.h.releasingAt === undefined
        ? ` (never released: ${w.h.end ?? "killed"}; lease lower bound ${
          iso(Math.max(w.h.after, ...w.h.renewals) + o.ttlMs)
        } + skew)`
        : ""
    }`;
  for (let i = 0; i < windows.length; i++) {
    const a = windows[i]!;
    for (let j = i + 1; j < windows.length && windows[j]!.start < a.end; j++) {
      const b = windows[j]!;
      if (a.h.type !== "Host" && b.h.type !== "Host") continue;
      if (a.h.session !== undefined && a.h.session === b.h.session) continue;
      const overlap = Math.min(a.end, b.end) - b.start;
      if (overlap <= o.toleranceMs) continue;
      out.push(`${show(b)} began while ${show(a)} was in force (${overlap} ms overlap)`);
    }
  }
  return out;
}

const LOCK_NAME = /^(Host|Generic-.+|File-.+)\.lock$/;

/** Why an entry is not a whole lock of ours, or undefined when it is. */
export function entryProblem(entry: RawEntry): string | undefined {
  if (!LOCK_NAME.test(entry.name)) return undefined; // not a lock (a temporary file)
  if (entry.data.length === 0) return "empty";
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(new TextDecoder("latin1").decode(entry.data));
  } catch {
    return `not JSON: ${JSON.stringify(new TextDecoder("latin1").decode(entry.data.slice(0, 80)))}`;
  }
  if (typeof parsed?.SessionId !== "string" || parsed.SessionId === "") return "no SessionId";
  if (typeof parsed.ExpiresAtUtc !== "string") return "no ExpiresAtUtc: it never expires";
  return undefined;
}

// ---------------------------------------------------------------------------
// The run.

import { underCi } from "./_helpers.ts";
export { underCi };

/** Files of a folder on disk as entries (folders and vanished files skipped). */
export async function folderEntries(dir: string): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  let names: string[];
  try {
    names = [];
    for await (const entry of Deno.readDir(dir)) if (entry.isFile) names.push(entry.name);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  for (const name of names) {
    try {
      out.push({ name, data: await Deno.readFile(`${dir}/${name}`) });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return out;
}

/** Points named in the sources (`seam("…")` and the local store's `pause("…")`). */
function seamPointsInSources(): Set<string> {
  const root = new URL("../src/", import.meta.url);
  const found = new Set<string>();
  const walk = (dir: URL) => {
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.isDirectory) walk(new URL(`${entry.name}/`, dir));
      else if (entry.name.endsWith(".ts")) {
        const text = Deno.readTextFileSync(new URL(entry.name, dir));
        for (const m of text.matchAll(/\bseam\(\s*"([a-z0-9_.-]+)"/g)) found.add(m[1]!);
        if (entry.name === "fs.ts") {
          for (const m of text.matchAll(/\bpause\(\s*"([a-z0-9_.-]+)"/g)) found.add(`fs.${m[1]}`);
        }
      }
    }
  };
  walk(root);
  return found;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const exists = (path: string) => Deno.stat(path).then(() => true, () => false);
const WORKER = new URL("./_kill_contender.ts", import.meta.url).pathname;

/** A worker process: warm and waiting (`standby`), or put to work. */
interface Proc {
  id: string;
  kind: "standby" | "work" | "seam" | "probe";
  log: string;
  goFile: string;
  child: Deno.ChildProcess;
  done: Promise<Deno.CommandOutput>;
  ready?: boolean;
  point?: string;
  seamDir?: string;
  /** How it ended: killed where, or exited with a code. */
  end?: string;
  killedAt?: number;
  reapedAt?: number;
}

function envNumber(name: string): number | undefined {
  const value = Deno.env.get(name);
  return value === undefined || value === "" ? undefined : Number(value);
}

/**
 * Runs the stress test on an open store.
 *
 * Workers are started ahead and wait warm (modules loaded, the store's
 * connection made) until the parent puts them to work: a killed worker is
 * replaced at once, whatever a process start costs on the store (loading the
 * SMB client takes a second or more on a busy two-core machine), and the
 * probe runs the moment the last worker is dead.
 *
 * @returns what the oracle found
 */
export async function runKillStress(
  s: KillStressStore,
  options: KillStressOptions,
): Promise<KillStressReport> {
  const host = options.host ?? "hv01";
  const workers = options.workers ?? 6;
  const epochs = envNumber("KILL_STRESS_EPOCHS") ?? options.epochs ?? 3;
  const epochMs = envNumber("KILL_STRESS_EPOCH_MS") ?? options.epochMs ?? 4000;
  const ttlMs = options.ttlMs ?? 600;
  const skewMs = options.skewMs ?? 100;
  const toleranceMs = options.toleranceMs ?? 0;
  const graceMs = options.badEntryGraceMs ?? 0;
  const liveMarginMs = options.liveMarginMs ?? 100;
  const seed = envNumber("KILL_STRESS_SEED") ?? options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const fault = (Deno.env.get("KILL_STRESS_FAULT") || options.fault) as
    | "steal"
    | "stuck"
    | undefined;
  const rand = mulberry32(seed);
  const started = Date.now();
  const dir = await Deno.makeTempDir({ prefix: "rl-kill-stress-" });
  const violations: string[] = [];
  const notes: string[] = [];
  const stats: Record<string, number> = {
    spawned: 0,
    randomKills: 0,
    randomKillsOfHolders: 0,
    seamKills: 0,
    seamMisses: 0,
    massKills: 0,
    transientBadEntries: 0,
  };
  const seamHits: Record<string, number> = {};
  /** Whether a worker died holding a lock (its final log ends in a holding). */
  let holderKilled = false;
  const probeLatenciesMs: number[] = [];
  const all: Proc[] = [];
  const alive = new Set<Proc>();
  const pool = new Set<Proc>();
  const seamSlots = options.seamSlots ?? 3;
  const poolSize = workers + seamSlots + (options.spares ?? 2);
  const [killMin, killMax] = options.killEveryMs ?? [250, 800];
  let next = 0;

  const inSources = seamPointsInSources();
  const seamOrder = [...Object.values(options.seams.required).flat(), ...options.seams.optional];
  for (const point of seamOrder) {
    if (!inSources.has(point)) {
      violations.push(`seam point "${point}" is not in src/ any more: update the suite's plan`);
    }
  }

  /** Starts a worker that warms up and waits for its go file. */
  function spawnStandby(): Proc {
    const id = `${++next}`;
    const log = `${dir}/${id}.log`;
    const goFile = `${dir}/${id}.go`;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        WORKER,
        JSON.stringify({
          store: s.store,
          host,
          log,
          ttlMs,
          skewMs,
          untilMs: started + 300_000, // a bound should the parent die; replaced on go
          seed: Math.floor(rand() * 2 ** 31),
          mode: "work",
          goFile,
        }),
      ],
      env: { NO_COLOR: "1", ...s.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const proc: Proc = { id, kind: "standby", log, goFile, child, done: child.output() };
    proc.done.then((out) => {
      alive.delete(proc);
      pool.delete(proc);
      proc.reapedAt ??= Date.now();
      proc.end ??= `exited with ${out.code}`;
    });
    all.push(proc);
    alive.add(proc);
    pool.add(proc);
    stats.spawned!++;
    return proc;
  }

  function refill(): void {
    while (pool.size < poolSize) spawnStandby();
  }

  /** A warm standby, taken out of the pool (which is refilled), or undefined at the deadline. */
  async function takeReady(deadline: number): Promise<Proc | undefined> {
    refill();
    for (;;) {
      for (const proc of [...pool]) {
        proc.ready ||= (await Deno.readTextFile(proc.log).catch(() => "")).includes('"e":"ready"');
        // Several callers take at once: it may have been taken during the read.
        if (proc.ready && alive.has(proc) && pool.has(proc)) {
          pool.delete(proc);
          refill();
          return proc;
        }
      }
      if (Date.now() >= deadline) return undefined;
      await sleep(10);
      refill();
    }
  }

  /** Puts a standby to work: its go file carries the settings (and the seam). */
  async function activate(
    proc: Proc,
    kind: Proc["kind"],
    go: Record<string, unknown>,
    point?: string,
  ): Promise<void> {
    proc.kind = kind;
    proc.id = `${kind === "work" ? "w" : kind === "seam" ? "s" : "p"}${proc.id}`;
    if (point) {
      proc.point = point;
      proc.seamDir = `${dir}/${proc.id}.seam`;
      await Deno.mkdir(proc.seamDir);
      go.seam = `${point}:${proc.seamDir}`;
    }
    await Deno.writeTextFile(`${proc.goFile}.tmp`, JSON.stringify(go));
    await Deno.rename(`${proc.goFile}.tmp`, proc.goFile);
  }

  async function kill(proc: Proc, why: string): Promise<void> {
    if (!alive.has(proc)) return;
    proc.killedAt = Date.now();
    proc.end = `killed ${why}`;
    try {
      proc.child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
    await proc.done;
    proc.reapedAt = Date.now();
  }

  /** Whether a worker's last logged event says it holds a lock now. */
  async function holds(proc: Proc): Promise<boolean> {
    const events = parseLog(await Deno.readTextFile(proc.log).catch(() => ""));
    const last = events.findLast((e) =>
      ["acquired", "renewed", "releasing", "attempt"].includes(e.e)
    );
    return last?.e === "acquired" || last?.e === "renewed";
  }

  // The sampler: every lock entry read must be whole.
  const suspects = new Map<string, number>();
  const reported = new Set<string>();
  function judge(entries: RawEntry[], now: number, when: string): void {
    const seen = new Set<string>();
    for (const entry of entries) {
      const problem = entryProblem(entry);
      if (problem === undefined) continue;
      const key = `${entry.name}\0${new TextDecoder("latin1").decode(entry.data)}`;
      seen.add(key);
      const first = suspects.get(key) ?? now;
      suspects.set(key, first);
      if (now - first >= graceMs && !reported.has(key)) {
        reported.add(key);
        if (reported.has(`${entry.name}\0${problem}`)) continue; // said once is enough
        reported.add(`${entry.name}\0${problem}`);
        violations.push(
          `lock entry "${entry.name}" is ${problem} (${when}${
            graceMs ? `, for ${now - first} ms` : ""
          })`,
        );
      }
    }
    for (const key of [...suspects.keys()]) {
      if (!seen.has(key)) {
        suspects.delete(key);
        if (!reported.has(key)) stats.transientBadEntries!++;
      }
    }
  }
  let sampling = true;
  let samples = 0;
  const sampler = (async () => {
    while (sampling) {
      try {
        judge(await s.entries(host), Date.now(), "seen while workers ran");
        samples++;
      } catch (error) {
        notes.push(`sampler: ${(error as Error).message}`);
      }
      await sleep(40);
    }
  })();

  /** Tries per point; the least tried point not being tried now goes next. */
  const tries: Record<string, number> = {};
  const pickPoint = (busy: Set<string>): string => {
    const free = seamOrder.filter((p) => !busy.has(p));
    // Points of a required step not killed at yet go first.
    const owed = Object.values(options.seams.required)
      .filter((points) => !points.some((p) => seamHits[p]))
      .flat().filter((p) => !busy.has(p));
    const pool = owed.length > 0 ? owed : free.length > 0 ? free : seamOrder;
    const least = Math.min(...pool.map((p) => tries[p] ?? 0));
    const choice = pool.filter((p) => (tries[p] ?? 0) === least);
    const point = choice[Math.floor(rand() * choice.length)]!;
    tries[point] = (tries[point] ?? 0) + 1;
    return point;
  };

  try {
    // Up to six more epochs while a required step has not been killed in
    // yet (a loaded machine can keep the seam workers from reaching it: at
    // load 14 on two cores, three were once not enough for SMB renewal).
    const owedSteps = () =>
      Object.values(options.seams.required).some((points) => !points.some((p) => seamHits[p]));
    for (let epoch = 0; epoch < epochs || (owedSteps() && epoch < epochs + 6); epoch++) {
      // Six warm workers start at once (the first epoch waits for them to warm).
      const first: Proc[] = [];
      const setupDeadline = Date.now() + 30_000;
      while (first.length < workers) {
        const proc = await takeReady(setupDeadline);
        if (!proc) throw new Error(`workers did not warm up in 30 s: ${notes.join("; ")}`);
        first.push(proc);
      }
      const phaseEnd = Date.now() + epochMs;
      const untilMs = phaseEnd + 10_000; // the workers' own bound, should the parent die
      const work = { mode: "work", untilMs };
      const plain = new Set<Proc>(first);
      await Promise.all(first.map((proc) => activate(proc, "work", { ...work })));

      const killer = (async () => {
        while (Date.now() < phaseEnd) {
          await sleep(killMin + rand() * (killMax - killMin));
          if (Date.now() >= phaseEnd) break;
          const candidates = [...plain].filter((p) => alive.has(p));
          if (candidates.length === 0) continue;
          const holding: Proc[] = [];
          for (const p of candidates) if (await holds(p)) holding.push(p);
          // a holder while none has been killed yet, then half the time
          const choices = holding.length > 0 && (!holderKilled || rand() < 0.5)
            ? holding
            : candidates;
          const victim = choices[Math.floor(rand() * choices.length)]!;
          const wasHolding = holding.includes(victim);
          await kill(victim, wasHolding ? "at random while holding" : "at random");
          stats.randomKills!++;
          if (wasHolding) stats.randomKillsOfHolders!++;
          // its log is final now: did it die holding?
          if (wasHolding && await holds(victim)) holderKilled = true;
          plain.delete(victim);
          const replacement = await takeReady(phaseEnd);
          if (!replacement) break;
          plain.add(replacement);
          await activate(replacement, "work", { ...work });
        }
      })();

      const busy = new Set<string>();
      const seamSlot = async () => {
        while (Date.now() < phaseEnd - 300) {
          const proc = await takeReady(phaseEnd - 300);
          if (!proc) break;
          const point = pickPoint(busy);
          busy.add(point);
          // Shared locks are taken at once, so a Generic worker reaches
          // creation, release and back-off soonest; some take Host. Renewal
          // points need a hold past a third of the lease; the others are
          // reached sooner with short holds.
          const renewal = /\.(replace|renew)\./.test(point);
          await activate(proc, "seam", {
            ...work,
            minHoldMs: renewal ? Math.round(ttlMs * 0.6) : 0,
            maxHoldMs: renewal ? Math.round(ttlMs * 1.3) : 50,
            hostShare: point.endsWith("remove.verified") ? 0 : 0.25,
          }, point);
          const reached = `${proc.seamDir}/reached`;
          while (Date.now() < phaseEnd && alive.has(proc) && !(await exists(reached))) {
            await sleep(5);
          }
          if (await exists(reached)) {
            await kill(proc, `paused at ${point}`);
            seamHits[point] = (seamHits[point] ?? 0) + 1;
            stats.seamKills!++;
          } else {
            await kill(proc, `before reaching ${point}`);
            stats.seamMisses!++;
          }
          busy.delete(point);
        }
      };
      const seamer = Promise.all(Array.from({ length: seamSlots }, seamSlot));

      const faulter = (async () => {
        if (!fault) return;
        while (Date.now() < phaseEnd) {
          await sleep(fault === "steal" ? 100 + rand() * 200 : 20);
          if (fault === "steal") {
            if ((await s.entries(host)).some((e) => e.name === "Host.lock")) {
              await s.removeEntry(host, "Host.lock");
              stats.faultsInjected = (stats.faultsInjected ?? 0) + 1;
            }
          } else if (!stats.faultsInjected && Date.now() > phaseEnd - epochMs / 2) {
            // Once in the run, as soon as the host has no Host lock.
            if (await s.createEntry(host, "Host.lock", new Uint8Array())) {
              stats.faultsInjected = 1;
            }
          }
        }
      })();

      await Promise.all([killer, seamer, faulter]);

      // The run must kill a holder (what the exclusion check is about). A
      // loaded machine can keep every random kill off the holders, so until
      // one died holding, wait (bounded: the workers stop at untilMs) for a
      // worker that holds and kill it there; its final log says whether it
      // still held.
      while (!holderKilled && Date.now() < untilMs - 2000) {
        const holder = await (async () => {
          for (const p of plain) if (alive.has(p) && await holds(p)) return p;
        })();
        if (!holder) {
          await sleep(5);
          continue;
        }
        await kill(holder, "while holding (no holder killed yet)");
        stats.forcedHolderKills = (stats.forcedHolderKills ?? 0) + 1;
        plain.delete(holder);
        if (await holds(holder)) holderKilled = true;
      }

      // Every worker at work dies at once, wherever it is.
      const victims = [...alive].filter((p) => !pool.has(p));
      await Promise.all(victims.map((p) => kill(p, "in the mass kill")));
      stats.massKills! += victims.length;
      const lastDeath = Math.max(...victims.map((p) => p.reapedAt ?? 0));

      // The host is free again within lease + skew of the last death: a warm
      // probe starts at once. What counts is what the probe's checks saw,
      // not how fast it ran on a busy machine: a wait it reports ends a check
      // that started after its previous report, so two reports after the
      // bound prove a check after the bound still found the host held.
      const bound = lastDeath + ttlMs + skewMs + toleranceMs + liveMarginMs;
      const probe = await takeReady(Date.now() + 10_000);
      if (!probe) throw new Error("no warm worker for the probe in 10 s");
      await activate(probe, "probe", { mode: "probe", untilMs: bound + 10_000, retryMs: 25 });

      // Meanwhile: every entry the dead left is whole (read twice, `graceMs`
      // apart, where a server may still be finishing what a dead client sent).
      judge(await s.entries(host), Date.now(), `left by the dead of epoch ${epoch + 1}`);
      if (graceMs > 0) {
        await sleep(graceMs);
        judge(await s.entries(host), Date.now(), `left by the dead of epoch ${epoch + 1}`);
      }

      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        probe.done,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.max(0, bound + 15_000 - Date.now()));
        }),
      ]);
      clearTimeout(timer);
      if (alive.has(probe)) await kill(probe, "as the probe ran too long");
      const probeEvents = parseLog(await Deno.readTextFile(probe.log).catch(() => ""));
      const got = probeEvents.find((e) => e.e === "acquired");
      const waits = probeEvents.filter((e) => (e.e === "retry" || e.e === "drain") && e.t > bound);
      const after = `${ttlMs} ms lease + ${skewMs} ms skew + ${
        liveMarginMs + toleranceMs
      } ms margin after the last death`;
      if (waits.length >= 2) {
        violations.push(
          `epoch ${epoch + 1}: the host was still held ${
            waits[1]!.t - lastDeath
          } ms after the last death (${after}): ${JSON.stringify(waits[1]!.holders)}`,
        );
      } else if (!got) {
        const left = (await s.entries(host)).filter((e) => LOCK_NAME.test(e.name)).map((e) =>
          `${e.name} (${e.data.length} bytes${entryProblem(e) ? `: ${entryProblem(e)}` : ""})`
        );
        violations.push(
          `epoch ${epoch + 1}: the probe did not get the host after the last death: ${
            probeEvents.find((e) => e.e === "failed")?.message ?? probe.end
          }; lock entries: ${left.join(", ") || "none"}`,
        );
      }
      if (got) probeLatenciesMs.push(got.t - (lastDeath + ttlMs + skewMs));
      const leftover = (await s.entries(host)).filter((e) => LOCK_NAME.test(e.name));
      if (got && leftover.length > 0) {
        violations.push(
          `epoch ${epoch + 1}: after the probe took and released the host, entries remain: ${
            leftover.map((e) => e.name).join(", ")
          }`,
        );
      }
    }
  } finally {
    const rest = [...alive];
    await Promise.all(rest.map((p) => kill(p, pool.has(p) ? "unused at cleanup" : "at cleanup")));
    sampling = false;
    await sampler;
  }

  // The exclusion check over every holding of the run.
  const holdings: Holding[] = [];
  let renewals = 0;
  let lost = 0;
  let failed = 0;
  const crashes: string[] = [];
  for (const proc of all) {
    const events = parseLog(await Deno.readTextFile(proc.log).catch(() => ""));
    holdings.push(...holdingsOf(proc.id, events, proc.end));
    renewals += events.filter((e) => e.e === "renewed").length;
    lost += events.filter((e) => e.e === "lost").length;
    failed += events.filter((e) => e.e === "failed").length;
    const output = await proc.done;
    if (proc.killedAt === undefined && output.code !== 0 && proc.kind !== "probe") {
      crashes.push(
        `${proc.id} exited ${output.code}: ${new TextDecoder().decode(output.stderr).slice(-400)}`,
      );
    }
    for (
      const e of events.filter((e) => ["failed", "release-failed", "warm-failed"].includes(e.e))
        .slice(0, 2)
    ) {
      if (notes.length < 30) notes.push(`${proc.id} ${e.e}: ${e.message}`);
    }
  }
  violations.push(...exclusionViolations(holdings, { ttlMs, skewMs, toleranceMs }));
  violations.push(...crashes.map((c) => `worker crashed: ${c}`));
  const historyEntries = await s.history(host);
  const broken =
    historyEntries.filter((d) => new TextDecoder("latin1").decode(d).includes('"BrokenBy"')).length;
  if (Deno.env.get("KILL_STRESS_KEEP")) {
    // Logs, and the store's History, for a look after the run.
    await Deno.writeTextFile(
      `${dir}/history.jsonl`,
      historyEntries.map((d) => new TextDecoder("latin1").decode(d).replace(/\r?\n/g, " "))
        .join("\n"),
    );
    notes.unshift(`logs kept in ${dir}`);
  } else await Deno.remove(dir, { recursive: true }).catch(() => {});
  Object.assign(stats, {
    holdings: holdings.length,
    hostHoldings: holdings.filter((h) => h.type === "Host").length,
    genericHoldings: holdings.filter((h) => h.type === "Generic").length,
    killedWhileHolding: holdings.filter((h) => h.releasingAt === undefined).length,
    renewals,
    lost,
    failedAttempts: failed,
    brokenInHistory: broken,
    samples,
  });
  return {
    violations,
    notes,
    stats,
    seamHits,
    probeLatenciesMs,
    seed,
    elapsedMs: Date.now() - started,
  };
}

/**
 * Registers the stress test of one store.
 *
 * @param name store name shown in the test's name
 * @param open opens a fresh store
 * @param options the run's settings; `ignore` skips it (its server is missing, not under CI)
 */
export function registerKillStressSuite(
  name: string,
  open: () => Promise<KillStressStore>,
  options: KillStressOptions & { ignore?: boolean },
): void {
  Deno.test({
    name:
      `[${name}] 6+ processes killed with SIGKILL at random and inside creation, renewal and release: never two holders, the host free again within lease + skew`,
    ignore: options.ignore ?? false,
    async fn() {
      await using s = await open();
      const report = await runKillStress(s, options);
      const seams = Object.entries(report.seamHits).map(([p, n]) => `${p}×${n}`).join(" ");
      console.log(
        `[${name}] seed ${report.seed}, ${report.elapsedMs} ms: ${JSON.stringify(report.stats)}\n` +
          `  seam kills: ${seams}\n  probe after lease + skew: ${
            report.probeLatenciesMs.map((ms) => `${ms} ms`).join(", ")
          }` +
          (report.notes.length ? `\n  notes: ${report.notes.slice(0, 12).join("\n    ")}` : ""),
      );
      assertEquals(report.violations, [], `seed ${report.seed}`);
      const missed = Object.entries(options.seams.required)
        .filter(([, points]) => !points.some((p) => report.seamHits[p]))
        .map(([group, points]) => `${group}: ${points.join(", ")}`);
      assertEquals(missed, [], "a worker was killed inside each required step");
      assertOk(
        report.stats.hostHoldings! > 0 && report.stats.genericHoldings! > 0,
        "both lock types held",
      );
      assertOk(report.stats.killedWhileHolding! > 0, "holders were killed");
      assertOk(report.stats.renewals! > 0, "leases were renewed");
    },
  });
}
