import Mustache from 'mustache';
import { parseCidr } from '../../core/config/cidr.js';
import { TealError } from '../../core/errors.js';
import type { Slot } from '../../core/model.js';
import type { Pool, RoutingTable } from '../switch.js';
import * as safe from './validate.js';

/**
 * The routing table as a template sees it (docs/nginx.md documents every field). Everything here
 * is computed and checked before rendering: a template only loops and prints, and every value it
 * prints passed validate.ts, so it is written as is (no escaping, no quoting).
 */
export interface TemplateView {
  revision: number;
  /** `host:port` of the public servers (the switch's `listen` option). */
  listen: string;
  /** `host:port` of the preview servers, where X-Teal-Slot chooses the slot; null: none rendered. */
  previewListen: string | null;
  /** The access log teal reads its stats from, in the `teal_access` format. */
  accessLog: string;
  stateDir: string;
  /** `proxy.trustedProxies` as CIDRs (`10.0.0.0/8`, `::1/128`): peers whose forwarded headers are kept. */
  trustedProxies: string[];
  /** One per distinct pool in the table, live and preview. */
  upstreams: PoolView[];
  services: ServiceView[];
  /** Every preview grant in the table, for the link path's maps. */
  grants: LinkView[];
  /**
   * The public servers (for any host first, then one per host some route names), then the same for
   * the preview listener when there is one.
   */
  servers: ServerView[];
}

export interface PoolView {
  /** The nginx upstream name: `teal.` + the pool id with `/` as `.` (`teal.web.blue.r3`). */
  name: string;
  /** The pool id (`web/blue/r3`): what the access log's `pool` field must hold. */
  pool: string;
  service: string;
  slot: Slot;
  release: number;
  version: string;
  servers: { address: string }[];
}

export interface ServiceView {
  service: string;
  /**
   * The nginx variable (`$teal_web`) naming the upstream a public request of this service goes to:
   * the live pool, whatever X-Teal-Slot says.
   */
  variable: string;
  /** The same on the preview listener (`$teal_web_preview`), mapped from X-Teal-Slot. */
  previewVariable: string;
  live: PoolView | null;
  preview: PoolView | null;
  /** What a public request (or one without `X-Teal-Slot`) gets: the live upstream's name, or `-503`. */
  liveTarget: string;
  /** What `X-Teal-Slot: <slot>` gets on the preview listener: that slot's upstream name, or `-404`. */
  slots: { slot: Slot; target: string }[];
  /** Preview grants: a public request whose `teal_preview` cookie is `id` goes to `target` (an upstream). */
  grants: { id: string; target: string }[];
}

export interface LinkView {
  id: string;
  service: string;
  /** When it expires, as an HTTP date (the cookie's Expires). */
  expires: string;
  /** Where the link redirects: the service's first route path. */
  path: string;
}

export interface ServerView {
  listen: string;
  /** A server of the preview listener: its locations use the services' `previewVariable`. */
  preview: boolean;
  /** The server for any host (`server_name _`, `default_server`). */
  default: boolean;
  serverName: string;
  /** The host this server is for; null for the default one. */
  host: string | null;
  locations: LocationView[];
  /** True when no route covers `/`: the template adds `location / { return 404; }`. */
  notFound: boolean;
}

export interface LocationView {
  /** The location's match: `/`, `= /api` or `/api/` (a prefix matches on segment boundaries). */
  match: string;
  /** The route's prefix (`/api`). */
  path: string;
  service: string;
  /** The service's variable for this server: `variable` on a public one, `previewVariable` on a preview one. */
  variable: string;
}

export interface RenderOptions {
  listen: string;
  /** The preview listener; no preview servers are rendered without it. */
  previewListen?: string;
  accessLog: string;
  stateDir: string;
  trustedProxies?: readonly string[];
}

const NOT_FOUND = '-404';
const UNAVAILABLE = '-503';

function refuse(message: string, details?: Record<string, unknown>): never {
  throw new TealError('TEAL_PROXY_FAILED', `refusing to render nginx config: ${message}`, details);
}

function poolView(pool: Pool, at: string): PoolView {
  const id = safe.poolIdOf(pool.id, `${at}.id`);
  const slot = pool.slot;
  if (slot !== 'blue' && slot !== 'green') refuse(`${at}.slot must be blue or green`, { value: slot });
  if (!Array.isArray(pool.endpoints) || pool.endpoints.length === 0)
    refuse(`pool ${id} needs at least one endpoint`);
  return {
    name: `teal.${id.replaceAll('/', '.')}`,
    pool: id,
    service: safe.serviceName(pool.service, `${at}.service`),
    slot,
    release: safe.integer(pool.release, `${at}.release`, 0),
    version: safe.version(pool.version, `${at}.version`),
    servers: pool.endpoints.map((e, i) => ({
      address: safe.address(e.host, e.port, `${at}.endpoints.${i}`),
    })),
  };
}

/** Each range in its normal form (which holds nothing but hex digits, dots, colons and a slash). */
function trustedRanges(ranges: readonly string[]): string[] {
  return ranges.map((r, i) => {
    try {
      return parseCidr(r).text;
    } catch (err) {
      return refuse(`trustedProxies.${i}: ${(err as Error).message}`);
    }
  });
}

/** Checks the table and computes what the template sees; throws TEAL_PROXY_FAILED naming a bad value. */
export function buildView(table: RoutingTable, options: RenderOptions): TemplateView {
  const revision = safe.integer(table?.revision, 'revision', 0);
  if (!Array.isArray(table.services)) refuse('the table has no services list');
  const listen = safe.listenAddress(options.listen);
  const previewListen =
    options.previewListen === undefined ? null : safe.listenAddress(options.previewListen);
  if (previewListen === listen) refuse(`the preview listener cannot be the public one (${listen})`);
  const upstreams = new Map<string, PoolView>();
  const upstreamNames = new Map<string, string>();
  const pool = (p: Pool | null, at: string): PoolView | null => {
    if (p === null || p === undefined) return null;
    const view = poolView(p, at);
    const seen = upstreams.get(view.pool);
    if (seen && JSON.stringify(seen) !== JSON.stringify(view))
      refuse(`pool ${view.pool} appears twice with different contents`);
    const clash = upstreamNames.get(view.name);
    if (clash !== undefined && clash !== view.pool)
      refuse(`pools ${clash} and ${view.pool} would share the upstream name ${view.name}`);
    upstreams.set(view.pool, seen ?? view);
    upstreamNames.set(view.name, view.pool);
    return seen ?? view;
  };

  const services: ServiceView[] = [];
  const links: LinkView[] = [];
  const variables = new Set<string>();
  // Routes by host ('' = any host), then by prefix: the service that claims each.
  const claims = new Map<string, Map<string, ServiceView>>();
  table.services.forEach((s, i) => {
    const at = `services.${i}`;
    const name = safe.serviceName(s.service, `${at}.service`);
    if (services.some((v) => v.service === name)) refuse(`service ${name} appears twice`);
    let variable = `$teal_${name.replace(/[.-]/g, '_')}`;
    if (variables.has(variable)) variable = `${variable}_${i}`;
    variables.add(variable);
    const live = pool(s.live, `${at}.live`);
    const preview = pool(s.preview, `${at}.preview`);
    const slotTarget = (slot: Slot) =>
      preview?.slot === slot ? preview.name : live?.slot === slot ? live.name : NOT_FOUND;
    const grants: ServiceView['grants'] = [];
    if (s.grants !== undefined && !Array.isArray(s.grants)) refuse(`${at}.grants must be a list`);
    (s.grants ?? []).forEach((g, j) => {
      const id = safe.grantId(g.id, `${at}.grants.${j}.id`);
      const target = slotTarget(g.slot);
      const expiresAt = safe.integer(g.expiresAt, `${at}.grants.${j}.expiresAt`, 0);
      if (target === NOT_FOUND) return;
      grants.push({ id, target });
      links.push({
        id,
        service: name,
        expires: new Date(expiresAt).toUTCString(),
        path: safe.routePath(s.routes[0]?.path ?? '/', `${at}.routes.0.path`),
      });
    });
    const view: ServiceView = {
      grants,
      service: name,
      variable,
      previewVariable: `${variable}_preview`,
      live,
      preview,
      liveTarget: live ? live.name : UNAVAILABLE,
      slots: (['blue', 'green'] as const).map((slot) => ({ slot, target: slotTarget(slot) })),
    };
    services.push(view);
    if (!Array.isArray(s.routes)) refuse(`${at}.routes must be a list`);
    s.routes.forEach((r, j) => {
      const host = r.host === undefined ? '' : safe.routeHost(r.host, `${at}.routes.${j}.host`);
      const path = safe.routePath(r.path, `${at}.routes.${j}.path`);
      const byPath = claims.get(host) ?? new Map<string, ServiceView>();
      claims.set(host, byPath);
      const other = byPath.get(path);
      if (other && other !== view)
        refuse(`route ${host}${path} is claimed by both ${other.service} and ${name}`);
      byPath.set(path, view);
    });
  });

  const anyHost = claims.get('') ?? new Map<string, ServiceView>();
  const server = (host: string | null, preview: boolean): ServerView => {
    const routes = new Map(anyHost);
    if (host !== null) for (const [path, s] of claims.get(host)!) routes.set(path, s);
    const locations: LocationView[] = [];
    for (const [path, s] of [...routes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const at = { path, service: s.service, variable: preview ? s.previewVariable : s.variable };
      if (path === '/') locations.push({ match: '/', ...at });
      else locations.push({ match: `= ${path}`, ...at }, { match: `${path}/`, ...at });
    }
    return {
      listen: preview ? previewListen! : listen,
      preview,
      default: host === null,
      serverName: host ?? '_',
      host,
      locations,
      notFound: !routes.has('/'),
    };
  };
  const hosts = [...claims.keys()].filter((h) => h !== '').sort();
  const servers = (preview: boolean) => [server(null, preview), ...hosts.map((h) => server(h, preview))];
  return {
    revision,
    listen,
    previewListen,
    accessLog: options.accessLog,
    stateDir: options.stateDir,
    trustedProxies: trustedRanges(options.trustedProxies ?? []),
    upstreams: [...upstreams.values()],
    services,
    grants: links,
    servers: previewListen === null ? servers(false) : [...servers(false), ...servers(true)],
  };
}

/** Renders a Mustache template with the view; nothing is HTML-escaped (values are checked instead). */
export function renderTemplate(template: string, view: TemplateView, templateName: string): string {
  try {
    return Mustache.render(template, view, {}, { escape: (v: unknown) => String(v) });
  } catch (err) {
    throw new TealError(
      'TEAL_PROXY_FAILED',
      `could not render the nginx template ${templateName}: ${(err as Error).message}`,
      { template: templateName },
    );
  }
}
