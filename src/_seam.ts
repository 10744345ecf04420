/**
 * Race test seams: named points between the steps of a store operation where
 * a test can pause one caller and let another act, so that every window a
 * race could use is forced deterministically instead of hoped for.
 *
 * Zero cost in normal use: {@linkcode seam} returns `undefined` unless a test
 * installed a hook ({@linkcode setSeamHook}) or the process was started with
 * `RESOURCE_LOCKER_TEST_SEAM` (see {@linkcode installSeamFromEnv}), and callers
 * write `const p = seam(...); if (p) await p;`.
 *
 * Private to the package: not exported from `mod.ts`.
 *
 * @module
 */

/** Where a step of a store operation stands. `detail` names the host and entry. */
export interface SeamEvent {
  /** Point name, `<store>.<operation>.<step>`, e.g. `fs.archive.verified`. */
  point: string;
  /** Host whose folder is being changed. */
  host: string;
  /** Entry name, e.g. `Host.lock`. */
  name: string;
}

/** A hook: resolves when the paused step may go on. */
export type SeamHook = (event: SeamEvent) => Promise<void> | undefined;

let hook: SeamHook | undefined;

/**
 * Installs (or with `undefined` removes) the seam hook for this process.
 *
 * @param next the hook
 * @returns the hook it replaced
 */
export function setSeamHook(next: SeamHook | undefined): SeamHook | undefined {
  const previous = hook;
  hook = next;
  return previous;
}

/**
 * Marks a point between two steps. Returns a promise to await only when a
 * hook asks to pause here.
 *
 * @param point `<store>.<operation>.<step>`
 * @param host host
 * @param name entry name
 * @returns undefined (go on at once) or a promise that resolves when the step may go on
 */
export function seam(point: string, host: string, name: string): Promise<void> | undefined {
  return hook?.({ point, host, name });
}

/**
 * For tests that drive the command line: `RESOURCE_LOCKER_TEST_SEAM=<point>:<dir>`
 * makes the first step that reaches `<point>` write `<dir>/reached` and wait
 * until `<dir>/go` exists (or the process is killed). Does nothing when the
 * variable is unset or unreadable.
 */
export function installSeamFromEnv(): void {
  let spec: string | undefined;
  try {
    spec = Deno.env.get("RESOURCE_LOCKER_TEST_SEAM");
  } catch {
    return;
  }
  if (!spec) return;
  const split = spec.indexOf(":");
  if (split < 1) return;
  const point = spec.slice(0, split);
  const dir = spec.slice(split + 1);
  let fired = false;
  setSeamHook((event) => {
    if (fired || event.point !== point) return undefined;
    fired = true;
    return (async () => {
      await Deno.writeTextFile(`${dir}/reached`, JSON.stringify(event));
      for (;;) {
        try {
          await Deno.stat(`${dir}/go`);
          return;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
    })();
  });
}
