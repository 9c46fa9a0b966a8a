import { describe, expect, it } from 'vitest';
import { isTealError } from '../../core/errors.js';
import type { Pool, RoutingTable, ServiceRoutes } from '../switch.js';
import {
  checkTable,
  type MapEntry,
  mapFileText,
  routeHost,
  routePrefix,
  routingMapEntries,
} from './routing-map.js';

const pool = (service: string, slot: 'blue' | 'green', release: number, port = 9000 + release): Pool => ({
  id: `${service}/${slot}/r${release}`,
  service,
  slot,
  release,
  version: `v${release}`,
  endpoints: [{ host: '127.0.0.1', port }],
});

const svc = (
  service: string,
  routes: ServiceRoutes['routes'],
  live: Pool | null = pool(service, 'blue', 1),
) => ({
  service,
  routes,
  live,
  preview: null,
});

/** Each pool's lane backend, as the switch would name it: by order of appearance. */
function lanes(): (id: string) => string {
  const seen: string[] = [];
  return (id) => {
    if (!seen.includes(id)) seen.push(id);
    return `teal_lane_${seen.indexOf(id)}`;
  };
}

/** What the base config's frontend does with the map, step by step, for one request. */
function route(entries: MapEntry[], hostHeader: string, path: string, slot?: string): string {
  const exact = (key: string) => entries.find((e) => e.key === key)?.value;
  const longest = (key: string) =>
    entries
      .filter((e) => e.key.startsWith('R') && key.startsWith(e.key))
      .sort((a, b) => b.key.length - a.key.length)[0]?.value;
  if (exact('T') === undefined) return '503';
  const host = hostHeader
    .toLowerCase()
    .replace(/:[0-9]*$/, '')
    .replace(/[.]$/, '');
  const service = longest(`R${host}${path}/`) ?? longest(`R*${path}/`);
  if (service === undefined) return '404';
  const lane = slot === undefined ? exact(`L${service}`) : exact(`P${service}/${slot.toLowerCase()}`);
  return lane ?? (slot === undefined ? '503' : '404');
}

describe('routingMapEntries', () => {
  it('writes the revision, the routes, the live lane and each slot of a service', () => {
    const table: RoutingTable = {
      revision: 7,
      services: [
        {
          service: 'web',
          routes: [{ path: '/' }],
          live: pool('web', 'blue', 1),
          preview: pool('web', 'green', 2),
        },
      ],
    };
    expect(routingMapEntries(table, lanes())).toEqual([
      { key: 'T', value: '7' },
      { key: 'R*/', value: 'web' },
      { key: 'Lweb', value: 'teal_lane_0' },
      { key: 'Pweb/green', value: 'teal_lane_1' },
      { key: 'Pweb/blue', value: 'teal_lane_0' },
    ]);
  });

  it('routes by host and the longest path prefix as the builtin router does', () => {
    const table: RoutingTable = {
      revision: 1,
      services: [
        svc('web', [{ path: '/' }]),
        svc('api', [{ path: '/api/' }]),
        svc('admin', [{ host: 'Admin.Test.', path: '/' }]),
        svc('docs', [{ host: 'admin.test', path: '/docs' }]),
      ],
    };
    const entries = routingMapEntries(table, lanes());
    const at = (host: string, path: string) => route(entries, host, path);
    expect(at('x.test', '/')).toBe('teal_lane_0');
    expect(at('x.test', '/api')).toBe('teal_lane_1');
    expect(at('x.test', '/api/users')).toBe('teal_lane_1');
    expect(at('x.test', '/apix')).toBe('teal_lane_0');
    expect(at('admin.test', '/')).toBe('teal_lane_2');
    expect(at('ADMIN.test:8080', '/settings')).toBe('teal_lane_2');
    expect(at('admin.test', '/api/x')).toBe('teal_lane_1');
    expect(at('admin.test', '/docs/a')).toBe('teal_lane_3');
    expect(at('other.test', '/docs/a')).toBe('teal_lane_0');
  });

  it('answers 404 without a route, 503 without a live pool, 404 for a slot with nothing in it', () => {
    const table: RoutingTable = { revision: 1, services: [svc('api', [{ path: '/api' }], null)] };
    const entries = routingMapEntries(table, lanes());
    expect(route(entries, 'x', '/api/x')).toBe('503');
    expect(route(entries, 'x', '/elsewhere')).toBe('404');
    expect(route(entries, 'x', '/api', 'green')).toBe('404');
    expect(route([], 'x', '/api')).toBe('503');
  });

  it('writes the map file haproxy loads at start as key-value lines', () => {
    expect(
      mapFileText([
        { key: 'T', value: '3' },
        { key: 'R*/', value: 'web' },
      ]),
    ).toBe('T 3\nR*/ web\n');
  });
});

describe('route normalisation', () => {
  it('ends a prefix key in one slash', () => {
    expect(routePrefix('/', 'p')).toBe('/');
    expect(routePrefix('/api', 'p')).toBe('/api/');
    expect(routePrefix('/api//', 'p')).toBe('/api/');
  });

  it('takes a host without case or trailing dot; a port or an IPv6 literal breaks the rules every kind shares', () => {
    expect(routeHost('Admin.Test', 'h')).toBe('admin.test');
    expect(routeHost('example.com.', 'h')).toBe('example.com');
    expect(() => routeHost('Admin.Test:8080', 'h')).toThrow(/expected a host name without a port/);
    expect(() => routeHost('[::1]', 'h')).toThrow(/not an IPv6 address/);
  });
});

describe('checkTable', () => {
  const good = (): RoutingTable => ({ revision: 1, services: [svc('web', [{ path: '/' }])] });

  it('accepts a well-formed table', () => {
    expect(() => checkTable(good())).not.toThrow();
  });

  it.each([
    ['a service name with a space', (t: RoutingTable) => (t.services[0]!.service = 'my web')],
    ['a path with a command separator', (t: RoutingTable) => (t.services[0]!.routes = [{ path: '/a;b' }])],
    ['a host with a space', (t: RoutingTable) => (t.services[0]!.routes = [{ host: 'a b', path: '/' }])],
    ['a host name as endpoint', (t: RoutingTable) => (t.services[0]!.live!.endpoints[0]!.host = 'localhost')],
    ['no endpoints', (t: RoutingTable) => (t.services[0]!.live!.endpoints = [])],
    ['port 0', (t: RoutingTable) => (t.services[0]!.live!.endpoints[0]!.port = 0)],
    ['a negative revision', (t: RoutingTable) => (t.revision = -1)],
    ['two services on one route', (t: RoutingTable) => t.services.push(svc('other', [{ path: '/' }]))],
    [
      'one pool id with two sets of endpoints',
      (t: RoutingTable) => (t.services[0]!.preview = { ...pool('web', 'blue', 1, 1234) }),
    ],
  ])('refuses %s, naming the field', (_what, spoil) => {
    const table = good();
    spoil(table);
    let err: unknown;
    try {
      checkTable(table);
    } catch (e) {
      err = e;
    }
    expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
    expect((err as Error).message).toMatch(/services\[\d\]|revision/);
  });
});
