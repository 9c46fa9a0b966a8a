import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  headerValues,
  RawClient,
  type RawResponse,
  type RawUpstream,
  startRawUpstream,
  startTestDataPlane,
} from '../src/proxy/builtin/harness.js';
import { BuiltinSwitch } from '../src/proxy/builtin/switch.js';
import { prepareStateDir, renderBaseConfig } from '../src/proxy/haproxy/base-config.js';
import { HaproxySwitch } from '../src/proxy/haproxy/switch.js';
import { NginxSwitch } from '../src/proxy/nginx/switch.js';
import { poolFor, type Upstream, webTable } from '../src/proxy/switch.contract.js';
import type { TrafficSwitch } from '../src/proxy/switch.js';
import { freePort } from '../src/runtimes/ports.js';
import { haveBinary } from '../src/testing/binaries.js';
import { startHaproxyConfig } from '../src/testing/haproxy.js';
import { startNginx } from '../src/testing/nginx.js';

/**
 * Request smuggling and header spoofing, driven at the public port with raw sockets, through every
 * proxy kind teal configures: the builtin data plane, and nginx and haproxy running what teal's own
 * renderers produce. Every assertion is on what a raw upstream received (how many request heads,
 * their header lines, each body as the upstream framed it), not only on what the client was told:
 * one client request must be exactly one upstream request, with its framing and body intact.
 */

/** Connections from here are "the internet"; from TRUSTED, a proxy in front of teal. */
const CLIENT = '127.0.0.1';
const TRUSTED = '127.0.0.2';

interface Plane {
  url: string;
  sw: TrafficSwitch;
  close(): Promise<void>;
}

interface Kind {
  kind: 'builtin' | 'nginx' | 'haproxy';
  available: boolean;
  /** With these peers trusted to forward (`proxy.trustedProxies`). */
  start(trustedProxies: string[]): Promise<Plane>;
}

const KINDS: Kind[] = [
  {
    kind: 'builtin',
    available: true,
    async start(trustedProxies) {
      const dp = await startTestDataPlane('127.0.0.1:0', { trustedProxies });
      return { url: dp.url, sw: new BuiltinSwitch({ adminSocket: dp.adminSocket }), close: () => dp.stop() };
    },
  },
  {
    kind: 'nginx',
    available: haveBinary('nginx'),
    async start(trustedProxies) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-smug-nginx-'));
      const nginx = await startNginx(path.join(dir, 'nginx'), `include ${dir}/nginx/teal*.conf;`);
      const port = await freePort('127.0.0.1');
      const sw = await NginxSwitch.open({
        configFile: path.join(dir, 'nginx', 'teal.conf'),
        check: nginx.commands.check,
        reload: nginx.commands.reload,
        pidFile: nginx.pidFile,
        listen: `127.0.0.1:${port}`,
        stateDir: path.join(dir, 'state'),
        accessLog: path.join(dir, 'access.log'),
        trustedProxies,
      });
      return {
        url: `http://127.0.0.1:${port}`,
        sw,
        close: async () => {
          await nginx.stop();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    kind: 'haproxy',
    available: haveBinary('haproxy'),
    async start(trustedProxies) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-smug-haproxy-'));
      const stateDir = path.join(dir, 'state');
      await prepareStateDir(stateDir);
      const listen = `127.0.0.1:${await freePort('127.0.0.1')}`;
      const haproxy = await startHaproxyConfig(path.join(dir, 'haproxy'), (socket) =>
        renderBaseConfig({ listen, socket, stateDir, lanes: 2, serversPerLane: 2, trustedProxies }),
      );
      return {
        url: `http://${listen}`,
        sw: new HaproxySwitch({ socket: haproxy.socket, stateDir }),
        close: async () => {
          await haproxy.stop();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
];

if (process.env.CI) {
  for (const k of KINDS)
    if (!k.available) throw new Error(`${k.kind} is required under CI: run scripts/install-test-deps.sh`);
}

/** The request line of an upstream head. */
const requestLine = (head: string) => head.split('\r\n')[0]!;

/** Header lines of a head, lower-cased names, in order, without the request line. */
function headerLines(head: string): [string, string][] {
  return head
    .split('\r\n')
    .slice(1)
    .map((l): [string, string] => {
      const colon = l.indexOf(':');
      return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()];
    });
}

/** Every value of `name` in a head, several header lines joined as one list (RFC 9110 5.3). */
function joined(head: string, name: string): string | undefined {
  const values = headerLines(head)
    .filter(([n]) => n === name)
    .map(([, v]) => v);
  return values.length === 0 ? undefined : values.join(', ');
}

/**
 * The upstream answers each head at once with its request line as the body, so a client that got
 * another request's answer (response poisoning) sees it. `/respond/<name>` answers list `<name>`
 * in their own Connection header (the response direction).
 */
function answerFor(head: string): string {
  const line = requestLine(head);
  const listedName = /^\w+ \/respond\/([a-z-]+)/.exec(line)?.[1];
  if (listedName === 'transfer-encoding')
    return `HTTP/1.1 200 OK\r\nConnection: ${listedName}\r\nTransfer-Encoding: chunked\r\n\r\n${line.length.toString(16)}\r\n${line}\r\n0\r\n\r\n`;
  if (listedName !== undefined)
    return `HTTP/1.1 200 OK\r\nConnection: ${listedName}\r\nContent-Length: ${line.length}\r\nX-Request-Id: up\r\nContent-Type: text/plain\r\nSet-Cookie: s=1\r\n\r\n${line}`;
  return `HTTP/1.1 200 OK\r\nContent-Length: ${line.length}\r\n\r\n${line}`;
}

for (const k of KINDS) {
  describe.skipIf(!k.available)(`request smuggling at the public port: ${k.kind}`, () => {
    let plane: Plane;
    let up: RawUpstream;
    const clients: RawClient[] = [];

    beforeAll(async () => {
      up = await startRawUpstream({ respond: answerFor });
      plane = await k.start([TRUSTED]);
      await plane.sw.apply(webTable(1, poolFor('web', 'blue', 1, [{ port: up.port } as Upstream])));
    }, 60_000);
    afterAll(async () => {
      for (const c of clients) c.destroy();
      await plane?.close();
      await up?.close();
    });
    beforeEach(() => {
      up.received = '';
      up.heads = [];
      up.bodies = [];
    });

    async function connect(from = CLIENT): Promise<RawClient> {
      const c = await RawClient.connect(plane.url, from);
      clients.push(c);
      return c;
    }

    /** Sends `bytes` on `c` and waits for `n` more final answers; returns the newest `n`. */
    async function exchange(c: RawClient, bytes: string, n = 1): Promise<RawResponse[]> {
      const before = c.responses().filter((r) => r.status >= 200).length;
      c.send(bytes);
      const all = await c.finalResponses(before + n);
      return all.slice(before);
    }

    /** Waits a little for bytes that should not come, then returns the upstream heads' request lines. */
    async function settledLines(): Promise<string[]> {
      await sleep(100);
      return up.heads.map(requestLine);
    }

    describe('Connection options naming headers that frame, route or are set by teal', () => {
      const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: web.test\r\nX-Evil: 1\r\n\r\n';
      /** Every header a listed name could strip, so the upstream shows if one was. */
      const spoofable =
        'X-Request-Id: client-chosen-id\r\nCookie: a=1\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\n' +
        'X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n';
      const names = [
        'content-length',
        'transfer-encoding',
        'host',
        'te',
        'trailer',
        'x-forwarded-for',
        'x-forwarded-proto',
        'x-forwarded-host',
        'x-forwarded-port',
        'forwarded',
        'x-real-ip',
        'x-request-id',
        'x-teal-slot',
        'cookie',
      ];
      /** The request `connection` lines stand for, its body carrying a request of its own. */
      const post = (target: string, connection: string, chunked: boolean) =>
        `POST ${target} HTTP/1.1\r\nHost: web.test\r\n${connection}${spoofable}` +
        (chunked
          ? `Transfer-Encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`
          : `Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`);
      /** Mixed case, as a client may send it: `cOnTeNt-LeNgTh`. */
      const mixed = (name: string) =>
        [...name].map((ch, i) => (i % 2 === 1 ? ch.toUpperCase() : ch)).join('');

      for (const name of names) {
        it(`ignores ${name} listed in Connection: one upstream request per client request, framing and body intact, every answer its own`, async () => {
          const chunked = name === 'transfer-encoding' || name === 'trailer';
          // What the upstream sees of this request when Connection lists nothing.
          const c0 = await connect();
          const [base] = await exchange(c0, post('/base', '', chunked));
          expect(base!.body.toString()).toBe('POST /base HTTP/1.1');
          expect(await settledLines()).toEqual(['POST /base HTTP/1.1']);
          const baseline = headerLines(up.heads[0]!).filter(([n]) => n !== 'connection');
          expect(up.bodies).toEqual([smuggled]);

          const variants = [
            `Connection: ${name}\r\n`,
            `Connection: keep-alive, ${name.toUpperCase()}\r\n`,
            `Connection: keep-alive\r\nConnection: x-other,  ${mixed(name)} ,\r\n`,
          ];
          const c = await connect();
          const expected: string[] = [];
          for (const [i, connection] of variants.entries()) {
            up.heads = [];
            up.bodies = [];
            // The listed request, then a follow-up on the same kept-alive connection.
            const answers = await exchange(
              c,
              `${post(`/v${i}`, connection, chunked)}GET /v${i}/next HTTP/1.1\r\nHost: web.test\r\n\r\n`,
              2,
            );
            expect(answers.map((a) => a.body.toString())).toEqual([
              `POST /v${i} HTTP/1.1`,
              `GET /v${i}/next HTTP/1.1`,
            ]);
            expect(await settledLines()).toEqual([`POST /v${i} HTTP/1.1`, `GET /v${i}/next HTTP/1.1`]);
            expect(up.bodies[0]).toBe(smuggled);
            // Exactly the header lines the unlisted request had: nothing stripped, nothing added.
            const lines = headerLines(up.heads[0]!).filter(([n]) => n !== 'connection');
            expect(lines).toEqual(baseline);
            expected.push(`POST /v${i} HTTP/1.1`, `GET /v${i}/next HTTP/1.1`);
          }
          // Another client, on the upstream connections the first one used, gets its own answer.
          const other = await connect();
          const [mine] = await exchange(other, 'GET /other HTTP/1.1\r\nHost: web.test\r\n\r\n');
          expect(mine!.body.toString()).toBe('GET /other HTTP/1.1');
          expect(c.ended || c.closed).toBe(false);
        });
      }

      for (const name of [
        'content-length',
        'transfer-encoding',
        'x-request-id',
        'content-type',
        'set-cookie',
      ]) {
        it(`keeps a response's ${name} when the upstream lists it in Connection, and the connection's next answer is its own`, async () => {
          const c = await connect();
          const answers = await exchange(
            c,
            `GET /respond/${name} HTTP/1.1\r\nHost: web.test\r\n\r\nGET /after HTTP/1.1\r\nHost: web.test\r\n\r\n`,
            2,
          );
          expect(answers[0]!.status).toBe(200);
          expect(answers[0]!.body.toString()).toBe(`GET /respond/${name} HTTP/1.1`);
          if (name === 'content-length') {
            // The length the response was framed by reaches the client, not a re-chunked body.
            expect(headerValues(answers[0]!, 'content-length')).toEqual([String(answers[0]!.body.length)]);
            expect(answers[0]!.chunked).toBe(false);
          }
          if (name === 'content-type')
            expect(headerValues(answers[0]!, 'content-type')).toEqual(['text/plain']);
          if (name === 'set-cookie') expect(headerValues(answers[0]!, 'set-cookie')).toEqual(['s=1']);
          if (name === 'x-request-id') expect(headerValues(answers[0]!, 'x-request-id')).toHaveLength(1);
          expect(answers[1]!.body.toString()).toBe('GET /after HTTP/1.1');
          expect(await settledLines()).toEqual([`GET /respond/${name} HTTP/1.1`, 'GET /after HTTP/1.1']);
        });
      }
    });

    describe('forwarded headers', () => {
      const spoofed =
        'X-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7, 8.8.8.8\r\nX-Forwarded-Proto: https\r\n' +
        'X-Forwarded-Host: evil.test\r\nX-REAL-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https\r\n';

      it('replaces what a client outside trustedProxies says with what teal saw, on every request of the connection', async () => {
        const c = await connect(CLIENT);
        await exchange(
          c,
          `GET /one HTTP/1.1\r\nHost: web.test\r\n${spoofed}\r\nGET /two HTTP/1.1\r\nHost: web.test\r\n\r\n`,
          2,
        );
        expect(await settledLines()).toEqual(['GET /one HTTP/1.1', 'GET /two HTTP/1.1']);
        for (const head of up.heads) {
          expect(joined(head, 'x-forwarded-for'), head).toBe(CLIENT);
          expect(joined(head, 'x-real-ip'), head).toBe(CLIENT);
          expect(joined(head, 'x-forwarded-proto'), head).toBe('http');
          expect(joined(head, 'x-forwarded-host'), head).toBe('web.test');
          expect(joined(head, 'forwarded'), head).toBeUndefined();
        }
      });

      it('keeps and appends to what a peer in trustedProxies says', async () => {
        const c = await connect(TRUSTED);
        await exchange(
          c,
          'GET /via HTTP/1.1\r\nHost: web.test\r\nX-Forwarded-For: 203.0.113.9\r\nx-forwarded-for: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n' +
            'X-Forwarded-Host: shop.test\r\nX-Real-IP: 203.0.113.9\r\nForwarded: for=203.0.113.9;proto=https\r\n\r\n',
        );
        expect(await settledLines()).toEqual(['GET /via HTTP/1.1']);
        const head = up.heads[0]!;
        expect(joined(head, 'x-forwarded-for'), head).toBe(`203.0.113.9, 10.0.0.5, ${TRUSTED}`);
        expect(joined(head, 'x-real-ip'), head).toBe('203.0.113.9');
        expect(joined(head, 'x-forwarded-proto'), head).toBe('https');
        expect(joined(head, 'x-forwarded-host'), head).toBe('shop.test');
        expect(joined(head, 'forwarded'), head).toBe('for=203.0.113.9;proto=https');
      });

      it('says what it saw for a trusted peer that sent no forwarded headers', async () => {
        const c = await connect(TRUSTED);
        await exchange(c, 'GET /direct HTTP/1.1\r\nHost: web.test\r\n\r\n');
        expect(await settledLines()).toEqual(['GET /direct HTTP/1.1']);
        const head = up.heads[0]!;
        expect(joined(head, 'x-forwarded-for'), head).toBe(TRUSTED);
        expect(joined(head, 'x-real-ip'), head).toBe(TRUSTED);
        expect(joined(head, 'x-forwarded-proto'), head).toBe('http');
        expect(joined(head, 'x-forwarded-host'), head).toBe('web.test');
      });
    });

    describe('ambiguous framing', () => {
      const hidden = 'GET /smuggled HTTP/1.1\r\nHost: web.test\r\n\r\n';
      const chunkedThenHidden = `0\r\n\r\n${hidden}`;
      const shapes: [string, string][] = [
        [
          'Content-Length with Transfer-Encoding',
          `POST /a HTTP/1.1\r\nHost: web.test\r\nContent-Length: ${chunkedThenHidden.length}\r\nTransfer-Encoding: chunked\r\n\r\n${chunkedThenHidden}`,
        ],
        [
          'Transfer-Encoding with Content-Length',
          `POST /a HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n${chunkedThenHidden}`,
        ],
        [
          'two different Content-Lengths',
          `POST /a HTTP/1.1\r\nHost: web.test\r\nContent-Length: 0\r\nContent-Length: ${hidden.length}\r\n\r\n${hidden}`,
        ],
        [
          'Transfer-Encoding folded onto a second line (obs-fold)',
          `POST /a HTTP/1.1\r\nHost: web.test\r\nContent-Length: ${chunkedThenHidden.length}\r\nTransfer-Encoding:\r\n chunked\r\n\r\n${chunkedThenHidden}`,
        ],
        [
          'a bare LF hiding Transfer-Encoding',
          `POST /a HTTP/1.1\r\nHost: web.test\r\nContent-Length: ${chunkedThenHidden.length}\nTransfer-Encoding: chunked\r\n\r\n${chunkedThenHidden}`,
        ],
        [
          'Transfer-Encoding in HTTP/1.0',
          `POST /a HTTP/1.0\r\nHost: web.test\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: ${chunkedThenHidden.length}\r\n\r\n${chunkedThenHidden}`,
        ],
        [
          'Transfer-Encoding: xchunked with Content-Length',
          `POST /a HTTP/1.1\r\nHost: web.test\r\nContent-Length: ${chunkedThenHidden.length}\r\nTransfer-Encoding: xchunked\r\n\r\n${chunkedThenHidden}`,
        ],
        [
          'a space before the colon of Transfer-Encoding',
          `POST /a HTTP/1.1\r\nHost: web.test\r\nContent-Length: ${chunkedThenHidden.length}\r\nTransfer-Encoding : chunked\r\n\r\n${chunkedThenHidden}`,
        ],
      ];

      for (const [what, bytes] of shapes) {
        it(`${what}: the upstream frames exactly the requests the client was answered for`, async () => {
          const c = await connect();
          c.send(bytes);
          // Whatever the proxy makes of it, it answers within this; then nothing more is coming.
          await c.waitForClose(2_000).catch(() => undefined);
          await sleep(100);
          const answers = c.responses().filter((r) => r.status >= 200);
          expect(answers.length, c.text).toBeGreaterThan(0);
          // Answers the upstream gave carry the request line it read; the proxy's own ones do not.
          const echoed = answers.map((a) => a.body.toString()).filter((b) => /^[A-Z]+ \//.test(b));
          expect(echoed).toEqual(up.heads.map(requestLine));
          // Each request the upstream read is framed as the proxy sent it: its whole body arrived.
          expect(up.bodies).toHaveLength(up.heads.length);
          // The hidden request never reaches the upstream as one of its own (as nginx, haproxy and
          // teal all refuse or close on these), nor inside an answer someone else gets.
          expect(up.heads.map(requestLine)).not.toContain('GET /smuggled HTTP/1.1');
        });
      }

      it('an absolute-form request target with another Host: refused, or the upstream gets the host the proxy routed by', async () => {
        const c = await connect();
        const [answer] = await exchange(
          c,
          'GET http://Other.Test:8080/abs?q=1 HTTP/1.1\r\nHost: web.test\r\n\r\n',
        );
        const lines = await settledLines();
        if (answer!.status === 400) {
          // haproxy refuses an authority that disagrees with Host; nothing went upstream.
          expect(lines).toEqual([]);
          return;
        }
        expect(answer!.status).toBe(200);
        expect(lines).toHaveLength(1);
        const head = up.heads[0]!;
        expect(requestLine(head)).toBe('GET /abs?q=1 HTTP/1.1');
        const hosts = headerLines(head).filter(([n]) => n === 'host');
        expect(hosts, head).toHaveLength(1);
        expect(hosts[0]![1].toLowerCase()).toBe('other.test:8080');
      });
    });
  });
}
