/**
 * Pieces of the Prometheus text format (exposition 0.0.4) shared by the metrics teal computes from
 * its records at scrape time: deployments (core/deploy-metrics.ts) and pipeline runs
 * (pipeline/metrics.ts). The data plane's own counters are rendered by proxy/metrics.ts.
 */

/** A label value with `\`, `"` and newlines escaped. */
export function labelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Observations in seconds, counted into cumulative buckets at fixed bounds. */
export class SecondsHistogram {
  readonly counts: number[];
  count = 0;
  sum = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0);
  }

  record(seconds: number): void {
    this.count++;
    this.sum += seconds;
    this.bounds.forEach((le, i) => {
      if (seconds <= le) this.counts[i]!++;
    });
  }
}

/** Adds one observation to the series with these labels, creating it at `bounds` if new. */
export function observe(
  series: Map<string, SecondsHistogram>,
  labels: string,
  seconds: number,
  bounds: readonly number[],
): void {
  const h = series.get(labels) ?? new SecondsHistogram(bounds);
  h.record(seconds);
  series.set(labels, h);
}

/** Appends a histogram family: HELP, TYPE, then per series its buckets, +Inf, sum and count. */
export function writeHistogram(
  lines: string[],
  name: string,
  help: string,
  series: Map<string, SecondsHistogram>,
): void {
  lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
  for (const [labels, h] of series) {
    h.bounds.forEach((le, i) => {
      lines.push(`${name}_bucket{${labels},le="${le}"} ${h.counts[i]}`);
    });
    lines.push(
      `${name}_bucket{${labels},le="+Inf"} ${h.count}`,
      `${name}_sum{${labels}} ${h.sum.toFixed(3)}`,
      `${name}_count{${labels}} ${h.count}`,
    );
  }
}
