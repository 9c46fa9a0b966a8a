import { LatencyHistogram, STATUS_CLASSES } from '../builtin/stats.js';
import type { PoolStats } from '../switch.js';
import { laneOf } from './base-config.js';
import type { LaneRecord } from './plan.js';
import type { RequestLine } from './show.js';

/**
 * Per-pool numbers from what haproxy really counts. haproxy's counters are cumulative per backend
 * (a lane), and a lane holds one pool after another, so a pool's numbers are the lane's counters
 * now minus a baseline taken when the pool got the lane. Latency comes from per-request log lines
 * (`%rt %b %ST %Ta`) that the base config sends to an in-memory ring, read with `show events`.
 */

/** The cumulative counters of one lane backend that teal reports. */
export interface Counters {
  requests: number;
  /** Responses by class 1xx..5xx (haproxy's `hrsp_other` counts as 5xx, as statusClass does). */
  status: [number, number, number, number, number];
  /** Connection errors to servers plus responses that failed (aborted, invalid, killed). */
  upstreamErrors: number;
}

export const ZERO: Counters = { requests: 0, status: [0, 0, 0, 0, 0], upstreamErrors: 0 };

/** The counters of a `show stat` BACKEND row. */
export function countersOf(row: Record<string, string>): Counters {
  const n = (name: string) => Number(row[name] || 0);
  return {
    requests: n('req_tot'),
    status: [n('hrsp_1xx'), n('hrsp_2xx'), n('hrsp_3xx'), n('hrsp_4xx'), n('hrsp_5xx') + n('hrsp_other')],
    upstreamErrors: n('econ') + n('eresp'),
  };
}

/** `now - base`; a counter below its baseline means haproxy restarted, and then counts from zero. */
export function since(now: Counters, base: Counters): Counters {
  const d = (a: number, b: number) => (a >= b ? a - b : a);
  return {
    requests: d(now.requests, base.requests),
    status: now.status.map((v, i) => d(v, base.status[i]!)) as Counters['status'],
    upstreamErrors: d(now.upstreamErrors, base.upstreamErrors),
  };
}

/**
 * Latency per pool from the ring's request lines. The ring is read whole on every call and holds
 * the latest lines in the order requests ended, so the book remembers the last line it took (its
 * request counter is unique) and takes only what follows it; when that line has been overwritten,
 * every line in the ring is newer, and the lines in between are lost (`lost` says how many
 * requests went unmeasured as far as the book can tell).
 */
export class LatencyBook {
  private readonly byPool = new Map<string, LatencyHistogram>();
  private last: number | undefined;
  private process: string | undefined;

  /** Forgets everything when haproxy is a new process (its request counter starts again). */
  forProcess(identity: string): void {
    if (this.process === identity) return;
    this.process = identity;
    this.byPool.clear();
    this.last = undefined;
  }

  ingest(lines: RequestLine[], lanes: LaneRecord[], prefix: string): void {
    let start = 0;
    if (this.last !== undefined) {
      const at = lines.findIndex((l) => l.rt === this.last);
      start = at >= 0 ? at + 1 : 0;
    }
    const byLane = new Map(lanes.map((r) => [r.lane, r]));
    for (let i = start; i < lines.length; i++) {
      const line = lines[i]!;
      const lane = laneOf(prefix, line.backend);
      const record = lane === undefined ? undefined : byLane.get(lane);
      // Older requests in this lane belonged to the pool it held before.
      if (!record || line.rt < record.fromRequest || line.ms < 0) continue;
      let h = this.byPool.get(record.pool.id);
      if (!h) {
        h = new LatencyHistogram();
        this.byPool.set(record.pool.id, h);
      }
      h.record(line.ms);
    }
    if (lines.length > 0) this.last = lines[lines.length - 1]!.rt;
  }

  /** Drops pools no lane holds any more. */
  keepOnly(poolIds: Set<string>): void {
    for (const id of this.byPool.keys()) if (!poolIds.has(id)) this.byPool.delete(id);
  }

  summary(poolId: string): PoolStats['latency'] {
    return (this.byPool.get(poolId) ?? new LatencyHistogram()).summary();
  }

  count(poolId: string): number {
    return this.summary(poolId).count;
  }
}

export function poolStats(
  record: LaneRecord,
  counters: Counters,
  open: { sessions: number; tunnels: number },
  latency: PoolStats['latency'],
): PoolStats {
  const c = since(counters, record.baseline);
  const status = Object.fromEntries(STATUS_CLASSES.map((k, i) => [k, c.status[i]!])) as PoolStats['status'];
  return {
    pool: record.pool.id,
    service: record.pool.service,
    slot: record.pool.slot,
    release: record.pool.release,
    requests: c.requests,
    status,
    upstreamErrors: c.upstreamErrors,
    inFlight: Math.max(0, open.sessions - open.tunnels),
    openStreams: open.tunnels,
    latency,
  };
}
