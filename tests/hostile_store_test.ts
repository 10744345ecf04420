/**
 * A hostile local store (issue 10): entries planted by someone with write
 * access to a host's folder. Whatever is planted, every command ends within
 * its time bound with one line and exit 4 naming the entry, and nothing
 * outside the store changes (a decoy tree's checksums).
 *
 * @module
 */

import { assertEquals, assertOk, assertStringIncludes } from "./_assert.ts";
import { runCli, snapshotTree } from "./_cli_helpers.ts";
import { GUARD_FILE, tempStore, waitFor, within } from "./_helpers.ts";
import { openFsStore } from "../src/stores/fs.ts";
import { folderHandles } from "../src/stores/_folder_handles.ts";
import { setSeamHook } from "../src/_seam.ts";

/** A store and a decoy tree beside it that no command may touch. */
async function hostile(
  plant: (hostDir: string, decoy: string) => Promise<void>,
  check: (run: (args: string[]) => ReturnType<typeof runCli>, hostDir: string) => Promise<void>,
) {
  await using t = await tempStore();
  const decoy = await Deno.makeTempDir({ prefix: "rl-decoy-" });
  try {
    await Deno.writeTextFile(`${decoy}/secret.txt`, "do not touch\n");
    await Deno.mkdir(`${decoy}/elsewhere`);
    const hostDir = `${t.root}/hv01`;
    await Deno.mkdir(hostDir);
    await plant(hostDir, decoy);
    const before = await snapshotTree(decoy);
    const config = `${t.root}/config.ts`;
    await Deno.writeTextFile(`${t.root}/none.json`, "{}"); // a named map must exist
    await Deno.writeTextFile(
      config,
      `export default { dependenciesFile: "${t.root}/none.json", timeout: "50ms", retries: 1 };`,
    );
    const run = (args: string[]) =>
      runCli(args, {
        env: { RESOURCE_LOCKER_STORE: t.store, RESOURCE_LOCKER_CONFIG: config },
        timeoutMs: 15_000,
      });
    await check(run, hostDir);
    assertEquals(await snapshotTree(decoy), before, "nothing outside the store changed");
    assertEquals(await Deno.readTextFile(`${decoy}/secret.txt`), "do not touch\n");
  } finally {
    await Deno.remove(decoy, { recursive: true });
  }
}

/** One line on stderr, the exit code, the entry named. */
function assertRefused(result: { code: number; stderr: string }, code: number, names: string) {
  assertEquals(result.code, code, result.stderr);
  const lines = result.stderr.trim().split("\n");
  assertEquals(lines.length, 1, result.stderr);
  assertStringIncludes(lines[0]!, names);
  // Nothing was made, so no advice to release something by force.
  assertOk(!lines[0]!.includes("could not release"), lines[0]);
}

const COMMANDS: [string, string[]][] = [
  ["lock", ["lock", "hv01", "--hard"]],
  ["lock (shared)", ["lock", "hv01"]],
  ["status", ["status", "hv01"]],
  ["unlock --force", ["unlock", "hv01/Host", "--force"]],
  ["break --force", ["break", "hv01/Host", "--force"]],
];

/** Runs `script` (saved at `path`) in a process without `--allow-ffi`; what it printed, as JSON. */
async function withoutFfi(path: string, script: string): Promise<unknown> {
  await Deno.writeTextFile(path, script);
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-lock", "--no-prompt", "--allow-read", "--allow-write", path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(output.code, 0, new TextDecoder().decode(output.stderr));
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

Deno.test("a Host.lock that is a symlink to a file outside the store is never followed", async () => {
  await hostile(
    (dir, decoy) => Deno.symlink(`${decoy}/secret.txt`, `${dir}/Host.lock`),
    async (run, dir) => {
      for (const [what, args] of COMMANDS) {
        const result = await run(args);
        assertRefused(result, 4, "symbolic link");
        assertOk((await Deno.lstat(`${dir}/Host.lock`)).isSymlink, `${what} left the link alone`);
      }
    },
  );
});

Deno.test("a Host.lock that is a FIFO or a link to /dev/zero hangs nothing", async () => {
  for (
    const plant of [
      (dir: string) =>
        new Deno.Command("mkfifo", { args: [`${dir}/Host.lock`] }).output().then(() => {}),
      (dir: string) => Deno.symlink("/dev/zero", `${dir}/Host.lock`),
    ]
  ) {
    await hostile(plant, async (run) => {
      for (const [, args] of COMMANDS) assertRefused(await run(args), 4, "Host.lock");
    });
  }
});

Deno.test("a huge Host.lock is refused with a short line, not read whole", async () => {
  await hostile(
    async (dir) => {
      const file = await Deno.open(`${dir}/Host.lock`, { write: true, create: true });
      await file.truncate(50 * 1024 * 1024);
      file.close();
    },
    async (run) => {
      const result = await run(["status", "hv01"]);
      assertRefused(result, 4, "larger than");
      assertOk(result.stderr.length < 400, `short error: ${result.stderr.length} chars`);
    },
  );
});

Deno.test("a History that is a symlink out of the store receives nothing", async () => {
  await hostile(
    (dir, decoy) => Deno.symlink(`${decoy}/elsewhere`, `${dir}/History`),
    async (run, dir) => {
      const locked = await run(["lock", "hv01", "--hard"]);
      assertEquals(locked.code, 0, locked.stderr);
      const ref = locked.stdout.trim();
      assertRefused(await run(["unlock", ref]), 4, "symbolic link");
      assertOk((await Deno.lstat(`${dir}/Host.lock`)).isFile, "the lock stays where it was");
      assertEquals([...Deno.readDirSync(`${dir}/History`)], [], "nothing moved out");
    },
  );
});

Deno.test("a host folder that is a symlink or a file, or a planted guard, is refused", async () => {
  await hostile(
    async (dir) => {
      await Deno.remove(dir);
      await Deno.writeTextFile(dir, "x");
    },
    async (run) => assertRefused(await run(["lock", "hv01", "--hard"]), 4, "not a folder"),
  );
  await hostile(
    async (dir, decoy) => {
      await Deno.remove(dir);
      await Deno.symlink(`${decoy}/elsewhere`, dir);
    },
    async (run) => assertRefused(await run(["lock", "hv01", "--hard"]), 4, "symbolic link"),
  );
  await hostile(
    async (dir, decoy) => {
      await Deno.writeTextFile(`${dir}/Host.lock`, "{}");
      await Deno.symlink(`${decoy}/secret.txt`, `${dir}/.resource-locker.guard`);
    },
    async (run) => assertRefused(await run(["unlock", "hv01/Host", "--force"]), 4, "guard"),
  );
});

Deno.test("a host folder that is a link is refused by reads too: status, test, history, status --all", async () => {
  await hostile(
    async (dir, decoy) => {
      await Deno.remove(dir);
      await Deno.mkdir(`${decoy}/elsewhere/History`);
      await Deno.writeTextFile(`${decoy}/elsewhere/Host.lock`, '{"Type":"Host","SessionId":"s"}');
      await Deno.writeTextFile(`${decoy}/elsewhere/History/Host.lock-s.x`, "{}");
      await Deno.symlink(`${decoy}/elsewhere`, dir);
    },
    async (run) => {
      // Before, these read the linked folder: "locked", a lock and its history
      // from outside the store, and status --all skipped the link unseen.
      for (const args of [["status", "hv01"], ["test", "hv01"], ["history", "hv01"]]) {
        assertRefused(await run(args), 4, "symbolic link");
      }
      const all = await run(["status", "--all"]);
      assertEquals(all.code, 4, all.stderr);
      assertStringIncludes(all.stderr, "hv01");
      assertStringIncludes(all.stderr, "symbolic link");
    },
  );
});

Deno.test("status --all says which folders under the root it skipped, escaped", async () => {
  await hostile(
    async (dir) => {
      for (const name of ["HV01", "bad\x1b]0;x\x07name"]) {
        await Deno.mkdir(`${dir}/../${name}`);
        await Deno.writeTextFile(`${dir}/../${name}/Host.lock`, "{}");
      }
    },
    async (run) => {
      const all = await run(["status", "--all"]);
      assertEquals(all.code, 0, all.stderr);
      assertStringIncludes(all.stderr, 'Warning: skipped "HV01"');
      assertStringIncludes(all.stderr, 'Warning: skipped "bad\\x1b]0;x\\x07name"');
    },
  );
});

Deno.test("a FIFO or a link swapped in between a look and an open hangs nothing, also under the guard", async () => {
  await using t = await tempStore();
  const store = openFsStore(`${t.root}/{0}`, { historyFolderName: "History" });
  const dir = `${t.root}/hv01`;
  const fifo = `${t.root}/fifo`;
  const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
  assertEquals(made.code, 0);
  const swapIn = async () => {
    await Deno.remove(`${dir}/Host.lock`);
    await Deno.symlink(fifo, `${dir}/Host.lock`);
  };
  // A plain read, and a change whose check under the guard meets the swap.
  for (const act of ["read", "remove"] as const) {
    const version = (await store.create("hv01", "Host.lock", new TextEncoder().encode("{}")))!;
    let swapped = false;
    const previous = setSeamHook((event) => {
      if (swapped || event.point !== "fs.read.looked") return undefined;
      if (act === "remove" && !event.name.endsWith("Host.lock")) return undefined;
      swapped = true;
      return swapIn();
    });
    try {
      const attempt: Promise<unknown> = act === "read"
        ? store.read("hv01", "Host.lock")
        : store.remove("hv01", "Host.lock", version);
      const outcome = await within(10_000, attempt).then(
        () => "done",
        (error) => (error as Error).message,
      );
      assertOk(swapped, "the swap happened");
      assertStringIncludes(String(outcome), "symbolic link");
    } finally {
      setSeamHook(previous);
      await Deno.remove(`${dir}/Host.lock`);
    }
  }
  // The guard is free again: another change goes through at once.
  const v = (await store.create("hv01", "Host.lock", new Uint8Array()))!;
  assertEquals(await within(5_000, store.remove("hv01", "Host.lock", v)), true);
});

Deno.test("a guard replaced by a link to a file elsewhere is refused, and nothing is made there", async () => {
  await using t = await tempStore();
  const store = openFsStore(`${t.root}/{0}`, { historyFolderName: "History" });
  const v1 = (await store.create("hv01", "Host.lock", new TextEncoder().encode("a")))!;
  const v2 = (await store.replace("hv01", "Host.lock", v1, new TextEncoder().encode("b")))!;
  const outside = `${t.root}/outside-made-by-guard`;
  await Deno.remove(`${t.root}/hv01/.resource-locker.guard`);
  await Deno.symlink(outside, `${t.root}/hv01/.resource-locker.guard`);
  const error = await store.replace("hv01", "Host.lock", v2, new TextEncoder().encode("c")).then(
    () => undefined,
    (e) => e as Error,
  );
  assertStringIncludes(error?.message ?? "", "symbolic link");
  assertEquals(await Deno.lstat(outside).then(() => true, () => false), false);
});

Deno.test("lock files with odd names count, are shown escaped, and can be named and released", async () => {
  const odd = ["Generic-a@b.lock", "Generic-a\\..\\..\\x.lock", "File-\x1b[31mred.lock"];
  await hostile(
    async (dir) => {
      for (const name of odd) await Deno.writeTextFile(`${dir}/${name}`, '{"Caller":"other"}');
    },
    async (run, dir) => {
      const blocked = await run(["lock", "hv01", "--hard", "--drain-timeout", "50ms"]);
      assertEquals(blocked.code, 3, blocked.stderr);
      assertOk(
        !blocked.stderr.includes("\x1b"),
        `no raw escape: ${JSON.stringify(blocked.stderr)}`,
      );
      const status = await run(["status", "hv01", "--json"]);
      assertEquals(status.code, 0, status.stderr);
      const refs: string[] = JSON.parse(status.stdout).locks.map((l: { ref: string }) => l.ref);
      assertEquals(refs.length, odd.length, status.stdout);
      for (const ref of refs) {
        const result = await run(["unlock", ref, "--force"]);
        assertEquals(result.code, 0, `${ref}: ${result.stderr}`);
      }
      for (const name of odd) {
        assertEquals(await Deno.lstat(`${dir}/${name}`).then(() => true, () => false), false, name);
      }
      const locked = await run(["lock", "hv01", "--hard"]);
      assertEquals(locked.code, 0, locked.stderr);
    },
  );
});

/** Lock `hv01` in a fresh store and release it with History swapped for a link at `point`. */
async function archiveWithHistorySwapped(point: string) {
  await using t = await tempStore();
  const decoy = await Deno.makeTempDir({ prefix: "rl-decoy-" });
  try {
    const store = openFsStore(`${t.root}/{0}`, { historyFolderName: "History" });
    const dir = `${t.root}/hv01`;
    const version = (await store.create("hv01", "Host.lock", new TextEncoder().encode("{}")))!;
    await Deno.mkdir(`${dir}/History`);
    let swapped = false;
    const previous = setSeamHook((event) => {
      if (swapped || event.point !== point) return undefined;
      swapped = true;
      return (async () => {
        await Deno.rename(`${dir}/History`, `${dir}/History.real`);
        await Deno.symlink(decoy, `${dir}/History`);
      })();
    });
    try {
      const final = new TextEncoder().encode('{"final":true}');
      assertEquals(await store.archive("hv01", "Host.lock", version, "Host-1.lock", final), true);
    } finally {
      setSeamHook(previous);
    }
    assertOk(swapped, "History was swapped in the window");
    return {
      decoy: [...Deno.readDirSync(decoy)].map((e) => e.name),
      history: [...Deno.readDirSync(`${dir}/History.real`)].map((e) => e.name),
      record: await Deno.readTextFile(`${dir}/History.real/Host-1.lock`).catch(() => undefined),
      left: [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
    };
  } finally {
    await Deno.remove(decoy, { recursive: true });
  }
}

Deno.test({
  name: "History swapped for a link between its check and the move redirects nothing (Linux, FFI)",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const result = await archiveWithHistorySwapped("fs.archive.historyChecked");
    assertEquals(result.decoy, [], "nothing landed in the folder the link points at");
    assertEquals(result.history, ["Host-1.lock"]);
    assertEquals(result.record, '{"final":true}', "the record has its final content");
    assertEquals(result.left, [".resource-locker.guard", "History", "History.real"]);
  },
});

Deno.test("without FFI, a release still moves the lock into History (the path-checked way)", async () => {
  await using t = await tempStore();
  const script = `
    import { openFsStore } from ${
    JSON.stringify(new URL("../src/stores/fs.ts", import.meta.url).href)
  };
    import { folderHandles } from ${
    JSON.stringify(new URL("../src/stores/_folder_handles.ts", import.meta.url).href)
  };
    const store = openFsStore(${JSON.stringify(`${t.root}/{0}`)}, { historyFolderName: "History" });
    const v = await store.create("hv01", "Host.lock", new TextEncoder().encode("{}"));
    const moved = await store.archive("hv01", "Host.lock", v, "Host-1.lock", new TextEncoder().encode("end"));
    console.log(JSON.stringify({ handles: folderHandles() !== undefined, moved }));
  `;
  assertEquals(await withoutFfi(`${t.root}/archive.ts`, script), {
    handles: false,
    moved: true,
  });
  assertEquals(await Deno.readTextFile(`${t.root}/hv01/History/Host-1.lock`), "end");
});

/**
 * A program blocked in its open of `fifo`, as some other program of the
 * machine might be: a reader (`cat`) waits for a writer's open, a writer
 * (`sh -c 'printf … > fifo'`) for a reader's. {@linkcode BlockedOnFifo.release}
 * opens the other end itself and passes the word "released" through: it gets
 * through only if nothing opened that end before (a reader let go earlier
 * meets the end of the file, a writer let go earlier a broken pipe).
 */
interface BlockedOnFifo {
  /**
   * Whether its open has not returned: alive, without the FIFO among its files
   * (Linux `/proc`). Can miss a let-go it has not yet run after; `release` cannot.
   */
  blocked(): boolean;
  /** Opens the other end (bounded), passes "released", and returns what got through. */
  release(): Promise<string>;
}

async function blockedOnFifo(fifo: string, side: "reader" | "writer"): Promise<BlockedOnFifo> {
  const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
  assertEquals(made.code, 0);
  const reader = ["cat", fifo];
  const writer = ["sh", "-c", 'printf released > "$1"', "sh", fifo];
  const [command, ...args] = side === "reader" ? reader : writer;
  const child = new Deno.Command(command!, { args, stdout: "piped", stderr: "null" }).spawn();
  const output = child.output();
  // openat is 257 on x86-64 and 56 on arm64; wchan names the FIFO's wait where the kernel says.
  const openat = Deno.build.arch === "aarch64" ? "56" : "257";
  const waiting = () => {
    try {
      const wchan = Deno.readTextFileSync(`/proc/${child.pid}/wchan`);
      const call = Deno.readTextFileSync(`/proc/${child.pid}/syscall`).split(" ")[0];
      return wchan === "wait_for_partner" || (wchan !== "0" && call === openat);
    } catch {
      return false;
    }
  };
  await waitFor(`the ${side} to wait on the FIFO`, waiting, 5_000, 5);
  const real = Deno.realPathSync(fifo);
  const blocked = () => {
    try {
      const state = Deno.readTextFileSync(`/proc/${child.pid}/stat`).split(") ")[1]?.[0];
      if (state === undefined || state === "Z") return false;
      for (const entry of Deno.readDirSync(`/proc/${child.pid}/fd`)) {
        if (Deno.readLinkSync(`/proc/${child.pid}/fd/${entry.name}`) === real) return false;
      }
      return true;
    } catch {
      return false;
    }
  };
  let released: Promise<string> | undefined;
  const release = async () => {
    // Bounded: with no partner left, our own open of the other end would wait for ever.
    const [partnerCommand, ...partnerArgs] = side === "reader" ? writer : reader;
    const partner = await new Deno.Command("timeout", {
      args: ["5", partnerCommand!, ...partnerArgs],
      stdout: "piped",
      stderr: "null",
    }).output();
    const own = await within(5_000, output, () => child.kill());
    const text = new TextDecoder().decode(side === "reader" ? own.stdout : partner.stdout);
    const codes = `${own.code}/${partner.code}`;
    return codes === "0/0" ? text : `${text} (exit codes ${codes})`;
  };
  return { blocked, release: () => released ??= release() };
}

const ffi = Deno.build.os === "linux" && folderHandles()?.openFile !== undefined;

Deno.test({
  name:
    "a FIFO or a link to one swapped in between a look and an open is not opened through: a program blocked on the FIFO stays blocked (Linux, FFI)",
  ignore: !ffi,
  async fn() {
    await using t = await tempStore();
    const store = openFsStore(`${t.root}/{0}`, { historyFolderName: "History" });
    const dir = `${t.root}/hv01`;
    // What is swapped in at which point, who waits on the FIFO, and the refusal.
    const cases: [string, string, string, "fifo" | "link", "reader" | "writer", string][] = [
      ["a read meets a FIFO", "Host.lock", "fs.read.looked", "fifo", "reader", "FIFO"],
      ["a read meets a link to a FIFO", "Host.lock", "fs.read.looked", "link", "reader", "link"],
      ["a read meets a link to a FIFO", "Host.lock", "fs.read.looked", "link", "writer", "link"],
      ["the guard is a FIFO", GUARD_FILE, "fs.guard.looked", "fifo", "reader", "not a regular"],
      ["the guard links to a FIFO", GUARD_FILE, "fs.guard.looked", "link", "reader", "link"],
      ["the guard links to a FIFO", GUARD_FILE, "fs.guard.looked", "link", "writer", "link"],
    ];
    for (const [situation, entry, point, plant, side, refusal] of cases) {
      const what = `${situation}${plant === "link" ? " elsewhere" : ""} with a blocked ${side}`;
      let waiter: BlockedOnFifo | undefined;
      const outside = await Deno.makeTempDir({ prefix: "rl-outside-" });
      try {
        await Deno.remove(`${dir}/Host.lock`).catch(() => {});
        const version = (await store.create("hv01", "Host.lock", new TextEncoder().encode("{}")))!;
        await store.remove("hv01", "Host.lock", version); // makes the guard
        const v = (await store.create("hv01", "Host.lock", new TextEncoder().encode("{}")))!;
        let swapped = false;
        const previous = setSeamHook((event) => {
          if (swapped || event.point !== point) return undefined;
          swapped = true;
          return (async () => {
            await Deno.remove(`${dir}/${entry}`);
            if (plant === "fifo") {
              waiter = await blockedOnFifo(`${dir}/${entry}`, side);
            } else {
              waiter = await blockedOnFifo(`${outside}/fifo`, side);
              await Deno.symlink(`${outside}/fifo`, `${dir}/${entry}`);
            }
          })();
        });
        let outcome: string;
        try {
          const attempt: Promise<unknown> = entry === "Host.lock"
            ? store.read("hv01", "Host.lock")
            : store.remove("hv01", "Host.lock", v);
          outcome = await within(10_000, attempt).then(
            (result) => `done: ${JSON.stringify(result)}`,
            (error) => (error as Error).message,
          );
        } finally {
          setSeamHook(previous);
        }
        assertOk(swapped && waiter !== undefined, `${what}: the swap happened`);
        assertStringIncludes(outcome, refusal, what);
        assertStringIncludes(outcome, "left alone", what);
        assertOk(waiter.blocked(), `${what}: it still waits after the refusal`);
        assertEquals(await waiter.release(), "released", `${what}: only the test let it go`);
        if (plant === "link") {
          assertOk((await Deno.lstat(`${dir}/${entry}`)).isSymlink, `${what}: the link stays`);
        }
        await Deno.remove(`${dir}/${entry}`);
      } finally {
        await waiter?.release();
        await Deno.remove(outside, { recursive: true });
      }
    }
    // Nothing is left held: a change goes through at once.
    await Deno.remove(`${dir}/Host.lock`).catch(() => {});
    const v = (await store.create("hv01", "Host.lock", new Uint8Array()))!;
    assertEquals(await within(5_000, store.remove("hv01", "Host.lock", v)), true);
  },
});

Deno.test({
  name: "with FFI, lock files are read through the no-follow open: same content and versions",
  ignore: !ffi,
  async fn() {
    await using t = await tempStore();
    const store = openFsStore(`${t.root}/{0}`, { historyFolderName: "History" });
    const v1 = (await store.create("hv01", "Host.lock", new TextEncoder().encode("one")))!;
    const read = await store.read("hv01", "Host.lock");
    assertEquals(read?.version, v1, "the version read is the one created (dev and inode agree)");
    const stat = await Deno.stat(`${t.root}/hv01/Host.lock`);
    assertEquals(read?.writtenAt?.getTime(), stat.mtime?.getTime());
    const big = new Uint8Array(200_000).fill(65);
    const v2 = (await store.replace("hv01", "Host.lock", v1, big))!;
    const again = await store.read("hv01", "Host.lock");
    assertEquals(again?.version, v2);
    assertEquals(again?.data.length, big.length);
    const guard = await Deno.stat(`${t.root}/hv01/.resource-locker.guard`);
    assertOk(guard.isFile && guard.size === 0, "the guard is an empty regular file");
  },
});

Deno.test("without FFI, reads and guarded changes work as before, and planted links are refused", async () => {
  await using t = await tempStore();
  const script = `
    import { openFsStore } from ${
    JSON.stringify(new URL("../src/stores/fs.ts", import.meta.url).href)
  };
    import { folderHandles } from ${
    JSON.stringify(new URL("../src/stores/_folder_handles.ts", import.meta.url).href)
  };
    const dir = ${JSON.stringify(`${t.root}/hv01`)};
    const store = openFsStore(${JSON.stringify(`${t.root}/{0}`)}, { historyFolderName: "History" });
    const text = (data) => new TextDecoder().decode(data);
    const v1 = await store.create("hv01", "Host.lock", new TextEncoder().encode("one"));
    const v2 = await store.replace("hv01", "Host.lock", v1, new TextEncoder().encode("two"));
    const read = text((await store.read("hv01", "Host.lock")).data);
    const removed = await store.remove("hv01", "Host.lock", v2);
    const refusal = (p) => p.then(() => "done", (e) => e.message);
    await Deno.writeTextFile(${JSON.stringify(`${t.root}/outside`)}, "outside");
    await Deno.symlink(${JSON.stringify(`${t.root}/outside`)}, dir + "/Host.lock");
    const link = await refusal(store.read("hv01", "Host.lock"));
    await Deno.remove(dir + "/Host.lock");
    const v3 = await store.create("hv01", "Host.lock", new TextEncoder().encode("three"));
    await Deno.remove(dir + "/.resource-locker.guard");
    await Deno.symlink(${JSON.stringify(`${t.root}/outside`)}, dir + "/.resource-locker.guard");
    const guard = await refusal(store.remove("hv01", "Host.lock", v3));
    console.log(JSON.stringify({ handles: folderHandles() !== undefined, read, removed, link, guard }));
  `;
  const result = await withoutFfi(`${t.root}/fallback.ts`, script) as {
    handles: boolean;
    read: string;
    removed: boolean;
    link: string;
    guard: string;
  };
  assertEquals(result.handles, false);
  assertEquals(result.read, "two");
  assertEquals(result.removed, true);
  assertStringIncludes(result.link, "symbolic link");
  assertStringIncludes(result.guard, "symbolic link");
  assertStringIncludes(result.guard, "guard");
  assertEquals(await Deno.readTextFile(`${t.root}/outside`), "outside");
});

Deno.test({
  name:
    "a History swapped for a link while a record is read yields the record, not the link's (Linux, FFI)",
  ignore: !ffi,
  async fn() {
    await using t = await tempStore();
    const decoy = await Deno.makeTempDir({ prefix: "rl-decoy-" });
    try {
      const store = openFsStore(`${t.root}/{0}`, { historyFolderName: "History" });
      const dir = `${t.root}/hv01`;
      await Deno.mkdir(`${dir}/History`, { recursive: true });
      await Deno.writeTextFile(`${dir}/History/Host.lock-1`, "record");
      await Deno.writeTextFile(`${decoy}/Host.lock-1`, "decoy");
      let swapped = false;
      const previous = setSeamHook((event) => {
        if (swapped || event.point !== "fs.read.looked") return undefined;
        swapped = true;
        return (async () => {
          await Deno.rename(`${dir}/History`, `${dir}/History.real`);
          await Deno.symlink(decoy, `${dir}/History`);
        })();
      });
      let data: Uint8Array | undefined;
      try {
        data = await store.readHistory("hv01", "Host.lock-1");
      } finally {
        setSeamHook(previous);
      }
      assertOk(swapped, "History was swapped in the window");
      assertEquals(new TextDecoder().decode(data), "record");
      // Now that the name is a link, it is refused before anything is opened.
      const error = await store.readHistory("hv01", "Host.lock-1").then(
        () => "",
        (e) => e.message,
      );
      assertStringIncludes(error, "symbolic link");
    } finally {
      await Deno.remove(decoy, { recursive: true });
    }
  },
});

Deno.test("history --limit holds only the newest records, however much is planted in History", async () => {
  // Each record may be as large as a lock file (1 MiB); 150 of 900 KB do
  // not fit a 64 MB heap all at once, the newest one does.
  await using t = await tempStore();
  const history = `${t.root}/hv01/History`;
  await Deno.mkdir(history, { recursive: true });
  const caller = "A".repeat(900_000);
  for (let i = 0; i < 150; i++) {
    await Deno.writeTextFile(
      `${history}/Generic-s${i}.lock`,
      JSON.stringify({
        Caller: `${caller}${i}`,
        LockedAtUtc: "2020-01-01T00:00:00.000Z",
        UnlockedAtUtc: new Date(Date.UTC(2020, 0, 2, 0, 0, i)).toISOString(),
        Type: "Generic",
        SessionId: `s${i}`,
      }),
    );
  }
  const config = `${t.root}/config.ts`;
  await Deno.writeTextFile(config, "export default { concurrency: 2 };");
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--v8-flags=--max-old-space-size=64",
      new URL("../cli.ts", import.meta.url).pathname,
      "--store",
      t.store,
      "--config-file",
      config,
      "history",
      "hv01",
      "--limit",
      "2",
      "--json",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assertEquals(output.code, 0, stderr.slice(0, 500));
  const entries = JSON.parse(new TextDecoder().decode(output.stdout)).entries;
  assertEquals(entries.map((e: { sessionId: string }) => e.sessionId), ["s149", "s148"]);
});

Deno.test("store content that is hard on the secret masking passes --json at once", async () => {
  // Every --json document and every answer of the server passes the secret
  // masking whole: its patterns must take time in proportion to the text.
  // A caller of 40000 letters took seconds, ";pass" repeated ran for hours.
  for (
    const caller of [
      "A".repeat(500_000),
      ";pass".repeat(100_000),
      "(".repeat(500_000),
      "(x:".repeat(150_000),
      "a.".repeat(250_000),
    ]
  ) {
    await hostile(
      (dir) =>
        Deno.writeTextFile(
          `${dir}/Generic-s1.lock`,
          JSON.stringify({
            Caller: caller,
            LockedAtUtc: "2020-01-01T00:00:00.000Z",
            SessionId: "s1",
          }),
        ),
      async (run) => {
        const result = await run(["status", "hv01", "--json"]);
        assertEquals(result.code, 0, result.stderr.slice(0, 300));
        assertEquals(JSON.parse(result.stdout).locks[0].caller, caller, "--json keeps it exact");
      },
    );
  }
});

Deno.test("a Host.lock of NULs ending in a letter is read at once", async () => {
  // Trailing NULs (a crashed write's padding) are dropped; a run of them that
  // does not end the file was scanned again from each NUL: 300 KB took minutes.
  await hostile(
    (dir) =>
      Deno.writeFile(`${dir}/Host.lock`, new TextEncoder().encode(`${"\0".repeat(300_000)}x`)),
    async (run) => {
      for (const args of [["status", "hv01"], ["status", "hv01", "--json"]]) {
        const result = await run(args);
        assertEquals(result.code, 0, result.stderr.slice(0, 300));
      }
      const lock = await run(["lock", "hv01", "--hard"]);
      assertEquals(lock.code, 3, lock.stderr.slice(0, 300)); // held (by whoever), not hung
    },
  );
});
