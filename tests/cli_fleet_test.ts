/**
 * The command line's fleet and group commands (issue 16): `status --all`,
 * `status --group`, `test --group`, `deps` with groups; their text, their
 * `--json` documents field by field, exit codes and one-line errors. Run
 * in-process through `main`, on temporary local stores.
 *
 * @module
 */

import { join } from "node:path";
import { assertEquals, assertOk, assertStringIncludes } from "./_assert.ts";
import { lockResource } from "../mod.ts";
import { tempStore } from "./_helpers.ts";
import { runCliInProcess } from "./_cli_helpers.ts";

const GROUP = { name: "hv-a", members: ["hv01", "hv02", "hv03"], max: 1 };

/** A store with a map file holding the group, and the flags naming both. */
async function world() {
  const t = await tempStore();
  const map = join(t.root, "map.json");
  await Deno.writeTextFile(map, JSON.stringify({ hv02: ["hv01"], "@groups": [GROUP] }));
  return { t, map, flags: ["--store", t.store, "--dependencies-file", map] };
}

function keys(value: unknown): string[] {
  return Object.keys(value as object).sort();
}

Deno.test("status --all prints the fleet; a host that cannot be read is one line and exit 4", async () => {
  await using t = await tempStore();
  await using _lock = await lockResource("web01", {
    store: t.store,
    dependencies: {},
    caller: "deploy",
  });
  const ok = await runCliInProcess(["status", "--all", "--store", t.store]);
  assertEquals(ok.code, 0, ok.stderr);
  assertOk(
    /^HOST\s+TYPE\s+CALLER\s+HOLDER\s+AGE\s+LEASE\s+STALE\s+REF\n/.test(ok.stdout),
    ok.stdout,
  );
  assertOk(
    new RegExp(
      `^web01\\s+Generic\\s+deploy\\s+[^ ]+:${Deno.pid}\\s+\\S+\\s+never\\s+-\\s+web01/Generic-`,
      "m",
    )
      .test(ok.stdout),
    ok.stdout,
  );
  await Deno.mkdir(join(t.root, "db01", "Host.lock"), { recursive: true });
  const bad = await runCliInProcess(["status", "--all", "--store", t.store]);
  assertEquals(bad.code, 4);
  assertStringIncludes(bad.stdout, "web01");
  assertEquals(bad.stderr.trim().split("\n").length, 1, bad.stderr);
  assertStringIncludes(
    bad.stderr,
    `Error: db01: Cannot read "${join(t.root, "db01", "Host.lock")}"`,
  );
});

Deno.test("status --all --json: every field as the README documents it", async () => {
  const { t, flags } = await world();
  await using _ = t;
  const locked = await runCliInProcess([
    "lock",
    "hv03",
    "--hard",
    "--caller",
    "patch",
    "--ttl",
    "10m",
    ...flags,
  ]);
  assertEquals(locked.code, 0, locked.stderr);
  const run = await runCliInProcess(["status", "--all", "--json", ...flags]);
  assertEquals(run.code, 0, run.stderr);
  const doc = JSON.parse(run.stdout);
  assertEquals(keys(doc), [
    "all",
    "command",
    "failures",
    "groups",
    "hosts",
    "locks",
    "skipped",
    "source",
    "version",
  ]);
  assertEquals([doc.version, doc.command, doc.all, doc.source], [1, "status", true, "listing"]);
  assertEquals(doc.hosts, ["hv03"]);
  const [lock] = doc.locks;
  assertEquals(keys(lock), [
    "ageSeconds",
    "caller",
    "content",
    "description",
    "expired",
    "expiresAt",
    "holder",
    "host",
    "leaseLeftSeconds",
    "lockId",
    "lockedAt",
    "origin",
    "ref",
    "sessionId",
    "stale",
    "type",
    "writtenAt",
  ]);
  assertEquals([lock.host, lock.type, lock.caller, lock.origin, lock.stale], [
    "hv03",
    "Host",
    "patch",
    "resource-locker",
    [],
  ]);
  assertOk(
    lock.leaseLeftSeconds > 500 && lock.leaseLeftSeconds <= 600,
    String(lock.leaseLeftSeconds),
  );
  assertEquals(lock.ref, locked.stdout.trim());
  const [group] = doc.groups;
  assertEquals(keys(group), [
    "free",
    "home",
    "location",
    "max",
    "members",
    "name",
    "slots",
    "used",
  ]);
  assertEquals([group.name, group.used, group.free, group.home], ["hv-a", 1, 0, "_group-hv-a"]);
  assertEquals(keys(group.slots[0]), [
    "ageSeconds",
    "caller",
    "description",
    "expired",
    "expiresAt",
    "holder",
    "lockedAt",
    "member",
    "name",
    "orphaned",
    "sessionId",
    "slot",
  ]);
  assertEquals([group.slots[0].member, group.slots[0].slot, group.slots[0].orphaned], [
    "hv03",
    1,
    false,
  ]);
});

Deno.test("status --group shows the slots and the members' locks; an unknown group is exit 2", async () => {
  const { t, flags } = await world();
  await using _ = t;
  await runCliInProcess(["lock", "hv03", "--hard", "--caller", "patch", ...flags]);
  const text = await runCliInProcess(["status", "--group", "HV-A", ...flags]);
  assertEquals(text.code, 0, text.stderr);
  const lines = text.stdout.trim().split("\n");
  assertEquals(
    lines[0],
    `Group "hv-a": 1 of 1 in maintenance, 0 free; members hv01, hv02, hv03; slots in ${
      join(t.root, "_group-hv-a")
    }`,
  );
  assertOk(/^SLOT\s+MEMBER\s+CALLER/.test(lines[1]!), lines[1]);
  assertOk(/^1\s+hv03\s+patch\s+.*\s+never\s+in maintenance\s+/.test(lines[2]!), lines[2]);
  assertOk(lines.some((line) => /^hv03\s+Host\s+patch/.test(line)), text.stdout);
  const json = JSON.parse(
    (await runCliInProcess(["status", "--group", "hv-a", "--json", ...flags])).stdout,
  );
  assertEquals(keys(json), ["command", "group", "locks", "version"]);
  assertEquals(json.locks.map((l: { host: string }) => l.host), ["hv03"]);
  const unknown = await runCliInProcess(["status", "--group", "nope", ...flags]);
  assertEquals(unknown.code, 2);
  assertEquals(unknown.stderr, 'Error: Unknown maintenance group "nope": known: hv-a\n');
});

Deno.test("test --group: exit 0 with a free slot, 1 without; with a host it is a usage error", async () => {
  const { t, flags } = await world();
  await using _ = t;
  const free = await runCliInProcess(["test", "--group", "hv-a", ...flags]);
  assertEquals([free.code, free.stdout], [0, "free slot\n"]);
  await runCliInProcess(["lock", "hv03", "--hard", ...flags]);
  const full = await runCliInProcess(["test", "--group", "hv-a", ...flags]);
  assertEquals([full.code, full.stdout], [1, "no free slot\n"]);
  const json = await runCliInProcess(["test", "--group", "hv-a", "--json", ...flags]);
  assertEquals(JSON.parse(json.stdout), {
    version: 1,
    command: "test",
    group: "hv-a",
    free: false,
    used: 1,
    max: 1,
  });
  const both = await runCliInProcess(["test", "hv01", "--group", "hv-a", ...flags]);
  assertEquals(both.code, 2);
  assertStringIncludes(both.stderr, "test --group NAME takes no host");
  const usage = await runCliInProcess(["status", "hv01", "--hosts", "x.txt", "--store", t.store]);
  assertEquals(usage.code, 2);
  assertStringIncludes(
    usage.stderr,
    "--hosts and --dependencies-file go with status --all or --group",
  );
});

Deno.test("deps tells the groups a Host lock takes a slot of: stderr for the list, fields and subgraphs otherwise", async () => {
  const { t, flags } = await world();
  await using _ = t;
  const list = await runCliInProcess(["deps", "hv01", ...flags]);
  assertEquals([list.code, list.stdout], [0, "hv02\n"], "stdout stays one host per line");
  assertEquals(
    list.stderr,
    'Group "hv-a" (at most 1 of hv01, hv02, hv03 in maintenance at once): a Host lock takes a slot for hv01, hv02\n',
  );
  assertEquals((await runCliInProcess(["deps", "hv01", "--quiet", ...flags])).stderr, "");
  const json = JSON.parse((await runCliInProcess(["deps", "hv01", "--json", ...flags])).stdout);
  assertEquals(json.groups, [{
    name: "hv-a",
    max: 1,
    members: ["hv01", "hv02", "hv03"],
    home: null,
    locked: ["hv01", "hv02"],
  }]);
  const dot = (await runCliInProcess(["deps", "hv01", "--format", "dot", ...flags])).stdout;
  assertStringIncludes(
    dot,
    'subgraph "cluster_hv-a" {\n    label = "group hv-a (max 1)";\n    "hv01";',
  );
  const mermaid = (await runCliInProcess(["deps", "hv01", "--format", "mermaid", ...flags])).stdout;
  // Node ids as main draws them (n0, n1, …): the group's members are the same nodes.
  assertEquals(
    mermaid,
    'graph LR\n  n0["hv01"]\n  n1["hv02"]\n  n2["hv03"]\n  n0 --> n1\n' +
      '  subgraph g0["group hv-a (max 1)"]\n    n0\n    n1\n    n2\n  end\n',
  );
  // A lock that needs more slots than the group has left says so.
  await runCliInProcess(["lock", "hv03", "--hard", ...flags]);
  const refused = await runCliInProcess(["lock", "hv01", "--hard", "--retries", "1", ...flags]);
  assertEquals(refused.code, 2, "two members of a max-1 group in one lock is bad input");
  assertStringIncludes(
    refused.stderr,
    'group "hv-a" lets 1 of its members into maintenance at once, this needs 2',
  );
});

Deno.test("status --all where each host has its own server or share and none is named: one line, exit 2", async () => {
  await using t = await tempStore();
  const none = join(t.root, "none.json");
  await Deno.writeTextFile(none, "{}");
  const run = await runCliInProcess([
    "status",
    "--all",
    "--store",
    join(t.root, "{0}", "locks"),
    "--dependencies-file",
    none,
  ]);
  assertEquals(run.code, 2);
  assertEquals(run.stderr.trim().split("\n").length, 1);
  assertStringIncludes(
    run.stderr,
    "so name them: the hosts setting, a hosts file (hostsFile, --hosts FILE) or a dependency map",
  );
  const hosts = join(t.root, "hosts.txt");
  await Deno.writeTextFile(hosts, "db01\n");
  await Deno.mkdir(join(t.root, "db01", "locks"), { recursive: true });
  await Deno.writeTextFile(join(t.root, "db01", "locks", "Host.lock"), "");
  const named = await runCliInProcess([
    "status",
    "--all",
    "--store",
    join(t.root, "{0}", "locks"),
    "--dependencies-file",
    none,
    "--hosts",
    hosts,
    "--json",
  ]);
  assertEquals(named.code, 0, named.stderr);
  const doc = JSON.parse(named.stdout);
  assertEquals([doc.source, doc.hosts, doc.locks[0].content], ["named", ["db01"], "empty"]);
});
