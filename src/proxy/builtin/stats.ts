import type { LatencySummary } from '../switch.js';

/**
 * Latency in fixed, geometrically growing buckets (10% apart, 0.05 ms to ~20 min): recording is
 * one array increment, memory is constant however long the pool lives, and a percentile is exact
 * to within one bucket (10%), which is all an error-rate and latency analysis needs.
 */
const FIRST_MS = 0.05;
const GROWTH = 1.1;
const BUCKETS = 180;
const LOG_GROWTH = Math.log(GROWTH);

function bucketOf(ms: number): number {
  if (ms <= FIRST_MS) return 0;
  const i = Math.ceil(Math.log(ms / FIRST_MS) / LOG_GROWTH);
  return i < BUCKETS ? i : BUCKETS - 1;
}

function upperBound(bucket: number): number {
  return FIRST_MS * GROWTH ** bucket;
}

/** The bounds exported to Prometheus (its client libraries' defaults, in ms). */
export const PROMETHEUS_BOUNDS_MS = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000] as const;

export class LatencyHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  private count = 0;
  private max = 0;
  private sum = 0;

  record(ms: number): void {
    this.counts[bucketOf(ms)]!++;
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  /** Cumulative counts at the given bounds (exact to one fine bucket, 10%). */
  cumulative(boundsMs: readonly number[]): number[] {
    const out: number[] = [];
    let seen = 0;
    let i = 0;
    for (const le of boundsMs) {
      for (; i < BUCKETS && upperBound(i) <= le * 1.0000001; i++) seen += this.counts[i]!;
      out.push(seen);
    }
    return out;
  }

  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(upperBound(i), this.max);
    }
    return this.max;
  }

  summary(): LatencySummary {
    const round = (x: number) => Math.round(x * 1000) / 1000;
    return {
      count: this.count,
      p50Ms: round(this.percentile(50)),
      p99Ms: round(this.percentile(99)),
      maxMs: round(this.max),
      sumMs: round(this.sum),
      buckets: { leMs: [...PROMETHEUS_BOUNDS_MS], counts: this.cumulative(PROMETHEUS_BOUNDS_MS) },
    };
  }
}

/** Index of a status in `StatusCounts`: 1xx -> 0 ... 5xx -> 4 (anything odd counts as 5xx). */
export function statusClass(status: number): number {
  const c = Math.floor(status / 100) - 1;
  return c >= 0 && c <= 4 ? c : 4;
}

export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
