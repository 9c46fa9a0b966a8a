import http from 'node:http';
import { performance } from 'node:perf_hooks';

/**
 * A keep-alive HTTP load generator: `connections` workers, each sending one request after another
 * on its own kept-alive socket. It is how teal proves zero downtime (the demo, every integration
 * test) and, later, the `load` verify step. Any non-2xx or socket error counts as a failure.
 */

export interface LoadSample {
  /** Epoch ms (Date.now(), the clock other processes record events with) when the request was sent and when its response ended. */
  start: number;
  end: number;
  /** HTTP status, or null when no response came (socket error, timeout). */
  status: number | null;
  /** Response body, when `captureBody` is set. */
  body?: string;
  error?: string;
}

export interface LoadOptions {
  url: string;
  /** Concurrent keep-alive connections (one worker each). */
  connections: number;
  /** Stops sending when this aborts; in-flight requests still finish and are counted. */
  signal: AbortSignal;
  /** Stops after this long even if the signal has not aborted. */
  durationMs?: number;
  /** Stops each worker after this many requests (for a fixed-size run). */
  requestsPerConnection?: number;
  headers?: Record<string, string>;
  /** GET by default. */
  method?: string;
  /** Per-request timeout; a request over it is a failure. Default 10s. */
  timeoutMs?: number;
  /** Keep each response body on its sample (small bodies only: the example app's version). */
  captureBody?: boolean;
  /** Called for every completed request. */
  onSample?: (sample: LoadSample) => void;
}

export interface LoadReport {
  sent: number;
  ok: number;
  failed: number;
  statuses: Record<string, number>;
  errors: Record<string, number>;
  latency: { p50Ms: number; p99Ms: number; maxMs: number };
  durationMs: number;
  requestsPerSecond: number;
  /** The first failures, for the error message. */
  failures: LoadSample[];
}

const now = () => Date.now();
const tick = () => performance.now();

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function once(agent: http.Agent, url: URL, options: LoadOptions): Promise<LoadSample & { ms: number }> {
  const start = now();
  const t0 = tick();
  return new Promise((resolve) => {
    let settled = false;
    const finish = (status: number | null, body: string | undefined, error?: string) => {
      if (settled) return;
      settled = true;
      const sample: LoadSample & { ms: number } = { start, end: now(), status, ms: tick() - t0 };
      if (body !== undefined) sample.body = body;
      if (error !== undefined) sample.error = error;
      resolve(sample);
    };
    const req = http.request(
      url,
      {
        agent,
        method: options.method ?? 'GET',
        headers: options.headers,
        timeout: options.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          if (options.captureBody) chunks.push(c);
        });
        res.on('end', () =>
          finish(res.statusCode ?? null, options.captureBody ? Buffer.concat(chunks).toString() : undefined),
        );
        res.on('error', (err) => finish(null, undefined, (err as NodeJS.ErrnoException).code ?? err.message));
        res.on('aborted', () => finish(null, undefined, 'response aborted'));
      },
    );
    req.on('timeout', () => {
      req.destroy(new Error('timeout'));
    });
    req.on('error', (err) => finish(null, undefined, (err as NodeJS.ErrnoException).code ?? err.message));
    req.end();
  });
}

export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const url = new URL(options.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections });
  const startedAt = tick();
  const deadline =
    options.durationMs === undefined ? Number.POSITIVE_INFINITY : startedAt + options.durationMs;
  const withinTime = () => tick() < deadline;
  const latencies: number[] = [];
  const report: LoadReport = {
    sent: 0,
    ok: 0,
    failed: 0,
    statuses: {},
    errors: {},
    latency: { p50Ms: 0, p99Ms: 0, maxMs: 0 },
    durationMs: 0,
    requestsPerSecond: 0,
    failures: [],
  };

  const worker = async () => {
    let count = 0;
    while (!options.signal.aborted && withinTime()) {
      if (options.requestsPerConnection !== undefined && count >= options.requestsPerConnection) return;
      count++;
      report.sent++;
      const sample = await once(agent, url, options);
      latencies.push(sample.ms);
      if (sample.status !== null) report.statuses[sample.status] = (report.statuses[sample.status] ?? 0) + 1;
      if (sample.status !== null && sample.status >= 200 && sample.status < 300) report.ok++;
      else {
        report.failed++;
        if (sample.error) report.errors[sample.error] = (report.errors[sample.error] ?? 0) + 1;
        if (report.failures.length < 20) report.failures.push(sample);
      }
      const { ms: _ms, ...plain } = sample;
      options.onSample?.(plain);
    }
  };

  try {
    await Promise.all(Array.from({ length: options.connections }, worker));
  } finally {
    agent.destroy();
  }
  latencies.sort((a, b) => a - b);
  report.durationMs = tick() - startedAt;
  report.latency = {
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies[latencies.length - 1] ?? 0,
  };
  report.requestsPerSecond = report.durationMs > 0 ? (report.sent / report.durationMs) * 1000 : 0;
  return report;
}

/** One line for humans: "12,034 requests, 0 failed, 1,204/s, p50 1.2ms, p99 6.8ms". */
export function summarizeLoad(r: LoadReport): string {
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  const failed =
    r.failed === 0
      ? '0 failed'
      : `${n(r.failed)} failed (${Object.entries({
          ...r.errors,
          ...Object.fromEntries(Object.entries(r.statuses).filter(([s]) => !s.startsWith('2'))),
        })
          .map(([k, v]) => `${k}: ${v}`)
          .join(', ')})`;
  return `${n(r.sent)} requests, ${failed}, ${n(r.requestsPerSecond)}/s, p50 ${r.latency.p50Ms.toFixed(1)}ms, p99 ${r.latency.p99Ms.toFixed(1)}ms`;
}
