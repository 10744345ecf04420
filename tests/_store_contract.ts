/**
 * The {@linkcode LockStore} contract, written once and registered for every
 * store (folder, SMB, etcd) like the run suite: atomic create, versioned
 * compare-and-act mutations, and at every race seam a store reaches, a
 * second caller acting in that window without breaking either.
 *
 * What every store must guarantee is checked here, once, and the store
 * suites (`smb_store_test.ts`, `etcd_store_test.ts`) only add what is their
 * own: wire details, server faults, native leases. Beyond the races: any
 * bytes kept exactly, a new version for every replace and only the newest
 * acting, entries written by other clients read as they are, listings
 * without History, other hosts or the store's own files, odd but valid host
 * and entry names, and concurrent creates, archives and removes of one
 * entry with exactly one winner.
 *
 * The seam tests discover the points an operation passes (`src/_seam.ts`),
 * then for each point pause the operation there, let an independent second
 * store instance (another "process") act, and check what the contract
 * promises, whatever the store's mechanism.
 *
 * @module
 */

import { assertEquals, assertOk } from "./_assert.ts";
import { pausedAt, pointsOf } from "./_seams.ts";
import type { LockStore, StoreEntry } from "../src/store.ts";

/** A store the contract runs on. */
export interface ContractStore extends AsyncDisposable {
  /** The store under test. */
  store: LockStore;
  /** An independent second instance of the same store: its own connections, another "process". */
  other: LockStore;
  /** A host never used before in this store, whose folder exists or can be created. */
  host: string;
  /**
   * Writes an entry behind the store's back, as another client of the same
   * storage would (a file written on disk, a key put straight into etcd),
   * making the host's folder when it is missing. Writing an existing entry
   * rewrites it in place.
   */
  plant(host: string, name: string, data: Uint8Array): Promise<void>;
  /**
   * Names the store keeps for itself in a host's folder (temporary files,
   * guards), which `list` must never return; [] for a store that has none.
   */
  privateNames: string[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);
const text = (data: Uint8Array | undefined) =>
  data === undefined ? undefined : decoder.decode(data);
const sorted = (names: string[]) => [...names].sort();

/** An entry's content and version, without when it was written (which stores may tell). */
function contentOf(
  entry: StoreEntry | undefined,
): { data: Uint8Array; version: string } | undefined {
  if (entry === undefined) return undefined;
  const { writtenAt: _, ...rest } = entry;
  return rest;
}

/**
 * A store that tells when an entry was written tells a time near now: the
 * servers the tests start run on this machine's clock.
 */
function assertWrittenNow(entry: StoreEntry | undefined, what: string): void {
  const at = entry?.writtenAt;
  if (at === undefined) return;
  const off = Math.abs(at.getTime() - Date.now());
  assertOk(off < 60_000, `${what}: writtenAt ${at.toISOString()} is ${off} ms from now`);
}

/**
 * Registers the contract suite.
 *
 * @param name store name shown in test names
 * @param open opens a fresh store pair
 * @param options `ignore`: skip (server not installed and not under CI)
 */
export function registerStoreContract(
  name: string,
  open: () => Promise<ContractStore>,
  options: { ignore?: boolean } = {},
): void {
  const ignore = options.ignore ?? false;
  const test = (title: string, fn: (s: ContractStore) => Promise<void>) =>
    Deno.test({
      name: `[${name} store contract] ${title}`,
      ignore,
      fn: async () => {
        await using s = await open();
        await fn(s);
      },
    });

  test("create is exclusive and returns the version read sees", async ({ store, other, host }) => {
    const v1 = await store.create(host, "Host.lock", bytes("one"));
    assertOk(v1 !== undefined, "first create");
    assertEquals(await other.create(host, "Host.lock", bytes("two")), undefined);
    const read = await other.read(host, "Host.lock");
    assertEquals(text(read?.data), "one");
    assertEquals(read?.version, v1);
    assertOk((await store.list(host)).includes("Host.lock"), "listed");
    assertEquals(await store.read(host, "Generic-x.lock"), undefined);
  });

  test("mutations naming a stale version do nothing", async ({ store, other, host }) => {
    const v1 = (await store.create(host, "Host.lock", bytes("one")))!;
    const v2 = await other.replace(host, "Host.lock", v1, bytes("two"));
    assertOk(v2 !== undefined && v2 !== v1, "replace with the current version gives a new one");
    assertEquals(await store.replace(host, "Host.lock", v1, bytes("three")), undefined);
    assertEquals(await store.archive(host, "Host.lock", v1, "Host.lock-a", bytes("x")), false);
    assertEquals(await store.remove(host, "Host.lock", v1), false);
    const read = await store.read(host, "Host.lock");
    assertEquals(text(read?.data), "two");
    assertEquals(read?.version, v2);
    assertEquals(await store.listHistory(host), []);
  });

  test("archive and remove act on the version named, once", async ({ store, other, host }) => {
    const v1 = (await store.create(host, "Host.lock", bytes("one")))!;
    assertOk(await store.archive(host, "Host.lock", v1, "Host.lock-a", bytes("final")));
    assertEquals(await other.archive(host, "Host.lock", v1, "Host.lock-b", bytes("again")), false);
    assertEquals(await store.read(host, "Host.lock"), undefined);
    assertEquals(await store.listHistory(host), ["Host.lock-a"]);
    assertEquals(text(await other.readHistory(host, "Host.lock-a")), "final");
    const v2 = (await other.create(host, "Generic-s.lock", bytes("shared")))!;
    assertOk(await store.remove(host, "Generic-s.lock", v2));
    assertEquals(await other.remove(host, "Generic-s.lock", v2), false);
    assertEquals(await store.list(host), []);
  });

  test("a re-created entry is a new version: the old one acts on nothing", async ({ store, other, host }) => {
    const v1 = (await store.create(host, "Host.lock", bytes("first holder")))!;
    assertOk(await other.remove(host, "Host.lock", v1));
    const v2 = (await other.create(host, "Host.lock", bytes("second holder")))!;
    assertOk(v2 !== v1);
    assertEquals(await store.archive(host, "Host.lock", v1, "Host.lock-a", bytes("x")), false);
    assertEquals(await store.replace(host, "Host.lock", v1, bytes("y")), undefined);
    assertEquals(await store.remove(host, "Host.lock", v1), false);
    assertEquals(text((await other.read(host, "Host.lock"))?.data), "second holder");
  });

  test("create and read keep any bytes: empty, every byte value, large; replace too", async ({ store, other, host }) => {
    const contents: [string, Uint8Array][] = [
      ["Generic-empty.lock", new Uint8Array()],
      ["Generic-bytes.lock", Uint8Array.from({ length: 512 }, (_, i) => i % 256)],
      ["Generic-large.lock", new Uint8Array(200_000).map((_, i) => (i * 7) % 251)],
    ];
    const versions = new Map<string, string>();
    for (const [name, data] of contents) {
      const version = await store.create(host, name, data);
      assertOk(version !== undefined, name);
      versions.set(name, version);
      const read = await other.read(host, name);
      assertEquals(contentOf(read), { data, version }, name);
      assertWrittenNow(read, name);
    }
    assertEquals(sorted(await other.list(host)), contents.map(([name]) => name).sort());
    // shorter content leaves nothing of the longer behind, and back
    const [, large] = contents[2]!;
    const emptied = await other.replace(
      host,
      "Generic-large.lock",
      versions.get("Generic-large.lock")!,
      new Uint8Array(),
    );
    assertOk(emptied !== undefined);
    assertEquals(contentOf(await store.read(host, "Generic-large.lock")), {
      data: new Uint8Array(),
      version: emptied,
    });
    const refilled = await store.replace(
      host,
      "Generic-empty.lock",
      versions.get("Generic-empty.lock")!,
      large,
    );
    assertOk(refilled !== undefined);
    assertEquals(contentOf(await other.read(host, "Generic-empty.lock")), {
      data: large,
      version: refilled,
    });
  });

  test("every replace is a new version, only the newest acts, and a read changes nothing", async ({ store, other, host }) => {
    const v1 = (await store.create(host, "Host.lock", bytes("one")))!;
    assertEquals((await store.read(host, "Host.lock"))?.version, v1);
    assertEquals(
      (await other.read(host, "Host.lock"))?.version,
      v1,
      "read twice, the same version",
    );
    const v2 = (await store.replace(host, "Host.lock", v1, bytes("two, longer")))!;
    const v3 = (await other.replace(host, "Host.lock", v2, bytes("3")))!;
    assertOk(v2 !== undefined && v3 !== undefined);
    assertEquals(new Set([v1, v2, v3]).size, 3, "three contents, three versions");
    for (const stale of [v1, v2, "", "not a version"]) {
      assertEquals(await store.replace(host, "Host.lock", stale, bytes("x")), undefined, stale);
      assertEquals(await other.archive(host, "Host.lock", stale, "Host.lock-x", bytes("x")), false);
      assertEquals(await store.remove(host, "Host.lock", stale), false, stale);
    }
    assertEquals(contentOf(await other.read(host, "Host.lock")), { data: bytes("3"), version: v3 });
    // a name that is not there: nothing to act on
    assertEquals(await store.replace(host, "Generic-gone.lock", v3, bytes("x")), undefined);
    assertEquals(
      await store.archive(host, "Generic-gone.lock", v3, "Generic-gone.lock", bytes("x")),
      false,
    );
    assertEquals(await store.remove(host, "Generic-gone.lock", v3), false);
    assertEquals(await store.listHistory(host), []);
    assertEquals(await store.list(host), ["Host.lock"]);
  });

  test("list names a host's live entries only: not History, not other hosts, not the store's own files", async (s) => {
    const { store, other, host } = s;
    const near = [`${host}x`, `${host}-0`];
    assertEquals(await store.list(host), [], "a host never used has no entries");
    assertEquals(await store.listHistory(host), []);
    const live = (await store.create(host, "Host.lock", bytes("h")))!;
    const gone = (await store.create(host, "Generic-1.lock", bytes("g")))!;
    for (const name of s.privateNames) await s.plant(host, name, bytes("not an entry"));
    for (const neighbour of near) await other.create(neighbour, "File-2.lock", bytes("f"));
    assertOk(await other.archive(host, "Generic-1.lock", gone, "Generic-1.lock", bytes("u")));
    const renewed = (await other.replace(host, "Host.lock", live, bytes("h2")))!;
    const removed = (await store.create(host, "Generic-3.lock", bytes("g")))!;
    assertOk(await other.remove(host, "Generic-3.lock", removed));
    assertEquals(await store.list(host), ["Host.lock"]);
    assertEquals(await other.list(host), ["Host.lock"]);
    assertEquals(await store.listHistory(host), ["Generic-1.lock"]);
    for (const neighbour of near) {
      assertEquals(await store.list(neighbour), ["File-2.lock"], neighbour);
      assertEquals(await store.listHistory(neighbour), [], neighbour);
    }
    assertEquals(await store.read(host, "Generic-1.lock"), undefined, "archived is gone");
    assertEquals(
      await store.readHistory(host, "Generic-3.lock"),
      undefined,
      "removed leaves no record",
    );
    assertEquals(await store.readHistory(host, "Host.lock"), undefined);
    assertEquals((await store.read(host, "Host.lock"))?.version, renewed);
  });

  test("createAndList, where a store has it, creates as create does and lists what list then sees", async (s) => {
    const { store, other, host } = s;
    if (!store.createAndList) {
      // optional, and no round trip to save in a folder: the locker lists after the create
      assertEquals(store.kind, "fs", "a store with round trips lists in its create's");
      return;
    }
    // a host never used: the create makes its folder; its own entry is listed
    const first = await store.createAndList(host, "Host.lock", bytes("h"));
    assertOk(first.version !== undefined, "made");
    assertEquals((await other.read(host, "Host.lock"))?.version, first.version);
    assertEquals(first.names, ["Host.lock"]);
    // not History, not the store's own files, not neighbours; shared locks are
    const record = (await other.create(host, "Generic-1.lock", bytes("g")))!;
    assertOk(await other.archive(host, "Generic-1.lock", record, "Generic-1.lock", bytes("u")));
    for (const name of s.privateNames) await s.plant(host, name, bytes("not an entry"));
    await other.create(`${host}x`, "File-2.lock", bytes("f"));
    await other.create(host, "Generic-2.lock", bytes("g"));
    await other.create(host, "File-3.lock", bytes("f"));
    assertOk(await store.remove(host, "Host.lock", first.version!));
    const second = await store.createAndList(host, "Host.lock", bytes("h2"));
    assertOk(second.version !== undefined && second.version !== first.version);
    assertEquals(second.names?.sort(), ["File-3.lock", "Generic-2.lock", "Host.lock"]);
    assertEquals(second.names, (await store.list(host)).sort());
    // taken: nothing made, nothing changed
    const third = await other.createAndList!(host, "Host.lock", bytes("h3"));
    assertEquals(third.version, undefined);
    assertEquals(text((await store.read(host, "Host.lock"))?.data), "h2");
  });

  test("an entry another client wrote is read as it is; rewritten, it is a new version", async (s) => {
    const { store, other, host } = s;
    await s.plant(host, "File-planted.lock", bytes("written by another client"));
    assertEquals(await store.list(host), ["File-planted.lock"]);
    const before = (await store.read(host, "File-planted.lock"))!;
    assertEquals(text(before.data), "written by another client");
    assertEquals((await other.read(host, "File-planted.lock"))?.version, before.version);
    assertEquals(await store.create(host, "File-planted.lock", bytes("mine")), undefined);
    await s.plant(host, "File-planted.lock", bytes("written again"));
    assertEquals(await store.remove(host, "File-planted.lock", before.version), false);
    assertEquals(
      await store.archive(
        host,
        "File-planted.lock",
        before.version,
        "File-planted.lock",
        bytes("x"),
      ),
      false,
    );
    assertEquals(
      await store.replace(host, "File-planted.lock", before.version, bytes("x")),
      undefined,
    );
    const after = (await other.read(host, "File-planted.lock"))!;
    assertEquals(text(after.data), "written again");
    assertOk(after.version !== before.version, "rewritten by another client: another version");
    assertEquals(await store.listHistory(host), []);
    assertOk(await store.remove(host, "File-planted.lock", after.version));
    assertEquals(await other.list(host), []);
  });

  test("an archive over a record of the same name replaces the record", async ({ store, other, host }) => {
    const v1 = (await store.create(host, "Generic-s.lock", bytes("first")))!;
    assertOk(
      await store.archive(host, "Generic-s.lock", v1, "Generic-s.lock", bytes("first record")),
    );
    const v2 = (await other.create(host, "Generic-s.lock", bytes("second")))!;
    assertOk(
      await other.archive(host, "Generic-s.lock", v2, "Generic-s.lock", bytes("second record")),
    );
    assertEquals(await store.listHistory(host), ["Generic-s.lock"]);
    assertEquals(text(await store.readHistory(host, "Generic-s.lock")), "second record");
    assertEquals(await store.list(host), []);
  });

  test("odd but valid host and entry names work in every operation", async ({ store, other, host }) => {
    const session = "A".repeat(64) + ".b_c-D" + "9".repeat(58); // 128 characters, the most a session has
    const hosts = [
      `${host}.x_y-z`,
      `0-${host}_`,
      `${host}-${"a".repeat(252 - host.length)}`, // 253 characters, the most a host name has
    ];
    const names = [
      "Generic-a.b_c-D.lock",
      `File-${session}.lock`,
      "Verrou Host.lock", // from the file-name template "Verrou {0}.lock"
      "ünïcødé Generic-x.lock",
      "\u{1f512}-Host.lock", // outside the BMP: a surrogate pair in UTF-16
      "Generic-%41%2F+&=;',#!.lock", // nothing is decoded or encoded twice
    ];
    for (const h of hosts) {
      const versions = new Map<string, string>();
      for (const name of names) {
        const version = await store.create(h, name, bytes(`${h}/${name}`));
        assertOk(version !== undefined, `${h}/${name}`);
        versions.set(name, version);
      }
      assertEquals(sorted(await other.list(h)), sorted(names), h);
      for (const name of names) {
        const read = await other.read(h, name);
        assertEquals(
          contentOf(read),
          { data: bytes(`${h}/${name}`), version: versions.get(name)! },
          name,
        );
        const renewed = await other.replace(h, name, read!.version, bytes(`renewed ${name}`));
        assertOk(renewed !== undefined, `replace ${h}/${name}`);
        versions.set(name, renewed);
      }
      const records = new Map<string, string>();
      for (const [i, name] of names.entries()) {
        if (i % 2 === 0) {
          const record = `${name}-${session}.${i}`;
          assertOk(
            await store.archive(h, name, versions.get(name)!, record, bytes(`released ${name}`)),
          );
          records.set(record, name);
        } else {
          assertOk(await store.remove(h, name, versions.get(name)!), `remove ${h}/${name}`);
        }
      }
      assertEquals(await other.list(h), [], h);
      assertEquals(sorted(await other.listHistory(h)), sorted([...records.keys()]), h);
      for (const [record, name] of records) {
        assertEquals(text(await other.readHistory(h, record)), `released ${name}`, record);
      }
    }
  });

  test("creates of one name at once: exactly one wins, and the entry is the winner's", async ({ store, other, host }) => {
    for (let round = 0; round < 10; round++) {
      const name = `Generic-race${round}.lock`;
      const results = await Promise.all(
        [store, other, store, other].map((s, i) => s.create(host, name, bytes(`client ${i}`))),
      );
      const winners = results.flatMap((version, i) => version === undefined ? [] : [i]);
      assertEquals(winners.length, 1, `round ${round}: ${results}`);
      const winner = winners[0]!;
      assertEquals(contentOf(await other.read(host, name)), {
        data: bytes(`client ${winner}`),
        version: results[winner]!,
      });
    }
  });

  test("a remove and an archive of one version at once, or two archives: exactly one acts", async ({ store, other, host }) => {
    // Many rounds: Samba once granted an open on a file that a delete-on-close
    // was unlinking in that very moment; the loser must see "gone", not act.
    for (let round = 0; round < 60; round++) {
      const twoArchives = round % 6 === 5;
      const version = (await store.create(host, "Host.lock", bytes(`holder ${round}`)))!;
      const [first, second] = await Promise.all([
        twoArchives
          ? store.archive(host, "Host.lock", version, `Host.lock-a${round}`, bytes("a"))
          : store.remove(host, "Host.lock", version),
        other.archive(host, "Host.lock", version, `Host.lock-b${round}`, bytes("b")),
      ]);
      assertOk(first !== second, `round ${round}: ${first}, ${second}`);
      assertEquals(await other.replace(host, "Host.lock", version, bytes("renewed")), undefined);
      assertEquals(await store.read(host, "Host.lock"), undefined, `round ${round}`);
      const records = (await other.listHistory(host)).filter((name) =>
        name === `Host.lock-a${round}` || name === `Host.lock-b${round}`
      );
      assertEquals(records.length, twoArchives || second ? 1 : 0, `round ${round}: ${records}`);
    }
    assertEquals(await store.list(host), []);
  });

  test("a create is never seen empty or partial, at any point of it", async ({ store, other, host }) => {
    const content = "x".repeat(3000);
    let round = 0;
    const points = await pointsOf(
      "create",
      () => store.create(host, `Generic-p${round++}.lock`, bytes(content)),
    );
    for (const point of points) {
      const entry = `Generic-p${round++}.lock`;
      const { competing } = await pausedAt(
        point,
        () => store.create(host, entry, bytes(content)),
        () => other.read(host, entry).catch(() => "unreadable" as const),
      );
      if (competing !== "unreadable" && competing !== undefined) {
        assertEquals(text(competing.data), content, `read at ${point}`);
      }
      assertEquals(text((await other.read(host, entry))?.data), content);
    }
  });

  test("a replace is never seen empty or mixed, at any point of it", async ({ store, other, host }) => {
    const before = "a".repeat(2000);
    const after = "b".repeat(1000);
    let version = (await store.create(host, "Host.lock", bytes(before)))!;
    const points = await pointsOf("replace", async () => {
      version = (await store.replace(host, "Host.lock", version, bytes(before)))!;
    });
    for (const point of points) {
      const { result, competing } = await pausedAt(
        point,
        () => store.replace(host, "Host.lock", version, bytes(after)),
        () => other.read(host, "Host.lock").catch(() => "unreadable" as const),
      );
      assertOk(result !== undefined, `replace paused at ${point}`);
      if (competing !== "unreadable") {
        assertOk(competing !== undefined, `entry missing during replace at ${point}`);
        assertOk([before, after].includes(text(competing.data)!), `mixed content at ${point}`);
      }
      version = (await store.replace(host, "Host.lock", result, bytes(before)))!;
    }
  });

  for (const op of ["archive", "replace", "remove"] as const) {
    test(`${op}: another caller breaking and retaking in any window of it wins or loses cleanly`, async ({ store, other, host }) => {
      const act = (s: LockStore, version: string, tag: string) =>
        op === "archive"
          ? s.archive(host, "Host.lock", version, `Host.lock-${tag}`, bytes(`archived by ${tag}`))
          : op === "replace"
          ? s.replace(host, "Host.lock", version, bytes(`renewed by ${tag}`)).then((v) =>
            v !== undefined
          )
          : s.remove(host, "Host.lock", version);
      let v = (await store.create(host, "Host.lock", bytes("dead holder")))!;
      const points = await pointsOf(op, () => act(store, v, "probe"));
      // Leave a fresh expired-looking lock for every round.
      const reset = async () => {
        const current = await other.read(host, "Host.lock");
        if (current) await other.remove(host, "Host.lock", current.version);
        v = (await other.create(host, "Host.lock", bytes("dead holder")))!;
      };
      for (const [i, point] of points.entries()) {
        await reset();
        // The competitor breaks the same version, then takes the host.
        let competitorWon = false;
        const { result } = await pausedAt(
          point,
          () => act(store, v, `p${i}`),
          async () => {
            competitorWon = await other.archive(
              host,
              "Host.lock",
              v,
              `Host.lock-c${i}`,
              bytes("broken"),
            );
            if (competitorWon) await other.create(host, "Host.lock", bytes("new holder"));
          },
        );
        assertOk(result !== competitorWon, `exactly one caller acts on the version at ${point}`);
        const now = text((await other.read(host, "Host.lock"))?.data);
        if (competitorWon) {
          assertEquals(now, "new holder", `the new holder's lock is untouched at ${point}`);
        } else if (op === "replace") {
          assertEquals(now, `renewed by p${i}`);
        } else {
          assertEquals(now, undefined, `the entry is gone after ${op} at ${point}`);
        }
        const history = (await other.listHistory(host)).filter((n) =>
          n === `Host.lock-c${i}` || n === `Host.lock-p${i}`
        );
        assertEquals(
          history.length,
          op === "archive" || competitorWon ? 1 : 0,
          `history at ${point}: ${history}`,
        );
      }
    });
  }
}
