/**
 * The server's metrics in the Prometheus text format (0.0.4): the fleet's
 * locks from the server's last look, and the server's own counters.
 *
 * @module
 */

import type { FleetStatus } from "../fleet.ts";

/** Upper bounds of the request latency histogram, in seconds. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

interface Histogram {
  counts: number[];
  sum: number;
  count: number;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function labels(pairs: Record<string, string>): string {
  const text = Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",");
  return text ? `{${text}}` : "";
}

function number(value: number): string {
  if (value === Infinity) return "+Inf";
  return Number.isFinite(value) ? String(value) : "NaN";
}

/** What the server counts while it runs. */
export class Metrics {
  readonly #latency = new Map<string, Histogram>();
  readonly #requests = new Map<string, number>();
  /** Store errors: failed looks at the fleet, hosts or groups that could not be read, store failures of requests. */
  storeErrors = 0;
  /** Requests now waiting for the store to take a lock (API locks, FleetLock pre-reboot). */
  waiters = 0;
  /** Clients connected to `/v1/events`. */
  eventClients = 0;

  /** Counts a request: its route (the pattern, never the raw path), method, status and time. */
  observe(route: string, method: string, status: number, seconds: number): void {
    const key = JSON.stringify([route, method]);
    let h = this.#latency.get(key);
    if (!h) {
      h = { counts: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.#latency.set(key, h);
    }
    LATENCY_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) h!.counts[i]!++;
    });
    h.sum += seconds;
    h.count++;
    const counter = JSON.stringify([route, method, String(status)]);
    this.#requests.set(counter, (this.#requests.get(counter) ?? 0) + 1);
  }

  /**
   * The text of `/metrics`.
   *
   * @param fleet the last look at the fleet, or undefined when none succeeded yet
   * @param now the time ages are measured to
   */
  render(fleet: FleetStatus | undefined, now: number): string {
    const out: string[] = [];
    const family = (name: string, type: string, help: string) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    family("resource_locker_locks", "gauge", "Locks held, by type (expired ones excluded).");
    for (const type of ["Host", "Generic", "File"]) {
      const n = fleet?.locks.filter((l) => l.type === type && !l.expired).length ?? 0;
      out.push(`resource_locker_locks${labels({ type })} ${n}`);
    }
    family(
      "resource_locker_oldest_lock_age_seconds",
      "gauge",
      "Age of the oldest lock held (0 when none).",
    );
    const ages = (fleet?.locks ?? []).map((l) => l.lockedAt ?? l.writtenAt).filter((d) => d)
      .map((d) => (now - d!.getTime()) / 1000);
    out.push(`resource_locker_oldest_lock_age_seconds ${number(Math.max(0, ...ages))}`);
    family("resource_locker_stale_locks", "gauge", "Locks flagged stale by the fleet view.");
    out.push(
      `resource_locker_stale_locks ${fleet?.locks.filter((l) => l.stale.length > 0).length ?? 0}`,
    );
    family("resource_locker_hosts", "gauge", "Hosts looked at by the fleet view.");
    out.push(`resource_locker_hosts ${fleet?.hosts.length ?? 0}`);
    family(
      "resource_locker_group_slots_used",
      "gauge",
      "Slots of a maintenance group in use.",
    );
    for (const g of fleet?.groups ?? []) {
      out.push(`resource_locker_group_slots_used${labels({ group: g.name })} ${g.used}`);
    }
    family("resource_locker_group_slots_max", "gauge", "Slots of a maintenance group.");
    for (const g of fleet?.groups ?? []) {
      out.push(`resource_locker_group_slots_max${labels({ group: g.name })} ${g.max}`);
    }
    family(
      "resource_locker_waiters",
      "gauge",
      "Requests to this server waiting for the store to take a lock.",
    );
    out.push(`resource_locker_waiters ${this.waiters}`);
    family("resource_locker_event_clients", "gauge", "Clients connected to /v1/events.");
    out.push(`resource_locker_event_clients ${this.eventClients}`);
    family(
      "resource_locker_store_errors_total",
      "counter",
      "Store errors seen by this server (fleet looks, hosts or groups not read, requests).",
    );
    out.push(`resource_locker_store_errors_total ${this.storeErrors}`);
    family("resource_locker_http_requests_total", "counter", "Requests answered.");
    for (const [key, n] of [...this.#requests].sort()) {
      const [route, method, code] = JSON.parse(key) as string[];
      out.push(
        `resource_locker_http_requests_total${
          labels({ route: route!, method: method!, code: code! })
        } ${n}`,
      );
    }
    family(
      "resource_locker_http_request_duration_seconds",
      "histogram",
      "Time to answer a request (the event stream: to its first byte).",
    );
    for (const [key, h] of [...this.#latency].sort()) {
      const [route, method] = JSON.parse(key) as string[];
      const base = { route: route!, method: method! };
      LATENCY_BUCKETS.forEach((bound, i) => {
        out.push(
          `resource_locker_http_request_duration_seconds_bucket${
            labels({ ...base, le: number(bound) })
          } ${h.counts[i]}`,
        );
      });
      out.push(
        `resource_locker_http_request_duration_seconds_bucket${
          labels({ ...base, le: "+Inf" })
        } ${h.count}`,
        `resource_locker_http_request_duration_seconds_sum${labels(base)} ${h.sum}`,
        `resource_locker_http_request_duration_seconds_count${labels(base)} ${h.count}`,
      );
    }
    return out.join("\n") + "\n";
  }
}
