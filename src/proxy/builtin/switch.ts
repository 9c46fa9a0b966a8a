import type { DrainResult, RoutingTable, TrafficStats, TrafficSwitch } from '../switch.js';
import { adminCall } from './admin-client.js';

/** Extra time a drain request waits for the data plane beyond the drain's own timeout. */
const DRAIN_MARGIN_MS = 30_000;

/**
 * The TrafficSwitch of the builtin data plane, which runs as its own process (`teal proxy`): each
 * method is one request to its admin API on a unix socket. Nothing is held between calls, so a
 * restarted data plane is simply reached again, and `close()` leaves it serving.
 *
 * @example
 *   const sw = new BuiltinSwitch({ adminSocket: '.teal/proxy.sock' });
 *   await sw.apply(table); // new requests use `table` once this resolves
 */
export class BuiltinSwitch implements TrafficSwitch {
  readonly kind = 'builtin';
  readonly adminSocket: string;

  constructor(options: { adminSocket: string }) {
    this.adminSocket = options.adminSocket;
  }

  async apply(table: RoutingTable, options?: { signal?: AbortSignal }): Promise<void> {
    await adminCall(this.adminSocket, 'PUT', '/v1/table', { body: table, signal: options?.signal });
  }

  current(): Promise<RoutingTable | null> {
    return adminCall<RoutingTable | null>(this.adminSocket, 'GET', '/v1/table');
  }

  stats(): Promise<TrafficStats> {
    return adminCall<TrafficStats>(this.adminSocket, 'GET', '/v1/stats');
  }

  drain(poolId: string, options: { timeoutMs: number; signal?: AbortSignal }): Promise<DrainResult> {
    return adminCall<DrainResult>(this.adminSocket, 'POST', '/v1/drain', {
      body: { pool: poolId, timeoutMs: options.timeoutMs },
      signal: options.signal,
      timeoutMs: options.timeoutMs + DRAIN_MARGIN_MS,
    });
  }

  async close(): Promise<void> {
    // Nothing to release: every call opens and closes its own connection.
  }
}
