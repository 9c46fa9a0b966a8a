import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { poolFor, request, type Upstream, waitFor, webTable } from '../switch.contract.js';
import type { Pool } from '../switch.js';
import {
  headerValues,
  RawClient,
  type RawResponse,
  residentBytes,
  startRawUpstream,
  startTestDataPlane,
  startUnacceptingListener,
  type TestDataPlane,
} from './harness.js';
import { BuiltinSwitch } from './switch.js';

/** Stands in for an Upstream where only the port matters. */
const at = (port: number) => ({ port }) as Upstream;

interface Served {
  port: number;
  server: http.Server;
  close(): Promise<void>;
}

const MB = 1024 * 1024;

/** Headers of a raw head as a name -> value map (lower-cased names; a repeated name keeps the last). */
function headMap(head: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    out[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return out;
}

function headerNames(res: RawResponse): string[] {
  return res.headers.map(([n]) => n).sort();
}

/**
 * One data plane per describe block, the upstreams and clients of each test closed after it. Each
 * test routes `web` on `/` to a pool of its own (a fresh release number: a fresh pool).
 */
function planeFixture(settings: Parameters<typeof startTestDataPlane>[1] = {}) {
  const f = {
    dp: undefined as unknown as TestDataPlane,
    sw: undefined as unknown as BuiltinSwitch,
    revision: 0,
    closers: [] as (() => unknown)[],
    async serve(handler: http.RequestListener): Promise<Served> {
      const server = http.createServer(handler);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const served: Served = {
        port: (server.address() as net.AddressInfo).port,
        server,
        close: () => {
          server.closeAllConnections();
          return new Promise((resolve) => server.close(() => resolve()));
        },
      };
      f.closers.push(served.close);
      return served;
    },
    async raw(options: Parameters<typeof startRawUpstream>[0] = {}) {
      const up = await startRawUpstream(options);
      f.closers.push(up.close);
      return up;
    },
    async client(): Promise<RawClient> {
      const c = await RawClient.connect(f.dp.url);
      f.closers.push(() => c.destroy());
      return c;
    },
    /** Routes `web` to a new pool of these ports; returns the pool. */
    async route(...ports: number[]): Promise<Pool> {
      f.revision++;
      const pool = poolFor('web', 'blue', f.revision, ports.map(at));
      await f.sw.apply(webTable(f.revision, pool));
      return pool;
    },
  };
  beforeAll(async () => {
    f.dp = await startTestDataPlane('127.0.0.1:0', settings);
    f.sw = new BuiltinSwitch({ adminSocket: f.dp.adminSocket });
  });
  afterAll(async () => {
    await f.dp.stop();
  });
  afterEach(async () => {
    for (const c of f.closers.splice(0).reverse()) await c();
  });
  return f;
}

describe('the builtin data plane speaking HTTP/1.1', () => {
  const f = planeFixture();

  it('strips hop-by-hop headers both ways, appends the client to X-Forwarded-For and echoes the request id', async () => {
    const up = await f.raw({
      respond: () =>
        'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n' +
        'Connection: keep-alive, X-Up-Private\r\nKeep-Alive: timeout=5\r\nX-Up-Private: secret\r\n' +
        'Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\n' +
        'X-Request-Id: upstream-made\r\nX-App: passes\r\n\r\nok',
    });
    await f.route(up.port);
    const c = await f.client();
    c.send(
      'GET /h?q=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive, X-Private\r\nX-Private: for the proxy\r\n' +
        'Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Checksum\r\n' +
        'Upgrade: h2c\r\nX-Forwarded-For: 10.1.2.3\r\nX-App: kept\r\nAccept: */*\r\n\r\n',
    );
    const [first] = await c.finalResponses(1);
    expect(up.heads).toHaveLength(1);
    expect(up.heads[0]!.split('\r\n')[0]).toBe('GET /h?q=1 HTTP/1.1');
    expect(up.heads[0]!.split('\r\n')).toHaveLength(8); // the request line and the 7 below, once each
    const sent = headMap(up.heads[0]!);
    expect(sent).toEqual({
      host: 'shop.test',
      'x-app': 'kept',
      accept: '*/*',
      'x-forwarded-for': '10.1.2.3, 127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'shop.test',
      'x-request-id': expect.stringMatching(/^[0-9a-f]{12}-[0-9a-z]+$/),
    });
    expect(first!.status).toBe(200);
    expect(headerNames(first!)).toEqual(['content-length', 'content-type', 'x-app', 'x-request-id']);
    expect(headerValues(first!, 'x-request-id')).toEqual([sent['x-request-id']]);
    expect(headerValues(first!, 'x-app')).toEqual(['passes']);
    expect(first!.body.toString()).toBe('ok');

    // Same connection: a request id the client sends is kept; two X-Forwarded-For lines are one list.
    c.send(
      'GET /again HTTP/1.1\r\nHost: shop.test\r\nX-Request-Id: trace-42\r\n' +
        'X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-For: 10.4.5.6\r\n\r\n',
    );
    const [, second] = await c.finalResponses(2);
    expect(up.heads).toHaveLength(2);
    const again = up.heads[1]!;
    expect(again.match(/^x-request-id: .*$/gim)).toEqual(['x-request-id: trace-42']);
    expect(again.match(/^x-forwarded-for: .*$/gim)).toEqual([
      'x-forwarded-for: 10.1.2.3, 10.4.5.6, 127.0.0.1',
    ]);
    expect(headerValues(second!, 'x-request-id')).toEqual(['trace-42']);
  });

  it('relays 100 Continue from the upstream and forwards the body only once the client sends it', async () => {
    const bodies: string[] = [];
    const up = await f.serve((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        bodies.push(body);
        res.end(`got ${body}`);
      });
    });
    await f.route(up.port);
    const c = await f.client();
    c.send('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    await c.until('100 Continue', () => c.text.includes('\r\n\r\n'));
    expect(c.text).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    await sleep(50);
    expect(c.text).toBe('HTTP/1.1 100 Continue\r\n\r\n'); // the final answer waits for the body
    expect(bodies).toEqual([]);
    c.send('hello');
    const [res] = await c.finalResponses(1);
    expect(res!.status).toBe(200);
    expect(res!.body.toString()).toBe('got hello');
    expect(bodies).toEqual(['hello']);
    expect(c.responses().map((r) => r.status)).toEqual([100, 200]);
    // The connection goes on.
    c.send('GET /next HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c.finalResponses(2))[1]!.status).toBe(200);
  });

  it('relays an upstream refusing an expected body (417, 413) and closes the connection, the body never sent', async () => {
    const bodiesRead: string[] = [];
    const up = await f.serve(() => undefined);
    up.server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
      req.on('data', (c: Buffer) => bodiesRead.push(c.toString()));
      const status = req.url === '/too-big' ? 413 : 417;
      res.writeHead(status, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('no');
    });
    await f.route(up.port);
    for (const [path, status] of [
      ['/too-big', 413],
      ['/picky', 417],
    ] as const) {
      const c = await f.client();
      c.send(`PUT ${path} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`);
      const [res] = await c.finalResponses(1);
      expect(c.responses().map((r) => r.status)).toEqual([status]); // no 100 before it
      expect(res!.body.toString()).toBe('no');
      // The body will not come: the data plane says so, and closes.
      expect(headerValues(res!, 'connection')).toEqual(['close']);
      await c.waitForClose();
    }
    expect(bodiesRead).toEqual([]);
  });

  it('streams a chunked request body: the upstream has the first chunk before the client sends the last', async () => {
    let seen = '';
    let ended = false;
    const up = await f.serve((req, res) => {
      req.on('data', (c: Buffer) => {
        seen += c.toString();
      });
      req.on('end', () => {
        ended = true;
        res.end(`got ${seen}`);
      });
    });
    await f.route(up.port);
    const c = await f.client();
    c.send('POST /stream HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n');
    await waitFor('the upstream to have the first chunk', () => seen === 'first');
    expect(ended).toBe(false);
    expect(c.bytesReceived).toBe(0);
    c.send('6\r\nsecond\r\n0\r\n\r\n');
    const [res] = await c.finalResponses(1);
    expect(res!.body.toString()).toBe('got firstsecond');
  });

  it('streams a chunked response: the client has the first chunk before the upstream ends it', async () => {
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let ended = false;
    const up = await f.serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part one;');
      void released.then(() => {
        ended = true;
        res.end('part two');
      });
    });
    await f.route(up.port);
    const c = await f.client();
    c.send('GET /slowly HTTP/1.1\r\nHost: a\r\n\r\n');
    await c.until('the first chunk', () => c.text.includes('part one;'));
    expect(ended).toBe(false);
    expect(c.text).toMatch(/\r\ntransfer-encoding: chunked\r\n/i);
    release();
    const [res] = await c.finalResponses(1);
    expect(res!.chunked).toBe(true);
    expect(res!.body.toString()).toBe('part one;part two');
  });

  it('answers HEAD with the upstream Content-Length and no body, and serves the next request on the same socket', async () => {
    const up = await f.raw({
      respond: (head) => {
        if (head.startsWith('HEAD '))
          return 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n';
        if (head.startsWith('GET /gone ')) return 'HTTP/1.1 204 No Content\r\n\r\n';
        if (head.startsWith('GET /same ')) return 'HTTP/1.1 304 Not Modified\r\nContent-Length: 11\r\n\r\n';
        return 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world';
      },
    });
    await f.route(up.port);
    const c = await f.client();
    c.send('HEAD /doc HTTP/1.1\r\nHost: a\r\n\r\n');
    const [head] = await c.finalResponses(1, { noBody: (i) => i === 0 });
    expect(headerValues(head!, 'content-length')).toEqual(['11']);
    await sleep(50);
    expect(c.text.endsWith('\r\n\r\n')).toBe(true); // nothing after the head
    const headBytes = c.bytesReceived;
    c.send('GET /doc HTTP/1.1\r\nHost: a\r\n\r\n');
    const [, get] = await c.finalResponses(2, { noBody: (i) => i === 0 });
    expect(get!.body.toString()).toBe('hello world');
    expect(c.received.subarray(headBytes).toString('latin1')).toMatch(
      /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nhello world$/,
    );
    expect(up.heads.map((h) => h.split('\r\n')[0])).toEqual(['HEAD /doc HTTP/1.1', 'GET /doc HTTP/1.1']);

    // 204 and 304 have no body either, whatever their headers say; the connection goes on.
    c.send(
      'GET /gone HTTP/1.1\r\nHost: a\r\n\r\nGET /same HTTP/1.1\r\nHost: a\r\n\r\nGET /doc HTTP/1.1\r\nHost: a\r\n\r\n',
    );
    const answers = await c.finalResponses(5, { noBody: (i) => i === 0 });
    expect(answers.slice(2).map((r) => `${r.status} ${r.body}`)).toEqual(['204 ', '304 ', '200 hello world']);
    expect(c.ended).toBe(false);
  });

  it('streams a 50 MB upload and a 50 MB download intact while its memory stays within 30 MB', async () => {
    const block = randomBytes(64 * 1024);
    const blocks = (50 * MB) / block.length;
    const expected = createHash('sha256');
    for (let i = 0; i < blocks; i++) expected.update(block);
    const digest = expected.digest('hex');
    // Once warmed up, readers stop for a while at 5 MB, so the writer gets ahead: without
    // back-pressure the data plane would have to hold all it could not pass on.
    let stalling = false;
    const stallAt5MB = (stream: { pause(): void; resume(): void }, before: number, after: number) => {
      if (!stalling || before >= 5 * MB || after < 5 * MB) return;
      stream.pause();
      setTimeout(() => stream.resume(), 400);
    };

    const up = await f.serve((req, res) => {
      if (req.method === 'POST') {
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          stallAt5MB(req, bytes, bytes + c.length);
          bytes += c.length;
          hash.update(c);
        });
        req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })));
        return;
      }
      // No Content-Length: the data plane re-chunks it, with back-pressure both ways.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const count = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('blocks') ?? blocks);
      let sent = 0;
      const pump = () => {
        while (sent < count) {
          sent++;
          if (!res.write(block)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    await f.route(up.port);
    const upload = (blockCount: number) =>
      new Promise<string>((resolve, reject) => {
        const req = http.request(
          `${f.dp.url}/upload`,
          { method: 'POST', agent: false, headers: { 'content-length': String(blockCount * block.length) } },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => {
              text += c.toString();
            });
            res.on('end', () => resolve(text));
          },
        );
        req.on('error', reject);
        let i = 0;
        const write = () => {
          while (i < blockCount) {
            i++;
            if (!req.write(block)) {
              req.once('drain', write);
              return;
            }
          }
          req.end();
        };
        write();
      });
    const download = (path: string) =>
      new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
        http
          .get(`${f.dp.url}${path}`, { agent: false }, (res) => {
            const hash = createHash('sha256');
            let bytes = 0;
            res.on('data', (c: Buffer) => {
              stallAt5MB(res, bytes, bytes + c.length);
              bytes += c.length;
              hash.update(c);
            });
            res.on('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
            res.on('error', reject);
          })
          .on('error', reject);
      });

    // A first transfer grows a fresh process by a fixed ~30 MB whatever its size (V8's heap, and
    // read buffers that wait for a GC: Node frees them when external memory reaches ~32 MB). Warm
    // up with 16 MB each way so the measure below is what 50 MB more costs: buffering them would
    // show as 50 MB.
    await upload(256);
    await download('/download?blocks=256');
    stalling = true;

    const before = await residentBytes(f.dp.pid);
    let peak = before;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await residentBytes(f.dp.pid));
        await sleep(20);
      }
    })();
    try {
      expect(JSON.parse(await upload(blocks))).toEqual({ bytes: 50 * MB, sha256: digest });
      const downloaded = await download('/download');
      expect(downloaded).toEqual({ bytes: 50 * MB, sha256: digest });
    } finally {
      sampling = false;
      await sampler;
    }
    expect((peak - before) / MB, 'RSS growth in MB').toBeLessThan(30);
  });

  it('makes the upstream wait while a client does not read, instead of buffering the response', async () => {
    const block = Buffer.alloc(64 * 1024, 'x');
    const limit = 400 * MB;
    let written = 0;
    let waiting = false;
    let upstreamClosed = false;
    const up = await f.serve((_req, res) => {
      res.on('close', () => {
        upstreamClosed = true;
      });
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const pump = () => {
        waiting = false;
        while (written < limit && !res.destroyed) {
          written += block.length;
          if (!res.write(block)) {
            waiting = true;
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    await f.route(up.port);
    const before = await residentBytes(f.dp.pid);
    const c = await f.client();
    c.send('GET /firehose HTTP/1.1\r\nHost: a\r\n\r\n');
    await c.until('the first bytes', () => c.bytesReceived > 0);
    c.socket.pause();

    // Wait for the upstream to stall: its writes stop progressing once every buffer on the way is full.
    let last = -1;
    let stableSince = performance.now();
    while (performance.now() - stableSince < 400) {
      if (written !== last) {
        last = written;
        stableSince = performance.now();
      }
      await sleep(20);
      if (written >= limit) break;
    }
    const grown = (await residentBytes(f.dp.pid)) - before;
    expect(waiting).toBe(true);
    expect(written / MB).toBeLessThan(100);
    expect(grown / MB).toBeLessThan(30);

    // Reading again lets it go on.
    const stalledAt = written;
    c.socket.resume();
    await waitFor('the upstream to write more', () => written > stalledAt + 4 * MB);
    c.destroy();
    await waitFor('the upstream to see the client gone', () => upstreamClosed);
  });

  it('makes an uploading client wait while the upstream does not read, instead of buffering the body', async () => {
    const block = Buffer.alloc(64 * 1024, 'u');
    const total = 96 * MB; // under the default body limit
    let upstreamReq: http.IncomingMessage | undefined;
    let upstreamClosed = false;
    const up = await f.serve((req) => {
      upstreamReq = req;
      req.pause(); // reads nothing until resumed
      req.on('close', () => {
        upstreamClosed = true;
      });
    });
    await f.route(up.port);
    const before = await residentBytes(f.dp.pid);
    let written = 0;
    let waiting = false;
    const upload = http.request(`${f.dp.url}/upload`, {
      method: 'POST',
      agent: false,
      headers: { 'content-length': String(total) },
    });
    upload.on('error', () => undefined);
    f.closers.push(() => upload.destroy());
    const pump = () => {
      waiting = false;
      while (written < total && !upload.destroyed) {
        written += block.length;
        if (!upload.write(block)) {
          waiting = true;
          upload.once('drain', pump);
          return;
        }
      }
    };
    pump();

    let last = -1;
    let stableSince = performance.now();
    while (performance.now() - stableSince < 400) {
      if (written !== last) {
        last = written;
        stableSince = performance.now();
      }
      await sleep(20);
    }
    const grown = (await residentBytes(f.dp.pid)) - before;
    expect(upstreamReq).toBeDefined();
    expect(waiting).toBe(true);
    expect(written / MB).toBeLessThan(48);
    expect(grown / MB, 'RSS growth in MB').toBeLessThan(30);

    const stalledAt = written;
    upstreamReq!.resume();
    await waitFor('the client to write more', () => written > stalledAt + 4 * MB);
    upload.destroy();
    await waitFor('the upstream to see the upload cut', () => upstreamClosed);
  });

  it('reads an upstream connection again after a response that ended while its client was busy', async () => {
    // The last 64 KB arrive in one read, so the write to the client is over its high-water mark
    // when the response ends; the client asked to close, so its socket never drains.
    const block = Buffer.alloc(64 * 1024, 'y');
    let connections = 0;
    const up = await f.serve((req, res) => {
      if (req.url === '/small') {
        res.end('small');
        return;
      }
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(2 * block.length),
      });
      res.write(block);
      setTimeout(() => res.end(block), 30);
    });
    up.server.on('connection', () => connections++);
    await f.route(up.port);
    for (let i = 0; i < 3; i++) {
      const c = await f.client();
      c.send('GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
      await c.waitForClose();
      expect(c.responses()[0]!.body.length).toBe(2 * block.length);
      const next = await Promise.race([
        request(`${f.dp.url}/small`),
        sleep(2_000).then(() => 'no answer in 2s'),
      ]);
      expect(next).toMatchObject({ status: 200, body: 'small' });
    }
    expect(connections).toBe(1); // the same upstream connection served all six
  });

  it('closes the upstream request when the client goes away while the upstream thinks, mid-upload or mid-response', async () => {
    const closed: string[] = [];
    const up = await f.serve((req, res) => {
      res.on('close', () => closed.push(`${req.url} complete=${req.complete}`));
      if (req.url === '/half') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first half;');
      }
      req.resume();
    });
    await f.route(up.port);

    const thinking = await f.client();
    thinking.send('GET /think HTTP/1.1\r\nHost: a\r\n\r\n');
    await sleep(100);
    expect(closed).toEqual([]);
    thinking.destroy();
    await waitFor('the upstream to see /think closed', () => closed.includes('/think complete=true'));

    const uploading = await f.client();
    uploading.send('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n' + 'x'.repeat(100));
    await sleep(100);
    uploading.destroy();
    await waitFor('the upstream to see /upload cut short', () => closed.includes('/upload complete=false'));

    const reading = await f.client();
    reading.send('GET /half HTTP/1.1\r\nHost: a\r\n\r\n');
    await reading.until('the first half', () => reading.text.includes('first half;'));
    reading.destroy();
    await waitFor('the upstream to see /half closed', () => closed.includes('/half complete=true'));
  });

  it('skips an instance whose port is closed after two failures, every request still answered, and takes it back once it listens again', async () => {
    // "alive" counts its connections: a request retried off the dead instance opens a fresh one.
    const alive = await f.raw({
      respond: () => 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=30\r\n\r\nalive',
    });
    let dead = await f.raw({ respond: () => 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndead' });
    const deadPort = dead.port;
    await dead.close();
    await f.route(deadPort, alive.port);

    // A refused connect reached no instance: even a DELETE is safe to send to the other one.
    const bodies: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await request(`${f.dp.url}/`, { method: i % 2 === 0 ? 'DELETE' : 'GET' });
      bodies.push(`${r.status} ${r.body}`);
    }
    expect(bodies).toEqual(Array(6).fill('200 alive'));
    const connectionsAfterEjection = alive.connections;
    expect(connectionsAfterEjection).toBeGreaterThanOrEqual(1);
    for (let i = 0; i < 10; i++)
      expect(await request(`${f.dp.url}/`)).toMatchObject({ status: 200, body: 'alive' });
    // No request tried the dead instance first: none needed a fresh connection to retry on.
    expect(alive.connections).toBe(connectionsAfterEjection);

    dead = await f.raw({ port: deadPort, respond: () => 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nback' });
    const started = performance.now();
    while (!dead.heads.some((h) => h.startsWith('GET '))) {
      expect(performance.now() - started, 'the instance to get requests again').toBeLessThan(3_000);
      expect(await request(`${f.dp.url}/`)).toMatchObject({ status: 200 });
      await sleep(50);
    }
  });

  it('sends new requests to the instance with fewer outstanding ones', async () => {
    const held: http.ServerResponse[] = [];
    const slow = await f.serve((_req, res) => {
      held.push(res);
    });
    let fastCount = 0;
    const fast = await f.serve((_req, res) => {
      fastCount++;
      res.end('fast');
    });
    await f.route(slow.port, fast.port);
    const pending: Promise<unknown>[] = [];
    // Until one request sits at the slow instance.
    while (held.length === 0) {
      pending.push(request(`${f.dp.url}/`));
      await sleep(30);
    }
    const fastBefore = fastCount;
    for (let i = 0; i < 10; i++) expect(await request(`${f.dp.url}/`)).toMatchObject({ body: 'fast' });
    expect(held).toHaveLength(1);
    expect(fastCount - fastBefore).toBe(10);
    for (const res of held) res.end('slow');
    await Promise.all(pending);
  });

  it('answers three requests pipelined in one packet, in order', async () => {
    const up = await f.serve((req, res) => {
      // The first answers last: the order on the wire must still be the order asked.
      const delay = { '/a': 120, '/b': 0, '/c': 40 }[req.url ?? ''] ?? 0;
      setTimeout(() => res.end(`answer ${req.url}`), delay);
    });
    await f.route(up.port);
    const c = await f.client();
    c.send(
      'GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n',
    );
    const answers = await c.finalResponses(3);
    expect(answers.map((r) => r.body.toString())).toEqual(['answer /a', 'answer /b', 'answer /c']);
    await sleep(50);
    expect(c.responses()).toHaveLength(3);
    expect(c.ended).toBe(false);
  });

  it('answers an HTTP/1.0 client without chunking, closing unless it asked for keep-alive', async () => {
    const up = await f.serve((req, res) => {
      if (req.url === '/fixed') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '10' });
        res.end('fixed body');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('streamed ');
      setTimeout(() => res.end('body'), 20);
    });
    await f.route(up.port);

    const plain = await f.client();
    plain.send('GET /streamed HTTP/1.0\r\nHost: a\r\n\r\n');
    await plain.waitForClose();
    const [streamed] = plain.responses();
    expect(streamed!.body.toString()).toBe('streamed body');
    expect(headerValues(streamed!, 'transfer-encoding')).toEqual([]);
    expect(headerValues(streamed!, 'connection')).toEqual(['close']);
    expect(plain.text.endsWith('\r\n\r\nstreamed body')).toBe(true);

    const kept = await f.client();
    kept.send('GET /fixed HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n');
    const [fixed] = await kept.finalResponses(1);
    expect(fixed!.body.toString()).toBe('fixed body');
    expect(headerValues(fixed!, 'connection')).toEqual(['keep-alive']);
    await sleep(50);
    expect(kept.ended).toBe(false);
    // A body without a length can only end with the connection, keep-alive or not.
    kept.send('GET /streamed HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n');
    await kept.waitForClose();
    const [, second] = kept.responses();
    expect(second!.body.toString()).toBe('streamed body');
    expect(headerValues(second!, 'transfer-encoding')).toEqual([]);
  });

  it('keeps an event stream opened before a switch on the old pool, and ends it cleanly when the drain times out', async () => {
    const openAt: Record<string, number> = { A: 0, B: 0 };
    const events = (name: string) =>
      f.serve((_req, res) => {
        openAt[name]!++;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        let n = 0;
        res.write(`data: ${name}-${n++}\n\n`);
        const timer = setInterval(() => res.write(`data: ${name}-${n++}\n\n`), 30);
        res.on('close', () => {
          clearInterval(timer);
          openAt[name]!--;
        });
      });
    const [a, b] = [await events('A'), await events('B')];
    const old = await f.route(a.port);

    const subscribe = async () => {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
        http.get(`${f.dp.url}/events`, { agent: false }, resolve).on('error', reject),
      );
      const stream = { res, text: '', ended: false, error: '' };
      res.on('data', (c: Buffer) => {
        stream.text += c.toString();
      });
      res.on('end', () => {
        stream.ended = true;
      });
      res.on('error', (err) => {
        stream.error = err.message;
      });
      f.closers.push(() => res.destroy());
      return stream;
    };
    const first = await subscribe();
    await waitFor('an event from A', () => first.text.includes('data: A-0\n\n'));

    f.revision++;
    const next = poolFor('web', 'green', f.revision, [at(b.port)]);
    await f.sw.apply(webTable(f.revision, next));
    const seenAtSwitch = first.text.length;
    await waitFor(
      'two more events from A',
      () => (first.text.slice(seenAtSwitch).match(/data: A-/g) ?? []).length >= 2,
    );
    const second = await subscribe();
    await waitFor('an event from B', () => second.text.includes('data: B-0\n\n'));

    const result = await f.sw.drain(old.id, { timeoutMs: 300 });
    expect(result).toMatchObject({ drained: false, remaining: 1 });
    await waitFor('the old stream to end', () => first.ended || first.error !== '');
    expect(first.error).toBe('');
    expect(first.res.complete).toBe(true);
    expect(first.text).not.toMatch(/B-/);
    await waitFor('A to see its stream closed', () => openAt.A === 0);
    // The new stream goes on.
    const before = second.text.length;
    await waitFor('more events from B', () => second.text.length > before);
    expect(second.ended).toBe(false);
  });
});

describe('the builtin data plane with a 1 KB body limit and short deadlines', () => {
  const f = planeFixture({
    maxBodyBytes: 1024,
    connectTimeoutMs: 200,
    responseTimeoutMs: 300,
    idleTimeoutMs: 600,
  });

  /** An upstream that records what it read, and how each request ended. */
  async function recorder() {
    const seen = { requests: 0, bodies: [] as string[], cut: 0 };
    const up = await f.serve((req, res) => {
      seen.requests++;
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        seen.bodies.push(body);
        res.end(`got ${body.length}`);
      });
      req.on('close', () => {
        if (!req.complete) seen.cut++;
      });
    });
    return { up, seen };
  }

  it('answers 413 to a Content-Length over the limit without the upstream seeing the request', async () => {
    const { up, seen } = await recorder();
    await f.route(up.port);
    const c = await f.client();
    c.send(`POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n${'x'.repeat(2000)}`);
    await c.waitForClose();
    const [res] = c.responses();
    expect(res!.status).toBe(413);
    expect(res!.body.toString()).toContain('over the limit of 1024 bytes');
    expect(c.error).toBeUndefined();

    // Announced with Expect, it is refused on the head alone.
    const early = await f.client();
    early.send('POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\nExpect: 100-continue\r\n\r\n');
    await early.waitForClose();
    expect(early.responses().map((r) => r.status)).toEqual([413]);
    await sleep(50);
    expect(seen.requests).toBe(0);
  });

  it('cuts a chunked body that goes over the limit mid-stream with 413, and passes one under it', async () => {
    const { up, seen } = await recorder();
    await f.route(up.port);
    const c = await f.client();
    const chunk = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n`;
    c.send(`POST /grow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${chunk('a'.repeat(600))}`);
    await waitFor('the upstream to get the request', () => seen.requests === 1);
    c.send(chunk('b'.repeat(600)));
    await c.waitForClose();
    expect(c.responses().map((r) => r.status)).toEqual([413]);
    await waitFor('the upstream to see its request cut', () => seen.cut === 1);
    expect(seen.bodies).toEqual([]);

    const under = await f.client();
    under.send(
      `POST /fits HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${chunk('c'.repeat(500))}`,
    );
    under.send(`${chunk('d'.repeat(524))}0\r\n\r\n`);
    under.send(`POST /fits HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n${'e'.repeat(1024)}`);
    const answers = await under.finalResponses(2);
    expect(answers.map((r) => `${r.status} ${r.body}`)).toEqual(['200 got 1024', '200 got 1024']);
    expect(seen.bodies).toEqual(['c'.repeat(500) + 'd'.repeat(524), 'e'.repeat(1024)]);
  });

  it('answers 504 naming the request id when the upstream accepts but never answers', async () => {
    const up = await f.raw({ respond: () => undefined });
    await f.route(up.port);
    const c = await f.client();
    const sent = performance.now();
    c.send('GET /silence HTTP/1.1\r\nHost: a\r\nX-Request-Id: silent-1\r\n\r\n');
    const [res] = await c.finalResponses(1, { timeoutMs: 3_000 });
    const waited = performance.now() - sent;
    expect(res!.status).toBe(504);
    expect(res!.body.toString()).toContain('sent no response within 300ms');
    expect(res!.body.toString()).toContain('(request silent-1)');
    expect(waited).toBeGreaterThanOrEqual(280);
    expect(waited).toBeLessThan(1_000);
    expect(up.heads).toHaveLength(1);
  });

  it('answers 504 when the upstream never accepts the connection', async () => {
    const listener = await startUnacceptingListener();
    f.closers.push(listener.close);
    await f.route(listener.port);
    const c = await f.client();
    const sent = performance.now();
    c.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const [res] = await c.finalResponses(1, { timeoutMs: 3_000 });
    const waited = performance.now() - sent;
    expect(res!.status).toBe(504);
    expect(res!.body.toString()).toContain('did not accept a connection within 200ms');
    expect(res!.body.toString()).toContain(`(request ${headerValues(res!, 'x-request-id')[0]})`);
    expect(waited).toBeGreaterThanOrEqual(180);
    expect(waited).toBeLessThan(1_000);
  });

  it('sends a request to another instance when one never accepts the connection, then skips that one', async () => {
    const listener = await startUnacceptingListener();
    f.closers.push(listener.close);
    const alive = await f.raw();
    await f.route(listener.port, alive.port);
    const answers: string[] = [];
    const started = performance.now();
    for (let i = 0; i < 6; i++) {
      const r = await request(`${f.dp.url}/`, { method: i % 2 === 0 ? 'POST' : 'GET' });
      answers.push(`${r.status} ${r.body}`);
    }
    expect(answers).toEqual(Array(6).fill('200 ok'));
    expect(alive.heads).toHaveLength(6);
    // Two connect timeouts of 200 ms take the instance out; the other four go straight through.
    expect(performance.now() - started).toBeLessThan(1_500);
  });

  it('answers 502 naming the pool at once when its only instance refuses connections', async () => {
    const gone = await f.raw();
    await gone.close();
    const pool = await f.route(gone.port);
    const sent = performance.now();
    const r = await request(`${f.dp.url}/`);
    expect(performance.now() - sent).toBeLessThan(200);
    expect(r.status).toBe(502);
    expect(r.body).toContain(`${pool.id} failed before responding (ECONNREFUSED)`);
  });

  it('closes a client connection idle for longer than the idle timeout', async () => {
    const up = await f.raw();
    await f.route(up.port);
    const c = await f.client();
    c.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await c.finalResponses(1);
    const answered = performance.now();
    await c.waitForClose(3_000);
    const idle = performance.now() - answered;
    expect(idle).toBeGreaterThanOrEqual(550);
    expect(idle).toBeLessThan(1_500);
    expect(c.ended).toBe(true);

    const silent = await f.client();
    const opened = performance.now();
    await silent.waitForClose(3_000);
    expect(performance.now() - opened).toBeGreaterThanOrEqual(550);
    expect(silent.bytesReceived).toBe(0);
  });
});
