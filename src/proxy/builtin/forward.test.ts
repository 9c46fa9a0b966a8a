import { readFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Upstream } from '../switch.contract.js';
import { poolFor, request, webTable } from '../switch.contract.js';
import { RawClient, startTestDataPlane, type TestDataPlane } from './harness.js';
import { BuiltinSwitch } from './switch.js';

/** A node:http server for one test, closed afterwards. */
async function serve(handler: http.RequestListener): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Stands in for an Upstream where only the port matters. */
const at = (port: number) => ({ port }) as Upstream;

describe('the builtin data plane forwarding requests', () => {
  let dp: TestDataPlane;
  let sw: BuiltinSwitch;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    dp = await startTestDataPlane();
    sw = new BuiltinSwitch({ adminSocket: dp.adminSocket });
  });
  afterAll(async () => {
    await dp.stop();
  });
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });

  it('answers 503 naming the request id before any table is applied', async () => {
    const r = await request(`${dp.url}/`);
    expect(r.status).toBe(503);
    expect(r.body).toContain('no routing table');
    expect(r.body).toContain(`request ${r.headers['x-request-id']}`);
  });

  it('strips hop-by-hop headers both ways and sets X-Forwarded-*, X-Real-IP and a request id', async () => {
    const echo = await serve((req, res) => {
      res.setHeader('x-up-private', 'connection-scoped');
      res.setHeader('connection', 'keep-alive, x-up-private');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(req.headers));
    });
    closers.push(echo.close);
    await sw.apply(webTable(1, poolFor('web', 'blue', 1, [at(echo.port)])));
    const r = await request(`${dp.url}/echo`, {
      headers: {
        host: 'shop.test:8443',
        connection: 'keep-alive, x-private',
        'x-private': 'for the proxy only',
        'keep-alive': 'timeout=5',
        'proxy-connection': 'keep-alive',
        te: 'trailers',
        'x-teal-slot': 'blue',
        'x-forwarded-for': '10.1.2.3',
        'x-app': 'kept',
      },
    });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body) as Record<string, string>;
    for (const h of ['x-private', 'keep-alive', 'proxy-connection', 'te', 'x-teal-slot'])
      expect(seen).not.toHaveProperty(h);
    expect(seen).toMatchObject({
      host: 'shop.test:8443',
      'x-app': 'kept',
      // The client is not a trusted proxy: what it says it forwarded for is replaced.
      'x-forwarded-for': '127.0.0.1',
      'x-real-ip': '127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'shop.test:8443',
    });
    expect(seen['x-request-id']).toMatch(/^[0-9a-f]{12}-/);
    expect(r.headers['x-request-id']).toBe(seen['x-request-id']);
    expect(r.headers).not.toHaveProperty('x-up-private');

    const mine = await request(`${dp.url}/echo`, { headers: { 'x-request-id': 'trace-42' } });
    expect(JSON.parse(mine.body)['x-request-id']).toBe('trace-42');
    expect(mine.headers['x-request-id']).toBe('trace-42');
  });

  it('answers 502 naming only the request id when the upstream refuses, logs the detail, and counts it', async () => {
    const gone = await serve(() => undefined);
    await gone.close();
    const pool = poolFor('web', 'blue', 7, [at(gone.port)]);
    await sw.apply(webTable(2, pool));
    const r = await request(`${dp.url}/`);
    expect(r.status).toBe(502);
    // The public answer: the status, a sentence and the request id; nothing of the inside.
    expect(r.body).toBe(
      `502 Bad Gateway: the service failed before responding (request ${r.headers['x-request-id']})\n`,
    );
    for (const inside of ['ECONNREFUSED', pool.id, 'web', 'blue', String(gone.port), '127.0.0.1'])
      expect(r.body).not.toContain(inside);
    const stats = (await sw.stats()).pools.find((p) => p.pool === pool.id);
    expect(stats).toMatchObject({ requests: 1, upstreamErrors: 1, status: { '5xx': 1 } });

    // The data plane's log has one JSON line for it, with the request id the client was given;
    // the query string (which may carry secrets) stays out of it.
    const mine = await request(`${dp.url}/orders?token=secret`, { headers: { 'x-request-id': 'trace-502' } });
    expect(mine.status).toBe(502);
    const lines = (await readFile(dp.logFile, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const logged = lines.filter((l) => l.event === 'upstream_error');
    expect(logged.map((l) => l.requestId)).toEqual([r.headers['x-request-id'], 'trace-502']);
    expect(logged[1]).toMatchObject({
      method: 'GET',
      path: '/orders',
      service: 'web',
      slot: 'blue',
      pool: pool.id,
      upstream: `127.0.0.1:${gone.port}`,
      status: 502,
      code: 'ECONNREFUSED',
      message: 'failed before responding (ECONNREFUSED)',
    });
    expect(JSON.stringify(logged)).not.toContain('secret');
    // Requests that went well are not logged.
    expect(lines.filter((l) => l.requestId !== undefined)).toHaveLength(2);
  });

  it('answers a websocket upgrade the upstream refuses with 502 naming only the request id, and logs the detail', async () => {
    const gone = await serve(() => undefined);
    await gone.close();
    const pool = poolFor('web', 'blue', 8, [at(gone.port)]);
    await sw.apply(webTable(3, pool));
    const c = await RawClient.connect(dp.url);
    c.send(
      'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Request-Id: ws-502\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    await c.waitForClose();
    c.destroy();
    const [answer] = c.responses();
    expect(answer!.status).toBe(502);
    expect(answer!.body.toString()).toBe(
      '502 Bad Gateway: the service failed before responding (request ws-502)\n',
    );
    const logged = (await readFile(dp.logFile, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.event === 'upstream_error' && l.requestId === 'ws-502');
    expect(logged).toMatchObject([
      { path: '/ws', pool: pool.id, upstream: `127.0.0.1:${gone.port}`, status: 502, code: 'ECONNREFUSED' },
    ]);
  });

  it('retries a request whose reused keep-alive socket the upstream just closed', async () => {
    // A bare HTTP/1.1 upstream that closes every connection after 3 ms idle, without the
    // Keep-Alive hint Node's agent would heed: the race nginx-fronted and Go apps present.
    let connections = 0;
    const upstream = net.createServer((sock) => {
      connections++;
      let buffered = '';
      // Like real servers, the idle timeout runs between requests, not before the first one.
      let idle: NodeJS.Timeout | undefined;
      sock.on('error', () => sock.destroy());
      sock.on('data', (d: Buffer) => {
        buffered += d.toString();
        for (let i = buffered.indexOf('\r\n\r\n'); i >= 0; i = buffered.indexOf('\r\n\r\n')) {
          buffered = buffered.slice(i + 4);
          clearTimeout(idle);
          sock.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok');
          idle = setTimeout(() => sock.destroy(), 3);
        }
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise((resolve) => upstream.close(() => resolve())));
    await sw.apply(
      webTable(3, poolFor('web', 'blue', 3, [at((upstream.address() as net.AddressInfo).port)])),
    );

    const failures: string[] = [];
    let sent = 0;
    const worker = async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      for (let i = 0; i < 60; i++) {
        await sleep(Math.random() * 6);
        sent++;
        await new Promise<void>((resolve) => {
          http
            .get(`${dp.url}/`, { agent }, (res) => {
              let body = '';
              res.on('data', (c: Buffer) => {
                body += c.toString();
              });
              res.on('end', () => {
                if (res.statusCode !== 200) failures.push(`${res.statusCode}: ${body}`);
                resolve();
              });
            })
            .on('error', (err) => {
              failures.push(err.message);
              resolve();
            });
        });
      }
      agent.destroy();
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    expect(failures).toEqual([]);
    expect(sent).toBe(240);
    expect(connections).toBeGreaterThan(20); // the upstream really did close idle sockets
  });

  it('passes server-sent events through as they are written', async () => {
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let ended = false;
    const sse = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: one\n\n');
      released.then(() => {
        ended = true;
        res.end('data: two\n\n');
      });
    });
    closers.push(sse.close);
    const pool = poolFor('web', 'blue', 4, [at(sse.port)]);
    await sw.apply(webTable(4, pool));

    const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get(`${dp.url}/events`, { agent: false }, resolve).on('error', reject),
    );
    expect(res.headers['content-type']).toBe('text/event-stream');
    const first = await new Promise<string>((resolve) =>
      res.once('data', (c: Buffer) => resolve(c.toString())),
    );
    expect(first).toBe('data: one\n\n');
    expect(ended).toBe(false);
    expect((await sw.stats()).pools.find((p) => p.pool === pool.id)?.openStreams).toBe(1);

    let rest = '';
    res.on('data', (c: Buffer) => {
      rest += c.toString();
    });
    const done = new Promise((resolve) => res.on('end', resolve));
    release();
    await done;
    expect(rest).toBe('data: two\n\n');
    expect((await sw.stats()).pools.find((p) => p.pool === pool.id)).toMatchObject({
      openStreams: 0,
      requests: 1,
    });
  });
});
