import net from 'node:net';
import { checkRouteHost, checkRoutePath } from '../../core/config/route.js';
import { TealError } from '../../core/errors.js';
import type { Pool, RoutingTable } from '../switch.js';

/**
 * The routing table as the entries of haproxy's routes map (see base-config.ts for how the
 * frontend reads them). Each kind of key starts with its own letter, so a lookup of one kind can
 * never match another:
 *
 *   T                  -> table revision (its presence means "a table is applied")
 *   R<host><prefix>/   -> service, for routes naming a host   (map_beg: longest prefix wins)
 *   R*<prefix>/        -> service, for routes on any host
 *   L<service>         -> lane backend of the live pool       (map_str)
 *   P<service>/<slot>  -> lane backend of that slot's pool
 *   G<grant id>        -> <service>/<slot>/<expiry, unix seconds>, a preview link's grant
 *
 * The trailing `/` makes a prefix match on segment boundaries: the request key of `/api/x` is
 * `.../api/x/`, which `/api/` is a prefix of, while `/apix/` is not. A route naming host H must
 * beat an any-host route only at equal length, and a longer any-host route must still beat it, so
 * every any-host route is also written under each named host (unless H has its own route with that
 * prefix): the lookup under the request's host then sees every candidate, and falls back to `R*`
 * only for hosts no route names.
 */

export interface MapEntry {
  key: string;
  value: string;
}

const SERVICE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const POOL_ID = /^[A-Za-z0-9][A-Za-z0-9_./-]{0,200}$/;
const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;
/** RFC 3986 path characters, less `;` (the runtime API's command separator). */
const PATH = /^\/[A-Za-z0-9._~!$&'()*+,=:@%/-]*$/;

function refuse(what: string, value: unknown, expected: string): never {
  throw new TealError(
    'TEAL_PROXY_FAILED',
    `the haproxy switch cannot apply this table: ${what} ${JSON.stringify(value)} is not valid (expected ${expected})`,
    { field: what, value },
  );
}

/**
 * A route's host by the rules every proxy kind shares (core/config/route.ts), in the form the
 * frontend computes a request's: lower-case, without port or trailing dot.
 */
export function routeHost(value: string, what: string): string {
  const checked = checkRouteHost(value);
  if (!checked.ok) refuse(what, value, checked.rule);
  // Defence in depth: the map key must hold nothing the runtime API would read as syntax.
  if (!checked.value.split('.').every((l) => LABEL.test(l)))
    refuse(what, value, 'a host name of letters, digits, "-" and "."');
  return checked.value;
}

/** `/api/` and `/api` are the same prefix; the key form ends in `/` (`/` stays `/`). */
export function routePrefix(value: string, what: string): string {
  const checked = checkRoutePath(value);
  if (!checked.ok) refuse(what, value, checked.rule);
  if (!PATH.test(checked.value))
    refuse(what, value, "a path starting with / made of RFC 3986 characters other than ';'");
  const p = checked.value;
  return p === '/' ? '/' : `${p}/`;
}

function checkPool(pool: Pool, what: string, seen: Map<string, string>): void {
  if (!POOL_ID.test(pool.id)) refuse(`${what}.id`, pool.id, 'a pool id like web/blue/r3');
  if (pool.slot !== 'blue' && pool.slot !== 'green') refuse(`${what}.slot`, pool.slot, 'blue or green');
  if (pool.endpoints.length === 0) refuse(`${what}.endpoints`, [], 'at least one endpoint');
  pool.endpoints.forEach((e, i) => {
    if (net.isIP(e.host) === 0)
      refuse(
        `${what}.endpoints[${i}].host`,
        e.host,
        'an IP address (haproxy sets server addresses at runtime without DNS)',
      );
    if (!Number.isInteger(e.port) || e.port < 1 || e.port > 65_535)
      refuse(`${what}.endpoints[${i}].port`, e.port, 'a port from 1 to 65535');
  });
  const endpoints = JSON.stringify(pool.endpoints);
  const earlier = seen.get(pool.id);
  if (earlier !== undefined && earlier !== endpoints)
    refuse(`${what}.endpoints`, pool.endpoints, `the same endpoints as the other pool with id ${pool.id}`);
  seen.set(pool.id, endpoints);
}

/**
 * Checks that every name, host, path and address of the table can be written into the map and the
 * runtime API's commands, and that the table is consistent. Throws TEAL_PROXY_FAILED naming the field.
 */
export function checkTable(table: RoutingTable): void {
  if (!Number.isInteger(table.revision) || table.revision < 0)
    refuse('revision', table.revision, 'a non-negative integer');
  const services = new Set<string>();
  const routes = new Map<string, string>();
  const pools = new Map<string, string>();
  table.services.forEach((s, i) => {
    const at = `services[${i}]`;
    if (!SERVICE.test(s.service)) refuse(`${at}.service`, s.service, 'letters, digits, ".", "_" and "-"');
    if (services.has(s.service)) refuse(`${at}.service`, s.service, 'a service named once');
    services.add(s.service);
    s.routes.forEach((r, j) => {
      const host = r.host === undefined ? '*' : routeHost(r.host, `${at}.routes[${j}].host`);
      const key = host + routePrefix(r.path, `${at}.routes[${j}].path`);
      const other = routes.get(key);
      if (other !== undefined && other !== s.service)
        refuse(`${at}.routes[${j}]`, r, `a route no other service has (${other} has it)`);
      routes.set(key, s.service);
    });
    if (s.live) checkPool(s.live, `${at}.live`, pools);
    if (s.preview) checkPool(s.preview, `${at}.preview`, pools);
    if (s.live && s.live.service !== s.service) refuse(`${at}.live.service`, s.live.service, s.service);
    if (s.preview && s.preview.service !== s.service)
      refuse(`${at}.preview.service`, s.preview.service, s.service);
    (s.grants ?? []).forEach((g, j) => {
      if (typeof g.id !== 'string' || !/^[0-9a-f]{64}$/.test(g.id))
        refuse(`${at}.grants[${j}].id`, g.id, '64 lower-case hex digits');
      if (g.slot !== 'blue' && g.slot !== 'green') refuse(`${at}.grants[${j}].slot`, g.slot, 'blue or green');
      if (!Number.isInteger(g.expiresAt) || g.expiresAt < 0)
        refuse(`${at}.grants[${j}].expiresAt`, g.expiresAt, 'milliseconds since the epoch');
    });
  });
}

/** Every pool the table names (live and preview), once each. */
export function poolsOf(table: RoutingTable): Pool[] {
  const out = new Map<string, Pool>();
  for (const s of table.services)
    for (const p of [s.live, s.preview]) if (p && !out.has(p.id)) out.set(p.id, p);
  return [...out.values()];
}

/** The map's entries for a checked table, given the lane backend each of its pools sits in. */
export function routingMapEntries(table: RoutingTable, backendOf: (poolId: string) => string): MapEntry[] {
  const entries: MapEntry[] = [{ key: 'T', value: String(table.revision) }];
  const anyHost: { prefix: string; service: string }[] = [];
  const named = new Map<string, Map<string, string>>();
  for (const s of table.services)
    for (const r of s.routes) {
      const prefix = routePrefix(r.path, 'path');
      if (r.host === undefined) anyHost.push({ prefix, service: s.service });
      else {
        const host = routeHost(r.host, 'host');
        if (!named.has(host)) named.set(host, new Map());
        named.get(host)!.set(prefix, s.service);
      }
    }
  for (const { prefix, service } of anyHost) entries.push({ key: `R*${prefix}`, value: service });
  for (const [host, prefixes] of named) {
    for (const [prefix, service] of prefixes) entries.push({ key: `R${host}${prefix}`, value: service });
    for (const { prefix, service } of anyHost)
      if (!prefixes.has(prefix)) entries.push({ key: `R${host}${prefix}`, value: service });
  }
  for (const s of table.services) {
    if (s.live) entries.push({ key: `L${s.service}`, value: backendOf(s.live.id) });
    if (s.preview) entries.push({ key: `P${s.service}/${s.preview.slot}`, value: backendOf(s.preview.id) });
    if (s.live && s.live.slot !== s.preview?.slot)
      entries.push({ key: `P${s.service}/${s.live.slot}`, value: backendOf(s.live.id) });
    for (const g of s.grants ?? [])
      if (s.live?.slot === g.slot || s.preview?.slot === g.slot)
        entries.push({ key: `G${g.id}`, value: `${s.service}/${g.slot}/${Math.floor(g.expiresAt / 1000)}` });
  }
  return entries;
}

/** The map file's text (what haproxy loads at start), one `key value` per line. */
export function mapFileText(entries: MapEntry[]): string {
  return entries.map((e) => `${e.key} ${e.value}\n`).join('');
}

/** Lane backends the map's values name (what live traffic may reach now). */
export function backendsNamed(entries: MapEntry[]): Set<string> {
  return new Set(entries.filter((e) => e.key.startsWith('L') || e.key.startsWith('P')).map((e) => e.value));
}
