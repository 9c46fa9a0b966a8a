import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { request, waitFor } from '../switch.contract.js';
import { headerValues, planeFixture, startUnacceptingListener } from './harness.js';

/* The body size limit, and the connect, response and idle deadlines. */

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

  it('answers 504 naming only the request id when the upstream accepts but never answers', async () => {
    const up = await f.raw({ respond: () => undefined });
    await f.route(up.port);
    const c = await f.client();
    const sent = performance.now();
    c.send('GET /silence HTTP/1.1\r\nHost: a\r\nX-Request-Id: silent-1\r\n\r\n');
    const [res] = await c.finalResponses(1, { timeoutMs: 3_000 });
    const waited = performance.now() - sent;
    expect(res!.status).toBe(504);
    expect(res!.body.toString()).toBe(
      '504 Gateway Timeout: the service did not respond in time (request silent-1)\n',
    );
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
    expect(res!.body.toString()).toBe(
      `504 Gateway Timeout: the service did not accept the connection in time (request ${headerValues(res!, 'x-request-id')[0]})\n`,
    );
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

  it('answers 502 at once, without naming the pool, when its only instance refuses connections', async () => {
    const gone = await f.raw();
    await gone.close();
    const pool = await f.route(gone.port);
    const sent = performance.now();
    const r = await request(`${f.dp.url}/`);
    expect(performance.now() - sent).toBeLessThan(200);
    expect(r.status).toBe(502);
    expect(r.body).toContain('the service failed before responding');
    expect(r.body).not.toContain(pool.id);
    expect(r.body).not.toContain('ECONNREFUSED');
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
