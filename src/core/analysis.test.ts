import { describe, expect, it } from 'vitest';
import { PROMETHEUS_BOUNDS_MS } from '../proxy/builtin/stats.js';
import type { PoolStats } from '../proxy/switch.js';
import { type AnalysisConfig, judge, windowOf } from './analysis.js';

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
});
