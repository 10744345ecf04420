/**
 * Issue 12's figures: how fast a waiting caller gets a host once it is
 * free, what waiting costs, and fan-out against the right floor.
 *
 * - `handoff-<store>` (`local`, `local-poll`, `smb`, `etcd`): the time from
 *   the holder's release to a waiter, another process already waiting,
 *   holding the lock; against `etcdctl lock` handing over between two
 *   processes (target: at most 2 times) and `flock` (in `extra`); the etcd
 *   row also against a minimal Deno waiter (`_etcd_minimal_waiter.ts`: a
 *   watch and a create over raw HTTP, in `extra`), whose distance to ours is
 *   our own steps after the wake-up.
 * - `handoff-cpu-<store>`: CPU used by a waiting `lock` process during a
 *   10 s wait (2 s with `--quick`), against a `sleep` process.
 * - {@linkcode fanOut}: locking a host with N dependency hosts against the
 *   same store calls for its N + 1 hosts issued the same way (the floor),
 *   used by the local, SMB and etcd sections.
 *
 * The handoff is timed the same way on every row: the release instant is
 * taken in this process right before it releases (calls `release()` on a
 * lock it holds, unlocks its `flock` descriptor, or signals the holding
 * `etcdctl`); the holding instant is when the waiter's first stdout line
 * (our `lock` prints the ref, `etcdctl lock` the key, `flock -c` the
 * command's output) reaches this process.
 *
 * Without etcd and etcdctl (the baseline) the handoff figures are skipped
 * with one line; without smbd the SMB rows are, without flock its column.
 *
 * @module
 */

import { closeStores, lockResource, type ResourceLock, unlockResource } from "../mod.ts";
import { mapLimit } from "../src/locker.ts";
import {
  type FolderHandles,
  folderHandles,
  type OpenedFile,
} from "../src/stores/_folder_handles.ts";
import { smbdMissing, startSmbd } from "../tests/_smbd.ts";
import { etcdInstalled, etcdKeys, startEtcd } from "../tests/_etcd.ts";
import {
  canRun,
  CLI_PERMISSIONS,
  CLI_V8_FLAGS,
  compare,
  type Figure,
  figure,
  sample,
} from "./_measure.ts";
import type { SectionContext } from "./_smb.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const MINIMAL_WAITER = new URL("./_etcd_minimal_waiter.ts", import.meta.url).pathname;
const ETCDCTL = Deno.env.get("ETCDCTL_BINARY") ?? "etcdctl";
const FLOCK = "flock";
const SMB_USER = { name: "bench", password: "Bench-pa55word" };
const SMB_SHARE = "locks";
/** The waiting command: attempts 30 s apart, so it holds the lock early only when woken. */
const WAIT_ARGS = ["--hard", "--no-dependencies", "--retries", "100000", "--timeout", "30s"];
/** Bound on any one step (a waiter starting, a handoff): a hang fails the run. */
const STEP_MS = 60_000;
/**
 * Before releasing, each row lets its waiter wait a random 100-600 ms more:
 * a waiter that polls every 500 ms is then met at a random point of its
 * period, not always at the same one.
 */
const SETTLE_MS = [100, 600] as const;
const decoder = new TextDecoder();

/** Our stores measured, with what their waiting `lock` process needs. */
type StoreRow = "local" | "local-poll" | "smb" | "etcd";
const STORE_ROWS: readonly StoreRow[] = ["local", "local-poll", "smb", "etcd"];

/** Where our rows lock, and how. */
interface StoreSetup {
  /** Folder template. */
  store: string;
  /** Settings for the holder in this process. */
  config: Record<string, unknown>;
  /** Environment of the waiting process. */
  env: Record<string, string>;
  /** `--config` file of the waiting process. */
  configFile?: string;
}

/**
 * The handoff and waiter-CPU figures. Starts and stops its own smbd and
 * etcd.
 *
 * @param context the benchmark runner's settings
 * @returns the figures asked for; none when a baseline tool is missing
 */
export async function handoffSections(context: SectionContext): Promise<Figure[]> {
  const handoffRows = STORE_ROWS.filter((row) => context.wants(`handoff-${row}`));
  const cpuRows = STORE_ROWS.filter((row) => context.wants(`handoff-cpu-${row}`));
  if (handoffRows.length === 0 && cpuRows.length === 0) return [];
  const smbMissing = smbdMissing();
  const etcdMissing = !await etcdInstalled()
    ? "etcd is not installed (apt-get install etcd-server)"
    : !await canRun(ETCDCTL, ["version"], { ETCDCTL_API: "3" })
    ? "etcdctl is not installed (Debian package etcd-client)"
    : undefined;
  if (etcdMissing !== undefined && handoffRows.length > 0) {
    console.error(`handoff figures skipped: their baseline needs etcdctl: ${etcdMissing}`);
    handoffRows.length = 0;
  }
  const usable = (row: StoreRow) =>
    (row !== "smb" || smbMissing === undefined) && (row !== "etcd" || etcdMissing === undefined);
  for (const row of new Set([...handoffRows, ...cpuRows])) {
    if (!usable(row)) {
      console.error(`handoff-${row} figures skipped: ${row === "smb" ? smbMissing : etcdMissing}`);
    }
  }
  const rows = { handoff: handoffRows.filter(usable), cpu: cpuRows.filter(usable) };
  if (rows.handoff.length === 0 && rows.cpu.length === 0) return [];
  const needs = new Set([...rows.handoff, ...rows.cpu]);

  const folder = `${context.root}/handoff`;
  await Deno.mkdir(folder, { recursive: true });
  const pollConfig = `${folder}/poll.config.ts`;
  await Deno.writeTextFile(pollConfig, `export default { watch: "poll" };\n`);
  await using servers = new AsyncDisposableStack();
  const smbd = needs.has("smb")
    ? servers.use(await startSmbd({ shares: [SMB_SHARE], users: [SMB_USER] }))
    : undefined;
  const etcd = needs.has("etcd") || rows.handoff.length > 0
    ? servers.use(await startEtcd())
    : undefined;
  servers.defer(closeStores); // the library's connections go before the servers
  const setups: Record<StoreRow, StoreSetup | undefined> = {
    local: { store: `${folder}/{0}`, config: {}, env: {} },
    "local-poll": { store: `${folder}/{0}`, config: {}, env: {}, configFile: pollConfig },
    smb: smbd && {
      store: `smb://127.0.0.1:${smbd.port}/${SMB_SHARE}/{0}`,
      config: { smb: { username: SMB_USER.name, password: SMB_USER.password, timeout: "10s" } },
      env: {
        RESOURCE_LOCKER_SMB_USERNAME: SMB_USER.name,
        RESOURCE_LOCKER_SMB_PASSWORD: SMB_USER.password,
      },
    },
    etcd: etcd && {
      store: `etcd://127.0.0.1:${etcd.clientPort}/resource-locks/{0}`,
      config: {},
      env: {},
    },
  };
  const setup = (row: StoreRow) => setups[row]!;

  const figures: Figure[] = [];
  if (rows.handoff.length > 0) {
    figures.push(...await handoff(context, rows.handoff, setup, etcd!.endpoint, folder));
  }
  if (rows.cpu.length > 0) {
    figures.push(...await waiterCpu(context, rows.cpu, setup, etcd?.endpoint));
  }
  return figures;
}

/** One way of handing a lock over, measured once per round. */
interface HandoffRow {
  /** Row name. */
  name: string;
  /** Takes the lock, starts a waiter and returns once it waits. */
  arm(): Promise<Armed>;
}

/** A holder and a waiting process, ready to hand over. */
interface Armed {
  /** The waiter. */
  waiter: Watched;
  /** Lets go of the lock; called right after the release instant is taken. */
  release(): Promise<unknown>;
  /** Frees what the waiter took and ends every process; not timed. */
  finish(): Promise<void>;
}

/** One handoff: from the release instant to the waiter's first line, and the release alone. */
interface Handoff {
  ms: number;
  releaseMs: number;
}

async function handoff(
  context: SectionContext,
  storeRows: StoreRow[],
  setup: (row: StoreRow) => StoreSetup,
  etcdEndpoint: string,
  folder: string,
): Promise<Figure[]> {
  const hasFlock = await canRun(FLOCK, ["--version"]);
  if (!hasFlock) console.error("handoff: flock column skipped: flock is not installed");
  const rows: HandoffRow[] = [
    ...storeRows.map((row) => ourRow(row, setup(row))),
    etcdctlRow(etcdEndpoint),
    ...hasFlock ? [flockRow(`${folder}/flock.file`)] : [],
    ...storeRows.includes("etcd") ? [minimalRow(setup("etcd"), etcdEndpoint)] : [],
  ];
  const rounds = context.quick ? 2 : 20;
  const results = new Map<string, Handoff[]>(rows.map((row) => [row.name, []]));
  // Rounds interleave the rows, each round in another order, so load that
  // comes and goes hits every row alike.
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < rows.length; i++) {
      const row = rows[(i + round) % rows.length]!;
      results.get(row.name)!.push(await handoffOnce(row));
    }
  }
  const times = (name: string) => sample(results.get(name)!.map((r) => r.ms));
  const etcdctl = times("etcdctl");
  const flock = hasFlock ? times("flock") : undefined;
  return storeRows.map((row) => {
    const ours = times(row);
    const f = figure({
      id: `handoff-${row}`,
      subject: `handoff to a waiting \`lock --hard\` process (${describeRow(row)})`,
      baseline: "etcdctl lock <name> handing over between two processes (holder ended by SIGINT)",
      target: 2,
      unit: "ms",
      method: `${rounds} rounds, each one handoff per row in rotating order, median; from right ` +
        "before the holder lets go (release() in this process; SIGINT to the holding etcdctl; " +
        "unlock of this process's flock descriptor) to the waiter's first stdout line here; " +
        `the waiter waits ${SETTLE_MS[0]}-${SETTLE_MS[1]} ms (random) after it said it waits`,
    }, { subject: ours, baseline: etcdctl });
    const minimal = row === "etcd" ? times("deno-minimal") : undefined;
    f.extra = {
      releaseMs: sample(results.get(row)!.map((r) => r.releaseMs)).median,
      ...flock ? { flockMs: flock.median, vsFlock: ours.median / flock.median } : {},
      ...minimal
        ? { minimalDenoWaiterMs: minimal.median, vsMinimalDenoWaiter: ours.median / minimal.median }
        : {},
    };
    return f;
  });
}

function describeRow(row: StoreRow): string {
  return {
    local: "local store, watch auto: file-system notifications",
    "local-poll": "local store, watch poll: a look every 500 ms",
    smb: "SMB store on loopback smbd: an SMB2 CHANGE_NOTIFY",
    etcd: "etcd store: an etcd watch",
  }[row];
}

async function handoffOnce(row: HandoffRow): Promise<Handoff> {
  const armed = await row.arm();
  try {
    await sleep(SETTLE_MS[0] + Math.random() * (SETTLE_MS[1] - SETTLE_MS[0]));
    if (armed.waiter.exited) {
      throw new Error(`handoff ${row.name}: the waiter ended early: ${armed.waiter.stderr()}`);
    }
    const start = performance.now();
    const released = armed.release().then(() => performance.now() - start);
    const line = await bounded(armed.waiter.line, STEP_MS, `handoff ${row.name}: the waiter`);
    return { ms: line.at - start, releaseMs: await released };
  } finally {
    await armed.finish();
  }
}

/** Our waiter, a `lock` process, against a holder in this process. */
function ourRow(row: StoreRow, setup: StoreSetup): HandoffRow {
  const host = `handoff-${row}`;
  const options = { store: setup.store, config: setup.config };
  return {
    name: row,
    arm: () =>
      armOurHolder(row, host, options, () => startWaiter(host, setup), async (waiter) => {
        // it exits by itself once it printed its ref
        const ref = waiter.printed?.text;
        if (!ref?.startsWith(`${host}/Host@`)) {
          throw new Error(`handoff ${row}: the waiter printed no ref: ${waiter.stderr()}`);
        }
        await unlockResource(ref, options);
      }),
  };
}

/**
 * A handoff from a Host lock held in this process to the waiter `start`
 * makes, once it waits; `done` checks what the waiter did and frees it.
 */
async function armOurHolder(
  name: string,
  host: string,
  options: { store: string; config: Record<string, unknown> },
  start: () => Watched,
  done: (waiter: Watched) => Promise<void>,
): Promise<Armed> {
  const holder = await lockResource(host, {
    ...options,
    type: "Host",
    dependencies: {},
    retries: 1,
  });
  const waiter = start();
  try {
    await bounded(waiter.waiting, STEP_MS, `handoff ${name}: the waiter's first attempt`);
  } catch (error) {
    await waiter.stop();
    await holder.release();
    throw error;
  }
  let releasing: Promise<unknown> | undefined;
  return {
    waiter,
    release: () => (releasing ??= holder.release()),
    async finish() {
      await (releasing ??= holder.release());
      await waiter.stop();
      await done(waiter);
    },
  };
}

/** A `lock` process that waits for `host`; `waiting` resolves at its first "Waiting for" line. */
function startWaiter(host: string, setup: StoreSetup): Watched {
  return watch(
    [
      Deno.execPath(),
      "run",
      ...CLI_PERMISSIONS,
      CLI,
      "lock",
      host,
      ...WAIT_ARGS,
      ...setup.configFile ? ["--config", setup.configFile] : [],
    ],
    { RESOURCE_LOCKER_STORE: setup.store, NO_COLOR: "1", ...setup.env },
    /^\S+Z Waiting for /m,
  );
}

/**
 * `etcdctl lock <name>` handing over between two processes. The holder is
 * ended by SIGINT, on which etcdctl deletes its key at once: of the ways to
 * end it, the one that adds least besides the unlock, as our holder's
 * release() does. The other way, `etcdctl lock <name> -- <command>` whose
 * command ends at a known instant, adds the command's exit and reaping to
 * the baseline and so would flatter us.
 */
function etcdctlRow(endpoint: string): HandoffRow {
  const name = "handoff-etcdctl";
  const cmd = [ETCDCTL, `--endpoints=${endpoint}`, "lock", name];
  const env = { ETCDCTL_API: "3" };
  return {
    name: "etcdctl",
    async arm() {
      const holder = watch(cmd, env);
      let waiter: Watched | undefined;
      try {
        await bounded(holder.line, STEP_MS, "handoff etcdctl: the holder");
        waiter = watch(cmd, env);
        await bounded(etcdctlWaiting(endpoint, name, waiter), STEP_MS, "handoff etcdctl: waiter");
      } catch (error) {
        await waiter?.stop();
        await holder.stop();
        throw error;
      }
      const started = waiter;
      return {
        waiter: started,
        release: () => Promise.resolve(holder.kill("SIGINT")),
        async finish() {
          // Each deletes its key on SIGINT; a SIGKILL would leave it to its 60 s lease.
          await Promise.all([started.end("SIGINT"), holder.end("SIGINT")]);
        },
      };
    },
  };
}

/** Resolves once the waiting etcdctl's key is in, behind the holder's. */
async function etcdctlWaiting(endpoint: string, name: string, waiter: Watched): Promise<void> {
  while ((await etcdKeys({ endpoint }, `${name}/`, { keysOnly: true })).length < 2) {
    if (waiter.exited) throw new Error(`the waiting etcdctl ended: ${waiter.stderr()}`);
    await sleep(10);
  }
}

/**
 * The etcd row's reference: the same holder, and as the waiter
 * `_etcd_minimal_waiter.ts`, a Deno process that only watches and creates
 * over raw HTTP. The distance between it and our `lock` is our own steps.
 */
function minimalRow(setup: StoreSetup, endpoint: string): HandoffRow {
  const host = "handoff-minimal";
  const options = { store: setup.store, config: setup.config };
  const port = new URL(endpoint).port;
  const key = `/resource-locks/${host}/Host.lock`;
  return {
    name: "deno-minimal",
    arm: () =>
      armOurHolder(
        "deno-minimal",
        host,
        options,
        () =>
          watch(
            [Deno.execPath(), "run", "--allow-net", CLI_V8_FLAGS, MINIMAL_WAITER, port, key],
            {},
            /^waiting$/m,
          ),
        async (waiter) => {
          if (waiter.printed?.text !== "got") {
            throw new Error(`handoff deno-minimal: the waiter did not create: ${waiter.stderr()}`);
          }
          await unlockResource(`${host}/Host`, { ...options, force: true });
        },
      ),
  };
}

/** util-linux `flock FILE -c 'echo got'` waiting on a descriptor this process holds. */
function flockRow(path: string): HandoffRow {
  return {
    name: "flock",
    async arm() {
      const file = await Deno.open(path, { read: true, write: true, create: true });
      file.lockSync(true);
      const waiter = watch([FLOCK, path, "-c", "echo got"], {});
      try {
        // Waiting once the kernel lists it as blocked on the lock ("->").
        await bounded(
          (async () => {
            const blocked = new RegExp(`^\\d+: -> FLOCK .* ${waiter.pid} `, "m");
            while (!blocked.test(await Deno.readTextFile("/proc/locks"))) {
              if (waiter.exited) throw new Error(`the waiter ended: ${waiter.stderr()}`);
              await sleep(10);
            }
          })(),
          STEP_MS,
          "handoff flock: the waiter",
        );
      } catch (error) {
        await waiter.stop();
        file.close();
        throw error;
      }
      return {
        waiter,
        release: () => Promise.resolve(file.unlockSync()),
        async finish() {
          await waiter.stop();
          file.close();
        },
      };
    },
  };
}

/** CPU of waiting `lock` processes, per store, against a `sleep` process over the same time. */
async function waiterCpu(
  context: SectionContext,
  storeRows: StoreRow[],
  setup: (row: StoreRow) => StoreSetup,
  etcdEndpoint: string | undefined,
): Promise<Figure[]> {
  const windowMs = context.quick ? 2_000 : 10_000;
  const perStore = context.quick ? 1 : 3;
  const tickMs = 1000 / await clockTicks();
  await using stack = new AsyncDisposableStack();
  const sleeper = watch(["sleep", "3600"], {});
  stack.defer(() => sleeper.stop());
  const holders: ResourceLock[] = [];
  stack.defer(async () => {
    for (const holder of holders) await holder.release();
  });
  const waiters: { row: StoreRow; waiter: Watched }[] = [];
  stack.defer(async () => {
    for (const { waiter } of waiters) await waiter.stop();
  });
  for (const row of storeRows) {
    const { store, config } = setup(row);
    const host = `cpu-${row}`;
    holders.push(
      await lockResource(host, { store, config, type: "Host", dependencies: {}, retries: 1 }),
    );
    for (let i = 0; i < perStore; i++) waiters.push({ row, waiter: startWaiter(host, setup(row)) });
  }
  // The reference the issue names: an etcdctl lock waiting behind a holder.
  let etcdctlWaiter: Watched | undefined;
  let etcdctlReady: Promise<void> | undefined;
  if (etcdEndpoint !== undefined) {
    const name = "cpu-etcdctl";
    const cmd = [ETCDCTL, `--endpoints=${etcdEndpoint}`, "lock", name];
    const holder = watch(cmd, { ETCDCTL_API: "3" });
    stack.defer(() => holder.stop());
    await bounded(holder.line, STEP_MS, "waiter CPU: the etcdctl holder");
    etcdctlWaiter = watch(cmd, { ETCDCTL_API: "3" });
    stack.defer(() => etcdctlWaiter!.stop());
    etcdctlReady = etcdctlWaiting(etcdEndpoint, name, etcdctlWaiter);
  }
  // Each window starts when its process says it waits; the sleep is read over the same window.
  const measure = async (waiter: Watched, waiting: Promise<unknown>) => {
    await bounded(waiting, STEP_MS, "waiter CPU: a waiter's first attempt");
    const before = await Promise.all([cpuOf(waiter.pid, tickMs), cpuOf(sleeper.pid, tickMs)]);
    await sleep(windowMs);
    if (waiter.exited) throw new Error(`waiter CPU: a waiter ended early: ${waiter.stderr()}`);
    const after = await Promise.all([cpuOf(waiter.pid, tickMs), cpuOf(sleeper.pid, tickMs)]);
    return { ticksMs: after[0] - before[0], sleepMs: after[1] - before[1] };
  };
  const [ours, etcdctl] = await Promise.all([
    Promise.all(waiters.map(({ waiter }) => measure(waiter, waiter.waiting))),
    etcdctlWaiter ? measure(etcdctlWaiter, etcdctlReady!) : undefined,
  ]);
  return storeRows.map((row) => {
    const mine = ours.filter((_, i) => waiters[i]!.row === row);
    const cpu = sample(mine.map((m) => m.ticksMs));
    const idle = sample(mine.map((m) => m.sleepMs));
    const seconds = windowMs / 1000;
    return {
      id: `handoff-cpu-${row}`,
      subject: `CPU of a waiting \`lock --hard\` process over ${seconds} s (${describeRow(row)})`,
      baseline: `CPU of a \`sleep\` process over the same ${seconds} s`,
      subjectSample: cpu,
      baselineSample: idle,
      // A sleep uses no CPU (0 ticks): a ratio to it means nothing, so none, and no target.
      ratio: NaN,
      unit: "ms",
      method: `${perStore} waiting process(es) at once, all stores together, CPU from ` +
        `/proc/<pid>/stat utime+stime in clock ticks (${tickMs} ms each) from its first ` +
        `"Waiting for" line to ${seconds} s later, median; no ratio or target: the baseline ` +
        "is 0; read the absolute CPU (extra: cpuSeconds)",
      extra: {
        cpuSeconds: cpu.median / 1000,
        sleepCpuSeconds: idle.median / 1000,
        ...etcdctl ? { etcdctlWaiterCpuSeconds: etcdctl.ticksMs / 1000 } : {},
        windowSeconds: seconds,
      },
    };
  });
}

/** Clock ticks per second (`getconf CLK_TCK`), for /proc/<pid>/stat times. */
async function clockTicks(): Promise<number> {
  const output = await new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" }).output();
  const ticks = Number(decoder.decode(output.stdout).trim());
  if (!output.success || !(ticks > 0)) throw new Error("getconf CLK_TCK failed");
  return ticks;
}

/**
 * CPU a process used so far, in ms: utime + stime from /proc/<pid>/stat
 * (clock-tick resolution; threads that ended still count, unlike the
 * per-thread schedstat).
 */
async function cpuOf(pid: number, tickMs: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * tickMs; // utime, stime: fields 14 and 15
}

/** A child process whose output this process watches. */
interface Watched {
  readonly pid: number;
  /** Its first stdout line and the instant it arrived here. */
  readonly line: Promise<{ at: number; text: string }>;
  /** That line, once it came. */
  readonly printed: { at: number; text: string } | undefined;
  /** Resolves when stderr matches the pattern given; rejects when it ends before. */
  readonly waiting: Promise<void>;
  /** Its exit. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Whether it has exited. */
  readonly exited: boolean;
  /** The end of its stderr so far, for messages. */
  stderr(): string;
  kill(signal: Deno.Signal): void;
  /** Sends `signal` when still running and waits for it to end (bounded), then stops it. */
  end(signal: Deno.Signal): Promise<void>;
  /** Kills it (SIGKILL) when still running, and waits for it and its output. */
  stop(): Promise<void>;
}

/**
 * Starts a command with its stdout and stderr read at once, so a line is
 * timed when it arrives, not when someone asks for it.
 */
function watch(cmd: string[], env: Record<string, string>, ready?: RegExp): Watched {
  const child = new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let exited = false;
  const status = child.status.finally(() => (exited = true));
  let errText = "";
  let printed: { at: number; text: string } | undefined;
  const line = Promise.withResolvers<{ at: number; text: string }>();
  const waiting = Promise.withResolvers<void>();
  const tail = () => errText.trim().split("\n").slice(-3).join(" | ") || "(no output)";
  // `line` never rejects (a caller bounds its wait); output that cannot be read is let go.
  const reading = Promise.all([
    (async () => {
      let text = "";
      let seen = false;
      for await (const chunk of child.stdout) {
        const at = performance.now();
        if (seen) continue;
        text += decoder.decode(chunk);
        const end = text.indexOf("\n");
        if (end >= 0) {
          seen = true;
          printed = { at, text: text.slice(0, end).trim() };
          line.resolve(printed);
        }
      }
    })(),
    (async () => {
      for await (const chunk of child.stderr) {
        errText = (errText + decoder.decode(chunk)).slice(-2000);
        if (ready?.test(errText)) waiting.resolve();
      }
    })(),
  ]).catch(() => {});
  // A process that ends before it said it waits will not wait: its waiters learn why.
  waiting.promise.catch(() => {});
  Promise.all([status, reading]).then(() =>
    waiting.reject(new Error(`${cmd[0]} ended before it waited: ${tail()}`))
  );
  return {
    pid: child.pid,
    line: line.promise,
    waiting: waiting.promise,
    status,
    get exited() {
      return exited;
    },
    get printed() {
      return printed;
    },
    stderr: tail,
    kill(signal) {
      if (!exited) {
        try {
          child.kill(signal);
        } catch {
          // exited meanwhile
        }
      }
    },
    async end(signal) {
      this.kill(signal);
      await bounded(status, STEP_MS, `ending ${cmd[0]}`).finally(() => this.stop());
    },
    async stop() {
      this.kill("SIGKILL");
      await bounded(Promise.all([status, reading]), STEP_MS, `stopping ${cmd[0]}`);
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `promise`, or an error naming `what` after `ms`. */
async function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// Fan-out against the floor

/** What one host's Host lock and its release cost in the store itself, with no locking rules. */
export interface FanOutFloor {
  /** What it is, for the figure. */
  describe: string;
  /** Makes what the hosts need before the first run (folders); not timed. */
  prepare?(hosts: string[]): Promise<void>;
  /** The calls a Host lock makes for one host. */
  lock(host: string): Promise<void>;
  /** The calls its release makes. */
  release(host: string): Promise<void>;
}

/** Options of {@linkcode fanOut}. */
export interface FanOutOptions {
  /** Settings for lockResource. */
  config?: Record<string, unknown>;
  /** The floor to compare with; without one, the same lock with 1 dependency host. */
  floor?: FanOutFloor;
  /** Numbers of dependency hosts. @default [8, 64, 512] */
  counts?: readonly number[] | undefined;
}

/**
 * Fan-out counts: 512 hosts only in full runs (with `--quick` a 512-host
 * run and its floor, with their first-use folders, took most of its time).
 *
 * @param quick whether the run is `--quick`
 * @returns 8 and 64 with `--quick`, else undefined (fanOut's default)
 */
export function fanOutCounts(quick: boolean): number[] | undefined {
  return quick ? [8, 64] : undefined;
}

/** At most this many hosts at once, as the library's default `concurrency`. */
const FLOOR_CONCURRENCY = 64;

/**
 * Locking (Host) and releasing a host with N dependency hosts (by default
 * N = 8, 64 and 512) against the floor: the same store calls for its N + 1 hosts,
 * issued the same way (every host's lock calls, at most 64 hosts at once,
 * then every host's release calls, at most 64 at once). The same lock with
 * 1 dependency host is kept in `extra` (`oneHostMs`, `vsOneHost`).
 *
 * @param name figure name prefix (`local`, `smb`, ...)
 * @param store folder template
 * @param runs twice the runs per side for N = 8 and 64, six times those for 512
 * @param options settings and the floor
 * @returns one figure per N
 */
export async function fanOut(
  name: string,
  store: string,
  runs: number,
  options: FanOutOptions = {},
): Promise<Figure[]> {
  const { floor } = options;
  const cycleOf = (count: number) => {
    const host = `${name}-fan${count}`;
    const dependencies = Object.fromEntries(
      Array.from({ length: count }, (_, i) => [`${name}-dep${count}-${i}`, [host]]),
    );
    return async () => {
      const lock = await lockResource(host, {
        store,
        type: "Host",
        dependencies,
        retries: 1,
        ...options.config ? { config: options.config } : {},
      });
      await lock.release();
    };
  };
  const one = await timeCycles(cycleOf(1), Math.floor(runs / 2));
  const result: Figure[] = [];
  for (const count of options.counts ?? [8, 64, 512]) {
    const cycleRuns = count === 512 ? Math.max(1, Math.round(runs / 6)) : Math.floor(runs / 2);
    const subject = cycleOf(count);
    let measured: { subject: ReturnType<typeof sample>; baseline: ReturnType<typeof sample> };
    if (floor) {
      const hosts = Array.from({ length: count + 1 }, (_, i) => `${name}-floor${count}-${i}`);
      await floor.prepare?.(hosts);
      measured = await compare(
        subject,
        async () => {
          await allOf(hosts, floor.lock);
          await allOf(hosts, floor.release);
        },
        cycleRuns,
        1,
      );
    } else {
      measured = { subject: await timeCycles(subject, cycleRuns), baseline: one };
    }
    const f = figure({
      id: `${name}-fanout-${count}`,
      subject: `lock + release a host with ${count} dependency hosts (${name})`,
      baseline: floor
        ? `${floor.describe} for its ${count + 1} hosts, at most ${FLOOR_CONCURRENCY} at once`
        : "the same with 1 dependency host",
      ...floor ? { target: 1.5 } : count === 64 ? { target: 3 } : {},
      unit: "ms",
      method: floor
        ? `${cycleRuns} interleaved runs each after a warm-up, median; hosts taken in ` +
          `parallel, at most 64 at once (config concurrency); the floor issues each host's ` +
          `lock calls, at most ${FLOOR_CONCURRENCY} hosts at once, then each host's release calls`
        : `sequential cycles after a warm-up, median of ${cycleRuns}; hosts taken in parallel, ` +
          "at most 64 at once (config concurrency)",
    }, measured);
    f.extra = { oneHostMs: one.median, vsOneHost: measured.subject.median / one.median };
    result.push(f);
  }
  return result;
}

/** Runs `fn` for every host, at most 64 at once; the first failure is thrown. */
async function allOf(hosts: string[], fn: (host: string) => Promise<void>): Promise<void> {
  const results = await mapLimit(hosts, FLOOR_CONCURRENCY, fn);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

/** Sequential cycles after a warm-up. */
async function timeCycles(cycle: () => Promise<void>, runs: number) {
  await cycle();
  const values: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await cycle();
    values.push(performance.now() - start);
  }
  return sample(values);
}

/**
 * The file calls a Host lock makes on the local store, done directly: the
 * content written to a temporary file and linked into place (the atomic
 * create), then the drain's listing.
 *
 * @param folder the host's folder (with its `History` folder)
 */
export async function localLockCalls(folder: string): Promise<void> {
  const path = `${folder}/Host.lock`;
  const tmp = `${folder}/.tmp-${crypto.randomUUID()}`;
  const file = await Deno.open(tmp, { write: true, createNew: true });
  file.writeSync(LOCAL_CONTENT);
  file.statSync();
  file.close();
  await Deno.link(tmp, path);
  await Deno.remove(tmp);
  for await (const _ of Deno.readDir(folder)) { /* drain check */ }
}

/**
 * The file calls its release makes, done directly, call for call as the
 * store makes them (checked with strace): the guard (the host folder and
 * the guard looked at, the guard opened, looked at again and flocked), the
 * compare's read (a look that does not follow links, open, read to the
 * end), the look at History, the move into History and the history entry's
 * final content (a temporary file renamed over it). (A holder releases what
 * it wrote without reading it first: no read before the guard.) Where the
 * store opens through libc (FFI granted, Linux), so does this floor.
 *
 * @param folder the host's folder (with its `History` folder)
 */
export async function localReleaseCalls(folder: string): Promise<void> {
  const handles = folderHandles();
  if (handles?.openFile) return await localReleaseCallsByHandles(folder, handles);
  const path = `${folder}/Host.lock`;
  const read = async () => {
    await Deno.lstat(path);
    const f = await Deno.open(path, { read: true, write: true });
    f.statSync();
    const buffer = new Uint8Array(65536);
    while (f.readSync(buffer)) { /* to the end */ }
    f.close();
  };
  const guardPath = `${folder}/.guard`;
  await Deno.lstat(folder);
  await Deno.lstat(guardPath).catch(() => undefined);
  const guard = await Deno.open(guardPath, { read: true, write: true, create: true });
  guard.statSync();
  await Deno.lstat(guardPath);
  await guard.lock(true);
  await read();
  await Deno.lstat(`${folder}/History`);
  const target = `${folder}/History/Host.lock-${crypto.randomUUID()}`;
  await Deno.rename(path, target);
  const final = `${folder}/History/.tmp-${crypto.randomUUID()}`;
  const out = await Deno.open(final, { write: true, createNew: true });
  out.writeSync(LOCAL_CONTENT);
  out.statSync();
  out.close();
  await Deno.rename(final, target);
  guard.close();
}

/**
 * {@linkcode localReleaseCalls} as the store makes them where FFI is granted
 * (Linux; checked with strace): the looks by path, and the opens, `fstat`,
 * `flock`, reads and moves through libc (`_folder_handles.ts`).
 */
async function localReleaseCallsByHandles(folder: string, handles: FolderHandles): Promise<void> {
  const openFile = handles.openFile!;
  const path = `${folder}/Host.lock`;
  const guardPath = `${folder}/.guard`;
  await Deno.lstat(folder);
  await Deno.lstat(guardPath).catch(() => undefined);
  let guardFile: OpenedFile;
  try {
    guardFile = openFile(guardPath, { write: true });
  } catch {
    guardFile = openFile(guardPath, { createNew: true });
  }
  using guard = guardFile;
  guard.stat();
  await Deno.lstat(guardPath);
  guard.tryLock();
  await Deno.lstat(path);
  {
    using file = openFile(path);
    file.stat();
    const buffer = new Uint8Array(65536);
    while (file.read(buffer)) { /* to the end */ }
  }
  await Deno.lstat(`${folder}/History`);
  using host = handles.open(folder);
  using history = handles.open(`${folder}/History`, host, "History");
  const name = `Host.lock-${crypto.randomUUID()}`;
  handles.rename(host, "Host.lock", history, name);
  const temporary = `.tmp-${crypto.randomUUID()}`;
  const out = await Deno.open(`${folder}/${temporary}`, { write: true, createNew: true });
  out.writeSync(LOCAL_CONTENT);
  out.statSync();
  out.close();
  handles.rename(host, temporary, history, name);
}

const LOCAL_CONTENT = new TextEncoder().encode(JSON.stringify({ Caller: "bench", LockedAt: 1 }));

/**
 * The local store's floor: {@linkcode localLockCalls} and
 * {@linkcode localReleaseCalls} in each host's folder of `store`.
 *
 * @param store a local folder template
 * @returns the floor
 */
export function localFloor(store: string): FanOutFloor {
  const folder = (host: string) => store.replace("{0}", host);
  return {
    describe: "the same file calls done directly (write, link, list; guard, read, " +
      "rename, write; with the store's lstat checks)",
    async prepare(hosts) {
      for (const host of hosts) await Deno.mkdir(`${folder(host)}/History`, { recursive: true });
    },
    lock: (host) => localLockCalls(folder(host)),
    release: (host) => localReleaseCalls(folder(host)),
  };
}
