import { describe, expect, it } from 'vitest';
import type { Pool } from '../switch.js';
import type { LaneRecord } from './plan.js';
import type { RequestLine } from './show.js';
import { countersOf, LatencyBook, poolStats, since, ZERO } from './stats.js';

const pool = (release: number): Pool => ({
  id: `web/blue/r${release}`,
  service: 'web',
  slot: 'blue',
  release,
  version: `v${release}`,
  endpoints: [{ host: '127.0.0.1', port: 9000 }],
});

const record = (lane: number, release: number, fromRequest: number): LaneRecord => ({
  lane,
  pool: pool(release),
  since: 0,
  baseline: ZERO,
  fromRequest,
});

const line = (rt: number, backend: string, ms: number): RequestLine => ({ rt, backend, status: 200, ms });

describe('counters', () => {
  it('reads a backend row, folding odd statuses into 5xx and both upstream error kinds together', () => {
    expect(
      countersOf({
        req_tot: '9',
        hrsp_1xx: '1',
        hrsp_2xx: '4',
        hrsp_3xx: '0',
        hrsp_4xx: '2',
        hrsp_5xx: '1',
        hrsp_other: '1',
        econ: '2',
        eresp: '1',
      }),
    ).toEqual({ requests: 9, status: [1, 4, 0, 2, 2], upstreamErrors: 3 });
  });

  it('subtracts the baseline, and counts from zero after haproxy restarted', () => {
    const base = {
      requests: 10,
      status: [0, 8, 0, 2, 0] as [number, number, number, number, number],
      upstreamErrors: 1,
    };
    expect(since({ requests: 15, status: [0, 12, 0, 3, 0], upstreamErrors: 1 }, base)).toEqual({
      requests: 5,
      status: [0, 4, 0, 1, 0],
      upstreamErrors: 0,
    });
    expect(since({ requests: 3, status: [0, 3, 0, 0, 0], upstreamErrors: 0 }, base).requests).toBe(3);
  });

  it('reports a pool from its lane, tunnels as open streams', () => {
    const stats = poolStats(
      { ...record(0, 2, 0), baseline: { requests: 4, status: [0, 4, 0, 0, 0], upstreamErrors: 0 } },
      { requests: 7, status: [1, 5, 0, 0, 1], upstreamErrors: 0 },
      { sessions: 3, tunnels: 1 },
      { count: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 },
    );
    expect(stats).toMatchObject({
      pool: 'web/blue/r2',
      release: 2,
      requests: 3,
      status: { '1xx': 1, '2xx': 1, '3xx': 0, '4xx': 0, '5xx': 1 },
      inFlight: 2,
      openStreams: 1,
    });
  });
});

describe('LatencyBook', () => {
  it('takes each request once, for the pool its lane held when it arrived', () => {
    const book = new LatencyBook();
    book.forProcess('1@1');
    // Lane 0 held release 1 until request 10, then release 2.
    const lanes = [record(0, 2, 10), record(1, 3, 0)];
    book.ingest([line(8, 'teal_lane_0', 50), line(11, 'teal_lane_0', 2), line(12, 'teal', 1)], lanes, 'teal');
    book.ingest(
      [
        line(8, 'teal_lane_0', 50),
        line(11, 'teal_lane_0', 2),
        line(12, 'teal', 1),
        line(13, 'teal_lane_1', 4),
      ],
      lanes,
      'teal',
    );
    expect(book.summary('web/blue/r2')).toMatchObject({ count: 1, maxMs: 2 });
    expect(book.summary('web/blue/r3')).toMatchObject({ count: 1, maxMs: 4 });
  });

  it('takes every line in the ring when the last one it took has been overwritten', () => {
    const book = new LatencyBook();
    book.forProcess('1@1');
    const lanes = [record(0, 1, 0)];
    book.ingest([line(1, 'teal_lane_0', 1), line(2, 'teal_lane_0', 1)], lanes, 'teal');
    book.ingest([line(5, 'teal_lane_0', 1), line(6, 'teal_lane_0', 1)], lanes, 'teal');
    expect(book.count('web/blue/r1')).toBe(4);
  });

  it('starts again for a new haproxy process, and forgets pools no lane holds', () => {
    const book = new LatencyBook();
    book.forProcess('1@1');
    book.ingest([line(1, 'teal_lane_0', 1)], [record(0, 1, 0)], 'teal');
    book.forProcess('2@5');
    book.ingest([line(1, 'teal_lane_0', 1)], [record(0, 1, 0)], 'teal');
    expect(book.count('web/blue/r1')).toBe(1);
    book.keepOnly(new Set());
    expect(book.count('web/blue/r1')).toBe(0);
  });
});
