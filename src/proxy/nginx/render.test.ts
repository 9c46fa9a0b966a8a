import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isTealError } from '../../core/errors.js';
import { packageRoot } from '../../paths.js';
import type { RoutingTable } from '../switch.js';
import { DEFAULT_TEMPLATE } from './default-template.js';
import { buildView, renderTemplate } from './render.js';

const options = { listen: '127.0.0.1:8080', accessLog: '/var/log/teal.log', stateDir: '/srv/.teal' };
const pool = (service: string, slot: 'blue' | 'green', release: number, port: number) => ({
  id: `${service}/${slot}/r${release}`,
  service,
  slot,
  release,
  version: `v${release}`,
  endpoints: [{ host: '127.0.0.1', port }],
});

describe('nginx rendering', () => {
  it('docs/nginx.md shows the default template exactly as teal ships it', () => {
    const doc = readFileSync(path.join(packageRoot(), 'docs/nginx.md'), 'utf8');
    expect(doc).toContain(`\`\`\`mustache\n${DEFAULT_TEMPLATE}\`\`\``);
  });

  it('gives the template a server per host, with locations that match on segment boundaries', () => {
    const table: RoutingTable = {
      revision: 9,
      services: [
        { service: 'web', routes: [{ path: '/' }], live: pool('web', 'blue', 1, 9001), preview: null },
        {
          service: 'api',
          routes: [{ path: '/api/' }, { host: 'Admin.Test.', path: '/' }],
          live: pool('api', 'green', 4, 9002),
          preview: pool('api', 'blue', 5, 9003),
        },
      ],
    };
    const view = buildView(table, options);
    expect(
      view.servers.map((s) => [s.serverName, s.locations.map((l) => `${l.match} ${l.service}`)]),
    ).toEqual([
      ['_', ['/ web', '= /api api', '/api/ api']],
      ['admin.test', ['/ api', '= /api api', '/api/ api']],
    ]);
    expect(view.services[1]).toMatchObject({
      variable: '$teal_api',
      liveTarget: 'teal.api.green.r4',
      slots: [
        { slot: 'blue', target: 'teal.api.blue.r5' },
        { slot: 'green', target: 'teal.api.green.r4' },
      ],
    });
    const text = renderTemplate(DEFAULT_TEMPLATE, view, 'default');
    expect(text).toContain('upstream teal.api.blue.r5 {\n    server 127.0.0.1:9003;');
    expect(text).toContain('teal.api.green.r4 api/green/r4;');
    // The revision is not printed: the same routes at a newer revision render the same text.
    expect(renderTemplate(DEFAULT_TEMPLATE, buildView({ ...table, revision: 10 }, options), 'default')).toBe(
      text,
    );
  });

  it('answers 503 for a service with nothing live and 404 for an empty slot, and 404 off every route', () => {
    const view = buildView(
      { revision: 1, services: [{ service: 'api', routes: [{ path: '/api' }], live: null, preview: null }] },
      options,
    );
    expect(view.services[0]).toMatchObject({
      liveTarget: '-503',
      slots: [{ target: '-404' }, { target: '-404' }],
    });
    expect(view.servers[0]!.notFound).toBe(true);
  });

  it('prints trustedProxies in their normal form into the geo block, and refuses anything else', () => {
    const table: RoutingTable = { revision: 1, services: [] };
    const view = buildView(table, { ...options, trustedProxies: ['10.1.2.3/8', '::1'] });
    expect(view.trustedProxies).toEqual(['10.0.0.0/8', '::1/128']);
    const text = renderTemplate(DEFAULT_TEMPLATE, view, 'default');
    expect(text).toContain(
      'geo $remote_addr $teal_trusted {\n    default 0;\n    10.0.0.0/8 1;\n    ::1/128 1;\n}',
    );
    let err: unknown;
    try {
      buildView(table, { ...options, trustedProxies: ['10.0.0.0/8; allow all'] });
    } catch (e) {
      err = e;
    }
    expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
    expect((err as Error).message).toContain('trustedProxies.0');
  });

  it('refuses values that would be nginx syntax, and two services on one route', () => {
    const refused = (table: RoutingTable) => {
      try {
        buildView(table, options);
      } catch (err) {
        expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
        return (err as Error).message;
      }
      throw new Error('expected a refusal');
    };
    const one = (patch: Record<string, unknown>): RoutingTable => ({
      revision: 1,
      services: [
        {
          service: 'web',
          routes: [{ path: '/' }],
          live: pool('web', 'blue', 1, 9001),
          preview: null,
          ...patch,
        },
      ],
    });
    expect(refused(one({ routes: [{ path: '/a;b' }] }))).toContain('services.0.routes.0.path "/a;b"');
    expect(refused(one({ routes: [{ host: 'x y', path: '/' }] }))).toContain('services.0.routes.0.host');
    expect(refused(one({ live: { ...pool('web', 'blue', 1, 9001), version: 'v1"; }' } }))).toContain(
      'services.0.live.version',
    );
    expect(
      refused({
        revision: 1,
        services: [
          { service: 'a', routes: [{ path: '/x' }], live: null, preview: null },
          { service: 'b', routes: [{ path: '/x/' }], live: null, preview: null },
        ],
      }),
    ).toContain('route /x is claimed by both a and b');
  });
});
