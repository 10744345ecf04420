/**
 * The {@linkcode LockStore} contract, written once and registered for every
 * store (folder, SMB, etcd) like the run suite: atomic create, versioned
 * compare-and-act mutations, and at every race seam a store reaches, a
 * second caller acting in that window without breaking either.
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
import type { LockStore } from "../src/store.ts";

/** A store the contract runs on. */
export interface ContractStore extends AsyncDisposable {
  /** The store under test. */
  store: LockStore;
  /** An independent second instance of the same store: its own connections, another "process". */
  other: LockStore;
  /** A host whose folder exists or can be created. */
  host: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);
const text = (data: Uint8Array | undefined) =>
  data === undefined ? undefined : decoder.decode(data);

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
