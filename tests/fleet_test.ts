/**
 * The fleet view on the local-folder store (issue 16): hosts found by
 * listing the store's root, or named by the config where the template has
 * no shared root; stale locks flagged; a host that cannot be read reported
 * on its own while the others are shown; groups shown with their slots.
 *
 * @module
 */

import { join } from "node:path";
import { assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { getFleetStatus, InputError, lockResource, StoreError } from "../mod.ts";
import { FakeClock, tempStore } from "./_helpers.ts";
import { toLocalTicks } from "../src/lock_file.ts";

const HOUR = 3_600_000;

/** A lock file as the original module writes it, taken `agoMs` ago. */
function powerShellLock(agoMs: number, caller = "Invoke-Patch"): string {
  const at = Date.now() - agoMs;
  const ticks = toLocalTicks(at, -new Date(at).getTimezoneOffset());
  return `{\r\n    "Caller":  "${caller}",\r\n    "LockedAt":  ${ticks}\r\n}\r\n`;
}

/** Writes a file and sets its modification time `agoMs` back. */
async function writeAged(path: string, text: string, agoMs: number): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, text);
  const at = new Date(Date.now() - agoMs);
  await Deno.utime(path, at, at);
}

Deno.test("status of the fleet lists the store's root: every lock, stale ones flagged, folders that are no hosts skipped", async () => {
  await using t = await tempStore();
  const clock = new FakeClock(Date.now() - 10 * 60_000);
  const groups = [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }];
  const config = { groups, clockSkew: 0 };
  const common = { store: t.store, dependencies: {}, config };
  await using _host = await lockResource("hv01", {
    ...common,
    type: "Host",
    caller: "reboot",
    ttl: "1m",
    clock,
  }); // taken 10 minutes ago with a 1-minute lease: expired, never broken
  await using _shared = await lockResource("web01", { ...common, caller: "deploy", ttl: "1h" });
  await writeAged(join(t.root, "ps01", "Host.lock"), powerShellLock(48 * HOUR), 48 * HOUR);
  await writeAged(join(t.root, "ps02", "Host.lock"), powerShellLock(HOUR, "fresh"), HOUR);
  await writeAged(join(t.root, "empty01", "Host.lock"), "", 10 * 60_000);
  await writeAged(join(t.root, "empty02", "Host.lock"), "", 1_000);
  await Deno.mkdir(join(t.root, "idle01"));
  await Deno.mkdir(join(t.root, "Not A Host"));
  await Deno.mkdir(join(t.root, "UPPER01"));

  const fleet = await getFleetStatus({ store: t.store, config });
  assertEquals(fleet.source, "listing");
  assertEquals(fleet.hosts, [
    "empty01",
    "empty02",
    "hv01",
    "idle01",
    "ps01",
    "ps02",
    "web01",
  ]);
  assertEquals(fleet.skipped, ["Not A Host", "UPPER01"]);
  assertEquals(fleet.failures, []);
  const byHost = Object.fromEntries(
    fleet.locks.map((l) => [l.host, [l.type, l.origin, l.stale.join(",")]]),
  );
  assertEquals(byHost, {
    empty01: ["Host", "unknown", "empty"],
    empty02: ["Host", "unknown", ""],
    hv01: ["Host", "resource-locker", "expired"],
    ps01: ["Host", "powershell", "powershell"],
    ps02: ["Host", "powershell", ""],
    web01: ["Generic", "resource-locker", ""],
  });
  const hv01 = fleet.locks.find((l) => l.host === "hv01")!;
  assertEquals([hv01.caller, hv01.holder?.pid], ["reboot", Deno.pid]);
  assertEquals(fleet.groups.map((g) => [g.name, g.used, g.free, g.home]), [
    ["hv-a", 0, 1, "_group-hv-a"],
  ]);
  assertEquals(
    fleet.groups[0]!.slots.map((s) => [s.member, s.expired]),
    [["hv01", true]],
    "hv01's slot ran out with its lease",
  );
  // Other thresholds, from the config.
  const strict = await getFleetStatus({
    store: t.store,
    config: { ...config, staleEmptyAfter: "0s", stalePowerShellAfter: "30m" },
  });
  assertEquals(
    strict.locks.filter((l) => l.stale.length > 0).map((l) => l.host),
    ["empty01", "empty02", "hv01", "ps01", "ps02"],
  );
});

Deno.test("status of the fleet where each host has its own folder tree: the hosts the config names", async () => {
  await using t = await tempStore();
  const store = join(t.root, "{0}", "locks");
  for (const host of ["dc01", "hv01", "hv02", "db01", "file01", "opt01"]) {
    await Deno.mkdir(join(t.root, host, "locks"), { recursive: true });
  }
  const map = join(t.root, "map.json");
  await Deno.writeTextFile(
    map,
    JSON.stringify({
      hv01: ["dc01"],
      "@groups": [{ name: "hv-a", members: ["hv01", "hv02"], max: 1 }],
    }),
  );
  const hostsFile = join(t.root, "hosts.txt");
  await Deno.writeTextFile(hostsFile, "# more hosts\nFILE01  # the file server\n\n");
  const config = { dependenciesFile: map, hosts: ["db01"], hostsFile };
  await using _lock = await lockResource("hv02", {
    store,
    type: "Host",
    config,
    caller: "patch",
  });
  await Deno.writeTextFile(join(t.root, "file01", "locks", "Generic-x.lock"), "{}");
  await Deno.writeTextFile(join(t.root, "opt01", "locks", "Host.lock"), "{}");
  const fleet = await getFleetStatus({ store, config, hosts: ["opt01"] });
  assertEquals(fleet.source, "named");
  assertEquals(fleet.hosts, ["db01", "dc01", "file01", "hv01", "hv02", "opt01"]);
  assertEquals(fleet.locks.map((l) => `${l.host}/${l.lockId}`), [
    "file01/Generic-x",
    "hv02/Host",
    "opt01/Host",
  ]);
  assertEquals(fleet.groups.map((g) => [g.home, g.used]), [["hv01", 1]]);
  // A host that cannot be read is a failure of its own; the others are shown.
  await Deno.mkdir(join(t.root, "dc01", "locks", "Host.lock"));
  const faulty = await getFleetStatus({ store, config });
  assertEquals(faulty.failures.map((f) => [f.host, f.code]), [["dc01", "STORE_UNREACHABLE"]]);
  assertStringIncludes(faulty.failures[0]!.message, "a folder stands where a lock file should be");
  assertEquals(faulty.locks.map((l) => l.host), ["file01", "hv02"]);
  // Nothing named: one clear error.
  const none = await assertRejects(
    () => getFleetStatus({ store, config: { dependenciesFile: join(t.root, "none.json") } }),
    InputError,
  );
  assertStringIncludes(none.message, "does not exist");
  await Deno.writeTextFile(join(t.root, "empty.json"), "{}");
  const unnamed = await assertRejects(
    () => getFleetStatus({ store, config: { dependenciesFile: join(t.root, "empty.json") } }),
    InputError,
  );
  assertStringIncludes(
    unnamed.message,
    "each host has its own server or share there, so name them",
  );
  // A bad hosts file names its line.
  await Deno.writeTextFile(hostsFile, "ok01\nnot/ok\n");
  await assertRejects(
    () => getFleetStatus({ store, config }),
    InputError,
    `Invalid hosts file "${hostsFile}" line 2`,
  );
});

Deno.test("status of the fleet on a root that does not exist is a store error, not an empty fleet", async () => {
  await using t = await tempStore();
  const error = await assertRejects(
    () => getFleetStatus({ store: join(t.root, "missing", "{0}") }),
    StoreError,
  );
  assertStringIncludes(error.message, `Cannot list the hosts in "${join(t.root, "missing")}"`);
});
