import { endpointText } from '../../core/model.js';
import type { Pool, PoolStats } from '../switch.js';
import { LatencyHistogram, STATUS_CLASSES, statusClass } from './stats.js';
import { UpstreamEndpoint } from './upstream.js';

export { UpstreamEndpoint } from './upstream.js';

/** Something in flight on a pool that a drain may have to cut: an HTTP exchange or a spliced upgrade. */
export interface Flight {
  destroy(): void;
  /** Deadlines (connect, response head), checked once a second. */
  checkTimeouts?(now: number): void;
}

/**
 * A pool of the routing table as the data plane runs it: its endpoints and agents, its counters,
 * and what is in flight on it. It outlives its place in the table so its requests can finish and
 * its final numbers can be read; `drain` waits for it to go quiet.
 */
export class PoolRuntime {
  meta: Pool;
  endpoints: UpstreamEndpoint[];
  inTable = true;
  /** Epoch ms it left the table, and the last drain ended (the retention clock of its stats). */
  retiredAt = 0;
  drainedAt = 0;
  inFlight = 0;
  openStreams = 0;
  private next = 0;
  private requests = 0;
  private upstreamErrors = 0;
  private readonly status = [0, 0, 0, 0, 0];
  private readonly latency = new LatencyHistogram();
  private readonly flights = new Set<Flight>();
  private idleWaiters: (() => void)[] = [];

  constructor(meta: Pool) {
    this.meta = meta;
    this.endpoints = meta.endpoints.map((e) => new UpstreamEndpoint(e.host, e.port, endpointText(e)));
  }

  get busy(): number {
    return this.inFlight + this.openStreams;
  }

  /**
   * The endpoint with the fewest outstanding requests (ties in turn), other than `avoid` if possible,
   * and skipping endpoints out of rotation unless every one is.
   */
  pick(avoid?: UpstreamEndpoint): UpstreamEndpoint {
    const eps = this.endpoints;
    if (eps.length === 1) return eps[0]!;
    const start = this.next++ % eps.length;
    let best: UpstreamEndpoint | undefined;
    let fallback: UpstreamEndpoint | undefined;
    for (let i = 0; i < eps.length; i++) {
      const ep = eps[(start + i) % eps.length]!;
      if (ep === avoid) continue;
      if (ep.down) {
        fallback ??= ep;
        continue;
      }
      if (best === undefined || ep.outstanding < best.outstanding) best = ep;
    }
    return best ?? fallback ?? eps[0]!;
  }

  begin(flight: Flight): void {
    this.requests++;
    this.inFlight++;
    this.flights.add(flight);
  }

  /** An exchange became a long-lived stream (websocket, server-sent events). */
  promote(): void {
    this.inFlight--;
    this.openStreams++;
  }

  /** `status` 0 when no response reached the client; `ms` negative when there is no latency to record. */
  end(flight: Flight, stream: boolean, status: number, ms: number, upstreamError: boolean): void {
    if (!this.flights.delete(flight)) return;
    if (stream) this.openStreams--;
    else this.inFlight--;
    if (status > 0) this.status[statusClass(status)]!++;
    if (ms >= 0) this.latency.record(ms);
    if (upstreamError) this.upstreamErrors++;
    if (this.busy === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Resolves true once nothing is in flight, false at the timeout; rejects when `signal` aborts. */
  waitIdle(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.busy === 0) return Promise.resolve(true);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.idleWaiters = this.idleWaiters.filter((w) => w !== onIdle);
      };
      const onIdle = () => {
        cleanup();
        resolve(true);
      };
      const onAbort = () => {
        cleanup();
        reject(signal?.reason);
      };
      const timer = setTimeout(() => {
        cleanup();
        resolve(false);
      }, timeoutMs);
      this.idleWaiters.push(onIdle);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Cuts everything still in flight (both sides); returns how many there were. */
  destroyFlights(): number {
    const n = this.busy;
    for (const f of [...this.flights]) f.destroy();
    return n;
  }

  /** Closes every upstream connection, so none stays open to an app that is being stopped. */
  closeAgents(): void {
    for (const ep of this.endpoints) ep.destroyAll();
  }

  /** Closes idle upstream connections past their keep-alive time; checks exchanges' deadlines. */
  sweep(now: number): void {
    for (const ep of this.endpoints) ep.sweep(now);
    for (const f of this.flights) f.checkTimeouts?.(now);
  }

  /** Takes the pool's place in a new table: same id, so same upstreams, but keep the list in sync. */
  update(meta: Pool): void {
    this.meta = meta;
    this.inTable = true;
    const byKey = new Map(this.endpoints.map((ep) => [ep.key, ep]));
    const next = meta.endpoints.map((e) => {
      const key = endpointText(e);
      const ep = byKey.get(key) ?? new UpstreamEndpoint(e.host, e.port, key);
      byKey.delete(key);
      return ep;
    });
    for (const gone of byKey.values()) {
      gone.removed = true;
      if (gone.outstanding === 0) gone.closeIdle();
    }
    this.endpoints = next;
  }

  stats(): PoolStats {
    const status = { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 };
    STATUS_CLASSES.forEach((c, i) => {
      status[c] = this.status[i]!;
    });
    return {
      pool: this.meta.id,
      service: this.meta.service,
      slot: this.meta.slot,
      release: this.meta.release,
      requests: this.requests,
      status,
      upstreamErrors: this.upstreamErrors,
      inFlight: this.inFlight,
      openStreams: this.openStreams,
      latency: this.latency.summary(),
    };
  }
}
