/**
 * The OpenAPI 3.1 description of `resource-locker serve`, served at
 * `/v1/openapi.json`. The documents' schemas are the `--json` schemas of
 * `schemas/`, embedded under `components.schemas` with their own `$id`s.
 *
 * @module
 */

import denoJson from "../../deno.json" with { type: "json" };
import breakSchema from "../../schemas/break.schema.json" with { type: "json" };
import commonSchema from "../../schemas/common.schema.json" with { type: "json" };
import errorSchema from "../../schemas/error.schema.json" with { type: "json" };
import historySchema from "../../schemas/history.schema.json" with { type: "json" };
import lockSchema from "../../schemas/lock.schema.json" with { type: "json" };
import statusSchema from "../../schemas/status.schema.json" with { type: "json" };
import unlockSchema from "../../schemas/unlock.schema.json" with { type: "json" };
import { FLEETLOCK_KINDS } from "./fleetlock.ts";

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

const jsonContent = (name: string) => ({ "application/json": { schema: ref(name) } });

const errorResponse = (description: string) => ({
  description,
  content: jsonContent("error"),
});

const READ_ERRORS = {
  "400": errorResponse("Bad input: a host, group, ref or parameter the CLI would refuse too"),
  "503": errorResponse("The store cannot be reached"),
};

const WRITE_ERRORS = {
  ...READ_ERRORS,
  "401": errorResponse("No token, a wrong token, or no token configured (read-only server)"),
  "409": errorResponse("Busy, drain timed out, not owned or lost (the error's code says)"),
  "413": errorResponse("Request body too large"),
};

const hostParam = {
  name: "host",
  in: "path",
  required: true,
  schema: { type: "string" },
  description: "A host name (the CLI's rules)",
};
const lockIdParam = {
  name: "lockId",
  in: "path",
  required: true,
  schema: { type: "string" },
  description:
    "The lock id of the ref: `Host@<session>`, `Generic-<session>`, `File-<session>` (a ref is `<host>/<lockId>`; `/v1/locks/` followed by a whole ref, `/` encoded or not, is the same path)",
};
const bearer = [{ bearer: [] }, { basic: [] }];

const fleetLockRequest = {
  required: true,
  content: { "application/json": { schema: ref("fleetLockRequest") } },
};
const fleetLockHeader = {
  name: "fleet-lock-protocol",
  in: "header",
  required: true,
  schema: { const: "true" },
};
const fleetLockResponses = (verb: string) => ({
  "200": {
    description: verb,
    content: { "application/json": { schema: ref("fleetLockResult") } },
  },
  default: {
    description: "The protocol's error body (`kind` is one of a fixed set)",
    content: { "application/json": { schema: ref("fleetLockError") } },
  },
});

/**
 * The OpenAPI document.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openApiDocument } from "./openapi.ts";
 * const doc = openApiDocument() as { openapi: string; paths: Record<string, unknown> };
 * assert.equal(doc.openapi, "3.1.0");
 * assert.ok("/v1/locks" in doc.paths);
 * ```
 */
export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: {
      title: "resource-locker serve",
      version: denoJson.version,
      description:
        "The fleet's locks, History and maintenance groups as the command line's --json documents; writes with a bearer token; FleetLock for Zincati; Prometheus metrics at /metrics.",
    },
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    paths: {
      "/v1/locks": {
        get: {
          summary: "Every lock of the fleet and the maintenance groups (status --all --json)",
          responses: {
            "200": { description: "The fleet", content: jsonContent("status") },
            ...READ_ERRORS,
          },
        },
        post: {
          summary: "Take a lock (lock --json); the caller recorded is serve/<token>@<address>",
          security: bearer,
          requestBody: {
            required: true,
            content: { "application/json": { schema: ref("lockRequest") } },
          },
          responses: {
            "200": { description: "Taken", content: jsonContent("lock") },
            ...WRITE_ERRORS,
          },
        },
      },
      "/v1/locks/{host}/{lockId}": {
        delete: {
          summary:
            "Release a lock (unlock --json); ?force=true breaks another session's lock, recording who",
          security: bearer,
          parameters: [hostParam, lockIdParam, {
            name: "force",
            in: "query",
            schema: { enum: ["true", "false"] },
          }],
          responses: {
            "200": { description: "Released", content: jsonContent("unlock") },
            ...WRITE_ERRORS,
          },
        },
      },
      "/v1/locks/{host}/{lockId}/break": {
        post: {
          summary: "Break a lock (break --force --json); the reason records who",
          security: bearer,
          parameters: [hostParam, lockIdParam],
          requestBody: {
            required: false,
            content: { "application/json": { schema: ref("breakRequest") } },
          },
          responses: {
            "200": { description: "Broken", content: jsonContent("break") },
            ...WRITE_ERRORS,
          },
        },
      },
      "/v1/hosts/{host}": {
        get: {
          summary: "A host's locks (status <host> --json)",
          parameters: [hostParam],
          responses: {
            "200": { description: "Its locks", content: jsonContent("status") },
            ...READ_ERRORS,
          },
        },
      },
      "/v1/history/{host}": {
        get: {
          summary: "A host's released and broken locks, newest first (history <host> --json)",
          parameters: [hostParam, {
            name: "limit",
            in: "query",
            schema: { type: "integer", minimum: 1 },
          }],
          responses: {
            "200": { description: "Its History", content: jsonContent("history") },
            ...READ_ERRORS,
          },
        },
      },
      "/v1/groups/{group}": {
        get: {
          summary: "A maintenance group (status --group NAME --json)",
          parameters: [{ name: "group", in: "path", required: true, schema: { type: "string" } }],
          responses: {
            "200": { description: "The group", content: jsonContent("status") },
            ...READ_ERRORS,
          },
        },
      },
      "/v1/events": {
        get: {
          summary:
            "Server-sent events: `locks` with the /v1/locks document at connect and on every change; `failure` with an error document; a comment every 15 s",
          responses: {
            "200": {
              description: "The stream",
              content: { "text/event-stream": { schema: { type: "string" } } },
            },
          },
        },
      },
      "/v1/openapi.json": {
        get: {
          summary: "This document",
          responses: {
            "200": {
              description: "OpenAPI 3.1",
              content: { "application/json": { schema: { type: "object" } } },
            },
          },
        },
      },
      "/v1/pre-reboot": {
        post: {
          summary:
            "FleetLock: take the node's Host lock and a slot of its group (idempotent for the same id)",
          security: bearer,
          parameters: [fleetLockHeader],
          requestBody: fleetLockRequest,
          responses: fleetLockResponses("Held (taken now or already)"),
        },
      },
      "/v1/steady-state": {
        post: {
          summary: "FleetLock: release the node's Host lock and slot (nothing held is success)",
          security: bearer,
          parameters: [fleetLockHeader],
          requestBody: fleetLockRequest,
          responses: fleetLockResponses("Not held any more"),
        },
      },
      "/metrics": {
        get: {
          summary: "Prometheus metrics (text format 0.0.4)",
          responses: {
            "200": {
              description: "Metrics",
              content: { "text/plain": { schema: { type: "string" } } },
            },
          },
        },
      },
    },
    components: {
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer" },
        basic: {
          type: "http",
          scheme: "basic",
          description:
            "For clients that only take credentials in a URL: any user, the token as password",
        },
      },
      schemas: {
        common: commonSchema,
        status: statusSchema,
        history: historySchema,
        break: breakSchema,
        lock: lockSchema,
        unlock: unlockSchema,
        error: errorSchema,
        lockRequest: {
          type: "object",
          properties: {
            host: { type: "string" },
            type: { enum: ["Host", "Generic", "File", "host", "generic", "file"] },
            description: { type: "string" },
            ttl: {
              type: "string",
              description: 'A lease: "30s", "5m"; renewed while the server runs',
            },
            sessionId: { type: "string" },
            noDependencies: { type: "boolean" },
            wait: { type: "string", description: "Wait for a busy host, at most 60s" },
            drainTimeout: { type: "string", description: "At most 60s; default 10s" },
          },
          required: ["host"],
          additionalProperties: false,
        },
        breakRequest: {
          type: "object",
          properties: { reason: { type: "string" } },
          additionalProperties: false,
        },
        fleetLockRequest: {
          type: "object",
          properties: {
            client_params: {
              type: "object",
              properties: {
                id: { type: "string", minLength: 1 },
                group: { type: "string", pattern: "^[a-zA-Z0-9.-]+$" },
              },
              required: ["id", "group"],
            },
          },
          required: ["client_params"],
        },
        fleetLockResult: {
          type: "object",
          properties: {
            host: { type: "string" },
            group: { type: "string" },
            sessionId: { type: "string" },
            changed: { type: "boolean" },
          },
          required: ["host", "group", "sessionId", "changed"],
          additionalProperties: false,
        },
        fleetLockError: {
          type: "object",
          properties: {
            kind: { enum: Object.keys(FLEETLOCK_KINDS) },
            value: { type: "string", minLength: 1 },
          },
          required: ["kind", "value"],
          additionalProperties: false,
        },
      },
    },
  };
}
