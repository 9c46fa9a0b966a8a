import { setTimeout as sleep } from 'node:timers/promises';
import type { PoolStats } from '../proxy/switch.js';
import { formatDuration } from './config/duration.js';
import type { ServiceConfig } from './config/schema.js';
import type { VerifyTarget } from './deps.js';
import { toTealError } from './errors.js';
import type { RunContext } from './run.js';

export type AnalysisConfig = NonNullable<ServiceConfig['analysis']>;

/** What the new slot did since the switch: counter deltas from the data plane's own stats. */
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

function answered(p: PoolStats): number {
  const s = p.status;
  return s['1xx'] + s['2xx'] + s['3xx'] + s['4xx'] + s['5xx'];
}

/**
 * The counters of `now` minus those of `base` (the same pool at the switch). p99 comes from the
 * Prometheus-style cumulative buckets: the smallest bound holding 99% of the window's requests, so
 * it is an upper bound exact to the bucket (5, 10, 25, 50, 100, 250, 500 ms ...).
 */
export function windowOf(now: PoolStats | undefined, base: PoolStats | undefined): Window {
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

/**
 * Watches the new slot for the analysis window after the switch: the data plane's counters every
 * `interval`, and the chosen verify steps through the live route. Returns at the first clear
 * failure, or at the end of the window. A data plane that cannot report stats is not a reason to
 * switch back (it is also what would carry the switch back): the analysis then ends inconclusive
 * and passes, recorded as such.
 */
export async function watchNewSlot(
  ctx: RunContext,
  pools: { next: string; previous: string | null },
  liveTarget: VerifyTarget,
): Promise<Verdict> {
  const { deps, plan, signal } = ctx;
  const config = plan.analysis!;
  const find = async () => {
    const stats = await deps.traffic.stats();
    const of = (id: string | null) => (id ? stats.pools.find((p) => p.pool === id) : undefined);
    return { next: of(pools.next), previous: of(pools.previous) };
  };
  let base: PoolStats | undefined;
  let oldP99: number | null = null;
  try {
    const at = await find();
    base = at.next;
    oldP99 = at.previous ? windowOf(at.previous, undefined).p99Ms : null;
  } catch (err) {
    return {
      ok: true,
      detail: `no stats from the data plane (${toTealError(err).message}): not judged`,
      window: ZERO,
    };
  }
  const end = Date.now() + config.window;
  for (;;) {
    const final = Date.now() >= end;
    for (const step of config.verify) {
      const result = await deps.verifier.run(step, liveTarget, { signal });
      if (!result.ok) return { ok: false, detail: `through the live route: ${result.detail}`, window: ZERO };
    }
    let now: PoolStats | undefined;
    try {
      now = (await find()).next;
    } catch (err) {
      deps.log.warn('analysis: no stats from the data plane', { error: toTealError(err).message });
      if (final)
        return { ok: true, detail: 'the data plane stopped reporting stats: not judged', window: ZERO };
    }
    if (now) {
      const verdict = judge(config, windowOf(now, base), oldP99, final);
      if (verdict) return verdict;
    } else if (final) {
      return judge(config, ZERO, oldP99, true)!;
    }
    await sleep(Math.max(0, Math.min(config.interval, end - Date.now())), undefined, { signal });
  }
}
