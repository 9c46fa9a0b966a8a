import { describe, expect, it } from 'vitest';
import { PROMETHEUS_BOUNDS_MS } from '../proxy/builtin/stats.js';
import type { PoolStats } from '../proxy/switch.js';
import {
  type AnalysisConfig,
  diffStats,
  judge,
  observe,
  type Source,
  sourceWindow,
  sumStats,
  windowOf,
} from './analysis.js';
import { compactStats, poolCounters } from './edges.js';

/** A pool's counters with `fast` requests at 4 ms, `slow` at 80 ms, `errors` of them 5xx, `lost` unanswered. */
function pool(fast: number, slow: number, errors = 0, lost = 0): PoolStats {
  const count = fast + slow;
  return {
    pool: 'web/green/r2',
    service: 'web',
    slot: 'green',
    release: 2,
    requests: count + lost,
    status: { '1xx': 0, '2xx': count - errors, '3xx': 0, '4xx': 0, '5xx': errors },
    upstreamErrors: lost,
    inFlight: 0,
    openStreams: 0,
    latency: {
      count,
      p50Ms: 4,
      p99Ms: slow > 0 ? 80 : 4,
      maxMs: slow > 0 ? 80 : 4,
      buckets: {
        leMs: [...PROMETHEUS_BOUNDS_MS],
        counts: PROMETHEUS_BOUNDS_MS.map((le) => (le >= 100 ? count : le >= 5 ? fast : 0)),
      },
    },
  };
}

const config: AnalysisConfig = {
  window: 10_000,
  interval: 1_000,
  maxErrorRate: 0.01,
  minRequests: 20,
  verify: [],
};

describe('post-switch analysis', () => {
  it('counts only what happened since the switch, unanswered requests as errors', () => {
    const w = windowOf(pool(1_000, 0, 4, 1), pool(900, 0, 4, 0));
    expect(w).toEqual({ requests: 101, errors: 1, p99Ms: 5 });
  });

  it('takes p99 from the buckets of the window alone', () => {
    // Before the switch the pool (on the preview route) was slow; after it, fast.
    expect(windowOf(pool(1_000, 50), pool(0, 50)).p99Ms).toBe(5);
    expect(windowOf(pool(900, 100), pool(0, 0)).p99Ms).toBe(100);
  });

  it('waits for enough requests, fails early on a broken limit, and passes at the end', () => {
    expect(judge(config, { requests: 10, errors: 10, p99Ms: 5 }, null, false)).toBeUndefined();
    expect(judge(config, { requests: 10, errors: 10, p99Ms: 5 }, null, true)).toMatchObject({
      ok: true,
      detail: expect.stringContaining('too little to judge'),
    });
    expect(judge(config, { requests: 100, errors: 2, p99Ms: 5 }, null, false)).toMatchObject({
      ok: false,
      detail: '100 requests, 2 errors (2.00%), p99 <= 5 ms: error rate over 1.00%',
    });
    expect(judge(config, { requests: 100, errors: 1, p99Ms: 5 }, null, false)).toBeUndefined();
    expect(judge(config, { requests: 100, errors: 1, p99Ms: 5 }, null, true)).toMatchObject({ ok: true });
  });

  it('compares p99 with a limit and with the old slot', () => {
    const strict = { ...config, maxP99: 50, maxP99Ratio: 2 };
    expect(judge(strict, { requests: 100, errors: 0, p99Ms: 100 }, 10, true)?.detail).toBe(
      "100 requests, 0 errors (0.00%), p99 <= 100 ms: p99 over 50ms, p99 over 2x the old slot's (10 ms)",
    );
    expect(judge(strict, { requests: 100, errors: 0, p99Ms: 25 }, 25, true)).toMatchObject({ ok: true });
  });

  it('sums the counters of several data planes, buckets included', () => {
    const sum = sumStats([pool(100, 0, 2), undefined, pool(50, 10, 0, 3)])!;
    expect(sum.requests).toBe(163);
    expect(sum.status['5xx']).toBe(2);
    expect(sum.status['2xx']).toBe(158);
    expect(sum.upstreamErrors).toBe(3);
    expect(sum.latency.count).toBe(160);
    expect(sum.latency.buckets?.counts).toEqual(
      PROMETHEUS_BOUNDS_MS.map((le) => (le >= 100 ? 160 : le >= 5 ? 150 : 0)),
    );
    expect(windowOf(sum, undefined)).toEqual({ requests: 163, errors: 5, p99Ms: 100 });
    expect(sumStats([])).toBeUndefined();
    // A part with latencies but no buckets (or other bounds) leaves p99 unmeasurable, not wrong.
    const bare = { ...pool(10, 0), latency: { count: 10 } };
    expect(sumStats([pool(10, 0), bare])!.latency.buckets).toBeUndefined();
    expect(windowOf(sumStats([pool(10, 0), bare]), undefined).p99Ms).toBeNull();
  });

  it('takes each source since its baseline, and a decrease (a restarted data plane) as a new one from zero', () => {
    let edge: Source = { base: pool(1_000, 0), last: pool(1_000, 0) };
    edge = observe(edge, pool(1_100, 0, 5));
    expect(sourceWindow(edge)?.requests).toBe(100);
    // Nothing read this time (the edge's key is gone): what it counted stays.
    edge = observe(edge, undefined);
    expect(sourceWindow(edge)?.requests).toBe(100);
    // Restarted: counts from zero again; its 100 before and its 30 since both count.
    edge = observe(edge, pool(30, 0, 3));
    expect(windowOf(sourceWindow(edge), undefined)).toEqual({ requests: 130, errors: 8, p99Ms: 5 });
    edge = observe(edge, pool(60, 0, 6));
    expect(windowOf(sourceWindow(edge), undefined)).toMatchObject({ requests: 160, errors: 11 });
    // A source first seen after the switch counts from zero.
    const late = observe({}, pool(40, 0));
    const own: Source = observe({ base: pool(500, 0), last: pool(500, 0) }, pool(520, 0, 1));
    const all = sumStats([edge, late, own].map(sourceWindow));
    expect(windowOf(all, undefined)).toMatchObject({ requests: 220, errors: 12 });
    expect(diffStats(pool(10, 0), undefined)).toEqual(pool(10, 0));
  });

  it("an edge's compact stats hold the served table's pools and read back as their counters", () => {
    const old = { ...pool(5, 0), pool: 'web/blue/r1' };
    const gone = { ...pool(5, 0), pool: 'web/blue/r0' };
    const table = {
      revision: 7,
      services: [
        {
          service: 'web',
          routes: [],
          live: {
            id: 'web/green/r2',
            service: 'web',
            slot: 'green' as const,
            release: 2,
            version: 'v2',
            endpoints: [],
          },
          preview: {
            id: 'web/blue/r1',
            service: 'web',
            slot: 'blue' as const,
            release: 1,
            version: 'v1',
            endpoints: [],
          },
        },
      ],
    };
    const compact = compactStats(
      { revision: 7, pools: [pool(100, 1, 2, 1), old, gone] },
      table,
      { id: 'edge-1', pid: 1 },
      new Date(0),
    );
    expect(compact.pools.map((p) => p.pool)).toEqual(['web/green/r2', 'web/blue/r1']);
    expect(compact.leMs).toEqual([...PROMETHEUS_BOUNDS_MS]);
    const back = poolCounters(compact, 'web/green/r2')!;
    expect(windowOf(back, undefined)).toEqual(windowOf(pool(100, 1, 2, 1), undefined));
    expect(poolCounters(compact, 'web/blue/r0')).toBeUndefined();
  });
});
