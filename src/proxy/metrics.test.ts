import { describe, expect, it } from 'vitest';
import { LatencyHistogram } from './builtin/stats.js';
import { renderPrometheus, slotTraffic } from './metrics.js';
import type { TrafficStats } from './switch.js';

describe('renderPrometheus', () => {
  it('renders counters, gauges and a cumulative latency histogram per pool', () => {
    const h = new LatencyHistogram();
    for (const ms of [3, 4, 20, 80, 700]) h.record(ms);
    const stats: TrafficStats = {
      revision: 7,
      pools: [
        {
          pool: 'web/blue/r3',
          service: 'web',
          slot: 'blue',
          release: 3,
          requests: 5,
          status: { '1xx': 0, '2xx': 4, '3xx': 0, '4xx': 0, '5xx': 1 },
          upstreamErrors: 1,
          inFlight: 2,
          openStreams: 1,
          latency: h.summary(),
        },
      ],
    };
    const text = renderPrometheus(stats);
    const l = '{service="web",slot="blue",release="3",pool="web/blue/r3"';
    expect(text).toContain(`teal_proxy_requests_total${l}} 5\n`);
    expect(text).toContain(`teal_proxy_responses_total${l},class="5xx"} 1\n`);
    expect(text).toContain(`teal_proxy_upstream_errors_total${l}} 1\n`);
    expect(text).toContain(`teal_proxy_in_flight${l}} 2\n`);
    expect(text).toContain(`teal_proxy_open_streams${l}} 1\n`);
    expect(text).toContain(`teal_proxy_request_duration_seconds_bucket${l},le="0.005"} 2\n`);
    expect(text).toContain(`teal_proxy_request_duration_seconds_bucket${l},le="0.1"} 4\n`);
    expect(text).toContain(`teal_proxy_request_duration_seconds_bucket${l},le="+Inf"} 5\n`);
    expect(text).toContain(`teal_proxy_request_duration_seconds_sum${l}} 0.807000\n`);
    expect(text).toContain('teal_proxy_table_revision 7\n');
    expect(text).toMatch(/# TYPE teal_proxy_request_duration_seconds histogram/);
    // Every sample line is "name{labels} value" or "name value".
    for (const line of text.trim().split('\n'))
      expect(line).toMatch(/^(# (HELP|TYPE) .+|[a-z_]+(\{.*\})? [\d.]+)$/);
  });
});

describe('slotTraffic', () => {
  it("sums one service's pools per slot over releases, counting 5xx as errors", () => {
    const pool = (service: string, slot: 'blue' | 'green', release: number, ok: number, bad: number) => ({
      pool: `${service}/${slot}/r${release}`,
      service,
      slot,
      release,
      requests: ok + bad,
      status: { '1xx': 0, '2xx': ok, '3xx': 0, '4xx': 0, '5xx': bad },
      upstreamErrors: 0,
      inFlight: 1,
      openStreams: 0,
      latency: { count: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 },
    });
    const stats: TrafficStats = {
      revision: 1,
      pools: [pool('web', 'blue', 1, 10, 2), pool('web', 'blue', 3, 5, 0), pool('api', 'green', 2, 7, 7)],
    };
    expect(slotTraffic(stats, 'web', 42)).toEqual({
      service: 'web',
      at: 42,
      slots: {
        blue: { requests: 17, responses: 17, errors: 2, inFlight: 2 },
        green: { requests: 0, responses: 0, errors: 0, inFlight: 0 },
      },
    });
  });
});
