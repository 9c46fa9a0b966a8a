import { isTealError } from '../../core/errors.js';
import type { DrainResult, RoutingTable, TrafficStats, TrafficSwitch } from '../switch.js';
import { type AdminCallOptions, adminCall } from './admin-client.js';

/** Extra time a drain request waits for the data plane beyond the drain's own timeout. */
const DRAIN_MARGIN_MS = 30_000;
/**
 * How long a call keeps trying while nobody answers on the admin socket: a data plane handing off
 * to its successor leaves the socket unbound for a few milliseconds (handoff.ts).
 */
const UNREACHABLE_RETRY_MS = 3_000;

async function call<T>(
  socket: string,
  method: string,
  path: string,
  options: AdminCallOptions = {},
): Promise<T> {
  const deadline = Date.now() + UNREACHABLE_RETRY_MS;
  for (;;) {
    try {
      return await adminCall<T>(socket, method, path, options);
    } catch (err) {
      if (!isTealError(err, 'TEAL_PROXY_UNREACHABLE') || Date.now() > deadline || options.signal?.aborted)
        throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

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
    await call(this.adminSocket, 'PUT', '/v1/table', { body: table, signal: options?.signal });
  }

  current(): Promise<RoutingTable | null> {
    return call<RoutingTable | null>(this.adminSocket, 'GET', '/v1/table');
  }

  stats(): Promise<TrafficStats> {
    return call<TrafficStats>(this.adminSocket, 'GET', '/v1/stats');
  }

  drain(poolId: string, options: { timeoutMs: number; signal?: AbortSignal }): Promise<DrainResult> {
    return call<DrainResult>(this.adminSocket, 'POST', '/v1/drain', {
      body: { pool: poolId, timeoutMs: options.timeoutMs },
      signal: options.signal,
      timeoutMs: options.timeoutMs + DRAIN_MARGIN_MS,
    });
  }

  async close(): Promise<void> {
    // Nothing to release: every call opens and closes its own connection.
  }
}
