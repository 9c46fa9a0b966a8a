import { setTimeout as sleep } from 'node:timers/promises';
import type { TrafficStats } from '../proxy/switch.js';
import { formatDuration } from './config/duration.js';
import type { ServiceConfig } from './config/schema.js';
import type { VerifyTarget } from './deps.js';
import { type EdgeStats, listEdgeStats, type PoolCounters, poolCounters } from './edges.js';
import { toTealError } from './errors.js';
import type { RunContext } from './run.js';

export type AnalysisConfig = NonNullable<ServiceConfig['analysis']>;

/** What the new slot did since the switch: counter deltas summed over every data plane. */
export interface Window {
  requests: number;
  /** 5xx answers, and requests that got no answer at all. */
  errors: number;
  /** Upper bound of the 99th percentile from the latency buckets (null: not measurable). */
  p99Ms: number | null;
}

export interface Verdict {
  ok: boolean;
  /** One line: what was measured and, on failure, which limit it broke. */
  detail: string;
  window: Window;
}

const ZERO: Window = { requests: 0, errors: 0, p99Ms: null };

function answered(p: PoolCounters): number {
  const s = p.status;
  return s['1xx'] + s['2xx'] + s['3xx'] + s['4xx'] + s['5xx'];
}

/**
 * The counters of `now` minus those of `base` (the same pool at the switch). p99 comes from the
 * Prometheus-style cumulative buckets: the smallest bound holding 99% of the window's requests, so
 * it is an upper bound exact to the bucket (5, 10, 25, 50, 100, 250, 500 ms ...).
 */
export function windowOf(now: PoolCounters | undefined, base: PoolCounters | undefined): Window {
  if (!now) return ZERO;
  const requests = now.requests - (base?.requests ?? 0);
  const errors =
    now.status['5xx'] -
    (base?.status['5xx'] ?? 0) +
    Math.max(0, now.requests - answered(now) - (base ? base.requests - answered(base) : 0));
  let p99Ms: number | null = null;
  const b = now.latency.buckets;
  if (b && requests > 0) {
    const baseCounts = base?.latency.buckets?.counts ?? b.counts.map(() => 0);
    const total = now.latency.count - (base?.latency.count ?? 0);
    const need = Math.ceil(total * 0.99);
    const i = b.counts.findIndex((c, k) => c - (baseCounts[k] ?? 0) >= need);
    p99Ms = i >= 0 ? b.leMs[i]! : Number.POSITIVE_INFINITY;
  }
  return { requests, errors, p99Ms };
}

const STATUS = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

function sameBounds(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * The counters of several data planes (or of several stretches of one) added up, per field. The
 * latency buckets add up when every part with latencies has them at the same bounds; otherwise
 * the sum has none (p99 not measurable). Undefined parts are skipped; nothing at all is undefined.
 */
export function sumStats(parts: readonly (PoolCounters | undefined)[]): PoolCounters | undefined {
  const present = parts.filter((p): p is PoolCounters => p !== undefined);
  if (present.length === 0) return undefined;
  const timed = present.filter((p) => p.latency.count > 0 || p.latency.buckets);
  const leMs = timed.find((p) => p.latency.buckets)?.latency.buckets?.leMs;
  const bucketed =
    leMs !== undefined &&
    timed.every(
      (p) => (p.latency.buckets && sameBounds(p.latency.buckets.leMs, leMs)) || p.latency.count === 0,
    );
  const status = { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 };
  let requests = 0;
  let upstreamErrors = 0;
  let count = 0;
  const counts = leMs ? leMs.map(() => 0) : [];
  for (const p of present) {
    requests += p.requests;
    upstreamErrors += p.upstreamErrors;
    count += p.latency.count;
    for (const k of STATUS) status[k] += p.status[k];
    const b = p.latency.buckets;
    if (bucketed && b && sameBounds(b.leMs, leMs)) {
      for (const [i, c] of b.counts.entries()) counts[i]! += c;
    }
  }
  return {
    requests,
    status,
    upstreamErrors,
    latency: { count, ...(bucketed ? { buckets: { leMs: [...leMs], counts } } : {}) },
  };
}

/** `now` minus `base` (undefined: zero), field by field, buckets included. */
export function diffStats(now: PoolCounters, base: PoolCounters | undefined): PoolCounters {
  if (!base) return now;
  const status = { ...now.status };
  for (const k of STATUS) status[k] -= base.status[k];
  const b = now.latency.buckets;
  const baseCounts = base.latency.buckets?.counts;
  return {
    requests: now.requests - base.requests,
    status,
    upstreamErrors: now.upstreamErrors - base.upstreamErrors,
    latency: {
      count: now.latency.count - base.latency.count,
      ...(b ? { buckets: { leMs: b.leMs, counts: b.counts.map((c, i) => c - (baseCounts?.[i] ?? 0)) } } : {}),
    },
  };
}

/**
 * One data plane's part of the window (the control plane's own, or one edge's). Counters belong to
 * the data plane's process, so a decrease means it restarted and counts from zero again: what it
 * had counted since `base` is carried, and zero becomes the new baseline.
 */
export interface Source {
  /** Counters at the switch (undefined: zero, for a source first seen after it). */
  base?: PoolCounters;
  /** The latest counters seen. */
  last?: PoolCounters;
  /** What earlier processes of this source counted in the window. */
  carried?: PoolCounters;
}

/** The source after a new reading (undefined: no reading for the pool this time; nothing changes). */
export function observe(src: Source, now: PoolCounters | undefined): Source {
  if (!now) return src;
  const last = src.last;
  if (last && (now.requests < last.requests || now.latency.count < last.latency.count)) {
    return { last: now, carried: sumStats([src.carried, diffStats(last, src.base)]) };
  }
  return { ...src, last: now };
}

/** What a source counted in the window. */
export function sourceWindow(src: Source): PoolCounters | undefined {
  return sumStats([src.carried, src.last ? diffStats(src.last, src.base) : undefined]);
}

/**
 * Judges a window against the limits. `final` is the end of the analysis window: before it, only a
 * clear failure (enough requests and a broken limit) ends the analysis early; at the end, too few
 * requests to judge passes, said so in the detail.
 */
export function judge(
  config: AnalysisConfig,
  w: Window,
  oldP99Ms: number | null,
  final: boolean,
): Verdict | undefined {
  const rate = w.requests === 0 ? 0 : w.errors / w.requests;
  const p99 = w.p99Ms === null ? 'n/a' : Number.isFinite(w.p99Ms) ? `<= ${w.p99Ms} ms` : '> 10 s';
  const measured = `${w.requests} requests, ${w.errors} errors (${(rate * 100).toFixed(2)}%), p99 ${p99}`;
  if (w.requests < config.minRequests) {
    return final
      ? {
          ok: true,
          detail: `${measured}: fewer than ${config.minRequests} requests, too little to judge`,
          window: w,
        }
      : undefined;
  }
  const broken: string[] = [];
  if (rate > config.maxErrorRate) broken.push(`error rate over ${(config.maxErrorRate * 100).toFixed(2)}%`);
  if (config.maxP99 !== undefined && w.p99Ms !== null && w.p99Ms > config.maxP99)
    broken.push(`p99 over ${formatDuration(config.maxP99)}`);
  if (config.maxP99Ratio !== undefined && w.p99Ms !== null && oldP99Ms !== null && oldP99Ms > 0) {
    if (w.p99Ms > oldP99Ms * config.maxP99Ratio)
      broken.push(`p99 over ${config.maxP99Ratio}x the old slot's (${oldP99Ms} ms)`);
  }
  if (broken.length > 0) return { ok: false, detail: `${measured}: ${broken.join(', ')}`, window: w };
  return final ? { ok: true, detail: measured, window: w } : undefined;
}

/** One reading of every data plane: the control plane's own and every live edge's last report. */
interface Reading {
  own?: TrafficStats;
  edges?: EdgeStats[];
  /** Why a part could not be read. */
  errors: string[];
}

function countersOf(r: Reading, pool: string | null): Map<string, PoolCounters | undefined> {
  const m = new Map<string, PoolCounters | undefined>();
  if (!pool) return m;
  if (r.own)
    m.set(
      '',
      r.own.pools.find((p) => p.pool === pool),
    );
  for (const e of r.edges ?? []) m.set(`edge ${e.id}`, poolCounters(e, pool));
  return m;
}

/**
 * Watches the new slot for the analysis window after the switch: every data plane's counters
 * (this control plane's own and each edge's, published at /proxies/<id>/stats) every `interval`,
 * summed per pool, and the chosen verify steps through the live route. Returns at the first clear
 * failure, or at the end of the window. Data planes that cannot report stats are not a reason to
 * switch back (they are also what would carry the switch back): when none can, the analysis ends
 * inconclusive and passes, recorded as such.
 */
export async function watchNewSlot(
  ctx: RunContext,
  pools: { next: string; previous: string | null },
  liveTarget: VerifyTarget,
): Promise<Verdict> {
  const { deps, plan, signal } = ctx;
  const config = plan.analysis!;
  const read = async (): Promise<Reading> => {
    const [own, edges] = await Promise.allSettled([deps.traffic.stats(), listEdgeStats(deps.store)]);
    const errors: string[] = [];
    if (own.status === 'rejected') errors.push(`the data plane: ${toTealError(own.reason).message}`);
    if (edges.status === 'rejected') errors.push(`the edges: ${toTealError(edges.reason).message}`);
    return {
      ...(own.status === 'fulfilled' ? { own: own.value } : {}),
      ...(edges.status === 'fulfilled' ? { edges: edges.value } : {}),
      errors,
    };
  };
  const at = await read();
  if (!at.own && !at.edges) {
    return { ok: true, detail: `no stats from ${at.errors.join('; ')}: not judged`, window: ZERO };
  }
  const sources = new Map<string, Source>();
  for (const [key, c] of countersOf(at, pools.next)) sources.set(key, c ? { base: c, last: c } : {});
  const oldP99 = pools.previous
    ? windowOf(sumStats([...countersOf(at, pools.previous).values()]), undefined).p99Ms
    : null;
  const current = () => windowOf(sumStats([...sources.values()].map(sourceWindow)), undefined);

  const end = Date.now() + config.window;
  for (;;) {
    const final = Date.now() >= end;
    for (const step of config.verify) {
      const result = await deps.verifier.run(step, liveTarget, { signal });
      if (!result.ok) return { ok: false, detail: `through the live route: ${result.detail}`, window: ZERO };
    }
    const now = await read();
    if (now.errors.length > 0)
      deps.log.warn('analysis: no stats from some data planes', { errors: now.errors });
    if (!now.own && !now.edges && final)
      return { ok: true, detail: 'the data planes stopped reporting stats: not judged', window: current() };
    // A source not seen before started after the switch: its counters are all in the window.
    for (const [key, c] of countersOf(now, pools.next)) sources.set(key, observe(sources.get(key) ?? {}, c));
    const verdict = judge(config, current(), oldP99, final);
    if (verdict) return verdict;
    await sleep(Math.max(0, Math.min(config.interval, end - Date.now())), undefined, { signal });
  }
}
