import { z } from 'zod';
import { TealError } from '../../core/errors.js';
import type { RoutingTable } from '../switch.js';
import { hostOf, normalizePrefix } from './router.js';

/**
 * The admin API's input, checked before anything changes: a bad table is refused whole (400) and
 * the data plane keeps serving the one it had.
 */

const endpoint = z.object({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
});

const pool = z.object({
  id: z.string().min(1),
  service: z.string().min(1),
  slot: z.enum(['blue', 'green']),
  release: z.number().int().min(0),
  version: z.string(),
  endpoints: z.array(endpoint).min(1, { error: 'a pool needs at least one endpoint' }),
});

const route = z.object({
  host: z.string().min(1).optional(),
  path: z.string().startsWith('/', { error: 'a route path starts with /' }),
});

const table = z.object({
  revision: z.number().int().min(0),
  services: z.array(
    z.object({
      service: z.string().min(1),
      routes: z.array(route),
      live: pool.nullable(),
      preview: pool.nullable(),
    }),
  ),
});

function problemsOf(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(table)'}: ${i.message}`).join('; ');
}

function bad(message: string): TealError {
  return new TealError('TEAL_BAD_REQUEST', message);
}

/** Checks a routing table's shape and that it is unambiguous; throws TEAL_BAD_REQUEST naming the problem. */
export function parseTable(input: unknown): RoutingTable {
  const parsed = table.safeParse(input);
  if (!parsed.success) throw bad(`invalid routing table: ${problemsOf(parsed.error)}`);
  const t = parsed.data as RoutingTable;
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

const drainRequest = z.object({
  pool: z.string().min(1),
  timeoutMs: z.number().min(0),
});

export function parseDrainRequest(input: unknown): { pool: string; timeoutMs: number } {
  const parsed = drainRequest.safeParse(input);
  if (!parsed.success) throw bad(`invalid drain request: ${problemsOf(parsed.error)}`);
  return parsed.data;
}
