import { describe, expect, it } from 'vitest';
import { isTealError } from '../../core/errors.js';
import type { Pool, RoutingTable } from '../switch.js';
import { type LaneRecord, type PlanInput, planApply } from './plan.js';
import type { ServerState } from './show.js';
import type { Counters } from './stats.js';

const pool = (slot: 'blue' | 'green', release: number, ports: number[] = [9000 + release]): Pool => ({
  id: `web/${slot}/r${release}`,
  service: 'web',
  slot,
  release,
  version: `v${release}`,
  endpoints: ports.map((port) => ({ host: '127.0.0.1', port })),
});

const table = (revision: number, live: Pool | null, preview: Pool | null = null): RoutingTable => ({
  revision,
  services: [{ service: 'web', routes: [{ path: '/' }], live, preview }],
});

/** Every slot of `lanes` lanes as haproxy starts them: disabled (forced + config maintenance), no address. */
function fresh(lanes: number, servers: number): ServerState[] {
  const out: ServerState[] = [];
  for (let l = 0; l < lanes; l++)
    for (let s = 1; s <= servers; s++)
      out.push({ backend: `teal_lane_${l}`, server: `s${s}`, addr: '0.0.0.0', port: 1, op: 0, admin: 5 });
  return out;
}

const counters = (requests: number): Counters => ({
  requests,
  status: [0, requests, 0, 0, 0],
  upstreamErrors: 0,
});

function input(over: Partial<PlanInput> & { table: RoutingTable }): PlanInput {
  return {
    prefix: 'teal',
    records: [],
    capacity: { lanes: [0, 1, 2], servers: 2 },
    referenced: new Set(),
    draining: new Set(),
    servers: fresh(3, 2),
    counters: new Map([
      [0, counters(10)],
      [1, counters(20)],
      [2, counters(30)],
    ]),
    cumulativeRequests: 500,
    now: 1_000,
    ...over,
  };
}

/** haproxy's servers after running the plan's commands (what the next plan observes). */
function afterRunning(servers: ServerState[], commands: string[]): ServerState[] {
  const out = servers.map((s) => ({ ...s }));
  for (const c of commands) {
    const m = /^set server (\S+)\/(\S+) (?:addr (\S+) port (\d+)|state (ready|maint))$/.exec(c)!;
    const s = out.find((x) => x.backend === m[1] && x.server === m[2])!;
    if (m[3]) Object.assign(s, { addr: m[3], port: Number(m[4]) });
    if (m[5] === 'ready') s.admin &= ~0x3b;
    if (m[5] === 'maint') s.admin |= 0x01;
  }
  return out;
}

describe('planApply', () => {
  it('gives each pool a free lane, addresses and enables it before the map names it', () => {
    const plan = planApply(input({ table: table(1, pool('blue', 1), pool('green', 2, [9002, 9003])) }));
    expect(plan.commands).toEqual([
      'set server teal_lane_0/s1 addr 127.0.0.1 port 9001',
      'set server teal_lane_0/s1 state ready',
      'set server teal_lane_1/s1 addr 127.0.0.1 port 9002',
      'set server teal_lane_1/s1 state ready',
      'set server teal_lane_1/s2 addr 127.0.0.1 port 9003',
      'set server teal_lane_1/s2 state ready',
    ]);
    expect(plan.entries).toContainEqual({ key: 'Lweb', value: 'teal_lane_0' });
    expect(plan.entries).toContainEqual({ key: 'Pweb/green', value: 'teal_lane_1' });
    expect(plan.records).toEqual([
      { lane: 0, pool: pool('blue', 1), since: 1_000, baseline: counters(10), fromRequest: 500 },
      {
        lane: 1,
        pool: pool('green', 2, [9002, 9003]),
        since: 1_000,
        baseline: counters(20),
        fromRequest: 500,
      },
    ]);
  });

  it('sends nothing but the map when haproxy already serves the pools (a switch)', () => {
    const first = planApply(input({ table: table(1, pool('blue', 1), pool('green', 2)) }));
    const servers = afterRunning(fresh(3, 2), first.commands);
    const flip = planApply(
      input({
        table: table(2, pool('green', 2), pool('blue', 1)),
        records: first.records,
        servers,
        now: 2_000,
      }),
    );
    expect(flip.commands).toEqual([]);
    expect(flip.entries).toContainEqual({ key: 'Lweb', value: 'teal_lane_1' });
    // The pools keep their lanes and baselines.
    expect(flip.records).toEqual(first.records);
  });

  it('converges a haproxy that lost its server state', () => {
    const first = planApply(input({ table: table(1, pool('blue', 1)) }));
    expect(planApply(input({ table: table(1, pool('blue', 1)), records: first.records })).commands).toEqual(
      first.commands,
    );
  });

  it('puts slots a smaller pool does not use into maintenance', () => {
    const first = planApply(input({ table: table(1, pool('blue', 1, [9001, 9002])) }));
    const servers = afterRunning(fresh(3, 2), first.commands);
    const shrunk = planApply(
      input({ table: table(2, pool('blue', 1, [9001])), records: first.records, servers }),
    );
    expect(shrunk.commands).toEqual(['set server teal_lane_0/s2 state maint']);
  });

  it('marks pools that left the table and reuses their lanes only when nothing routes to them', () => {
    const first = planApply(
      input({ table: table(1, pool('blue', 1), pool('green', 2)), capacity: { lanes: [0, 1], servers: 2 } }),
    );
    const servers = afterRunning(fresh(2, 2), first.commands);
    const second = planApply(
      input({ table: table(2, pool('green', 2)), records: first.records, servers, now: 2_000 }),
    );
    expect(second.records[0]).toMatchObject({ lane: 0, leftAt: 2_000 });
    expect(second.records[1]).not.toHaveProperty('leftAt');

    const next = table(3, pool('green', 2), pool('blue', 3));
    const base = { records: second.records, servers, capacity: { lanes: [0, 1], servers: 2 }, now: 3_000 };
    // The live map still points at lane 0 (the apply of table 2 never reached haproxy): not reusable.
    const stillRouted = (() => {
      try {
        planApply(input({ ...base, table: next, referenced: new Set(['teal_lane_0', 'teal_lane_1']) }));
      } catch (e) {
        return e;
      }
    })();
    expect(isTealError(stillRouted, 'TEAL_PROXY_FAILED')).toBe(true);
    // A drain is waiting on it: not reusable either.
    expect(() => planApply(input({ ...base, table: next, draining: new Set([0]) }))).toThrow(/only 0 of/);

    const third = planApply(input({ ...base, table: next, referenced: new Set(['teal_lane_1']) }));
    expect(third.records[0]).toEqual({
      lane: 0,
      pool: pool('blue', 3),
      since: 3_000,
      baseline: counters(10),
      fromRequest: 500,
    });
    expect(third.commands).toEqual(['set server teal_lane_0/s1 addr 127.0.0.1 port 9003']);
  });

  it('prefers drained lanes, then those that left the table longest ago', () => {
    const rec = (lane: number, release: number, extra: Partial<LaneRecord>): LaneRecord => ({
      lane,
      pool: pool('blue', release),
      since: 0,
      baseline: counters(0),
      fromRequest: 0,
      ...extra,
    });
    const records = [
      rec(0, 1, { leftAt: 100 }),
      rec(1, 2, { leftAt: 50 }),
      rec(2, 3, { leftAt: 300, drainedAt: 400 }),
    ];
    const pick = (recs: LaneRecord[]) =>
      planApply(
        input({
          table: table(9, pool('green', 9)),
          records: recs,
          capacity: { lanes: [0, 1, 2, 3], servers: 2 },
        }),
      ).records.find((r) => r.pool.id === 'web/green/r9')!.lane;
    expect(pick(records)).toBe(3);
    expect(pick([...records, rec(3, 4, { leftAt: 500 })])).toBe(2);
    expect(pick([...records.slice(0, 2), rec(2, 3, { leftAt: 300 }), rec(3, 4, { leftAt: 500 })])).toBe(1);
  });

  it('refuses a pool wider than a lane, saying how to make room', () => {
    let err: unknown;
    try {
      planApply(input({ table: table(1, pool('blue', 1, [1, 2, 3])) }));
    } catch (e) {
      err = e;
    }
    expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
    expect((err as Error).message).toMatch(/pool web\/blue\/r1 has 3 endpoints .* 2 server slots/);
    expect((err as Error).message).toContain('reload haproxy');
  });

  it('refuses a table needing more lanes than are free', () => {
    const many: RoutingTable = {
      revision: 1,
      services: ['a', 'b'].map((s) => ({
        service: s,
        routes: [{ path: `/${s}` }],
        live: { ...pool('blue', 1), id: `${s}/blue/r1`, service: s },
        preview: { ...pool('green', 2), id: `${s}/green/r2`, service: s },
      })),
    };
    expect(() => planApply(input({ table: many }))).toThrow(
      /lane for each of 4 new pools .* only 3 of the running config's 3 lanes/,
    );
  });

  it('says when haproxy runs no teal lanes at all', () => {
    expect(() =>
      planApply(input({ table: table(1, pool('blue', 1)), capacity: { lanes: [], servers: 0 } })),
    ).toThrow(/no teal_lane_<n> backends/);
  });
});
