import { randomBytes } from 'node:crypto';
import type { PreviewGrant, RoutingTable } from '../proxy/switch.js';
import type { Store } from '../stores/store.js';
import { formatDuration } from './config/duration.js';
import { TealError } from './errors.js';
import type { Slot } from './model.js';

/**
 * Preview links: a tester outside this host reaches an idle slot through the public port with a
 * cookie, never with a bare header. Each grant is a random 256-bit id bound to one service, one slot
 * and the release in it, with an expiry. Grants travel in the routing table, so every data plane
 * kind (builtin, nginx's map on the cookie, haproxy's map) and every edge checks them the same way,
 * with no key to share; a grant stops working when it expires, is revoked, or its slot is stopped
 * or holds another release (the table leaves it out).
 */

export interface PreviewGrantRecord {
  /** 64 hex characters (256 random bits): the credential itself. */
  id: string;
  service: string;
  slot: Slot;
  /** The release in that slot when the grant was made: another release there ends the grant. */
  release: number;
  version: string;
  createdAt: string;
  expiresAt: string;
  actor: string;
}

export { PREVIEW_COOKIE, PREVIEW_LINK_PATH } from '../proxy/switch.js';

export const DEFAULT_PREVIEW_TTL_MS = 60 * 60_000;
/** Longer than a working day of testing is a standing back door: ask again instead. */
export const MAX_PREVIEW_TTL_MS = 7 * 24 * 60 * 60_000;

const GRANT_ID = /^[0-9a-f]{64}$/;

export const previewKeys = {
  service: (svc: string) => `/previews/${svc}/`,
  grant: (svc: string, id: string) => `/previews/${svc}/${id}`,
};

export function newGrantId(): string {
  return randomBytes(32).toString('hex');
}

export function isGrantId(value: string): boolean {
  return GRANT_ID.test(value);
}

export async function listGrants(store: Store, svc: string): Promise<PreviewGrantRecord[]> {
  return (await store.list<PreviewGrantRecord>(previewKeys.service(svc))).map((e) => e.value);
}

/** Every service's grants, for the table (one list per service the config names). */
export async function grantsByService(
  store: Store,
  services: string[],
): Promise<Map<string, PreviewGrantRecord[]>> {
  const lists = await Promise.all(services.map((svc) => listGrants(store, svc)));
  return new Map(services.map((svc, i) => [svc, lists[i]!]));
}

/**
 * The grants of one service the table carries: unexpired, and only for a slot that the table
 * routes (live or preview) with the very release the grant was made for.
 */
export function tableGrants(
  records: PreviewGrantRecord[],
  pools: { slot: Slot; release: number }[],
  now: number,
): PreviewGrant[] {
  const out: PreviewGrant[] = [];
  for (const g of records) {
    const expiresAt = Date.parse(g.expiresAt);
    if (!(expiresAt > now)) continue;
    if (!pools.some((p) => p.slot === g.slot && p.release === g.release)) continue;
    out.push({ id: g.id, slot: g.slot, expiresAt });
  }
  return out;
}

/** The ttl a caller asked for, checked: a positive duration up to MAX_PREVIEW_TTL_MS. */
export function checkTtl(ttlMs: number | undefined): number {
  const ttl = ttlMs ?? DEFAULT_PREVIEW_TTL_MS;
  if (!Number.isFinite(ttl) || ttl < 1_000 || ttl > MAX_PREVIEW_TTL_MS)
    throw new TealError(
      'TEAL_BAD_REQUEST',
      `ttl: expected a duration from 1s to ${formatDuration(MAX_PREVIEW_TTL_MS)}, got ${Number.isFinite(ttl) ? formatDuration(ttl) : String(ttlMs)}`,
    );
  return ttl;
}

/** Grant records that can never work again (expired, or their slot moved on): safe to delete. */
export function deadGrants(
  records: PreviewGrantRecord[],
  table: RoutingTable,
  now: number,
): PreviewGrantRecord[] {
  return records.filter((g) => {
    const s = table.services.find((x) => x.service === g.service);
    return (
      !(s?.grants ?? []).some((t) => t.id === g.id) && (Date.parse(g.expiresAt) <= now || s !== undefined)
    );
  });
}

/** When the next grant in the table expires (ms since the epoch), or undefined when none does. */
export function nextExpiry(table: RoutingTable): number | undefined {
  let next: number | undefined;
  for (const s of table.services)
    for (const g of s.grants ?? []) if (next === undefined || g.expiresAt < next) next = g.expiresAt;
  return next;
}
