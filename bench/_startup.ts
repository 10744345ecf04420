/**
 * What the first use of a runtime feature adds to a process's start, each
 * against an empty script in the same run. The code avoids these features
 * on the command line's path (`src/path.ts`, `LIGHT_CLOCK` in
 * `src/clock.ts`, the local store's writes, the etcd store's transport);
 * its comments name the figure here instead of quoting numbers of one Deno
 * version.
 *
 * @module
 */

import { compareCommands, type Figure } from "./_measure.ts";

/** One first use: the script that makes it and the permissions it needs. */
interface FirstUse {
  id: string;
  subject: string;
  script: string;
  permissions: string[];
}

/** A port on 127.0.0.1 where nothing listens (the discard port): connecting fails at once. */
const CLOSED = "127.0.0.1:9";

const FIRST_USES: readonly FirstUse[] = [
  {
    id: "startup-node-path",
    subject: 'import "node:path" (loads Node\'s compatibility layer)',
    script: 'import "node:path";',
    permissions: [],
  },
  {
    id: "startup-set-timeout",
    subject: "a first setTimeout (loads Node's timers)",
    script: "clearTimeout(setTimeout(() => {}, 1));",
    permissions: [],
  },
  {
    id: "startup-abort-timeout",
    subject: "a first AbortSignal.timeout (what LIGHT_CLOCK uses instead)",
    script: "AbortSignal.timeout(1);",
    permissions: [],
  },
  {
    id: "startup-write-file",
    subject: "a first Deno.writeFile (loads Deno's streams code)",
    script:
      "const p = Deno.makeTempFileSync(); await Deno.writeFile(p, new Uint8Array(1)); Deno.removeSync(p);",
    permissions: ["--allow-write", "--allow-read"],
  },
  {
    id: "startup-open-write",
    subject: "the same write through Deno.open (what the local store does)",
    script:
      "const p = Deno.makeTempFileSync(); const f = await Deno.open(p, { write: true }); f.writeSync(new Uint8Array(1)); f.close(); Deno.removeSync(p);",
    permissions: ["--allow-write", "--allow-read"],
  },
  {
    id: "startup-btoa",
    subject: "a first btoa",
    script: 'btoa("x");',
    permissions: [],
  },
  {
    id: "startup-fetch",
    subject: `a first fetch to a closed port (${CLOSED})`,
    script: `await fetch("http://${CLOSED}/").catch(() => {});`,
    permissions: ["--allow-net"],
  },
  {
    id: "startup-connect",
    subject: `a first Deno.connect to the same port (what the etcd store does)`,
    script:
      `await Deno.connect({ hostname: "127.0.0.1", port: 9 }).then((c) => c.close(), () => {});`,
    permissions: ["--allow-net"],
  },
];

/**
 * Measures every first use in fresh processes, interleaved with an empty
 * script.
 *
 * @param init `quick` (few runs), a folder for the scripts, and the section filter
 * @returns one wall-time figure per first use (peak memory is left out: these differ by little)
 */
export async function startupSection(init: {
  quick: boolean;
  root: string;
  wants: (id: string) => boolean;
}): Promise<Figure[]> {
  const deno = Deno.execPath();
  const empty = `${init.root}/startup-empty.ts`;
  await Deno.writeTextFile(empty, "");
  const figures: Figure[] = [];
  for (const use of FIRST_USES) {
    if (!init.wants(use.id)) continue;
    const script = `${init.root}/${use.id}.ts`;
    await Deno.writeTextFile(script, use.script + "\n");
    const [wall] = await compareCommands({
      id: use.id,
      subject: use.subject,
      baseline: "deno run empty.ts",
      subjectCmd: [deno, "run", ...use.permissions, script],
      baselineCmd: [deno, "run", ...use.permissions, empty],
      env: { NO_COLOR: "1", PATH: Deno.env.get("PATH") ?? "" },
      runs: init.quick ? 3 : 20,
    });
    figures.push(wall!);
  }
  return figures;
}
