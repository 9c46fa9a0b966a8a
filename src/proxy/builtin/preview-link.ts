import { PREVIEW_COOKIE, PREVIEW_LINK_PATH, type PreviewGrant } from '../switch.js';
import type { PoolRuntime } from './pool.js';
import { hostOf } from './router.js';
import type { ServiceTarget } from './select.js';

/**
 * Preview links on the builtin data plane (core/previews.ts has the design): `GET /.teal/preview?
 * grant=<id>` with a grant the table holds sets the `teal_preview` cookie and redirects into the
 * service; a public request carrying that cookie, unexpired, for the grant's own service goes to the
 * grant's slot. Everything else is answered as if no link existed: the live pool, or 403 for a bad
 * link. The clock is checked here on every request, so an expired grant stops at once even before
 * teal takes it out of the table.
 */

/** A grant as the data plane holds it: with the service it belongs to and where that service lives. */
export interface HeldGrant extends PreviewGrant {
  target: ServiceTarget;
  /** The service's routes: a link works only on a host the service is served on. */
  routes: { host: string | undefined; path: string }[];
}

const COOKIE_PREFIX = `${PREVIEW_COOKIE}=`;

/** The values of every `teal_preview` cookie the request carries (browsers may send several). */
export function previewCookies(headers: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.length !== 6 || headers[i]!.toLowerCase() !== 'cookie') continue;
    const value = headers[i + 1]!;
    if (!value.includes(COOKIE_PREFIX)) continue;
    for (const part of value.split(';')) {
      const p = part.trim();
      if (p.startsWith(COOKIE_PREFIX)) out.push(p.slice(COOKIE_PREFIX.length));
    }
  }
  return out;
}

/** The pool a valid, unexpired grant cookie of this service opens, if any. */
export function grantedPool(target: ServiceTarget, headers: string[], now: number): PoolRuntime | undefined {
  if (target.grants === null) return undefined;
  for (const id of previewCookies(headers)) {
    const grant = target.grants.get(id);
    if (grant === undefined || grant.expiresAt <= now) continue;
    if (target.preview?.meta.slot === grant.slot) return target.preview;
    if (target.live?.meta.slot === grant.slot) return target.live;
  }
  return undefined;
}

export function isLinkPath(url: string): boolean {
  const q = url.indexOf('?');
  return (q < 0 ? url : url.slice(0, q)) === PREVIEW_LINK_PATH;
}

function grantParam(url: string): string | undefined {
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  for (const pair of url.slice(q + 1).split('&')) if (pair.startsWith('grant=')) return pair.slice(6);
  return undefined;
}

/** What a preview link gets: a redirect that sets the cookie, or 403 with no hint which check failed. */
export function linkAnswer(
  grants: Map<string, HeldGrant>,
  host: string | undefined,
  url: string,
  now: number,
): { status: 302 | 403; reason: string; headers: string } {
  const id = grantParam(url);
  const grant = id === undefined ? undefined : grants.get(id);
  const h = hostOf(host);
  const route = grant?.routes.find((r) => r.host === undefined || r.host === h);
  if (grant === undefined || grant.expiresAt <= now || route === undefined)
    return {
      status: 403,
      reason: 'this preview link is not valid, or has expired',
      headers: 'cache-control: no-store\r\n',
    };
  const maxAge = Math.max(1, Math.floor((grant.expiresAt - now) / 1000));
  return {
    status: 302,
    reason: `preview of ${grant.target.service} (${grant.slot}) for ${maxAge}s`,
    headers:
      `location: ${route.path}\r\n` +
      `set-cookie: ${PREVIEW_COOKIE}=${grant.id}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax\r\n` +
      'cache-control: no-store\r\nreferrer-policy: no-referrer\r\n',
  };
}
