import type { RoutingTable } from '../switch.js';
import type { PoolRuntime } from './pool.js';
import { grantedPool, type HeldGrant, isLinkPath, linkAnswer } from './preview-link.js';
import { hostOf, Router, type RouterEntry } from './router.js';
import { type RequestHead, SLOT_HEADER } from './wire.js';

/** One service's place in a compiled table: its live pool and the idle slot's preview pool. */
export interface ServiceTarget {
  service: string;
  live: PoolRuntime | null;
  preview: PoolRuntime | null;
  /** Preview-link grants by id (preview-link.ts); null when the service has none. */
  grants: Map<string, HeldGrant> | null;
}

/** A table ready to route with: built once per apply, never changed afterwards. */
export interface CompiledTable {
  revision: number;
  router: Router<ServiceTarget>;
  /** Every service's grants by id, for the link path. */
  grants: Map<string, HeldGrant>;
}

export function compileTable(table: RoutingTable, pools: Map<string, PoolRuntime>): CompiledTable {
  const entries: RouterEntry<ServiceTarget>[] = [];
  const grants = new Map<string, HeldGrant>();
  for (const s of table.services) {
    const target: ServiceTarget = {
      service: s.service,
      live: s.live ? pools.get(s.live.id)! : null,
      preview: s.preview ? pools.get(s.preview.id)! : null,
      grants: null,
    };
    for (const r of s.routes)
      entries.push(r.host ? { host: r.host, path: r.path, target } : { path: r.path, target });
    const routes = s.routes.map((r) => ({ host: r.host ? hostOf(r.host) : undefined, path: r.path }));
    for (const g of s.grants ?? []) {
      const held: HeldGrant = { ...g, target, routes };
      target.grants ??= new Map();
      target.grants.set(g.id, held);
      grants.set(g.id, held);
    }
  }
  return { revision: table.revision, router: new Router(entries), grants };
}

/** Why a request gets no pool: answered by the data plane itself with this status. */
export class Refusal {
  readonly status: number;
  readonly reason: string;
  /** Header lines the answer carries besides its own (a preview link's Location and Set-Cookie). */
  readonly headers: string;
  constructor(status: number, reason: string, headers = '') {
    this.status = status;
    this.reason = reason;
    this.headers = headers;
  }
}

/**
 * Which listening socket a request came in on. On the public one the slot header means nothing (it
 * would hand any internet client the release waiting at a gate, or the one a fix just replaced);
 * on the preview one (loopback by default) it chooses the slot.
 */
export type Listener = 'public' | 'preview';

/**
 * The pool a request goes to: the live pool of the service its route names, or, on the preview
 * listener with the header `X-Teal-Slot: blue|green`, that slot's pool (the preview pool, or the
 * live one if it is that slot).
 */
export function selectPool(
  table: CompiledTable | null,
  req: RequestHead,
  listener: Listener = 'public',
): PoolRuntime | Refusal {
  if (table === null) return new Refusal(503, 'no routing table has been applied yet');
  if (isLinkPath(req.url)) {
    const answer = linkAnswer(table.grants, req.host, req.url, Date.now());
    return new Refusal(answer.status, answer.reason, answer.headers);
  }
  const target = table.router.match(req.host, req.url);
  if (target === undefined) {
    return new Refusal(404, `no route for ${req.host ?? '(no host)'}${req.url}`);
  }
  const slot = listener === 'preview' ? req.slot : undefined;
  if (slot !== undefined) {
    const wanted = String(slot).trim().toLowerCase();
    if (target.preview?.meta.slot === wanted) return target.preview;
    if (target.live?.meta.slot === wanted) return target.live;
    return new Refusal(
      404,
      wanted === 'blue' || wanted === 'green'
        ? `service ${target.service} has nothing running in slot ${wanted} to preview`
        : `${SLOT_HEADER} must be blue or green, got ${JSON.stringify(String(slot))}`,
    );
  }
  if (listener === 'public' && target.grants !== null) {
    const granted = grantedPool(target, req.headers, Date.now());
    if (granted !== undefined) return granted;
  }
  if (target.live === null) return new Refusal(503, `service ${target.service} has no live release`);
  return target.live;
}
