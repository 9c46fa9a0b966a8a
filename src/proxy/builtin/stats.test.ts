import { describe, expect, it } from 'vitest';
import { LatencyHistogram, statusClass } from './stats.js';

describe('LatencyHistogram', () => {
  it('reports zeros before anything is recorded', () => {
    expect(new LatencyHistogram().summary()).toEqual({
      count: 0,
      p50Ms: 0,
      p99Ms: 0,
      maxMs: 0,
      sumMs: 0,
      buckets: {
        leMs: [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000],
        counts: Array(11).fill(0),
      },
    });
  });

  it('gives percentiles within one bucket (10%) of the true value and the exact max', () => {
    const h = new LatencyHistogram();
    for (let i = 1; i <= 1000; i++) h.record(i / 10);
    const s = h.summary();
    expect(s.count).toBe(1000);
    expect(s.p50Ms).toBeGreaterThanOrEqual(50);
    expect(s.p50Ms).toBeLessThanOrEqual(55);
    expect(s.p99Ms).toBeGreaterThanOrEqual(99);
    expect(s.p99Ms).toBeLessThanOrEqual(100);
    expect(s.maxMs).toBe(100);
  });

  it('keeps very long and very short latencies in the end buckets', () => {
    const h = new LatencyHistogram();
    h.record(0);
    h.record(10 * 60 * 60 * 1000);
    expect(h.summary().maxMs).toBe(36_000_000);
    expect(h.percentile(50)).toBeLessThanOrEqual(0.05);
  });
});

describe('statusClass', () => {
  it('maps statuses to their class', () => {
    expect([101, 200, 304, 404, 502, 999].map(statusClass)).toEqual([0, 1, 2, 3, 4, 4]);
  });
});
