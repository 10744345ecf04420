/**
 * `resource-locker serve`: the status page, the JSON API, FleetLock and
 * metrics on `Deno.serve`, over any store.
 *
 * Read-only by default: every write (taking, releasing, breaking, FleetLock)
 * needs a bearer token, and every write is recorded with who did it, as the
 * lock's caller or the break's reason: `serve/<token name>@<client address>`.
 *
 * @module
 */

import {
  breakResourceLock,
  type FleetStatusOptions,
  getFleetStatus,
  getGroupStatus,
  getResolvedConfig,
  getResourceLockHistory,
  getResourceLockStatus,
  lockResource,
  unlockResource,
} from "../api.ts";
import { errorJson } from "../../cli/errors.ts";
import { type Clock, SYSTEM_CLOCK } from "../clock.ts";
import {
  breakDocument,
  documentText,
  fleetDocument,
  groupDocument,
  historyDocument,
  hostsDocument,
  lockDocument,
  releaseJson,
} from "../documents.ts";
import { parseDuration } from "../duration.ts";
import { InputError, ResourceLockerError, StoreError } from "../errors.ts";
import type { FleetStatus } from "../fleet.ts";
import { normalizeHost } from "../host.ts";
import type { LockType } from "../lock_file.ts";
import { parseLockRef } from "../lock_ref.ts";
import type { ResourceLock } from "../resource_lock.ts";
import { escapeJson, kindOf, maskSecrets } from "../_text.ts";
import { type ServeToken, TOKEN_ENV, TokenCheck, validateTokens } from "./auth.ts";
import {
  type ClientParams,
  FleetLockError,
  parseClientParams,
  preReboot,
  steadyState,
} from "./fleetlock.ts";
import { Metrics } from "./metrics.ts";
import { openApiDocument } from "./openapi.ts";
import { servePage } from "./page.ts";
import { concatBytes } from "../_bytes.ts";

/** Options of {@linkcode startServer}. */
export interface ServerOptions extends FleetStatusOptions {
  /** Address to listen on. @default "127.0.0.1" */
  hostname?: string;
  /** Port; 0 picks a free one. @default 8080 */
  port?: number;
  /** PEM certificate (chain) for HTTPS, with `key`. */
  cert?: string;
  /** PEM private key for HTTPS, with `cert`. */
  key?: string;
  /**
   * Tokens allowed to write, besides the config's `serve.tokens` and
   * `RESOURCE_LOCKER_SERVE_TOKEN` (named `env`). None: the server is read-only.
   */
  tokens?: readonly ServeToken[];
  /** How often the fleet is looked at while clients follow `/v1/events`. @default "1s" */
  refreshInterval?: number | string;
  /** Time between keep-alive comments on `/v1/events`. @default "15s" */
  keepAlive?: number | string;
  /** Largest request body read. @default 65536 */
  maxBodyBytes?: number;
  /** Told of every request answered (for a log); never given a token. */
  onRequest?: (record: RequestRecord) => void;
}

/** One request, as {@linkcode ServerOptions.onRequest} is told of it. */
export interface RequestRecord {
  /** Client address. */
  client: string;
  /** Method. */
  method: string;
  /** The route matched (`/v1/hosts/{host}`), or the path's first part. */
  route: string;
  /** HTTP status. */
  status: number;
  /** Milliseconds to answer (the event stream: to its first byte). */
  ms: number;
  /** Name of the token used, when one was. */
  token?: string;
}

/** A running server. */
export interface RunningServer extends AsyncDisposable {
  /** Base URL: `http://127.0.0.1:8080`. */
  readonly url: string;
  /** Address listened on. */
  readonly hostname: string;
  /** Port listened on. */
  readonly port: number;
  /** True when at least one token allows writes. */
  readonly writable: boolean;
  /** Closes event streams, stops renewing API locks, waits for requests to end. */
  shutdown(): Promise<void>;
  /** Settles when the server has stopped. */
  readonly finished: Promise<void>;
}

/** An HTTP failure with the CLI's error document. */
class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: HeadersInit = {}) {
    super(message);
  }
}

/** Every route, method and pattern; the OpenAPI document and its test read it. */
export const ROUTES: readonly { method: string; pattern: string; write?: boolean }[] = [
  { method: "GET", pattern: "/v1/locks" },
  { method: "POST", pattern: "/v1/locks", write: true },
  { method: "DELETE", pattern: "/v1/locks/{host}/{lockId}", write: true },
  { method: "POST", pattern: "/v1/locks/{host}/{lockId}/break", write: true },
  { method: "GET", pattern: "/v1/hosts/{host}" },
  { method: "GET", pattern: "/v1/history/{host}" },
  { method: "GET", pattern: "/v1/groups/{group}" },
  { method: "GET", pattern: "/v1/events" },
  { method: "GET", pattern: "/v1/openapi.json" },
  { method: "POST", pattern: "/v1/pre-reboot", write: true },
  { method: "POST", pattern: "/v1/steady-state", write: true },
  { method: "GET", pattern: "/metrics" },
];

function match(pattern: string, segments: readonly string[]): Record<string, string> | undefined {
  const parts = pattern.split("/").slice(1);
  if (parts.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part.startsWith("{")) {
      if (segments[i] === "") return undefined;
      params[part.slice(1, -1)] = segments[i]!;
    } else if (part !== segments[i]) return undefined;
  }
  return params;
}

function statusOf(error: unknown): number {
  if (error instanceof HttpError) return error.status;
  if (error instanceof ResourceLockerError) {
    switch (error.code) {
      case "BAD_INPUT":
        return 400;
      case "LOCK_BUSY":
      case "DRAIN_TIMEOUT":
      case "LOCK_NOT_OWNED":
      case "LOCK_LOST":
        return 409;
      case "STORE_UNREACHABLE":
        return 503;
    }
  }
  return 500;
}

const JSON_TYPE = "application/json; charset=utf-8";

function json(
  document: Record<string, unknown>,
  status = 200,
  headers: HeadersInit = {},
): Response {
  return new Response(documentText(document) + "\n", {
    status,
    headers: { "content-type": JSON_TYPE, "cache-control": "no-store", ...headers },
  });
}

function errorResponse(error: unknown): Response {
  const status = statusOf(error);
  const body = error instanceof HttpError
    ? { code: "BAD_INPUT", message: maskSecrets(error.message), exitCode: 2 }
    : errorJson(error);
  return json({ error: body }, status, error instanceof HttpError ? error.headers : {});
}

/** Milliseconds of a duration option. */
function ms(value: number | string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const result = parseDuration(value, name);
  if (result < 10) throw new InputError(`Invalid ${name}: at least 10ms, got ${result}ms`);
  return result;
}

/**
 * Looks at the fleet, one look shared by every request that arrives while
 * it is under way and started after them (a request never gets a look that
 * began before it arrived, so a change made before the request is in it).
 */
class FleetLooks {
  #sequence = 0;
  #running: { seq: number; promise: Promise<FleetStatus> } | undefined;
  #last: { seq: number; fleet: FleetStatus } | undefined;

  constructor(readonly look: () => Promise<FleetStatus>, readonly onError: () => void) {}

  /** The last successful look, if any. */
  get last(): FleetStatus | undefined {
    return this.#last?.fleet;
  }

  /** A ticket: a look started after it is fresh enough for the caller. */
  ticket(): number {
    return ++this.#sequence;
  }

  /** A look started after `ticket`. */
  get(ticket: number): Promise<FleetStatus> {
    if (this.#last && this.#last.seq > ticket) return Promise.resolve(this.#last.fleet);
    if (this.#running && this.#running.seq > ticket) return this.#running.promise;
    const seq = ++this.#sequence;
    const promise = this.look().then((fleet) => {
      if (!this.#last || this.#last.seq < seq) this.#last = { seq, fleet };
      if (fleet.failures.length > 0) this.onError();
      return fleet;
    }, (error) => {
      this.onError();
      throw error;
    }).finally(() => {
      if (this.#running?.seq === seq) this.#running = undefined;
    });
    this.#running = { seq, promise };
    return promise;
  }
}

/** Clients of `/v1/events`, fed from one look at the fleet per interval. */
class EventHub {
  readonly #clients = new Set<ReadableStreamDefaultController<Uint8Array>>();
  readonly #encoder = new TextEncoder();
  #timer: ReturnType<typeof setInterval> | undefined;
  #keepAlive: ReturnType<typeof setInterval> | undefined;
  #lastKey: string | undefined;
  #ticking = false;
  #closed = false;

  constructor(
    readonly looks: FleetLooks,
    readonly refreshMs: number,
    readonly keepAliveMs: number,
    readonly metrics: Metrics,
  ) {}

  #send(controller: ReadableStreamDefaultController<Uint8Array>, text: string): void {
    try {
      controller.enqueue(this.#encoder.encode(text));
    } catch {
      this.#drop(controller);
    }
  }

  #drop(controller: ReadableStreamDefaultController<Uint8Array>): void {
    if (!this.#clients.delete(controller)) return;
    this.metrics.eventClients = this.#clients.size;
    try {
      controller.close();
    } catch { /* closed already */ }
    if (this.#clients.size === 0) this.#stopTimers();
  }

  #stopTimers(): void {
    clearInterval(this.#timer);
    clearInterval(this.#keepAlive);
    this.#timer = this.#keepAlive = undefined;
    this.#lastKey = undefined;
  }

  static message(fleet: FleetStatus): string {
    const data = escapeJson(maskSecrets(JSON.stringify({
      version: 1,
      ...fleetDocument(fleet, Date.now()),
    })));
    return `event: locks\ndata: ${data}\n\n`;
  }

  static failure(error: unknown): string {
    const data = escapeJson(maskSecrets(JSON.stringify({ version: 1, error: errorJson(error) })));
    return `event: failure\ndata: ${data}\n\n`;
  }

  /** What decides "changed": the document with ages left out (they change every second). */
  static key(fleet: FleetStatus): string {
    return JSON.stringify(fleetDocument(fleet, 0));
  }

  async #tick(): Promise<void> {
    if (this.#ticking || this.#clients.size === 0) return;
    this.#ticking = true;
    try {
      const fleet = await this.looks.get(this.looks.ticket());
      const key = EventHub.key(fleet);
      if (key === this.#lastKey) return;
      this.#lastKey = key;
      const text = EventHub.message(fleet);
      for (const client of [...this.#clients]) this.#send(client, text);
    } catch (error) {
      this.#lastKey = undefined;
      const text = EventHub.failure(error);
      for (const client of [...this.#clients]) this.#send(client, text);
    } finally {
      this.#ticking = false;
    }
  }

  /** A client's stream; a client gone is noticed when its stream is cancelled. */
  open(): Response {
    if (this.#closed) throw new HttpError(503, "The server is shutting down");
    let self: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        self = controller;
        this.#clients.add(controller);
        this.metrics.eventClients = this.#clients.size;
        this.#send(controller, `retry: ${Math.max(1000, this.refreshMs)}\n\n`);
        // Its first document at once, from a look made for it.
        this.looks.get(this.looks.ticket()).then(
          (fleet) => this.#send(controller, EventHub.message(fleet)),
          (error) => this.#send(controller, EventHub.failure(error)),
        );
        this.#timer ??= setInterval(() => void this.#tick(), this.refreshMs);
        this.#keepAlive ??= setInterval(() => {
          for (const client of [...this.#clients]) this.#send(client, ": keep-alive\n\n");
        }, this.keepAliveMs);
      },
      cancel: () => this.#drop(self),
    });
    return new Response(stream, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  close(): void {
    this.#closed = true;
    for (const client of [...this.#clients]) this.#drop(client);
    this.#stopTimers();
  }
}

/** A clock whose scheduled calls (lease renewals of API locks) stop when the server does. */
function stoppableClock(base: Clock): Clock & { stop(): void } {
  const pending = new Set<() => void>();
  return {
    now: () => base.now(),
    sleep: (ms, signal) => base.sleep(ms, signal),
    utcOffsetMinutes: (epochMs) => base.utcOffsetMinutes(epochMs),
    schedule: (fn, ms) => {
      const cancel = base.schedule(() => {
        pending.delete(cancel);
        fn();
      }, ms);
      pending.add(cancel);
      return () => {
        pending.delete(cancel);
        cancel();
      };
    },
    stop: () => {
      for (const cancel of pending) cancel();
      pending.clear();
    },
  };
}

async function readJson(request: Request, max: number, required: boolean): Promise<unknown> {
  const length = Number(request.headers.get("content-length") ?? "0");
  if (length > max) throw new HttpError(413, `Request body too large: at most ${max} bytes`);
  if (!request.body) {
    if (required) throw new HttpError(400, "Missing JSON body");
    return undefined;
  }
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      throw new HttpError(413, `Request body too large: at most ${max} bytes`);
    }
    chunks.push(value);
  }
  const text = new TextDecoder().decode(concatBytes(chunks));
  if (text.trim() === "") {
    if (required) throw new HttpError(400, "Missing JSON body");
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, `Invalid JSON body: ${(error as Error).message.split("\n")[0]}`);
  }
}

function objectBody(value: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new HttpError(400, `Invalid JSON body: expected an object, got ${kindOf(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new HttpError(
        400,
        `Invalid JSON body: unknown field ${JSON.stringify(key.slice(0, 40))} (known: ${
          allowed.join(", ")
        })`,
      );
    }
  }
  return value as Record<string, unknown>;
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") {
    throw new HttpError(400, `Invalid JSON body: "${key}" must be a string, got ${kindOf(value)}`);
  }
  return value;
}

const LOCK_TYPES: ReadonlyMap<string, LockType> = new Map([
  ["host", "Host"],
  ["generic", "Generic"],
  ["file", "File"],
]);

/** Longest an API request may wait for a busy host or a drain. */
const MAX_API_WAIT_MS = 60_000;

function boundedWait(value: string | undefined, name: string, fallback: string): string {
  const text = value ?? fallback;
  const msValue = parseDuration(text, name);
  if (msValue > MAX_API_WAIT_MS) {
    throw new HttpError(400, `Invalid ${name}: at most ${MAX_API_WAIT_MS / 1000}s through the API`);
  }
  return text;
}

function clientAddress(info: Deno.ServeHandlerInfo): string {
  const addr = info.remoteAddr as Partial<Deno.NetAddr>;
  if (!addr.hostname) return "unknown";
  return addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
}

/** The request handler of a server, without the listening: for tests and benchmarks. */
export interface ServeHandler {
  /** Answers one request. */
  handle(request: Request, info: Deno.ServeHandlerInfo): Promise<Response>;
  /** True when at least one token allows writes. */
  readonly writable: boolean;
  /** Closes the event streams and stops renewing API locks. */
  close(): Promise<void>;
}

/**
 * Builds the request handler of a server.
 *
 * @param options as for {@linkcode startServer}
 * @returns the handler
 */
export async function createHandler(options: ServerOptions = {}): Promise<ServeHandler> {
  const {
    hostname: _h,
    port: _p,
    cert: _c,
    key: _k,
    tokens: given,
    refreshInterval,
    keepAlive,
    maxBodyBytes = 65536,
    onRequest,
    ...fleetOptions
  } = options;
  const clock = stoppableClock(fleetOptions.clock ?? SYSTEM_CLOCK);
  const store = { ...fleetOptions, clock };
  const { hosts: _hosts, hostsFile: _hostsFile, ...groupOptions } = store;
  const resolved = await getResolvedConfig(store); // a bad store or config fails here, not at the first request
  let envToken: string | undefined;
  try {
    envToken = Deno.env.get(TOKEN_ENV) || undefined;
  } catch { /* no --allow-env */ }
  const tokens = new TokenCheck([
    ...validateTokens(resolved.serve.tokens, 'config setting "serve.tokens"'),
    ...validateTokens([...given ?? []], "option tokens"),
    ...envToken ? validateTokens([{ name: "env", token: envToken }], TOKEN_ENV) : [],
  ]);
  const metrics = new Metrics();
  const looks = new FleetLooks(() => getFleetStatus(store), () => metrics.storeErrors++);
  const events = new EventHub(
    looks,
    ms(refreshInterval, 1000, "refreshInterval"),
    ms(keepAlive, 15_000, "keepAlive"),
    metrics,
  );
  /** API locks taken here, renewed while the server runs, by ref of their host's lock. */
  const held = new Map<string, ResourceLock>();

  function authorize(request: Request): string {
    if (!tokens.enabled) {
      throw new HttpError(
        401,
        `The server is read-only: writes need a token (config "serve.tokens" or ${TOKEN_ENV})`,
        { "www-authenticate": 'Bearer realm="resource-locker"' },
      );
    }
    let header = request.headers.get("authorization");
    // Clients that can only put credentials in their URL (FleetLock's base_url) send Basic.
    const basic = /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(header ?? "");
    if (basic) {
      try {
        const decoded = atob(basic[1]!);
        header = `Bearer ${decoded.slice(decoded.indexOf(":") + 1)}`;
      } catch {
        header = null;
      }
    }
    const name = tokens.check(header);
    if (name === undefined) {
      throw new HttpError(401, "Unauthorized: a valid bearer token is needed to write", {
        "www-authenticate": 'Bearer realm="resource-locker"',
      });
    }
    return name;
  }

  function refOf(params: Record<string, string>): string {
    const ref = `${params.host}/${params.lockId}`;
    parseLockRef(ref); // a malformed ref is a 400
    return ref;
  }

  async function route(
    request: Request,
    method: string,
    pattern: string,
    params: Record<string, string>,
    url: URL,
    who: () => string,
  ): Promise<Response> {
    const now = () => Date.now();
    switch (`${method} ${pattern}`) {
      case "GET /v1/locks":
        return json(fleetDocument(await looks.get(looks.ticket()), now()));
      case "GET /v1/hosts/{host}": {
        const host = normalizeHost(params.host!);
        return json(hostsDocument([host], await getResourceLockStatus(host, store), now()));
      }
      case "GET /v1/history/{host}": {
        const host = normalizeHost(params.host!);
        const limitText = url.searchParams.get("limit");
        if (limitText !== null && (!/^\d{1,9}$/.test(limitText) || Number(limitText) < 1)) {
          throw new HttpError(400, `Invalid limit ${JSON.stringify(limitText.slice(0, 40))}`);
        }
        const entries = await getResourceLockHistory(host, {
          ...store,
          ...limitText !== null ? { limit: Number(limitText) } : {},
        });
        return json(historyDocument(host, entries, now()));
      }
      case "GET /v1/groups/{group}": {
        const group = await getGroupStatus(params.group!, groupOptions);
        const locks = await getResourceLockStatus(group.members, store);
        return json(groupDocument(group, locks, now()));
      }
      case "GET /v1/events":
        return events.open();
      case "GET /v1/openapi.json":
        return new Response(JSON.stringify(openApiDocument(), null, 2) + "\n", {
          headers: { "content-type": JSON_TYPE },
        });
      case "GET /metrics": {
        const fleet = await looks.get(looks.ticket()).catch(() => looks.last);
        return new Response(metrics.render(fleet, now()), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      }
      case "POST /v1/locks": {
        const body = objectBody(await readJson(request, maxBodyBytes, true), [
          "host",
          "type",
          "description",
          "ttl",
          "sessionId",
          "noDependencies",
          "wait",
          "drainTimeout",
        ]);
        const host = optionalString(body, "host");
        if (host === undefined) throw new HttpError(400, 'Invalid JSON body: "host" is missing');
        const typeText = optionalString(body, "type");
        const type = typeText === undefined ? undefined : LOCK_TYPES.get(typeText.toLowerCase());
        if (typeText !== undefined && !type) {
          throw new HttpError(400, `Invalid lock type ${JSON.stringify(typeText.slice(0, 40))}`);
        }
        if (body.noDependencies !== undefined && typeof body.noDependencies !== "boolean") {
          throw new HttpError(400, 'Invalid JSON body: "noDependencies" must be true or false');
        }
        const description = optionalString(body, "description");
        const ttl = optionalString(body, "ttl");
        const sessionId = optionalString(body, "sessionId");
        const wait = optionalString(body, "wait");
        metrics.waiters++;
        let lock: ResourceLock;
        try {
          lock = await lockResource(host, {
            ...groupOptions,
            caller: who(),
            ...type ? { type } : {},
            ...description !== undefined ? { description } : {},
            ...ttl !== undefined ? { ttl } : {},
            ...sessionId !== undefined ? { sessionId } : {},
            ...body.noDependencies === true ? { noDependencies: true } : {},
            retries: 1,
            ...wait !== undefined ? { wait: boundedWait(wait, "wait", "0s") } : {},
            drainTimeout: boundedWait(optionalString(body, "drainTimeout"), "drainTimeout", "10s"),
          });
        } finally {
          metrics.waiters--;
        }
        if (lock.ttlMs !== undefined) held.set(lock.refs.at(-1)!, lock);
        return json(lockDocument("lock", lock));
      }
      case "DELETE /v1/locks/{host}/{lockId}": {
        const ref = refOf(params);
        const force = url.searchParams.get("force");
        if (force !== null && force !== "true" && force !== "false") {
          throw new HttpError(400, 'Invalid force: "true" or "false"');
        }
        if (force === "true") {
          // Another session's lock: broken, so History says who released it.
          const info = await breakResourceLock(ref, {
            ...store,
            force: true,
            reason: `released through the server by ${who()}`,
          });
          return json({
            command: "unlock",
            results: [{ ref: info.ref, status: "released" }],
          });
        }
        const object = held.get(ref);
        const results = object ? await object.release() : await unlockResource(ref, store);
        if (object) held.delete(ref);
        return json({ command: "unlock", results: results.map(releaseJson) });
      }
      case "POST /v1/locks/{host}/{lockId}/break": {
        const ref = refOf(params);
        const body = objectBody(await readJson(request, maxBodyBytes, false), ["reason"]);
        const reason = optionalString(body, "reason") ?? "broken from the status page";
        const info = await breakResourceLock(ref, {
          ...store,
          force: true,
          reason: `${reason} (by ${who()})`,
        });
        held.get(ref)?.release().catch(() => {});
        held.delete(ref);
        return json(breakDocument(info, now()));
      }
      case "POST /v1/pre-reboot":
      case "POST /v1/steady-state":
        return await fleetLock(request, pattern, who);
    }
    throw new HttpError(404, "Not found");
  }

  async function fleetLock(
    request: Request,
    pattern: string,
    who: () => string,
  ): Promise<Response> {
    const kindError = (status: number, kind: string, value: string) =>
      new Response(JSON.stringify({ kind, value: maskSecrets(value) }) + "\n", {
        status,
        headers: { "content-type": JSON_TYPE },
      });
    if (request.headers.get("fleet-lock-protocol") !== "true") {
      return kindError(
        400,
        "missing_fleetlock_header",
        'header "fleet-lock-protocol: true" is required',
      );
    }
    let caller: string;
    try {
      caller = who();
    } catch (error) {
      return kindError(401, "unauthorized", (error as Error).message);
    }
    let params: ClientParams;
    try {
      params = parseClientParams(await readJson(request, maxBodyBytes, true));
    } catch (error) {
      if (error instanceof FleetLockError) {
        return kindError(error.status, error.kind, error.message);
      }
      const status = error instanceof HttpError ? error.status : 400;
      return kindError(status, "invalid_client_params", (error as Error).message);
    }
    try {
      metrics.waiters += pattern === "/v1/pre-reboot" ? 1 : 0;
      const result = pattern === "/v1/pre-reboot"
        ? await preReboot(params, caller, groupOptions)
        : await steadyState(params, groupOptions);
      return new Response(JSON.stringify(result) + "\n", {
        headers: { "content-type": JSON_TYPE },
      });
    } catch (error) {
      if (error instanceof FleetLockError) {
        if (error.kind === "store_unavailable") metrics.storeErrors++;
        return kindError(error.status, error.kind, error.message);
      }
      return kindError(500, "internal_error", "internal error");
    } finally {
      metrics.waiters -= pattern === "/v1/pre-reboot" ? 1 : 0;
    }
  }

  async function handle(request: Request, info: Deno.ServeHandlerInfo): Promise<Response> {
    const started = performance.now();
    const client = clientAddress(info);
    const url = new URL(request.url);
    const method = request.method === "HEAD" ? "GET" : request.method;
    let routeName = url.pathname.startsWith("/v1/")
      ? "/v1/*"
      : url.pathname === "/metrics"
      ? "/metrics"
      : "/";
    let tokenName: string | undefined;
    let response: Response;
    try {
      const api = url.pathname.startsWith("/v1/") || url.pathname === "/metrics";
      if (!api) {
        const page = method === "GET" ? servePage(request) : undefined;
        if (page) {
          response = page;
          routeName = "/";
        } else if (method !== "GET") {
          throw new HttpError(405, "Method not allowed", { allow: "GET, HEAD" });
        } else throw new HttpError(404, `Not found: ${url.pathname.slice(0, 100)}`);
      } else {
        let segments: string[];
        try {
          segments = url.pathname.split("/").slice(1).flatMap((s) =>
            decodeURIComponent(s).split("/")
          );
        } catch {
          throw new HttpError(400, "Invalid path: bad %-encoding");
        }
        const candidates = ROUTES.map((r) => ({ r, params: match(r.pattern, segments) }))
          .filter((c) => c.params);
        const found = candidates.find((c) => c.r.method === method);
        if (!found) {
          if (candidates.length > 0) {
            const allow = [...new Set(candidates.map((c) => c.r.method))];
            if (allow.includes("GET")) allow.push("HEAD");
            routeName = candidates[0]!.r.pattern;
            throw new HttpError(405, `Method ${method.slice(0, 20)} not allowed`, {
              allow: allow.join(", "),
            });
          }
          throw new HttpError(404, `Not found: ${url.pathname.slice(0, 100)}`);
        }
        routeName = found.r.pattern;
        const who = () => {
          tokenName = authorize(request);
          return `serve/${tokenName}@${client}`;
        };
        if (
          found.r.write && found.r.pattern !== "/v1/pre-reboot" &&
          found.r.pattern !== "/v1/steady-state"
        ) {
          who(); // refused before the body is read
        }
        response = await route(request, method, found.r.pattern, found.params!, url, who);
      }
    } catch (error) {
      if (error instanceof StoreError) metrics.storeErrors++;
      response = errorResponse(error);
    }
    if (request.method === "HEAD") {
      response = new Response(null, { status: response.status, headers: response.headers });
    }
    const seconds = (performance.now() - started) / 1000;
    metrics.observe(routeName, method, response.status, seconds);
    onRequest?.({
      client,
      method: request.method.slice(0, 20),
      route: routeName,
      status: response.status,
      ms: Math.round(seconds * 10000) / 10,
      ...tokenName !== undefined ? { token: tokenName } : {},
    });
    return response;
  }

  return {
    handle,
    get writable() {
      return tokens.enabled;
    },
    close() {
      events.close();
      clock.stop();
      return Promise.resolve();
    },
  };
}

/**
 * Starts `resource-locker serve`'s server: the status page at `/`, the JSON
 * API under `/v1/` (described at `/v1/openapi.json`), FleetLock at
 * `/v1/pre-reboot` and `/v1/steady-state`, metrics at `/metrics`.
 *
 * @param options address, port, TLS, tokens, and the store options
 * @returns the running server; `shutdown()` or `await using` stops it
 * @throws {InputError} on a bad option, token or config
 *
 * @example Ask a server for the fleet's locks
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockResource } from "@resource-locker/resource-locker";
 * import { startServer } from "@resource-locker/resource-locker/serve";
 * const root = await Deno.makeTempDir();
 * const store = `${root}/{0}`;
 * {
 *   await using server = await startServer({ store, port: 0 });
 *   await using _lock = await lockResource("web01", { store, dependencies: {} });
 *   const fleet = await (await fetch(`${server.url}/v1/locks`)).json();
 *   assert.deepEqual(fleet.locks.map((l: { host: string }) => l.host), ["web01"]);
 * }
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InputError(`Invalid port ${JSON.stringify(port)}: expected 0 to 65535`);
  }
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new InputError("HTTPS needs both a certificate and its key");
  }
  const handler = await createHandler(options);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port,
      ...options.cert !== undefined ? { cert: options.cert, key: options.key! } : {},
      onListen: () => {},
      onError: () => errorResponse(new Error("internal error")),
    }, (request, info) => handler.handle(request, info));
  } catch (error) {
    await handler.close();
    throw new StoreError(
      `${hostname}:${port}`,
      `Cannot listen on ${hostname}:${port}: ${(error as Error).message.split("\n")[0]}`,
    );
  }
  const addr = server.addr;
  const shown = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    stopping ??= (async () => {
      await handler.close();
      await server.shutdown();
    })();
  return {
    url: `${options.cert !== undefined ? "https" : "http"}://${shown}:${addr.port}`,
    hostname: addr.hostname,
    port: addr.port,
    writable: handler.writable,
    shutdown,
    finished: server.finished,
    [Symbol.asyncDispose]: shutdown,
  };
}
