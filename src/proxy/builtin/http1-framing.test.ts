import type http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { headerValues, planeFixture, type RawResponse } from './harness.js';

/*
 * What the data plane changes on the way through and how it frames each message: hop-by-hop
 * headers, X-Forwarded-* and the request id; Expect: 100-continue; bodiless answers (HEAD, 204, 304).
 */

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

describe('the builtin data plane speaking HTTP/1.1', () => {
  const f = planeFixture();

  it('strips hop-by-hop headers both ways, replaces an untrusted X-Forwarded-For and echoes the request id', async () => {
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
    expect(up.heads[0]!.split('\r\n')).toHaveLength(9); // the request line and the 8 below, once each
    const sent = headMap(up.heads[0]!);
    expect(sent).toEqual({
      host: 'shop.test',
      'x-app': 'kept',
      accept: '*/*',
      'x-forwarded-for': '127.0.0.1',
      'x-real-ip': '127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'shop.test',
      'x-request-id': expect.stringMatching(/^[0-9a-f]{12}-[0-9a-z]+$/),
    });
    expect(first!.status).toBe(200);
    expect(headerNames(first!)).toEqual(['content-length', 'content-type', 'x-app', 'x-request-id']);
    expect(headerValues(first!, 'x-request-id')).toEqual([sent['x-request-id']]);
    expect(headerValues(first!, 'x-app')).toEqual(['passes']);
    expect(first!.body.toString()).toBe('ok');

    // Same connection: a request id the client sends is kept; two X-Forwarded-For lines go as one.
    c.send(
      'GET /again HTTP/1.1\r\nHost: shop.test\r\nX-Request-Id: trace-42\r\n' +
        'X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-For: 10.4.5.6\r\n\r\n',
    );
    const [, second] = await c.finalResponses(2);
    expect(up.heads).toHaveLength(2);
    const again = up.heads[1]!;
    expect(again.match(/^x-request-id: .*$/gim)).toEqual(['x-request-id: trace-42']);
    expect(again.match(/^x-forwarded-for: .*$/gim)).toEqual(['x-forwarded-for: 127.0.0.1']);
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
});
