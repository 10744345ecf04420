/**
 * Waking waiters when a lock folder changes: one file-system watcher per
 * folder for the whole process, however many waiters it has, and polling
 * where notifications do not come (network mounts: changes other machines
 * make are not notified there).
 *
 * A notification is a hint that the folder may have changed, never the
 * truth: the waiter looks at the locks again and waits on when nothing that
 * matters changed.
 *
 * @module
 */

/** How waiters learn that a folder changed. */
export type WatchMode = "auto" | "notify" | "poll";

/** Without notifications, a waiter is woken this often to look again. */
export const FOLDER_POLL_MS = 500;

/** File systems whose changes by other machines are not notified. */
const NETWORK_FS =
  /^(nfs4?|cifs|smb3|smbfs|ncpfs|afs|ceph|glusterfs|9p|lustre|gpfs|gfs2|ocfs2|davfs|fuse\..*|fuse)$/;

/** One watcher and the waiters it wakes. */
interface Shared {
  readonly watcher: Deno.FsWatcher;
  readonly waiters: Set<() => void>;
}

const watchers = new Map<string, Shared>();

/** Mount points of network file systems, as /proc/self/mountinfo said when last read. */
let mounts: { readAt: number; network: string[] } | undefined;
/** How long a reading of the mount table is used: every wait asks, mounts rarely change. */
const MOUNTS_TTL_MS = 10_000;

/**
 * Whether changes to `folder` are notified here: not on network file
 * systems (Linux: by /proc/self/mountinfo), nor on UNC paths (Windows).
 *
 * @param folder an absolute folder
 * @returns true when a watcher would see other machines' changes
 */
export function notifiedHere(folder: string): boolean {
  if (/^[\\/]{2}/.test(folder)) return false; // \\server\share: a network path
  if (Deno.build.os !== "linux") return true;
  if (mounts === undefined || Date.now() - mounts.readAt > MOUNTS_TTL_MS) {
    let table: string;
    try {
      table = Deno.readTextFileSync("/proc/self/mountinfo");
    } catch {
      return true;
    }
    const network: string[] = [];
    for (const line of table.split("\n")) {
      const [before, after] = line.split(" - ");
      const point = before?.split(" ")[4];
      const type = after?.split(" ")[0];
      if (point && type && NETWORK_FS.test(type)) network.push(unescapeMount(point));
    }
    mounts = { readAt: Date.now(), network };
  }
  return !mounts.network.some((point) =>
    folder === point || folder.startsWith(point.endsWith("/") ? point : `${point}/`)
  );
}

/** mountinfo writes space, tab, newline and backslash as octal escapes. */
function unescapeMount(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * Resolves when `folder` may have changed, after `ms`, or when `signal`
 * aborts (it never rejects). Entries whose names start with `ignorePrefix`
 * (the store's own guard and temporary files) wake nobody.
 *
 * @param folder the folder to watch
 * @param ms longest wait
 * @param options mode, names to ignore, abort signal
 */
export function waitForFolderChange(
  folder: string,
  ms: number,
  options: { mode: WatchMode; ignorePrefix: string; signal?: AbortSignal | undefined },
): Promise<void> {
  const { signal } = options;
  if (signal?.aborted || ms <= 0) return Promise.resolve();
  const notify = options.mode === "notify" ||
    (options.mode === "auto" && notifiedHere(folder));
  const shared = notify ? watch(folder, options.ignorePrefix) : undefined;
  // Polling, or no watcher to be had (folder missing, watch limit reached).
  const longest = shared ? ms : Math.min(ms, FOLDER_POLL_MS);
  return new Promise<void>((resolve) => {
    let over = false;
    const cleanUp = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      if (shared) leave(folder, shared, wake);
    };
    const done = () => {
      if (over) return;
      over = true;
      cleanUp();
      resolve();
    };
    // A change: the woken caller first, the clean-up (a watcher's close,
    // slow in a process just woken from idle) after the look it is for.
    const wake = () => {
      if (over) return;
      over = true;
      resolve();
      setTimeout(cleanUp, 0);
    };
    const timer = setTimeout(done, Math.min(longest, 2_147_483_647));
    signal?.addEventListener("abort", done, { once: true });
    shared?.waiters.add(wake);
  });
}

/** The folder's shared watcher, made (and armed) now when there is none. */
function watch(folder: string, ignorePrefix: string): Shared | undefined {
  const existing = watchers.get(folder);
  if (existing) return existing;
  let watcher: Deno.FsWatcher;
  try {
    watcher = Deno.watchFs(folder, { recursive: false });
  } catch {
    return undefined;
  }
  const shared: Shared = { watcher, waiters: new Set() };
  watchers.set(folder, shared);
  (async () => {
    try {
      for await (const event of watcher) {
        if (event.kind === "access") continue;
        const names = event.paths.map((path) => path.split(/[\\/]/).pop() ?? "");
        if (names.length > 0 && names.every((name) => name.startsWith(ignorePrefix))) continue;
        for (const wake of [...shared.waiters]) wake();
      }
    } catch {
      // The watcher failed (folder removed, ...): waiters fall back to their timers.
    } finally {
      if (watchers.get(folder) === shared) watchers.delete(folder);
      for (const wake of [...shared.waiters]) wake();
    }
  })();
  return shared;
}

/** Drops a waiter; the last one closes the watcher, so nothing keeps the process alive. */
function leave(folder: string, shared: Shared, waiter: () => void): void {
  shared.waiters.delete(waiter);
  if (shared.waiters.size > 0) return;
  if (watchers.get(folder) === shared) watchers.delete(folder);
  try {
    shared.watcher.close();
  } catch {
    // already closed
  }
}

/** Watchers open now, per folder: for tests. */
export function openWatchers(): string[] {
  return [...watchers.keys()];
}
