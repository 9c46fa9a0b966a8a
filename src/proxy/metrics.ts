import type { Slot } from '../core/model.js';
import type { PoolStats, TrafficStats } from './switch.js';

/**
 * A data plane's counters in Prometheus text format (exposition 0.0.4): requests, responses by
 * status class, upstream errors, in-flight requests, open streams and a latency histogram, per
 * service, slot and release. Served by the data plane's admin socket and by the control API.
 */
export function renderPrometheus(stats: TrafficStats, prefix = 'teal_proxy'): string {
  const lines: string[] = [];
  const labels = (p: PoolStats, extra = '') =>
    `{service="${esc(p.service)}",slot="${p.slot}",release="${p.release}",pool="${esc(p.pool)}"${extra}}`;
  const metric = (name: string, type: string, help: string, value: (p: PoolStats) => string[]) => {
    lines.push(`# HELP ${prefix}_${name} ${help}`, `# TYPE ${prefix}_${name} ${type}`);
    for (const p of stats.pools) lines.push(...value(p));
  };
  metric('requests_total', 'counter', 'Requests routed to the pool.', (p) => [
    `${prefix}_requests_total${labels(p)} ${p.requests}`,
  ]);
  metric('responses_total', 'counter', 'Responses sent to clients, by status class.', (p) =>
    Object.entries(p.status).map(
      ([cls, n]) => `${prefix}_responses_total${labels(p, `,class="${cls}"`)} ${n}`,
    ),
  );
  metric(
    'upstream_errors_total',
    'counter',
    'Requests that got no upstream response (answered 502 or 504).',
    (p) => [`${prefix}_upstream_errors_total${labels(p)} ${p.upstreamErrors}`],
  );
  metric('in_flight', 'gauge', 'Requests in flight.', (p) => [
    `${prefix}_in_flight${labels(p)} ${p.inFlight}`,
  ]);
  metric('open_streams', 'gauge', 'Open websockets and event streams.', (p) => [
    `${prefix}_open_streams${labels(p)} ${p.openStreams}`,
  ]);
  metric(
    'request_duration_seconds',
    'histogram',
    'Time from the request head to the end of the response.',
    (p) => {
      const b = p.latency.buckets;
      const out = b
        ? b.leMs.map(
            (le, i) =>
              `${prefix}_request_duration_seconds_bucket${labels(p, `,le="${le / 1000}"`)} ${b.counts[i]}`,
          )
        : [];
      out.push(
        `${prefix}_request_duration_seconds_bucket${labels(p, ',le="+Inf"')} ${p.latency.count}`,
        `${prefix}_request_duration_seconds_sum${labels(p)} ${((p.latency.sumMs ?? 0) / 1000).toFixed(6)}`,
        `${prefix}_request_duration_seconds_count${labels(p)} ${p.latency.count}`,
      );
      return out;
    },
  );
  lines.push(
    `# HELP ${prefix}_table_revision Revision of the routing table served.`,
    `# TYPE ${prefix}_table_revision gauge`,
  );
  lines.push(`${prefix}_table_revision ${stats.revision}`);
  return `${lines.join('\n')}\n`;
}

/** One slot's counters since the data plane started, summed over the releases it has served. */
export interface SlotTraffic {
  requests: number;
  /** Responses sent, any status. */
  responses: number;
  /** 5xx responses, the data plane's own 502/504 for upstream errors included. */
  errors: number;
  inFlight: number;
}

/**
 * A service's traffic per slot, for the dashboard: counters, not rates, so any number of viewers
 * can poll and each divides the difference between two of its own samples by the time between them.
 */
export function slotTraffic(
  stats: TrafficStats,
  service: string,
  now = Date.now(),
): { service: string; at: number; slots: Record<Slot, SlotTraffic> } {
  const empty = (): SlotTraffic => ({ requests: 0, responses: 0, errors: 0, inFlight: 0 });
  const slots: Record<Slot, SlotTraffic> = { blue: empty(), green: empty() };
  for (const p of stats.pools) {
    if (p.service !== service) continue;
    const s = slots[p.slot];
    s.requests += p.requests;
    s.responses += Object.values(p.status).reduce((a, b) => a + b, 0);
    s.errors += p.status['5xx'];
    s.inFlight += p.inFlight;
  }
  return { service, at: now, slots };
}

function esc(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
