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
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
});
