import { open, stat } from 'node:fs/promises';
import { isErrno } from '../../proc.js';
import { LatencyHistogram, statusClass } from '../builtin/stats.js';
import type { PoolStats } from '../switch.js';

/**
 * Per-pool counters read from nginx's access log, which the template writes in the `teal_access`
 * format: one JSON object per request, naming the pool it went to. nginx writes a line when a
 * request ends, so these count finished requests; the open-source build has no per-upstream
 * counter of requests in flight, so `inFlight` and `openStreams` are reported as 0 (docs/nginx.md).
 *
 * The log is read incrementally from where the last read stopped. Reading starts at the end of the
 * file as it was when the switch opened (a restarted control plane does not re-read a day of log),
 * and starts over from the beginning when the file shrank (logrotate's copytruncate or a new file).
 */
export class AccessLogStats {
  private offset: number | undefined;
  private partial = '';
  private readonly pools = new Map<string, Counters>();

  constructor(readonly file: string) {}

  /** Remembers where the log ends now; lines before this are not counted. */
  async start(): Promise<void> {
    this.offset = await sizeOf(this.file);
  }

  /** Reads what nginx appended since the last call and returns the counters of the table's pools. */
  async poolStats(known: Map<string, PoolIdentity>): Promise<PoolStats[]> {
    await this.readNew();
    const out: PoolStats[] = [];
    for (const [id, who] of known) {
      const c = this.pools.get(id) ?? new Counters();
      out.push({
        pool: id,
        service: who.service,
        slot: who.slot,
        release: who.release,
        requests: c.requests,
        status: {
          '1xx': c.status[0]!,
          '2xx': c.status[1]!,
          '3xx': c.status[2]!,
          '4xx': c.status[3]!,
          '5xx': c.status[4]!,
        },
        upstreamErrors: c.upstreamErrors,
        inFlight: 0,
        openStreams: 0,
        latency: c.latency.summary(),
      });
    }
    return out;
  }

  private async readNew(): Promise<void> {
    const size = await sizeOf(this.file);
    if (this.offset === undefined) this.offset = 0;
    if (size < this.offset) {
      this.offset = 0;
      this.partial = '';
    }
    if (size === this.offset) return;
    const handle = await open(this.file, 'r');
    try {
      const length = size - this.offset;
      const buffer = Buffer.allocUnsafe(length);
      const { bytesRead } = await handle.read(buffer, 0, length, this.offset);
      this.offset += bytesRead;
      const text = this.partial + buffer.subarray(0, bytesRead).toString('utf8');
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) this.count(line);
    } finally {
      await handle.close();
    }
  }

  private count(line: string): void {
    let entry: AccessEntry;
    try {
      entry = JSON.parse(line) as AccessEntry;
    } catch {
      return; // not ours (a template of the user's that logs more than one format to the file)
    }
    if (typeof entry.pool !== 'string' || entry.pool === '-' || entry.pool === '') return;
    let c = this.pools.get(entry.pool);
    if (!c) {
      c = new Counters();
      this.pools.set(entry.pool, c);
    }
    const status = Number(entry.status);
    c.requests++;
    c.status[statusClass(status)]!++;
    // No upstream response head at all: nginx could not connect, or the upstream reset or timed out.
    const headerTime = String(entry.upstream_header_time ?? '-');
    if (headerTime === '-' || headerTime === '') c.upstreamErrors++;
    const seconds = Number(entry.request_time);
    if (Number.isFinite(seconds)) c.latency.record(seconds * 1000);
  }
}

export interface PoolIdentity {
  service: string;
  slot: PoolStats['slot'];
  release: number;
}

interface AccessEntry {
  pool?: unknown;
  status?: unknown;
  request_time?: unknown;
  upstream_status?: unknown;
  upstream_header_time?: unknown;
}

class Counters {
  requests = 0;
  readonly status = [0, 0, 0, 0, 0];
  upstreamErrors = 0;
  readonly latency = new LatencyHistogram();
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return 0;
    throw err;
  }
}
