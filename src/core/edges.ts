import type { PoolStats, RoutingTable, TrafficStats } from '../proxy/switch.js';
import type { Store } from '../stores/store.js';
import { TealError } from './errors.js';

/**
 * Edges: data planes on other hosts (or beside this one) that take their routing table from the
 * store instead of from this control plane's switch (`teal edge`). The control plane publishes
 * every table it applies at /proxy/table; each edge applies it and reports the revision it serves
 * at /proxies/<id>/applied, under a lease, so an edge that dies stops being waited for. A switch
 * counts as done only once every registered edge serves it: the old slot is never drained while
 * an edge still sends it new requests. Each edge also publishes its data plane's counters at
 * /proxies/<id>/stats (same lease, about every second), which the post-switch analysis adds to
 * this control plane's own: users' traffic goes through the edges.
 */

export const TABLE_KEY = '/proxy/table';
export const EDGES_PREFIX = '/proxies/';

export function appliedKey(id: string): string {
  return `${EDGES_PREFIX}${id}/applied`;
}

export function statsKey(id: string): string {
  return `${EDGES_PREFIX}${id}/stats`;
}

/** The counters the analysis needs of one pool (a subset of PoolStats). */
export interface PoolCounters {
  requests: number;
  status: PoolStats['status'];
  upstreamErrors: number;
  latency: { count: number; buckets?: { leMs: number[]; counts: number[] } };
}

/**
 * What an edge publishes at /proxies/<id>/stats: its data plane's counters for the pools of the
 * table it serves. Counters belong to the data plane process: they start over when it restarts.
 */
export interface EdgeStats {
  id: string;
  pid: number;
  /** When the edge read them. */
  at: string;
  /** Revision of the table the edge served then. */
  revision: number;
  /** The latency buckets' upper bounds, shared by every pool's `buckets`. */
  leMs?: number[];
  pools: {
    pool: string;
    requests: number;
    status: PoolStats['status'];
    upstreamErrors: number;
    latencyCount: number;
    /** Cumulative counts at `leMs`. */
    buckets?: number[];
  }[];
}

/** The compact form of a data plane's stats, for the pools of `table` only. */
export function compactStats(
  stats: TrafficStats,
  table: RoutingTable | null,
  edge: { id: string; pid: number },
  at: Date,
): EdgeStats {
  const wanted = new Set<string>();
  for (const s of table?.services ?? []) {
    if (s.live) wanted.add(s.live.id);
    if (s.preview) wanted.add(s.preview.id);
  }
  const pools = stats.pools.filter((p) => wanted.has(p.pool));
  const leMs = pools.find((p) => p.latency.buckets)?.latency.buckets?.leMs;
  const sameBounds = (b: number[] | undefined) =>
    b !== undefined && leMs !== undefined && b.length === leMs.length && b.every((v, i) => v === leMs[i]);
  return {
    id: edge.id,
    pid: edge.pid,
    at: at.toISOString(),
    revision: table?.revision ?? 0,
    ...(leMs ? { leMs: [...leMs] } : {}),
    pools: pools.map((p) => ({
      pool: p.pool,
      requests: p.requests,
      status: { ...p.status },
      upstreamErrors: p.upstreamErrors,
      latencyCount: p.latency.count,
      ...(sameBounds(p.latency.buckets?.leMs) ? { buckets: [...p.latency.buckets!.counts] } : {}),
    })),
  };
}

/** One pool's counters out of an edge's published stats (undefined: the edge has no such pool). */
export function poolCounters(stats: EdgeStats, pool: string): PoolCounters | undefined {
  const p = stats.pools.find((x) => x.pool === pool);
  if (!p) return undefined;
  return {
    requests: p.requests,
    status: p.status,
    upstreamErrors: p.upstreamErrors,
    latency: {
      count: p.latencyCount,
      ...(p.buckets && stats.leMs ? { buckets: { leMs: stats.leMs, counts: p.buckets } } : {}),
    },
  };
}

/** The stats every live edge published last (an edge's key goes with its lease). */
export async function listEdgeStats(store: Store): Promise<EdgeStats[]> {
  return (await store.list<EdgeStats>(EDGES_PREFIX))
    .filter((e) => e.key.endsWith('/stats'))
    .map((e) => e.value);
}

export interface EdgeReport {
  id: string;
  /** Revision of the table the edge serves. */
  revision: number;
  appliedAt: string;
  host: string;
  pid: number;
  listen: string;
  /** The newest table the edge could not apply, and why. */
  failedRevision?: number;
  error?: string;
}

export async function publishTable(store: Store, table: RoutingTable): Promise<void> {
  await store.put(TABLE_KEY, table as never);
}

export async function listEdges(store: Store): Promise<EdgeReport[]> {
  return (await store.list<EdgeReport>(EDGES_PREFIX))
    .filter((e) => e.key.endsWith('/applied'))
    .map((e) => e.value);
}

/**
 * Resolves once every registered edge reports `revision` or later; fails naming the edges that did
 * not within the timeout (or reported an error applying it).
 */
export async function waitForEdges(store: Store, revision: number, timeoutMs: number): Promise<EdgeReport[]> {
  const deadline = Date.now() + timeoutMs;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    for (;;) {
      const edges = await listEdges(store);
      const behind = edges.filter((e) => e.revision < revision);
      if (behind.length === 0) return edges;
      // An edge that could not apply this very table will not get better by waiting.
      const failed = behind.find((e) => (e.failedRevision ?? 0) >= revision);
      if (failed) {
        throw new TealError(
          'TEAL_PROXY_FAILED',
          `edge ${failed.id} could not apply revision ${revision}: ${failed.error}`,
          {
            revision,
            edge: failed.id,
          },
        );
      }
      if (Date.now() >= deadline || ac.signal.aborted) {
        throw new TealError(
          'TEAL_PROXY_FAILED',
          `${behind.length === 1 ? 'edge' : 'edges'} ${behind.map((e) => `${e.id} (serves revision ${e.revision})`).join(', ')} did not apply revision ${revision} within ${timeoutMs} ms`,
          { revision, behind: behind.map((e) => e.id) },
        );
      }
      // Wait for the next report rather than polling the store in a loop.
      const next = new AbortController();
      const stop = () => next.abort();
      ac.signal.addEventListener('abort', stop, { once: true });
      const wake = setTimeout(stop, 250);
      try {
        for await (const _ of store.watch(EDGES_PREFIX, { signal: next.signal })) break;
      } finally {
        clearTimeout(wake);
        ac.signal.removeEventListener('abort', stop);
        next.abort();
      }
    }
  } finally {
    clearTimeout(timer);
  }
}
