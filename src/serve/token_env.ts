/**
 * The name of the environment variable with a `serve` write token, apart
 * from `auth.ts` so that the command line's help names it without loading
 * the server (and Node's crypto module, 20 ms of every command's start).
 *
 * @module
 */

/** The environment variable holding a token (named `env` in History). */
export const TOKEN_ENV = "RESOURCE_LOCKER_SERVE_TOKEN";
