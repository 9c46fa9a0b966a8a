import { TealError } from '../../core/errors.js';
import type { RoutingTable } from '../switch.js';
import { hostOf, normalizePrefix } from './router.js';

/**
 * The admin API's input, checked before anything changes: a bad table is refused whole (400) and
 * the data plane keeps serving the one it had.
 */

// Checked by hand rather than with zod: the data plane loads nothing it does not need, since
// every megabyte of its RSS is paid on every host that runs one.
class Shape extends Error {}

function at(path: string, message: string): never {
  throw new Shape(`${path || '(table)'}: ${message}`);
}

function record(v: unknown, path: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) at(path, 'expected an object');
  return v as Record<string, unknown>;
}

function list(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) at(path, 'expected an array');
  return v as unknown[];
}

function text(v: unknown, path: string, nonEmpty = true): string {
  if (typeof v !== 'string' || (nonEmpty && v.length === 0))
    at(path, nonEmpty ? 'expected a non-empty string' : 'expected a string');
  return v as string;
}

function integer(v: unknown, path: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    at(path, `expected an integer from ${min} to ${max}`);
  return v as number;
}

function checkPool(v: unknown, path: string): void {
  if (v === null) return;
  const p = record(v, path);
  text(p.id, `${path}.id`);
  text(p.service, `${path}.service`);
  if (p.slot !== 'blue' && p.slot !== 'green') at(`${path}.slot`, 'expected blue or green');
  integer(p.release, `${path}.release`, 0);
  text(p.version, `${path}.version`, false);
  const endpoints = list(p.endpoints, `${path}.endpoints`);
  if (endpoints.length === 0) at(`${path}.endpoints`, 'a pool needs at least one endpoint');
  endpoints.forEach((e, i) => {
    const ep = record(e, `${path}.endpoints.${i}`);
    text(ep.host, `${path}.endpoints.${i}.host`);
    integer(ep.port, `${path}.endpoints.${i}.port`, 1, 65535);
  });
}

function checkTable(input: unknown): void {
  const t = record(input, '');
  integer(t.revision, 'revision', 0);
  list(t.services, 'services').forEach((sv, i) => {
    const s = record(sv, `services.${i}`);
    text(s.service, `services.${i}.service`);
    list(s.routes, `services.${i}.routes`).forEach((rv, j) => {
      const r = record(rv, `services.${i}.routes.${j}`);
      if (r.host !== undefined) text(r.host, `services.${i}.routes.${j}.host`);
      if (typeof r.path !== 'string' || !r.path.startsWith('/'))
        at(`services.${i}.routes.${j}.path`, 'a route path starts with /');
    });
    if (!('live' in s)) at(`services.${i}.live`, 'expected a pool or null');
    if (!('preview' in s)) at(`services.${i}.preview`, 'expected a pool or null');
    checkPool(s.live, `services.${i}.live`);
    checkPool(s.preview, `services.${i}.preview`);
    if (s.grants !== undefined)
      list(s.grants, `services.${i}.grants`).forEach((gv, j) => {
        const g = record(gv, `services.${i}.grants.${j}`);
        // The id is written into Set-Cookie and Location answers: nothing but the 64 hex digits teal makes.
        if (typeof g.id !== 'string' || !/^[0-9a-f]{64}$/.test(g.id))
          at(`services.${i}.grants.${j}.id`, 'expected 64 lower-case hex digits');
        if (g.slot !== 'blue' && g.slot !== 'green')
          at(`services.${i}.grants.${j}.slot`, 'expected blue or green');
        integer(g.expiresAt, `services.${i}.grants.${j}.expiresAt`, 0);
      });
  });
}

function bad(message: string): TealError {
  return new TealError('TEAL_BAD_REQUEST', message);
}

/** Checks a routing table's shape and that it is unambiguous; throws TEAL_BAD_REQUEST naming the problem. */
export function parseTable(input: unknown): RoutingTable {
  try {
    checkTable(input);
  } catch (err) {
    if (err instanceof Shape) throw bad(`invalid routing table: ${err.message}`);
    throw err;
  }
  const t = input as RoutingTable;
  const services = new Set<string>();
  const routes = new Map<string, string>();
  const pools = new Map<string, string>();
  for (const s of t.services) {
    if (services.has(s.service)) throw bad(`invalid routing table: service ${s.service} appears twice`);
    services.add(s.service);
    for (const r of s.routes) {
      const key = `${r.host ? hostOf(r.host) : '*'} ${normalizePrefix(r.path)}`;
      const other = routes.get(key);
      if (other !== undefined) {
        throw bad(
          `invalid routing table: route ${r.host ?? ''}${r.path} is claimed by both ${other} and ${s.service}`,
        );
      }
      routes.set(key, s.service);
    }
    for (const p of [s.live, s.preview]) {
      if (!p) continue;
      const endpoints = JSON.stringify(p.endpoints);
      const seen = pools.get(p.id);
      if (seen !== undefined && seen !== endpoints) {
        throw bad(`invalid routing table: pool ${p.id} appears twice with different endpoints`);
      }
      pools.set(p.id, endpoints);
    }
  }
  return t;
}

export function parseDrainRequest(input: unknown): { pool: string; timeoutMs: number } {
  try {
    const r = record(input, '');
    const pool = text(r.pool, 'pool');
    if (typeof r.timeoutMs !== 'number' || !(r.timeoutMs >= 0))
      at('timeoutMs', 'expected a number of milliseconds');
    return { pool, timeoutMs: r.timeoutMs as number };
  } catch (err) {
    if (err instanceof Shape) throw bad(`invalid drain request: ${err.message}`);
    throw err;
  }
}
