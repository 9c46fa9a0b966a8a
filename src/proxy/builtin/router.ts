/**
 * Finds where a request goes: by Host (without its port; a route without a host matches any host)
 * and the longest path prefix across every service's routes. A prefix matches on path-segment
 * boundaries, so `/api` takes `/api` and `/api/x` but not `/apix`; `/` takes everything. At equal
 * prefix length a route naming the host wins over one that does not.
 *
 * Immutable once built: the data plane builds a new Router for every applied table and swaps one
 * reference, so a request is routed by exactly one table.
 */

export interface RouterEntry<T> {
  host?: string;
  path: string;
  target: T;
}

interface Compiled<T> {
  host: string | undefined;
  prefix: string;
  target: T;
}

/** `/api/` and `/api` are the same route; `/` stays `/`. */
export function normalizePrefix(path: string): string {
  let p = path.startsWith('/') ? path : `/${path}`;
  while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

/** The host of a Host header, lowercased, without port or trailing dot: `Web.Example:8080` -> `web.example`. */
export function hostOf(header: string | undefined): string {
  if (!header) return '';
  let h = header;
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    h = end > 0 ? h.slice(0, end + 1) : h;
  } else {
    const colon = h.indexOf(':');
    if (colon >= 0) h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h.toLowerCase();
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

export class Router<T> {
  private readonly entries: Compiled<T>[];
  private readonly anyHostNamed: boolean;

  constructor(entries: RouterEntry<T>[]) {
    this.entries = entries
      .map((e) => ({
        host: e.host ? hostOf(e.host) : undefined,
        prefix: normalizePrefix(e.path),
        target: e.target,
      }))
      .sort((a, b) => b.prefix.length - a.prefix.length || (a.host ? 0 : 1) - (b.host ? 0 : 1));
    this.anyHostNamed = this.entries.some((e) => e.host !== undefined);
  }

  match(hostHeader: string | undefined, url: string): T | undefined {
    const host = this.anyHostNamed ? hostOf(hostHeader) : '';
    const path = pathOf(url);
    for (const e of this.entries) {
      if (e.host !== undefined && e.host !== host) continue;
      const p = e.prefix;
      if (p === '/' || path === p || (path.startsWith(p) && path.charCodeAt(p.length) === 47) /* '/' */) {
        return e.target;
      }
    }
    return undefined;
  }
}
