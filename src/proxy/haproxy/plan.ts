import { TealError } from '../../core/errors.js';
import type { Pool, RoutingTable } from '../switch.js';
import { laneBackend, serverName } from './base-config.js';
import { type MapEntry, poolsOf, routingMapEntries } from './routing-map.js';
import { ADMIN_DRAIN, ADMIN_MAINT, type ServerState } from './show.js';
import type { Counters } from './stats.js';

/**
 * What an apply must do to haproxy, computed without IO from the table and what haproxy reports.
 *
 * Each pool gets a lane (a backend of server slots) of its own and keeps it while it is in the
 * table, so a switch never re-addresses servers that live traffic uses: the incoming pool's lane is
 * addressed and made ready first, then one map commit moves the routes to it. A lane is given to a
 * new pool only when it is unused, or when the pool it held is in neither the table nor haproxy's
 * live map nor being drained (drained lanes and those that left the table longest ago first).
 */

/** One lane and the pool it holds, as the switch keeps it in its state dir. */
export interface LaneRecord {
  lane: number;
  pool: Pool;
  /** Epoch ms the pool got the lane. */
  since: number;
  /** The lane's counters when the pool got it: the pool's numbers are the difference. */
  baseline: Counters;
  /** haproxy's request counter then: log lines of requests below it belong to the lane's earlier pool. */
  fromRequest: number;
  /** Epoch ms the pool left the table (absent while in it), and its drain ended. */
  leftAt?: number;
  drainedAt?: number;
}

export interface PlanInput {
  table: RoutingTable;
  prefix: string;
  /** The lanes the switch recorded. */
  records: LaneRecord[];
  /** Lane numbers the running config has, and server slots in each (the smallest, if they differ). */
  capacity: { lanes: number[]; servers: number };
  /** Lane backends haproxy's routes map points at now: live traffic may reach them until the commit. */
  referenced: Set<string>;
  /** Lanes a drain is waiting on. */
  draining: Set<number>;
  /** What `show servers state` reported. */
  servers: ServerState[];
  /** Counters of each lane now (a new pool's baseline), and haproxy's request counter. */
  counters: Map<number, Counters>;
  cumulativeRequests: number;
  now: number;
}

export interface Plan {
  records: LaneRecord[];
  /** Runtime API commands that address and enable the table's lanes, in order, before the flip. */
  commands: string[];
  /** The routes map after the flip. */
  entries: MapEntry[];
}

function doesNotFit(message: string, details: Record<string, unknown>): never {
  throw new TealError(
    'TEAL_PROXY_FAILED',
    `${message}. Nothing was changed: haproxy keeps serving the table it has. Re-render the base config ` +
      `with more capacity (renderBaseConfig, docs/haproxy.md), write it over haproxy's config and reload ` +
      `haproxy (systemctl reload haproxy); the switch's state dir carries the table across the reload.`,
    details,
  );
}

export function planApply(input: PlanInput): Plan {
  const { table, prefix, capacity } = input;
  if (capacity.lanes.length === 0)
    throw new TealError(
      'TEAL_PROXY_FAILED',
      `haproxy has no ${prefix}_lane_<n> backends: start it with teal's base config (docs/haproxy.md)`,
      { prefix },
    );
  const pools = poolsOf(table);
  for (const p of pools)
    if (p.endpoints.length > capacity.servers)
      doesNotFit(
        `pool ${p.id} has ${p.endpoints.length} endpoints but each lane of the running haproxy config has ` +
          `${capacity.servers} server slots (serversPerLane)`,
        { pool: p.id, endpoints: p.endpoints.length, serversPerLane: capacity.servers },
      );

  const wanted = new Set(pools.map((p) => p.id));
  const existing = new Set(capacity.lanes);
  const records = input.records.filter((r) => existing.has(r.lane));
  const byPool = new Map(records.map((r) => [r.pool.id, r]));
  const taken = new Set(records.map((r) => r.lane));
  const needing = pools.filter((p) => !byPool.has(p.id));

  const free = capacity.lanes.filter((l) => !taken.has(l));
  const reclaimable = records
    .filter(
      (r) =>
        !wanted.has(r.pool.id) &&
        !input.referenced.has(laneBackend(prefix, r.lane)) &&
        !input.draining.has(r.lane),
    )
    .sort(
      (a, b) =>
        (a.drainedAt === undefined ? 1 : 0) - (b.drainedAt === undefined ? 1 : 0) ||
        (a.leftAt ?? input.now) - (b.leftAt ?? input.now) ||
        a.lane - b.lane,
    )
    .map((r) => r.lane);
  const available = [...free, ...reclaimable];
  if (needing.length > available.length)
    doesNotFit(
      `the table needs a lane for each of ${needing.length} new pools (${needing.map((p) => p.id).join(', ')}) ` +
        `but only ${available.length} of the running config's ${capacity.lanes.length} lanes are free`,
      { needed: needing.length, free: available.length, lanes: capacity.lanes.length },
    );

  const next = new Map<number, LaneRecord>();
  for (const r of records) next.set(r.lane, r);
  needing.forEach((pool, i) => {
    const lane = available[i]!;
    next.set(lane, {
      lane,
      pool,
      since: input.now,
      baseline: input.counters.get(lane) ?? { requests: 0, status: [0, 0, 0, 0, 0], upstreamErrors: 0 },
      fromRequest: input.cumulativeRequests,
    });
  });
  const laneOfPool = new Map<string, number>();
  const out: LaneRecord[] = [];
  for (const r of [...next.values()].sort((a, b) => a.lane - b.lane)) {
    const current = pools.find((p) => p.id === r.pool.id);
    if (current) {
      laneOfPool.set(current.id, r.lane);
      const { leftAt: _l, drainedAt: _d, ...kept } = r;
      out.push({ ...kept, pool: current });
    } else out.push({ ...r, leftAt: r.leftAt ?? input.now });
  }

  const observed = new Map(input.servers.map((s) => [`${s.backend}/${s.server}`, s]));
  const commands: string[] = [];
  for (const pool of pools) {
    const backend = laneBackend(prefix, laneOfPool.get(pool.id)!);
    for (let slot = 1; slot <= capacity.servers; slot++) {
      const name = `${backend}/${serverName(slot)}`;
      const seen = observed.get(name);
      const endpoint = pool.endpoints[slot - 1];
      if (endpoint) {
        if (!seen || !sameAddress(seen, endpoint.host, endpoint.port))
          commands.push(`set server ${name} addr ${endpoint.host} port ${endpoint.port}`);
        if (!seen || (seen.admin & (ADMIN_MAINT | ADMIN_DRAIN)) !== 0)
          commands.push(`set server ${name} state ready`);
      } else if (!seen || (seen.admin & 0x01) === 0) commands.push(`set server ${name} state maint`);
    }
  }
  return {
    records: out,
    commands,
    entries: routingMapEntries(table, (id) => laneBackend(prefix, laneOfPool.get(id)!)),
  };
}

function sameAddress(seen: ServerState, host: string, port: number): boolean {
  return seen.port === port && seen.addr.toLowerCase() === host.toLowerCase();
}
