import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { waitFor } from '../switch.contract.js';
import { headerValues, planeFixture, type RawClient, residentBytes } from './harness.js';

/*
 * What a stranger can hold open: a send (write-stall) timeout both ways, and a cap on connections
 * that keeps room for newcomers. Small values here (500 ms, 50 connections); the defaults are 60 s
 * and 10,000.
 */

/** A client on a raw socket that sends a request and then reads nothing until told to. */
async function deafClient(
  url: string,
  request: string,
): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const u = new URL(url);
  const socket = net.connect({ host: u.hostname, port: Number(u.port) });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  socket.pause();
  socket.write(request, 'latin1');
  return { socket, closed: new Promise((resolve) => socket.once('close', () => resolve())) };
}

const MB = 1024 * 1024;

describe('the builtin data plane with a 500 ms send timeout', () => {
  const f = planeFixture({ sendTimeoutMs: 500, responseTimeoutMs: 10_000 });

  /** An upstream that streams `size` bytes with back-pressure and records how its answer ended. */
  async function bigAnswer(size: number) {
    const seen = { written: 0, finished: false, closed: false };
    const up = await f.serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
      const chunk = Buffer.alloc(64 * 1024, 120);
      const pump = () => {
        while (seen.written < size) {
          const n = Math.min(chunk.length, size - seen.written);
          seen.written += n;
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      res.on('finish', () => {
        seen.finished = true;
      });
      res.on('close', () => {
        seen.closed = true;
      });
      pump();
    });
    return { up, seen };
  }

  it('closes a client that never reads a large answer, and the upstream connection behind it', async () => {
    const size = 64 * MB;
    const { up, seen } = await bigAnswer(size);
    await f.route(up.port);
    const c = await deafClient(f.dp.url, 'GET /big HTTP/1.1\r\nHost: a\r\n\r\n');
    f.closers.push(() => c.socket.destroy());
    // The upstream sees its connection closed before its answer was taken: it was not left open,
    // nor handed back to the pool with half an answer unread.
    await waitFor('the upstream to see its connection closed', () => seen.closed, 8_000);
    expect(seen.finished).toBe(false);
    expect(seen.written).toBeLessThan(size);
    // And the client's connection is closed too: what it reads now ends short of the answer.
    let got = 0;
    c.socket.on('data', (d: Buffer) => {
      got += d.length;
    });
    c.socket.resume();
    await Promise.race([c.closed, sleep(5_000).then(() => Promise.reject(new Error('client not closed')))]);
    expect(got).toBeLessThan(size);
  });

  it('does not cut a slow reader whose pauses are each shorter than the send timeout', async () => {
    const size = 24 * MB;
    const { up, seen } = await bigAnswer(size);
    await f.route(up.port);
    const c = await deafClient(f.dp.url, 'GET /big HTTP/1.1\r\nHost: a\r\n\r\n');
    f.closers.push(() => c.socket.destroy());
    const started = performance.now();
    let got = 0;
    let nextPause = 2 * MB;
    let pauses = 0;
    await new Promise<void>((resolve, reject) => {
      c.socket.on('data', (d: Buffer) => {
        got += d.length;
        if (got >= nextPause && got < size) {
          // Stop reading for a while (well under the 500 ms send timeout), then go on.
          nextPause += 2 * MB;
          pauses++;
          c.socket.pause();
          setTimeout(() => c.socket.resume(), 200);
        }
        if (got >= size) resolve();
      });
      c.closed.then(() => reject(new Error(`cut after ${got} of ${size} bytes`)));
      c.socket.resume();
    });
    const took = performance.now() - started;
    expect(got).toBeGreaterThanOrEqual(size);
    expect(pauses).toBeGreaterThanOrEqual(10);
    // The answer took several send timeouts in all: only a stall counts, not a long transfer.
    expect(took).toBeGreaterThan(2_000);
    expect(seen.finished).toBe(true);
  });

  it('stops taking pipelined requests from a client that reads none of the answers', async () => {
    const body = 'p'.repeat(32 * 1024);
    const up = await f.raw({
      respond: () =>
        `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    });
    await f.route(up.port);
    // 2,000 requests whose answers come to 64 MB, in one go, and nothing read.
    const c = await deafClient(f.dp.url, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n'.repeat(2_000));
    f.closers.push(() => c.socket.destroy());
    const before = await residentBytes(f.dp.pid);
    let peak = before;
    const watchUntil = performance.now() + 3_000;
    while (performance.now() < watchUntil) {
      peak = Math.max(peak, await residentBytes(f.dp.pid));
      await sleep(50);
    }
    console.log(
      `pipelined, unread: ${up.heads.length} of 2000 requests went upstream; data plane RSS +${Math.round((peak - before) / MB)} MB`,
    );
    // The answers wait for the client to take the ones before: only what the sockets' buffers
    // hold was asked of the upstream, and the data plane's memory stayed flat.
    expect(up.heads.length).toBeLessThan(1_000);
    expect(peak - before).toBeLessThan(24 * MB);
    // And the send timeout closed it: reading now, the client gets what was buffered, then the end.
    let got = 0;
    c.socket.on('data', (d: Buffer) => {
      got += d.length;
    });
    c.socket.resume();
    await Promise.race([c.closed, sleep(5_000).then(() => Promise.reject(new Error('client not closed')))]);
    expect(got).toBeLessThan(2_000 * body.length);
  });

  it('closes a websocket whose client stopped reading, and its upstream side', async () => {
    const up = await f.serve((_req, res) => res.end('ok'));
    const wss = new WebSocketServer({ server: up.server });
    let upstreamClosed = false;
    wss.on('connection', (ws) => {
      // Streams 1 MB messages for as long as the data plane takes them.
      const chunk = Buffer.alloc(1024 * 1024, 119);
      const timer = setInterval(() => {
        if (ws.bufferedAmount < 8 * MB) ws.send(chunk);
      }, 5);
      ws.on('close', () => {
        clearInterval(timer);
        upstreamClosed = true;
      });
    });
    f.closers.push(() => {
      for (const ws of wss.clients) ws.terminate();
    });
    await f.route(up.port);
    const c = await deafClient(
      f.dp.url,
      'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    f.closers.push(() => c.socket.destroy());
    await waitFor('the upstream side of the websocket to be closed', () => upstreamClosed, 8_000);
  });

  it('answers 504 when the upstream never reads the request body, and closes that connection', async () => {
    let upstreamClosed = false;
    const sockets = new Set<net.Socket>();
    const deaf = net.createServer((s) => {
      // Accepts, then reads nothing at all: the request body backs up in the data plane.
      s.pause();
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        upstreamClosed = true;
      });
    });
    await new Promise<void>((resolve) => deaf.listen(0, '127.0.0.1', resolve));
    f.closers.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          deaf.close(() => resolve());
        }),
    );
    await f.route((deaf.address() as net.AddressInfo).port);
    const c = await f.client();
    const size = 48 * MB;
    c.send(`POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\n\r\n`);
    c.send(Buffer.alloc(size, 97));
    const [res] = await c.finalResponses(1, { timeoutMs: 8_000 });
    expect(res!.status).toBe(504);
    expect(res!.body.toString()).toContain('the service did not read the request in time');
    expect(headerValues(res!, 'connection')).toEqual(['close']);
    // A socket that reads nothing sees no FIN either: read what it was sent, then its end.
    for (const s of sockets) s.resume();
    await waitFor('the upstream connection to be closed', () => upstreamClosed, 3_000);
  });
});

describe('the builtin data plane with a cap of 50 connections', () => {
  const f = planeFixture({ maxConnections: 50, responseTimeoutMs: 20_000 });

  async function open(n: number): Promise<RawClient[]> {
    const out: RawClient[] = [];
    for (let i = 0; i < n; i++) {
      out.push(await f.client());
      // Distinct ages: the cap closes the longest idle first.
      await sleep(3);
    }
    return out;
  }

  it('admits a newcomer at the cap by closing the longest-idle connections first', async () => {
    const up = await f.raw();
    await f.route(up.port);
    const idle = await open(50);
    // The newest ten have just been used: they are idle for the shortest time.
    for (const c of idle.slice(40)) c.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    for (const c of idle.slice(40)) await c.finalResponses(1);
    const newcomer = await f.client();
    newcomer.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const [res] = await newcomer.finalResponses(1);
    expect(res!.status).toBe(200);
    await idle[0]!.waitForClose(3_000);
    await sleep(100);
    const closed = idle.map((c, i) => (c.ended || c.closed ? i : -1)).filter((i) => i >= 0);
    // The oldest ones went (a batch of up to 16, so a flood does not rescan for every newcomer).
    expect(closed.length).toBeGreaterThanOrEqual(1);
    expect(closed.length).toBeLessThanOrEqual(16);
    expect(closed).toEqual(closed.map((_, i) => i));
    // The recently used ones stay open and still work.
    for (const c of idle.slice(40)) expect(c.ended || c.closed).toBe(false);
    idle[49]!.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await idle[49]!.finalResponses(2)).map((r) => r.status)).toEqual([200, 200]);
  });

  it('answers 503 to a newcomer when every connection is busy, and serves again once one is free', async () => {
    const up = await f.raw({
      respond: (head) =>
        head.startsWith('GET /hold ')
          ? undefined
          : 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok',
    });
    await f.route(up.port);
    const busy = await open(50);
    for (const c of busy) c.send('GET /hold HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitFor('the upstream to hold 50 requests', () => up.heads.length === 50, 10_000);

    const refused = await f.client();
    refused.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await refused.waitForClose(3_000);
    const [res] = refused.responses();
    expect(res!.status).toBe(503);
    expect(headerValues(res!, 'retry-after')).toEqual(['1']);
    expect(headerValues(res!, 'connection')).toEqual(['close']);
    expect(res!.body.toString()).toContain('connection limit');
    // No busy connection was sacrificed, and the refused request never went upstream.
    expect(busy.filter((c) => c.ended || c.closed)).toHaveLength(0);
    await sleep(100);
    expect(up.heads).toHaveLength(50);

    // One busy client leaves: the next newcomer is served.
    busy[0]!.destroy();
    await sleep(200);
    const next = await f.client();
    next.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const [served] = await next.finalResponses(1);
    expect(served!.status).toBe(200);
  });

  it('counts websockets against the cap: they are never closed for room', async () => {
    const up = await f.serve((_req, res) => res.end('ok'));
    const wss = new WebSocketServer({ server: up.server });
    wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${m.toString()}`)));
    f.closers.push(() => {
      for (const ws of wss.clients) ws.terminate();
    });
    await f.route(up.port);
    const sockets: WebSocket[] = [];
    f.closers.push(() => {
      for (const ws of sockets) ws.terminate();
    });
    for (let i = 0; i < 50; i++) {
      const ws = new WebSocket(`${f.dp.url.replace('http', 'ws')}/ws`);
      sockets.push(ws);
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
    }
    const refused = await f.client();
    refused.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await refused.waitForClose(3_000);
    expect(refused.responses().map((r) => r.status)).toEqual([503]);
    // Every websocket still works.
    const last = sockets[49]!;
    const echoed = new Promise<string>((resolve) => last.once('message', (m) => resolve(m.toString())));
    last.send('still here');
    expect(await echoed).toBe('echo:still here');
    expect(sockets.every((ws) => ws.readyState === WebSocket.OPEN)).toBe(true);
  });
});
