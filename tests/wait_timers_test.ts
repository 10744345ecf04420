/**
 * A wait leaves no timer of its own behind (Deno's op sanitizer on), also
 * the first wait of a process, which warms Deno's timers with a zero timer:
 * a wait woken without I/O (a store whose calls settle at once) was over
 * before that timer fired. Its own file: the warm-up runs once a process.
 *
 * @module
 */

import { assertEquals } from "./_assert.ts";
import type { LockStore } from "../src/store.ts";
import { lockerOf, request } from "./_waiting.ts";

/** A store in memory whose calls settle in microtasks; its wait sees the holder go at once. */
function memoryStore(): LockStore {
  const entries = new Map<string, { data: Uint8Array; version: string }>();
  let versions = 0;
  const key = (host: string, name: string) => `${host}/${name}`;
  return {
    kind: "fs",
    describe: (host) => `memory:${host}`,
    create: (host, name, data) => {
      if (entries.has(key(host, name))) return Promise.resolve(undefined);
      const version = String(++versions);
      entries.set(key(host, name), { data, version });
      return Promise.resolve(version);
    },
    list: (host) =>
      Promise.resolve(
        [...entries.keys()].filter((k) => k.startsWith(`${host}/`)).map((k) =>
          k.slice(host.length + 1)
        ),
      ),
    read: (host, name) => Promise.resolve(entries.get(key(host, name))),
    replace: () => Promise.resolve(undefined),
    archive: () => Promise.resolve(false),
    remove: (host, name, version) => {
      if (entries.get(key(host, name))?.version !== version) return Promise.resolve(false);
      entries.delete(key(host, name));
      return Promise.resolve(true);
    },
    listHistory: () => Promise.resolve([]),
    readHistory: () => Promise.resolve(undefined),
    waitForChange: async (host) => {
      // the holder lets go a few turns later (after the waiter's look)
      for (let i = 0; i < 50; i++) await null;
      entries.delete(key(host, "Host.lock"));
      return { removed: ["Host.lock"] };
    },
    close: () => Promise.resolve(),
  };
}

Deno.test({
  name: "the first wait of a process, woken without I/O, leaves no timer behind",
  sanitizeOps: true,
  fn: async () => {
    const store = memoryStore();
    await lockerOf(store, 1).acquire(request("holder"));
    const [lock] = await lockerOf(store, 2).acquire(request("waiter"));
    assertEquals(lock!.sessionId, "waiter");
  },
});
