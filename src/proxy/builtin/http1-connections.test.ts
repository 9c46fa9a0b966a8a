import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { poolFor, waitFor, webTable } from '../switch.contract.js';
import { headerValues, planeFixture, upstreamAt } from './harness.js';

/*
 * What one client connection carries: pipelined requests, an HTTP/1.0 client's close-delimited
 * bodies, and a long-lived event stream across a switch and a drain.
 */

describe('the builtin data plane speaking HTTP/1.1', () => {
  const f = planeFixture();

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
    const next = poolFor('web', 'green', f.revision, [upstreamAt(b.port)]);
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
