import { describe, expect, it } from 'vitest';
import { Router } from '../../proxy/builtin/router.js';
import { checkTable, routingMapEntries } from '../../proxy/haproxy/routing-map.js';
import { buildView } from '../../proxy/nginx/render.js';
import type { RouteRule, RoutingTable } from '../../proxy/switch.js';
import { isTealError } from '../errors.js';
import { type Problem, parseConfig } from './load.js';
import { checkRouteHost, checkRoutePath } from './route.js';

const PROXIES = {
  builtin: '',
  nginx: 'proxy: { kind: nginx, config: /etc/nginx/conf.d/teal.conf }\n',
  haproxy: 'proxy: { kind: haproxy, socket: /run/haproxy/teal.sock }\n',
} as const;

const configWith = (proxy: string, route: string) =>
  `${proxy}services:\n  web:\n    command: [node, server.js]\n    routes:\n      - ${route}\n`;

function problemsOf(text: string): Problem[] {
  try {
    parseConfig(text, '/srv/app/teal.yml');
  } catch (err) {
    if (isTealError(err, 'TEAL_CONFIG_INVALID')) return (err.details as { problems: Problem[] }).problems;
    throw err;
  }
  return [];
}

/** Hosts and paths some data plane would refuse (or route differently), and the rule each breaks. */
const BAD_ROUTES: [field: 'host' | 'path', value: string, rule: string][] = [
  ['host', '', 'a host name, not an empty string'],
  ['host', 'a b.example', 'a host name of letters, digits, "-" and "."'],
  ['host', 'web_1.example', 'a host name of letters, digits, "-" and "."'],
  ['host', '-web.example', 'a label neither starts nor ends with "-"'],
  ['host', 'web;.example', 'a host name of letters, digits, "-" and "."'],
  ['host', 'web.example }', 'a host name of letters, digits, "-" and "."'],
  ['host', '*.example.com', 'a host name without wildcards'],
  ['host', 'example.com:8080', 'a host name without a port'],
  ['host', '[::1]', 'not an IPv6 address'],
  ['host', 'a..example', 'without empty labels'],
  ['host', `${'a'.repeat(64)}.example`, 'labels have at most 63 characters'],
  ['host', `${'abcdefghi.'.repeat(26)}example`, 'at most 253 characters'],
  ['path', 'api', 'a path prefix starting with "/"'],
  ['path', '/a b', 'a path prefix of letters, digits and ._~!*+,:@=&/-'],
  ['path', '/a;b', 'a path prefix of letters, digits and ._~!*+,:@=&/-'],
  ['path', "/a'b", 'a path prefix of letters, digits and ._~!*+,:@=&/-'],
  ['path', '/$host', 'a path prefix of letters, digits and ._~!*+,:@=&/-'],
  ['path', '/a?b=1', 'a path prefix of letters, digits and ._~!*+,:@=&/-'],
  ['path', '/caf\u00e9', 'a path prefix of letters, digits and ._~!*+,:@=&/-'],
  ['path', '/a%2Fb', 'a path prefix without percent-encoding'],
  ['path', '/a//b', 'without empty, "." or ".." segments'],
  ['path', '/a/../admin', 'without empty, "." or ".." segments'],
  ['path', '/./a', 'without empty, "." or ".." segments'],
  ['path', `/${'a'.repeat(1024)}`, 'a path prefix of at most 1024 characters'],
];

describe('route rules, the same for every proxy kind', () => {
  for (const [kind, proxy] of Object.entries(PROXIES)) {
    it.each(BAD_ROUTES)(
      `with proxy ${kind}, teal validate refuses route %s %j, naming the rule`,
      (field, value, rule) => {
        const route =
          field === 'host'
            ? `{ host: ${JSON.stringify(value)}, path: / }`
            : `{ path: ${JSON.stringify(value)} }`;
        const problems = problemsOf(configWith(proxy, route));
        expect(problems).toHaveLength(1);
        expect(problems[0]).toMatchObject({
          file: '/srv/app/teal.yml',
          line: proxy ? 6 : 5,
          path: `services.web.routes.0.${field}`,
        });
        expect(problems[0]!.message).toContain(rule);
      },
    );
  }

  it('normalises what every data plane treats as the same: case, a trailing dot, punycode, trailing slashes', () => {
    expect(checkRouteHost('WWW.Example.COM.')).toEqual({ ok: true, value: 'www.example.com' });
    expect(checkRouteHost('B\u00fccher.example')).toEqual({ ok: true, value: 'xn--bcher-kva.example' });
    expect(checkRouteHost('10.0.0.1')).toEqual({ ok: true, value: '10.0.0.1' });
    expect(checkRoutePath('/api//')).toEqual({ ok: true, value: '/api' });
    expect(checkRoutePath('/')).toEqual({ ok: true, value: '/' });
  });

  it('two services claiming one prefix written two ways are refused at validation', () => {
    const text = `services:\n  a:\n    command: [x]\n    routes: [{ path: /api/ }]\n  b:\n    command: [x]\n    routes: [{ path: /api }]\n`;
    expect(problemsOf(text)).toEqual([
      expect.objectContaining({ line: 7, message: 'path /api on any host is already routed to service a' }),
    ]);
  });

  it('the renderers refuse the same values with the same rule', () => {
    for (const [field, value, rule] of BAD_ROUTES) {
      const route: RouteRule = field === 'host' ? { host: value, path: '/' } : { path: value };
      const t = table([route]);
      expect(() => buildView(t, NGINX), `nginx ${field} ${value}`).toThrow(rule);
      expect(() => checkTable(t), `haproxy ${field} ${value}`).toThrow(rule);
    }
  });

  it('every route the schema accepts renders on nginx and haproxy and routes on the builtin data plane (a random sample)', () => {
    const random = prng(13);
    // Mostly characters the rules allow, sometimes one they do not, so both sides are sampled.
    const pick = (good: string, bad: string, n: number) =>
      Array.from({ length: n }, () => {
        const from = random() < 0.95 ? good : bad;
        return from[Math.floor(random() * from.length)];
      }).join('');
    let accepted = 0;
    for (let i = 0; i < 600; i++) {
      const host = pick('abcXYZ019-.', '_*:[]\u00fc ;', 1 + Math.floor(random() * 12));
      const path = `/${pick('abZ09._~!*+,:@=&/-', "%;$()' ?#\u00e9", Math.floor(random() * 14))}`;
      const text = configWith('', `{ host: ${JSON.stringify(host)}, path: ${JSON.stringify(path)} }`);
      let routes: RouteRule[];
      try {
        routes = parseConfig(text, '/srv/app/teal.yml').config.services.web!.routes;
      } catch (err) {
        if (isTealError(err, 'TEAL_CONFIG_INVALID')) continue;
        throw err;
      }
      accepted++;
      const t = table(routes);
      expect(() => buildView(t, NGINX), `nginx: ${JSON.stringify(routes)}`).not.toThrow();
      expect(() => checkTable(t), `haproxy: ${JSON.stringify(routes)}`).not.toThrow();
      expect(routingMapEntries(t, () => 'lane1').length).toBeGreaterThan(1);
      const router = new Router([{ ...routes[0]!, target: 'web' }]);
      expect(router.match(`${routes[0]!.host}:8080`, `${routes[0]!.path}?q=1`), JSON.stringify(routes)).toBe(
        'web',
      );
    }
    // The sample must exercise both sides of the rules.
    expect(accepted).toBeGreaterThan(30);
    expect(accepted).toBeLessThan(570);
  });
});

const NGINX = { listen: '127.0.0.1:8080', accessLog: '/var/log/teal.log', stateDir: '/srv/.teal' };

function table(routes: RouteRule[]): RoutingTable {
  return {
    revision: 1,
    services: [
      {
        service: 'web',
        routes,
        live: {
          id: 'web/blue/r1',
          service: 'web',
          slot: 'blue',
          release: 1,
          version: 'v1',
          endpoints: [{ host: '127.0.0.1', port: 9001 }],
        },
        preview: null,
      },
    ],
  };
}

/** A small deterministic generator (mulberry32), so a failure names a reproducible sample. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
