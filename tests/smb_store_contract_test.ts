/**
 * The store contract (`_store_contract.ts`) on the SMB store, and the SMB
 * store's own race tests, against a real smbd on loopback: each window of a
 * compare-and-act forced with a seam (`src/_seam.ts`), a client that dies
 * while it holds a lock file open without sharing (connection cut, process
 * killed), and creates that are never seen empty or short. Two store
 * objects, each with its own connection, stand for two processes. One smbd
 * serves the whole file; each test takes a host folder of its own.
 *
 * @module
 */

import { StoreError } from "../src/errors.ts";
import type { LockStore } from "../src/store.ts";
import { assertEquals, assertOk, assertRejects, assertStringIncludes } from "./_assert.ts";
import { fileNames, sleep, waitFor } from "./_helpers.ts";
import { heldOpen, openTestSmbStore, pauseAt, SMB_USER, writeUnderSmbd } from "./_smb_helpers.ts";
import { startSmbProxy } from "./_smb_proxy.ts";
import { fileSmbd, smbdGate } from "./_smbd.ts";
import { registerStoreContract } from "./_store_contract.ts";

const gate = smbdGate();
const smbd = await fileSmbd(gate, { shares: ["contract", "race"], users: [SMB_USER] });
const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text);

/** A folder per host in one share: `create` makes the host's folder. */
function template(share: string, port = smbd!.port): string {
  return `smb://127.0.0.1:${port}/${share}/{0}`;
}

let round = 0;
registerStoreContract("SMB", async () => {
  const store = await openTestSmbStore(template("contract"));
  const other = await openTestSmbStore(template("contract"));
  return {
    store,
    other,
    host: `hv${++round}`,
    async plant(host, name, data) {
      // written on the server's disk, as another SMB client or a process on the server would
      await Deno.mkdir(`${smbd!.dir("contract")}/${host}`, { recursive: true });
      await writeUnderSmbd(`${smbd!.dir("contract")}/${host}/${name}`, data);
    },
    // A temporary file a killed creator leaves. The SMB store takes no guard
    // file, and lists the local-folder store's `.resource-locker.guard` (which
    // Windows callers through the OS leave on the same shares) as an entry:
    // no lock name matches it, so the locker ignores it.
    privateNames: [".resource-locker-left-by-a-crash.tmp"],
    async [Symbol.asyncDispose]() {
      await store.close();
      await other.close();
    },
  };
}, gate);

/** Two stores on the race share, closed at the end; a host of the test's own. */
interface Pair extends AsyncDisposable {
  store: LockStore;
  other: LockStore;
  host: string;
  /** The host's folder on disk. */
  dir: string;
}

async function pair(host: string, storeTemplate = template("race")): Promise<Pair> {
  const store = await openTestSmbStore(storeTemplate);
  const other = await openTestSmbStore(template("race"));
  return {
    store,
    other,
    host,
    dir: `${smbd!.dir("race")}/${host}`,
    async [Symbol.asyncDispose]() {
      await store.close();
      await other.close();
    },
  };
}

function raceTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `SMB store race: ${name}`, ignore: gate.ignore, fn });
}

raceTest("two archives of one version: exactly one moves it", async () => {
  await using s = await pair("twice01");
  const { store, other, host } = s;

  // The second arrives inside the first's critical section, which soon ends.
  const v1 = (await store.create(host, "Host.lock", bytes("dead holder")))!;
  {
    using pause = pauseAt("smb.archive.verified");
    const first = store.archive(host, "Host.lock", v1, "Host.lock-first", bytes("first"));
    await pause.reached;
    const second = other.archive(host, "Host.lock", v1, "Host.lock-second", bytes("second"));
    await sleep(100);
    pause.release();
    assertEquals([await first, await second], [true, false]);
  }
  assertEquals(await fileNames(`${s.dir}/History`), ["Host.lock-first"]);

  // The first stays inside longer than the second's retries: the second
  // reports the file busy and touches nothing.
  const v2 = (await store.create(host, "Host.lock", bytes("dead holder")))!;
  {
    using pause = pauseAt("smb.archive.verified");
    const first = store.archive(host, "Host.lock", v2, "Host.lock-first2", bytes("first"));
    await pause.reached;
    const error = await assertRejects(
      () => other.archive(host, "Host.lock", v2, "Host.lock-second2", bytes("second")),
      StoreError,
    );
    assertStringIncludes(error.message, "STATUS_SHARING_VIOLATION");
    assertStringIncludes(error.message, `/race/${host}/Host.lock`);
    pause.release();
    assertEquals(await first, true);
  }
  assertEquals(await fileNames(`${s.dir}/History`), ["Host.lock-first", "Host.lock-first2"]);
  assertEquals(await Deno.readTextFile(`${s.dir}/History/Host.lock-first2`), "first");
  assertEquals(await fileNames(s.dir), []);
});

raceTest(
  "while an archive holds the file, nobody else acts on it; afterwards the next holder's lock is left alone",
  async () => {
    await using s = await pair("held01");
    const { store, other, host } = s;
    const v1 = (await store.create(host, "Host.lock", bytes("first holder")))!;
    using pause = pauseAt("smb.archive.verified");
    const releasing = store.archive(host, "Host.lock", v1, "Host.lock-first", bytes("released"));
    await pause.reached;

    // Every act of another caller in that window: refused or nothing done.
    const [archived, replaced, removed, created, read] = await Promise.allSettled([
      other.archive(host, "Host.lock", v1, "Host.lock-broken", bytes("broken")),
      other.replace(host, "Host.lock", v1, bytes("renewed")),
      other.remove(host, "Host.lock", v1),
      other.create(host, "Host.lock", bytes("second holder")),
      other.read(host, "Host.lock"),
    ]);
    for (const result of [archived, replaced, removed]) {
      assertEquals(result.status, "rejected");
      assertOk((result as PromiseRejectedResult).reason instanceof StoreError);
    }
    assertEquals(created, { status: "fulfilled", value: undefined });
    // A lock held past the retries reads as unreadable: empty, with a
    // version that no mutation accepts.
    assertEquals(read.status, "fulfilled");
    const busy = (read as PromiseFulfilledResult<Awaited<ReturnType<LockStore["read"]>>>).value!;
    assertEquals(busy.data, new Uint8Array());
    assertOk(busy.version !== v1);
    assertEquals(await other.remove(host, "Host.lock", busy.version), false);
    assertEquals(await other.replace(host, "Host.lock", busy.version, bytes("x")), undefined);
    assertEquals(
      await other.archive(host, "Host.lock", busy.version, "Host.lock-x", bytes("x")),
      false,
    );

    pause.release();
    assertEquals(await releasing, true);
    assertEquals(await Deno.readTextFile(`${s.dir}/History/Host.lock-first`), "released");

    // The next holder takes the host; the first holder's late calls act on nothing.
    const v2 = (await other.create(host, "Host.lock", bytes("second holder")))!;
    assertEquals(await store.archive(host, "Host.lock", v1, "Host.lock-late", bytes("x")), false);
    assertEquals(await store.replace(host, "Host.lock", v1, bytes("x")), undefined);
    assertEquals(await store.remove(host, "Host.lock", v1), false);
    assertEquals(await Deno.readTextFile(`${s.dir}/Host.lock`), "second holder");
    assertEquals((await store.read(host, "Host.lock"))?.version, v2);
    assertEquals(await fileNames(`${s.dir}/History`), ["Host.lock-first"]);
    assertEquals(await heldOpen(s.dir), [], "the refused tries left nothing open");
  },
);

raceTest("a replace holds the file until it is whole: readers see old or new", async () => {
  await using s = await pair("renew01");
  const { store, other, host } = s;
  const before = "a".repeat(3000);
  const after = "b".repeat(1000);
  const v1 = (await store.create(host, "Host.lock", bytes(before)))!;
  using pause = pauseAt("smb.replace.written");
  const renewing = store.replace(host, "Host.lock", v1, bytes(after));
  await pause.reached;
  // Written but not closed yet: held past the retries, unreadable, not mixed.
  const meanwhile = (await other.read(host, "Host.lock"))!;
  assertEquals(meanwhile.data, new Uint8Array());
  assertEquals(await other.remove(host, "Host.lock", meanwhile.version), false);
  pause.release();
  const v2 = (await renewing)!;
  const { writtenAt: _, ...read } = (await other.read(host, "Host.lock"))!;
  assertEquals(read, { data: bytes(after), version: v2 });
});

raceTest("a client whose connection dies inside its critical section frees the file", async () => {
  await using proxy = startSmbProxy(smbd!.port);
  await using s = await pair("cut01", template("race", proxy.port));
  const { store: dying, other, host } = s;
  const v1 = (await other.create(host, "Host.lock", bytes("dead holder")))!;
  using pause = pauseAt("smb.remove.verified");
  const removing = dying.remove(host, "Host.lock", v1);
  removing.catch(() => {}); // judged below
  await pause.reached;
  proxy.cut();
  // The server closed the handle with the connection: others act at once.
  assertEquals(
    await other.archive(host, "Host.lock", v1, "Host.lock-broken", bytes("broken")),
    true,
  );
  pause.release();
  await assertRejects(() => removing, StoreError);
  assertEquals(await fileNames(s.dir), []);
  assertEquals(await fileNames(`${s.dir}/History`), ["Host.lock-broken"]);
});

/**
 * Starts a process that runs one store call and pauses at `point` (via
 * `RESOURCE_LOCKER_TEST_SEAM`), for a test to SIGKILL it there.
 * `create`: creates `Host.lock` with `size` bytes; `archive`: reads and archives it.
 */
async function childAt(
  point: string,
  op: "create" | "archive",
  host: string,
  size = 0,
): Promise<{ kill(): Promise<string> }> {
  const dir = await Deno.makeTempDir({ prefix: "rl-smb-seam-" });
  const code = `
    import { installSeamFromEnv } from ${JSON.stringify(import.meta.resolve("../src/_seam.ts"))};
    const { openSmbStore } = await import(${
    JSON.stringify(import.meta.resolve("../src/stores/smb.ts"))
  });
    installSeamFromEnv();
    const env = (name) => Deno.env.get(name) ?? "";
    const store = openSmbStore(env("T_TEMPLATE"), {
      username: env("T_USER"), password: env("T_PASSWORD"), historyFolderName: "History",
    });
    const data = new TextEncoder().encode("x".repeat(Number(env("T_SIZE"))));
    if (env("T_OP") === "create") {
      await store.create(env("T_HOST"), "Host.lock", data);
    } else {
      const entry = await store.read(env("T_HOST"), "Host.lock");
      await store.archive(env("T_HOST"), "Host.lock", entry.version, "Host.lock-child", data);
    }
    await store.close();
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    env: {
      RESOURCE_LOCKER_TEST_SEAM: `${point}:${dir}`,
      T_TEMPLATE: template("race"),
      T_USER: SMB_USER.name,
      T_PASSWORD: SMB_USER.password,
      T_HOST: host,
      T_OP: op,
      T_SIZE: String(size),
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const kill = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // exited
    }
    await child.status;
    await Deno.remove(dir, { recursive: true });
    return await stderr;
  };
  try {
    await waitFor(
      `the child to reach ${point}`,
      () => Deno.stat(`${dir}/reached`).then(() => true, () => false),
      20_000,
      10,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; child's stderr: ${await kill()}`);
  }
  return { kill };
}

raceTest("a process killed (SIGKILL) while it holds the file open frees it", async () => {
  await using s = await pair("kill01");
  const { other, host } = s;
  const v1 = (await other.create(host, "Host.lock", bytes("dead holder")))!;
  const child = await childAt("smb.archive.verified", "archive", host, 10);
  // It holds the file without sharing: nobody else can act on it meanwhile.
  await assertRejects(() => other.remove(host, "Host.lock", v1), StoreError);
  await child.kill();
  assertEquals(
    await other.archive(host, "Host.lock", v1, "Host.lock-after-kill", bytes("broken")),
    true,
    "usable again once its holder is dead",
  );
  assertEquals(await fileNames(s.dir), []);
  assertEquals(await fileNames(`${s.dir}/History`), ["Host.lock-after-kill"]);
});

raceTest(
  "a creator killed before or after sending leaves no lock or the whole lock, never a short one",
  async () => {
    await using s = await pair("kill02");
    const { other, host } = s;
    const size = 150_000; // three WRITEs in the compound
    await Deno.mkdir(s.dir); // so that the first compound sent is the one that creates
    const before = await childAt("smb.create.before", "create", host, size);
    await before.kill();
    assertEquals(await other.read(host, "Host.lock"), undefined, "nothing sent, nothing made");

    const sent = await childAt("smb.create.sent", "create", host, size);
    await sent.kill();
    // The server runs the whole compound it got: the file is there, whole.
    const entry = await other.read(host, "Host.lock");
    assertOk(entry !== undefined, "the compound that was sent was carried out");
    assertEquals(entry.data.length, size);
    assertOk(entry.data.every((byte) => byte === 0x78), "whole content");
    assertEquals(await other.remove(host, "Host.lock", entry.version), true, "and usable");
  },
);

raceTest("reads racing creates see no entry or the whole entry; no create fails", async () => {
  // Reads sent with each create reach smbd while it makes the file: a create
  // on the lock's own name was seen empty there (and failed, leaving it so).
  await using s = await pair("hammer01");
  const { store, other, host } = s;
  const small = bytes("y".repeat(400));
  const large = new Uint8Array(150_000).map((_, i) => 65 + (i % 26)); // three WRITEs
  let whole = 0;
  let none = 0;
  for (let i = 0; i < 120; i++) {
    const content = i % 4 === 3 ? large : small;
    const creating = store.create(host, "Generic-hammer.lock", content);
    const reads = await Promise.all(
      [1, 2, 3].map(() => other.read(host, "Generic-hammer.lock")),
    );
    const version = await creating;
    assertOk(version !== undefined, `round ${i}: created`);
    for (const entry of reads) {
      if (entry === undefined) {
        none++;
        continue;
      }
      assertEquals(entry.data.length, content.length, `round ${i}: never empty or short`);
      assertEquals(entry.data, content);
      assertEquals(entry.version, version);
      whole++;
    }
    assertEquals(await other.remove(host, "Generic-hammer.lock", version), true);
  }
  assertOk(whole > 0 && none > 0, `reads overlapped the creates (${whole} whole, ${none} none)`);
  assertEquals(await fileNames(s.dir), [], "no lock and no temporary file left");
});
