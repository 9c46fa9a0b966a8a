import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { request, waitFor } from '../switch.contract.js';
import { planeFixture, residentBytes } from './harness.js';

/*
 * Bodies pass through as they come, never whole in memory: chunks relayed at once, back-pressure
 * both ways, and a client that goes away ending its upstream request.
 */

const MB = 1024 * 1024;

describe('the builtin data plane speaking HTTP/1.1', () => {
  const f = planeFixture();

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
});
