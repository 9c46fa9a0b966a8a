import type { Endpoint, Slot } from '../core/model.js';

/**
 * A TrafficSwitch makes a data plane (the builtin proxy, nginx, haproxy) route as the routing table
 * says. The control plane always hands over the whole table, never a diff, so a data plane that
 * restarted or missed a change converges by the next apply. Every implementation passes
 * switch.contract.ts, the zero-drop test included.
 */

/** The instances of one release in one slot: what a route sends requests to. */
export interface Pool {
  /** Stable identity: "<service>/<slot>/r<release>"; the same id means the same upstreams. */
  id: string;
  service: string;
  slot: Slot;
  release: number;
  version: string;
  endpoints: Endpoint[];
}

export interface RouteRule {
  /** Host header to match (without port); any host when absent. */
  host?: string;
  /** Path prefix; the longest matching prefix across all services wins. */
  path: string;
}

export interface ServiceRoutes {
  service: string;
  routes: RouteRule[];
  /** Where users' requests go; null while nothing is live (they get 503). */
  live: Pool | null;
  /** The idle slot's pool, reachable with `X-Teal-Slot: <slot>` on the preview listener only. */
  preview: Pool | null;
  /**
   * Preview links (core/previews.ts): a public request whose `teal_preview` cookie holds one of
   * these ids, unexpired, goes to that slot's pool. Absent or empty: none.
   */
  grants?: PreviewGrant[];
}

/** The cookie a preview link sets, and the public path that sets it (every data plane kind). */
export const PREVIEW_COOKIE = 'teal_preview';
export const PREVIEW_LINK_PATH = '/.teal/preview';

export interface PreviewGrant {
  /** 64 hex characters: the credential a link carries and its cookie holds. */
  id: string;
  slot: Slot;
  /** Milliseconds since the epoch; the data plane refuses it from then on, teal then drops it. */
  expiresAt: number;
}

export interface RoutingTable {
  /** Store revision the table was built at; data planes report the revision they applied. */
  revision: number;
  services: ServiceRoutes[];
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Sum of all latencies (for a Prometheus histogram's _sum). */
  sumMs?: number;
  /** Cumulative counts at Prometheus-style bounds: counts[i] requests took at most leMs[i]. */
  buckets?: { leMs: number[]; counts: number[] };
}

export interface PoolStats {
  pool: string;
  service: string;
  slot: Slot;
  release: number;
  requests: number;
  /** Responses by status class. */
  status: { '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  /** Requests that got no upstream response (connect refused, reset, timeout): answered 502/504. */
  upstreamErrors: number;
  inFlight: number;
  /** Open upgraded connections (websockets) and streams still running. */
  openStreams: number;
  latency: LatencySummary;
}

export interface TrafficStats {
  /** Revision of the table the data plane serves. */
  revision: number;
  pools: PoolStats[];
}

export interface DrainResult {
  /** True when the pool reached zero in-flight requests before the timeout. */
  drained: boolean;
  /** Requests and streams still open when the drain ended (closed at the timeout). */
  remaining: number;
  waitedMs: number;
}

export interface TrafficSwitch {
  readonly kind: string;
  /** Makes the data plane serve exactly this table; resolves once it does (new requests use it). */
  apply(table: RoutingTable, options?: { signal?: AbortSignal }): Promise<void>;
  /** The table the data plane serves now, or null when it has none (fresh start). */
  current(): Promise<RoutingTable | null>;
  stats(): Promise<TrafficStats>;
  /**
   * Resolves when the pool (no longer in the table) has nothing in flight, or at the timeout, when
   * its remaining connections and streams are closed.
   */
  drain(poolId: string, options: { timeoutMs: number; signal?: AbortSignal }): Promise<DrainResult>;
  /** Lets go of the data plane; the data plane itself keeps serving. */
  close(): Promise<void>;
}

export function poolId(service: string, slot: Slot, release: number): string {
  return `${service}/${slot}/r${release}`;
}
