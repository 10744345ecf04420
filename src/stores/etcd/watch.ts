/**
 * Waiting for a change under a key prefix with an etcd watch: the waiter
 * wakes at the first event from a given revision on, so a change made after
 * the caller's last look (and before the watch was set up) still wakes it.
 *
 * A member that fails under a watch (its connection breaks, or it accepts
 * the watch request and stays silent past the request timeout) passes the
 * watch on to the next member, from the same revision: no event was seen
 * yet (the first one ends the wait), so none can be missed. A member that
 * ends the stream wakes the waiter, who looks again.
 *
 * @module
 */

import { StoreError } from "../../errors.ts";
import type { HttpStream } from "../_http_client.ts";
import { EtcdGateway, oneLine, reasonOf } from "./gateway.ts";
import { watchBody } from "./requests.ts";

type Outcome =
  | { kind: "done"; reason?: undefined }
  | { kind: "aborted"; reason?: undefined }
  /** etcd refused the token: log in again and watch again. */
  | { kind: "refused"; reason: string }
  /** The member could not be reached, broke the watch or stayed silent: try the next. */
  | { kind: "unreachable"; reason: string }
  | { kind: "failed"; reason: string };

type State = "waiting" | "timeout" | "stalled" | "aborted";

const decoder = new TextDecoder();

/** Watches of one store: each ends at a change, its time, its signal or {@linkcode close}. */
export class EtcdWatcher {
  readonly #gateway: EtcdGateway;
  readonly #watches = new Set<AbortController>();

  /** @param gateway the store's way to etcd */
  constructor(gateway: EtcdGateway) {
    this.#gateway = gateway;
  }

  /**
   * Resolves at the first change under `prefix` from revision `start` on
   * (at once when there was one), or after `ms`, or when closed. An endpoint
   * that cannot be reached passes the watch to the next.
   * @param prefix the keys watched, `/resource-locks/dc01/`
   * @param start the first revision that counts; undefined: from now
   * @param ms how long to wait at most
   * @param signal aborts the wait
   * @throws the signal's reason when `signal` aborts
   * @throws {StoreError} when no endpoint accepts the watch in time
   */
  async wait(
    prefix: string,
    start: bigint | undefined,
    ms: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const what = `watch "${prefix}"`;
    if (this.#gateway.closed) throw this.#gateway.closedError(what);
    const request = watchBody(prefix, start);
    const deadline = Date.now() + ms;
    const failures: string[] = [];
    const rotation = this.#gateway.rotation();
    let loggedIn = false;
    for (let i = 0; i < rotation.length; i++) {
      const index = rotation[i]!;
      const endpoint = this.#gateway.endpoint(index);
      const token = await this.#gateway.token();
      const outcome = await this.#watchOnce(
        endpoint,
        request,
        deadline - Date.now(),
        signal,
        token,
      );
      if (outcome.kind === "refused" && !loggedIn) {
        // the token expired or was revoked: log in again, watch again here
        loggedIn = true;
        await this.#gateway.tokenRefused(token);
        i--;
        continue;
      }
      if (outcome.kind === "done") {
        this.#gateway.prefer(index);
        return;
      }
      if (outcome.kind === "aborted") throw signal!.reason;
      if (outcome.kind === "unreachable" && Date.now() < deadline) {
        failures.push(`"${endpoint}": ${outcome.reason}`);
        this.#gateway.passOver(index);
        continue;
      }
      if (outcome.kind === "unreachable") return; // wait is over anyway
      throw new StoreError(
        endpoint,
        `Cannot ${what} in etcd at "${endpoint}": ${outcome.reason ?? "failed"}`,
      );
    }
    throw new StoreError(
      this.#gateway.location,
      rotation.length === 1
        ? `Cannot ${what} in etcd at ${failures[0]}`
        : `Cannot ${what} in etcd: no endpoint answered: ${failures.join("; ")}`,
    );
  }

  async #watchOnce(
    endpoint: string,
    request: string,
    ms: number,
    signal: AbortSignal | undefined,
    token: string,
  ): Promise<Outcome> {
    const timeoutMs = this.#gateway.timeoutMs;
    const controller = new AbortController();
    this.#watches.add(controller);
    const status: { state: State } = { state: "waiting" };
    const stop = (why: State) => {
      if (status.state === "waiting") status.state = why;
      controller.abort();
    };
    const onAbort = () => stop("aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    // timers from AbortSignal.timeout, as in the gateway; the listeners go in finally
    const timer = AbortSignal.timeout(Math.max(0, ms));
    const onTimer = () => stop("timeout");
    timer.addEventListener("abort", onTimer, { once: true });
    // the watch must be accepted within the request timeout
    let created = false;
    const stallTimer = AbortSignal.timeout(timeoutMs);
    const onStall = () => {
      if (!created) stop("stalled");
    };
    stallTimer.addEventListener("abort", onStall, { once: true });
    let response: HttpStream | undefined;
    try {
      response = await this.#gateway.stream(
        endpoint,
        "/v3/watch",
        request,
        controller.signal,
        token,
      );
      if (response.status < 200 || response.status >= 300) {
        const text = await response.text();
        const reason = `HTTP ${response.status}: ${oneLine(text.slice(0, 200))}`;
        // 408 and 5xx: the member is shutting down or cannot serve: the next one
        const refused = response.status !== 408 && response.status < 500;
        return refused ? { kind: "failed", reason } : { kind: "unreachable", reason };
      }
      let buffer = "";
      while (true) {
        const value = await response.read();
        if (value === undefined) return { kind: "done" }; // the server ended it: look again
        buffer += decoder.decode(value, { stream: true });
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (!line) continue;
          const message = JSON.parse(line) as {
            result?: {
              created?: boolean;
              canceled?: boolean;
              cancel_reason?: string;
              compact_revision?: string;
              events?: unknown[];
            };
            error?: { message?: string };
          };
          const refusal = message.error?.message ?? message.result?.cancel_reason;
          if (refusal && EtcdGateway.refusesToken(refusal)) {
            return { kind: "refused", reason: oneLine(refusal) };
          }
          if (message.error) {
            return {
              kind: "failed",
              reason: oneLine(message.error.message ?? "watch failed"),
            };
          }
          const result = message.result ?? {};
          if (result.created) created = true;
          const compacted = result.compact_revision && result.compact_revision !== "0";
          if (result.canceled && result.cancel_reason && !compacted) {
            // refused (permission denied): waking would only look and watch again
            return {
              kind: "failed",
              reason: oneLine(result.cancel_reason.replace(/^rpc error: code = \w+ desc = /, "")),
            };
          }
          if ((result.events?.length ?? 0) > 0 || result.canceled || compacted) {
            return { kind: "done" };
          }
        }
      }
    } catch (error) {
      if (this.#gateway.closed) return { kind: "done" };
      switch (status.state) {
        case "timeout":
          return { kind: "done" };
        case "aborted":
          return { kind: "aborted" };
        case "stalled":
          return { kind: "unreachable", reason: `no answer within ${timeoutMs} ms` };
      }
      // broken before or after the watch was set up: on to the next member
      return { kind: "unreachable", reason: reasonOf(error) };
    } finally {
      timer.removeEventListener("abort", onTimer);
      stallTimer.removeEventListener("abort", onStall);
      signal?.removeEventListener("abort", onAbort);
      this.#watches.delete(controller);
      response?.close();
      controller.abort();
    }
  }

  /** Ends every watch under way (they resolve). */
  close(): void {
    for (const controller of this.#watches) controller.abort();
  }
}
