/**
 * `resource-locker serve` as a library: {@linkcode startServer} runs the
 * status page, the JSON API, FleetLock and metrics in your own process.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startServer } from "@resource-locker/resource-locker/serve";
 * const root = await Deno.makeTempDir();
 * {
 *   await using server = await startServer({ store: `${root}/{0}`, port: 0 });
 *   assert.equal((await fetch(`${server.url}/v1/locks`)).status, 200);
 * }
 * await Deno.remove(root, { recursive: true });
 * ```
 *
 * @module
 */

export {
  type RequestRecord,
  type RunningServer,
  type ServerOptions,
  startServer,
} from "./src/serve/server.ts";
export { type ServeToken, TOKEN_ENV } from "./src/serve/auth.ts";
export type { FleetStatusOptions, GroupOptions, StoreOptions } from "./src/api.ts";
export type { ResourceLockerConfig } from "./src/config.ts";
export type { Clock } from "./src/clock.ts";
export type { MaintenanceGroup } from "./src/groups.ts";
