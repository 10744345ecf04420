/**
 * Maintenance groups on the local-folder store (issue 16): a Host lock on a
 * member takes a slot of each of its groups, all or nothing with its
 * dependencies; slots are freed with the lock, when their lease runs out,
 * or when they are left over; a full group is reported and waited on like
 * a busy host; the races between takers are forced with seams. Slot files
 * are read on disk, not through the tool.
 *
 * @module
 */

import { join } from "node:path";
import {
  assertEquals,
  assertOk,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "./_assert.ts";
import {
  breakResourceLock,
  getGroupStatus,
  getMaintenanceGroups,
  getResourceLockStatus,
  InputError,
  LockBusyError,
  LockLostError,
  type LockProgress,
  lockResource,
  type LockResourceOptions,
  type MaintenanceGroup,
  testGroupSlot,
  testHostResourceLock,
  tryLockResource,
  unlockResource,
} from "../mod.ts";
import { FakeClock, fileNames, tempStore, within } from "./_helpers.ts";
import { pausedAt } from "./_seams.ts";
import { mergeGroups, validateGroups } from "../src/groups.ts";
import { readDependencyFile, readDependencyMap } from "../src/dependencies.ts";
import { resolveConfig } from "../src/config.ts";
import { runCliInProcess } from "./_cli_helpers.ts";
import { registerGroupContentionSuite } from "./_group_contention.ts";

const HV_A: MaintenanceGroup = { name: "hv-a", members: ["hv01", "hv02", "hv03"], max: 1 };

function opts(
  store: string,
  groups: MaintenanceGroup[],
  extra: LockResourceOptions = {},
): LockResourceOptions {
  return {
    store,
    type: "Host",
    dependencies: {},
    timeout: 0,
    retries: 1,
    config: { groups, clockSkew: 0 },
    ...extra,
  };
}

/** The slot files of a group's own folder, read on disk: name → parsed content. */
async function slotFiles(root: string, group: string): Promise<Record<string, unknown>[]> {
  const folder = join(root, `_group-${group}`);
  const out: Record<string, unknown>[] = [];
  for (const name of await fileNames(folder)) {
    out.push({ name, ...JSON.parse(await Deno.readTextFile(join(folder, name))) });
  }
  return out;
}

// --- definitions -------------------------------------------------------------

Deno.test("groups are checked field by field, with the place at fault named", () => {
  const check = (value: unknown) =>
    assertThrows(() => validateGroups(value, "options"), InputError);
  assertStringIncludes(check({ name: "a", members: [], max: 1 }).message, "it has no members");
  assertStringIncludes(check([{ name: "a", members: ["h"], max: 0 }]).message, "max");
  assertStringIncludes(check([{ name: "a", members: ["h"], max: 1.5 }]).message, ">= 1");
  assertStringIncludes(check([{ name: "a b", members: ["h"], max: 1 }]).message, "group name");
  assertStringIncludes(check([{ name: "a", members: ["h/x"], max: 1 }]).message, "members[0]");
  assertStringIncludes(check([{ name: "a", members: ["h"], max: 1, size: 2 }]).message, '"size"');
  assertStringIncludes(
    check([{ name: "a", members: ["h"], max: 1 }, { name: "A", members: ["h"], max: 1 }]).message,
    "defined twice",
  );
  assertStringIncludes(check("hv-a").message, "expected an array");
  // As PowerShell writes a one-element array: a plain value.
  assertEquals(validateGroups({ name: "G", members: "HV01", max: 2, home: "DC01" }, "options"), [
    { name: "g", members: ["hv01"], max: 2, home: "dc01" },
  ]);
  const again = { name: "g", members: ["hv01"], max: 3 };
  const error = assertThrows(
    () =>
      mergeGroups([
        { groups: validateGroups([{ ...again, max: 2 }], "options"), source: "the config" },
        { groups: validateGroups([again], "options"), source: "map.json" },
      ]),
    InputError,
  );
  assertStringIncludes(error.message, 'defined differently in "the config" and "map.json"');
});

Deno.test("a config with groups, hosts and staleness settings resolves; a bad one names the setting", async () => {
  const config = await resolveConfig({
    groups: [{ name: "HV-A", members: ["HV01"], max: 1 }],
    hosts: ["DC01"],
    staleEmptyAfter: "2m",
  });
  assertEquals(config.groups, [{ name: "hv-a", members: ["hv01"], max: 1 }]);
  assertEquals(config.hosts, ["dc01"]);
  assertEquals(config.staleEmptyMs, 120_000);
  assertEquals(config.stalePowerShellMs, 86_400_000);
  const bad = await assertRejects(
    () => resolveConfig({ groups: [{ name: "x", members: ["h"], max: -1 }] }),
    InputError,
  );
  assertStringIncludes(bad.message, 'config "options" setting "groups"');
  await assertRejects(
    () => resolveConfig({ hosts: ["ok", "not ok"] }),
    InputError,
    'setting "hosts"[1]',
  );
});

Deno.test("the map file's @groups section is read beside the map; maps without it read as before", async () => {
  await using t = await tempStore();
  const path = join(t.root, "map.json");
  const map = { hv01: ["dc01"], dc01: ["hv01"] };
  await Deno.writeTextFile(path, JSON.stringify(map));
  const plain = await readDependencyFile(path);
  assertEquals([{ ...plain.dependencies }, plain.groups], [map, []]);
  await Deno.writeTextFile(
    path,
    JSON.stringify({ ...map, "@groups": [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }] }),
  );
  assertEquals(Object.keys(await readDependencyMap(path)), ["hv01", "dc01"]);
  assertEquals((await readDependencyFile(path)).groups, [
    { name: "hv-a", members: ["hv01", "hv02"], max: 1 },
  ]);
  await Deno.writeTextFile(path, JSON.stringify({ ...map, "@groups": [{ name: "x" }] }));
  await assertRejects(
    () => readDependencyFile(path),
    InputError,
    `dependency map "${path}" section "@groups"`,
  );
  // The groups of the map file and the config together.
  await Deno.writeTextFile(
    path,
    JSON.stringify({ "@groups": [{ name: "from-map", members: ["hv09"], max: 1 }] }),
  );
  const groups = await getMaintenanceGroups({
    config: { groups: [HV_A], dependenciesFile: path },
  });
  assertEquals(groups.map((g) => g.name), ["hv-a", "from-map"]);
  assertEquals(
    (await getMaintenanceGroups({
      config: { groups: [HV_A] },
      dependenciesFile: path,
      host: "hv02",
    }))
      .map((g) => g.name),
    ["hv-a"],
  );
});

// --- taking and freeing slots ------------------------------------------------

Deno.test("a Host lock on a member takes a slot; another member is refused naming who is in maintenance", async () => {
  await using t = await tempStore();
  const lock = await lockResource("hv01", opts(t.store, [HV_A], { caller: "patch-a" }));
  assertEquals(lock.slots.map((s) => [s.group, s.member, s.name]), [
    ["hv-a", "hv01", "Group-hv-a.slot-1"],
  ]);
  const [slot] = await slotFiles(t.root, "hv-a");
  assertEquals(
    [slot!.name, slot!.Group, slot!.Member, slot!.SessionId, slot!.Caller],
    ["Group-hv-a.slot-1", "hv-a", "hv01", lock.sessionId, "patch-a"],
  );
  assertEquals(await tryLockResource("hv02", opts(t.store, [HV_A])), undefined);
  const busy = await assertRejects(
    () => lockResource("hv03", opts(t.store, [HV_A])),
    LockBusyError,
  );
  assertOk(
    /^Cannot lock "hv03": group "hv-a": 1 of 1 in maintenance: hv01 by "patch-a" since \d{4}-\d\d-\d\dT.* \(1 attempt\)$/
      .test(busy.message),
    busy.message,
  );
  assertEquals(busy.host, "hv03");
  assertEquals([busy.holders[0]!.group, busy.holders[0]!.member], ["hv-a", "hv01"]);
  assertEquals(await t.files("hv03"), [], "the refused member's Host lock was taken back");
  // Shared locks take no slot and pass.
  const shared = await lockResource("hv02", opts(t.store, [HV_A], { type: "Generic" }));
  assertEquals(shared.slots, []);
  await shared.release();
  assertOk(!(await testGroupSlot("hv-a", { store: t.store, config: { groups: [HV_A] } })));
  await lock.release();
  assertEquals(await slotFiles(t.root, "hv-a"), [], "the slot goes with the Host lock");
  assertOk(await testGroupSlot("hv-a", { store: t.store, config: { groups: [HV_A] } }));
  const next = await lockResource("hv03", opts(t.store, [HV_A]));
  await next.release();
});

Deno.test("max 2 lets two members in at once and refuses the third", async () => {
  await using t = await tempStore();
  const group = { ...HV_A, members: ["hv01", "hv02", "hv03", "hv04"], max: 2 };
  const a = await lockResource("hv01", opts(t.store, [group], { caller: "a" }));
  const b = await lockResource("hv02", opts(t.store, [group], { caller: "b" }));
  assertEquals((await slotFiles(t.root, "hv-a")).map((s) => s.Member), ["hv01", "hv02"]);
  const busy = await assertRejects(
    () => lockResource("hv03", opts(t.store, [group])),
    LockBusyError,
  );
  assertStringIncludes(busy.message, 'group "hv-a": 2 of 2 in maintenance: hv01 by "a"');
  assertStringIncludes(busy.message, '; hv02 by "b"');
  await a.release();
  const c = await lockResource("hv03", opts(t.store, [group]));
  assertEquals(c.slots[0]!.name, "Group-hv-a.slot-1", "the freed slot is taken again");
  const status = await getGroupStatus("HV-A", { store: t.store, config: { groups: [group] } });
  assertEquals([status.used, status.free, status.home], [2, 0, "_group-hv-a"]);
  assertEquals(status.location, join(t.root, "_group-hv-a"));
  assertEquals(status.slots.map((s) => [s.slot, s.member, s.expired, s.orphaned]), [
    [1, "hv03", false, false],
    [2, "hv02", false, false],
  ]);
  await b.release();
  await c.release();
});

Deno.test("a member of two groups takes a slot of each or none, and its Host lock goes too", async () => {
  await using t = await tempStore();
  const groups = [
    { name: "a", members: ["hv01", "hv02"], max: 1 },
    { name: "b", members: ["hv02", "hv03"], max: 1 },
  ];
  const hv03 = await lockResource("hv03", opts(t.store, groups));
  const busy = await assertRejects(
    () => lockResource("hv02", opts(t.store, groups)),
    LockBusyError,
  );
  assertStringIncludes(busy.message, 'group "b": 1 of 1 in maintenance: hv03');
  assertEquals(await slotFiles(t.root, "a"), [], "group a's slot was taken back");
  assertEquals(await t.files("hv02"), [], "and the Host lock on hv02");
  await hv03.release();
  const hv02 = await lockResource("hv02", opts(t.store, groups));
  assertEquals(hv02.slots.map((s) => s.group).sort(), ["a", "b"]);
  await hv02.release();
  assertEquals([...await slotFiles(t.root, "a"), ...await slotFiles(t.root, "b")], []);
});

Deno.test("dependencies that are members take slots too; more than max in one lock is bad input", async () => {
  await using t = await tempStore();
  const dependencies = { hv02: ["hv01"] }; // locking hv01 locks hv02
  const group = { name: "hv-a", members: ["hv01", "hv02", "hv03"], max: 1 };
  const error = await assertRejects(
    () => lockResource("hv01", opts(t.store, [group], { dependencies })),
    InputError,
  );
  assertStringIncludes(
    error.message,
    'Cannot lock "hv02", "hv01" together: group "hv-a" lets 1 of its members into maintenance at once, this needs 2',
  );
  assertEquals(await t.files("hv01"), []);
  const lock = await lockResource("hv01", opts(t.store, [{ ...group, max: 2 }], { dependencies }));
  assertEquals(lock.slots.map((s) => s.member), ["hv02", "hv01"]);
  await lock.release();
  // Without dependencies the member still takes its slot.
  const alone = await lockResource(
    "hv01",
    opts(t.store, [group], { dependencies, noDependencies: true }),
  );
  assertEquals(alone.slots.map((s) => s.member), ["hv01"]);
  await alone.release();
});

Deno.test("unlock by ref (the command line's way) frees the member's slot with its Host lock", async () => {
  await using t = await tempStore();
  const lock = await lockResource("hv01", opts(t.store, [HV_A]));
  const [result] = await unlockResource([...lock.refs], {
    store: t.store,
    config: { groups: [HV_A] },
  });
  assertEquals(result!.status, "released");
  assertEquals(await slotFiles(t.root, "hv-a"), []);
  // The command line: lock prints the refs, unlock frees lock and slot.
  const env = ["--store", t.store, "--dependencies-file", join(t.root, "map.json")];
  await Deno.writeTextFile(
    join(t.root, "map.json"),
    JSON.stringify({ "@groups": [HV_A] }),
  );
  const locked = await runCliInProcess(["lock", "hv02", "--hard", ...env]);
  assertEquals(locked.code, 0, locked.stderr);
  assertEquals((await slotFiles(t.root, "hv-a")).map((s) => s.Member), ["hv02"]);
  const refused = await runCliInProcess(["lock", "hv01", "--hard", "--retries", "1", ...env]);
  assertEquals(refused.code, 3);
  assertStringIncludes(refused.stderr, 'group "hv-a": 1 of 1 in maintenance: hv02');
  const unlocked = await runCliInProcess([
    "unlock",
    locked.stdout.trim(),
    "--store",
    t.store,
    "--config-file",
    await configFile(t.root, { dependenciesFile: join(t.root, "map.json") }),
  ]);
  assertEquals(unlocked.code, 0, unlocked.stderr);
  assertEquals(await slotFiles(t.root, "hv-a"), []);
});

/** A config module with these settings, in `root`. */
async function configFile(root: string, settings: Record<string, unknown>): Promise<string> {
  const path = join(root, `config-${crypto.randomUUID()}.ts`);
  await Deno.writeTextFile(path, `export default ${JSON.stringify(settings)};\n`);
  return path;
}

Deno.test("a slot left over when its Host lock was broken is freed by the next taker", async () => {
  await using t = await tempStore();
  const options = { store: t.store, config: { groups: [HV_A] } };
  const lock = await lockResource("hv01", opts(t.store, [HV_A]));
  await breakResourceLock(lock.refs[0]!, { store: t.store, force: true });
  const status = await getGroupStatus("hv-a", options);
  assertEquals(status.slots.map((s) => [s.member, s.orphaned]), [["hv01", true]]);
  assertEquals([status.used, status.free], [0, 1]);
  assertOk(await testGroupSlot("hv-a", options));
  const next = await lockResource("hv02", opts(t.store, [HV_A]));
  assertEquals((await slotFiles(t.root, "hv-a")).map((s) => [s.name, s.Member]), [
    ["Group-hv-a.slot-1", "hv02"],
  ]);
  await next.release();
});

Deno.test("an expired slot is freed by the next taker, and its holder learns it lost it", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  const dead = await lockResource("hv01", opts(t.store, [HV_A], { ttl: 1, clock }));
  assertEquals(typeof (await slotFiles(t.root, "hv-a"))[0]!.ExpiresAtUtc, "string");
  assertEquals(await tryLockResource("hv02", opts(t.store, [HV_A], { clock })), undefined);
  clock.advance(5_000);
  const status = await getGroupStatus("hv-a", {
    store: t.store,
    config: { groups: [HV_A], clockSkew: 0 },
    clock,
  });
  assertEquals(status.slots.map((s) => s.expired), [true]);
  const next = await lockResource("hv02", opts(t.store, [HV_A], { clock }));
  assertEquals((await slotFiles(t.root, "hv-a")).map((s) => s.Member), ["hv02"]);
  await assertRejects(
    () => dead.renew(),
    LockLostError,
    'Slot "Group-hv-a.slot-1" of group "hv-a"',
  );
  assertOk(dead.signal.aborted, "the holder's signal tells it");
  await dead.release().catch(() => {});
  assertEquals((await slotFiles(t.root, "hv-a")).map((s) => s.Member), ["hv02"], "left alone");
  await next.release();
});

Deno.test("a session locking its member again keeps its one slot", async () => {
  await using t = await tempStore();
  const sessionId = crypto.randomUUID();
  const first = await lockResource("hv01", opts(t.store, [HV_A], { sessionId }));
  const again = await lockResource("hv01", opts(t.store, [HV_A], { sessionId }));
  assertEquals(again.slots.map((s) => s.name), ["Group-hv-a.slot-1"]);
  assertEquals((await slotFiles(t.root, "hv-a")).length, 1);
  await again.release();
  assertEquals(await slotFiles(t.root, "hv-a"), []);
  await first.release();
});

Deno.test("a Host lock waiting for a full group takes the slot once it is freed", async () => {
  await using t = await tempStore();
  const holder = await lockResource("hv01", opts(t.store, [HV_A], { caller: "first" }));
  const progress: LockProgress[] = [];
  const seen = Promise.withResolvers<void>();
  const waiter = lockResource(
    "hv02",
    opts(t.store, [HV_A], {
      wait: "60s",
      onProgress: (p) => {
        progress.push(p);
        seen.resolve();
      },
    }),
  );
  await within(30_000, seen.promise);
  assertEquals([progress[0]!.phase, progress[0]!.host, progress[0]!.group], [
    "retry",
    "hv02",
    "hv-a",
  ]);
  assertEquals(progress[0]!.holders.map((h) => [h.member, h.caller]), [["hv01", "first"]]);
  await holder.release();
  const lock = await within(30_000, waiter);
  assertEquals(lock.slots.map((s) => s.member), ["hv02"]);
  await lock.release();
});

// --- where slots live --------------------------------------------------------

Deno.test("where hosts have no shared root, slots live in the home host's folder and count as no lock there", async () => {
  await using t = await tempStore();
  const store = join(t.root, "{0}", "locks");
  for (const host of ["hv01", "hv02", "hv03"]) {
    await Deno.mkdir(join(t.root, host, "locks"), { recursive: true });
  }
  const group = { ...HV_A, max: 2 };
  const hv02 = await lockResource("hv02", opts(store, [group], { caller: "b" }));
  assertEquals(await fileNames(join(t.root, "hv01", "locks")), ["Group-hv-a.slot-1"]);
  assertEquals(await getResourceLockStatus("hv01", { store }), []);
  assertOk(!(await testHostResourceLock("hv01", { store })));
  // hv01's own Host lock neither waits for the slot file (drain) nor trips over it.
  const hv01 = await lockResource("hv01", opts(store, [group], { drainTimeout: "1s" }));
  assertEquals(await fileNames(join(t.root, "hv01", "locks")), [
    "Group-hv-a.slot-1",
    "Group-hv-a.slot-2",
    "Host.lock",
  ]);
  const status = await getGroupStatus("hv-a", { store, config: { groups: [group] } });
  assertEquals([status.home, status.location], ["hv01", join(t.root, "hv01", "locks")]);
  await hv01.release();
  await hv02.release();
  assertEquals(await fileNames(join(t.root, "hv01", "locks")), []);
  // A named home.
  const homed = { ...group, home: "hv03" };
  const lock = await lockResource("hv01", opts(store, [homed]));
  assertEquals(await fileNames(join(t.root, "hv03", "locks")), ["Group-hv-a.slot-1"]);
  await lock.release();
  // A file-name template that would make the slot a lock to PowerShell there is refused.
  const error = await assertRejects(
    () =>
      lockResource(
        "hv01",
        opts(store, [group], { config: { groups: [group], fileNameTemplate: "{0}" } }),
      ),
    InputError,
  );
  assertStringIncludes(
    error.message,
    "makes a lock to PowerShell; use a template with an extension",
  );
  assertEquals(await fileNames(join(t.root, "hv01", "locks")), []);
});

Deno.test("a slot whose member cannot be read (down for its maintenance) stays in force: busy, not a fault", async () => {
  await using t = await tempStore();
  const store = join(t.root, "{0}", "locks");
  for (const host of ["hv01", "hv02", "hv03"]) {
    await Deno.mkdir(join(t.root, host, "locks"), { recursive: true });
  }
  const lock = await lockResource("hv02", opts(store, [HV_A], { caller: "reboot" }));
  // hv02's lock folder now fails every read (as a server that is down would).
  await Deno.remove(join(t.root, "hv02", "locks", "Host.lock"));
  await Deno.mkdir(join(t.root, "hv02", "locks", "Host.lock"));
  const busy = await assertRejects(() => lockResource("hv03", opts(store, [HV_A])), LockBusyError);
  assertStringIncludes(busy.message, 'group "hv-a": 1 of 1 in maintenance: hv02 by "reboot"');
  const status = await getGroupStatus("hv-a", { store, config: { groups: [HV_A] } });
  assertEquals(status.slots.map((s) => [s.member, s.orphaned]), [["hv02", false]]);
  await Deno.remove(join(t.root, "hv02", "locks", "Host.lock"));
  await lock.release().catch(() => {}); // its Host lock is gone: lost; the slot is freed
  assertEquals(await fileNames(join(t.root, "hv01", "locks")), []);
});

// --- races, forced with seams ------------------------------------------------

Deno.test("two takers of the last slot: the one paused between its look and its create does not get it", async () => {
  await using t = await tempStore();
  const group = { ...HV_A, members: ["hv01", "hv02", "hv03", "hv04"], max: 2 };
  const first = await lockResource("hv01", opts(t.store, [group]));
  let competitor: Awaited<ReturnType<typeof lockResource>> | undefined;
  // A sees slot 2 free, then pauses; B takes slot 2; A's create finds it made.
  const { result } = await pausedAt(
    "locker.slot.checked",
    () => lockResource("hv02", opts(t.store, [group], { caller: "A" })).then((l) => l, (e) => e),
    async () => {
      competitor = await lockResource("hv03", opts(t.store, [group], { caller: "B" }));
    },
  );
  assertOk(result instanceof LockBusyError, `A must not get a slot: ${result}`);
  assertStringIncludes(result.message, 'group "hv-a": 2 of 2 in maintenance');
  assertEquals((await slotFiles(t.root, "hv-a")).map((s) => s.Member), ["hv01", "hv03"]);
  assertEquals(await t.files("hv02"), [], "A's Host lock was taken back");
  await first.release();
  await competitor!.release();
});

Deno.test("two takers freeing one expired slot: one frees and takes it, the other finds it taken", async () => {
  await using t = await tempStore();
  const clock = new FakeClock();
  await lockResource("hv01", opts(t.store, [HV_A], { ttl: 1, clock, caller: "dead" }));
  clock.advance(5_000);
  let competitor: Awaited<ReturnType<typeof lockResource>> | undefined;
  const { result } = await pausedAt(
    "locker.slot.judged",
    () =>
      lockResource("hv02", opts(t.store, [HV_A], { clock, caller: "A" })).then((l) => l, (e) => e),
    async () => {
      competitor = await lockResource("hv03", opts(t.store, [HV_A], { clock, caller: "B" }));
    },
  );
  assertOk(result instanceof LockBusyError, `A must not get the slot: ${result}`);
  assertStringIncludes(result.message, 'hv03 by "B"');
  assertEquals((await slotFiles(t.root, "hv-a")).map((s) => s.Member), ["hv03"]);
  await competitor!.release();
});

Deno.test("a session's own slot freed as left over while it locks again is not kept", async () => {
  await using t = await tempStore();
  const sessionId = crypto.randomUUID();
  const held = await lockResource("hv01", opts(t.store, [HV_A], { sessionId }));
  let competitor: Awaited<ReturnType<typeof lockResource>> | undefined;
  // A finds its own slot and pauses; meanwhile its Host lock is broken and
  // B frees the slot as left over and takes it: A's touch must fail.
  const { result } = await pausedAt(
    "locker.slot.own",
    () => lockResource("hv01", opts(t.store, [HV_A], { sessionId })).then((l) => l, (e) => e),
    async () => {
      await breakResourceLock(held.refs[0]!, { store: t.store, force: true });
      competitor = await lockResource("hv02", opts(t.store, [HV_A], { caller: "B" }));
    },
  );
  assertOk(result instanceof LockBusyError, `A must not keep a slot that B took: ${result}`);
  assertEquals((await slotFiles(t.root, "hv-a")).map((s) => s.Member), ["hv02"]);
  await competitor!.release();
});

// --- contention between processes --------------------------------------------

registerGroupContentionSuite("fs", async () => {
  const t = await tempStore();
  return {
    store: t.store,
    slotEntries: () => fileNames(join(t.root, "_group-gm-cluster")),
    hostEntries: (member) => t.files(member),
    [Symbol.asyncDispose]: () => t[Symbol.asyncDispose](),
  };
}, { ignore: false });
