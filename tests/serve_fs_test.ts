/**
 * The serve suite (`_serve_suite.ts`) on the local folder store.
 *
 * @module
 */

import { registerServeSuite } from "./_serve_suite.ts";

registerServeSuite("local", async () => {
  const root = await Deno.makeTempDir({ prefix: "serve-local-" });
  return {
    store: `${root}/{0}`,
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
});
