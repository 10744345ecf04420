/**
 * The store contract (`_store_contract.ts`) on the local-folder store: two
 * store objects over one temporary folder stand for two processes.
 *
 * @module
 */

import { registerStoreContract } from "./_store_contract.ts";
import { openFsStore } from "../src/stores/fs.ts";

registerStoreContract("local", async () => {
  const root = await Deno.makeTempDir({ prefix: "rl-contract-" });
  const open = () => openFsStore(`${root}/{0}`, { historyFolderName: "History" });
  return {
    store: open(),
    other: open(),
    host: "hv01",
    async plant(host, name, data) {
      await Deno.mkdir(`${root}/${host}`, { recursive: true });
      await Deno.writeFile(`${root}/${host}/${name}`, data);
    },
    // a temporary file a killed creator leaves, and the per-host guard
    privateNames: [".resource-locker-left-by-a-crash.tmp", ".resource-locker.guard"],
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
});
