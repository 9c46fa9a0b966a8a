import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statePaths } from '../src/daemon/files.js';
import { teardown } from '../src/daemon/teardown.js';
import { cliEntry } from '../src/paths.js';
import { residentBytes } from '../src/proxy/builtin/raw-http.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { deployAndWait } from './helpers.js';

/*
 * What a stranger can hold of the control API, tried against a real `teal up`: slow heads, unsigned
 * and oversized webhooks, many half-sent bodies, guessed tokens, a malformed path. Short deadlines
 * here (1 s head, 1.5 s request); the defaults are 10 s and 30 s.
 */

const SECRET = 'webhook-secret-for-the-limits-test';
const SIGNATURE = `sha256=${'0'.repeat(64)}`;

/** A raw socket to the API that keeps what it receives. */
async function raw(url: string, localAddress?: string) {
  const u = new URL(url);
  const socket = net.connect({
    host: u.hostname,
    port: Number(u.port),
    ...(localAddress ? { localAddress } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const state = { text: '', closed: false };
  socket.on('data', (d: Buffer) => {
    state.text += d.toString('latin1');
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    state.closed = true;
  });
  return { socket, state };
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** One request from `localAddress` (another loopback address is another client). */
function call(
  base: string,
  options: { path: string; token?: string; localAddress?: string; method?: string; body?: string },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${base}${options.path}`,
      {
        method: options.method ?? 'GET',
        agent: false,
        ...(options.localAddress ? { localAddress: options.localAddress } : {}),
        headers: {
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          ...(options.body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        },
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('the control API against strangers', () => {
  let daemon: TestDaemon;
  let base: string;

  beforeAll(async () => {
    daemon = await startTestDaemon({
      services: `  web:\n${helloService()}`,
      api: '{ listen: 127.0.0.1:0, timeouts: { headers: 1s, request: 1500ms }, limits: { authFailures: 5, maxConnections: 100 } }',
      extraConfig: 'webhooks: { generic: { secretEnv: TEAL_LIMITS_SECRET } }\n',
      env: { TEAL_LIMITS_SECRET: SECRET },
    });
    base = daemon.info.api;
  }, 60_000);

  afterAll(async () => {
    await daemon?.cleanup();
  });

  it('closes a request whose head arrives a byte at a time, after the header timeout', async () => {
    const c = await raw(base);
    const opened = performance.now();
    c.socket.write('GET /v1/services HTTP/1.1\r\nHost: teal\r\n');
    const drip = setInterval(() => c.socket.write('x'), 300);
    try {
      await until('the slow head to be cut', () => c.state.closed, 6_000);
    } finally {
      clearInterval(drip);
    }
    const took = performance.now() - opened;
    expect(took).toBeGreaterThan(900);
    expect(took).toBeLessThan(4_000);
    expect(c.state.text).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('refuses a webhook without a signature header on its head alone, without reading the body', async () => {
    const c = await raw(base);
    c.socket.write(
      'POST /v1/hooks/generic/ci HTTP/1.1\r\nHost: teal\r\nContent-Type: application/json\r\nContent-Length: 500000\r\n\r\n',
    );
    // Not a byte of the body is sent: the answer must come anyway, and the connection close.
    await until('the 401', () => c.state.text.includes('\r\n\r\n'), 3_000);
    expect(c.state.text).toMatch(/^HTTP\/1\.1 401 /);
    expect(c.state.text).toContain('missing x-teal-signature-256 header');
    await until('the connection to close', () => c.state.closed, 3_000);

    const malformed = await raw(base);
    malformed.socket.write(
      'POST /v1/hooks/generic/ci HTTP/1.1\r\nHost: teal\r\nX-Teal-Signature-256: nope\r\nContent-Length: 500000\r\n\r\n',
    );
    await until('the 401', () => malformed.state.text.includes('\r\n\r\n'), 3_000);
    expect(malformed.state.text).toMatch(/^HTTP\/1\.1 401 /);
    expect(malformed.state.text).toContain('is not a signature');
  });

  it('cuts a webhook body at the 1 MB limit with 413, announced or not', async () => {
    const announced = await raw(base);
    announced.socket.write(
      `POST /v1/hooks/generic/ci HTTP/1.1\r\nHost: teal\r\nX-Teal-Signature-256: ${SIGNATURE}\r\nContent-Length: 5000000\r\n\r\n`,
    );
    await until('the 413', () => announced.state.text.includes('\r\n\r\n'), 3_000);
    expect(announced.state.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(announced.state.text).toContain('over the limit of 1048576 bytes');

    const streamed = await raw(base);
    streamed.socket.write(
      `POST /v1/hooks/generic/ci HTTP/1.1\r\nHost: teal\r\nX-Teal-Signature-256: ${SIGNATURE}\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    const chunk = `${(64 * 1024).toString(16)}\r\n${'a'.repeat(64 * 1024)}\r\n`;
    // 1.5 MB, and the body never ends: the answer comes at the limit, not at the end.
    for (let i = 0; i < 24; i++) streamed.socket.write(chunk);
    await until('the 413', () => streamed.state.text.includes('\r\n\r\n'), 5_000);
    expect(streamed.state.text).toMatch(/^HTTP\/1\.1 413 /);
    await until('the connection to close', () => streamed.state.closed, 3_000);
  });

  it('holds 60 half-sent 3 MB webhook bodies without growing by more than 64 MB', async () => {
    const before = await residentBytes(daemon.info.pid);
    const clients = await Promise.all(Array.from({ length: 60 }, () => raw(base)));
    const chunk = Buffer.from(`${(256 * 1024).toString(16)}\r\n${'b'.repeat(256 * 1024)}\r\n`);
    for (const c of clients) {
      c.socket.write(
        `POST /v1/hooks/generic/ci HTTP/1.1\r\nHost: teal\r\nX-Teal-Signature-256: ${SIGNATURE}\r\nTransfer-Encoding: chunked\r\n\r\n`,
      );
      for (let i = 0; i < 12; i++) c.socket.write(chunk);
    }
    // The peak, sampled while every one of them is answered (413 at the limit, or 429 past the
    // deliveries read at once) or still sending.
    let peak = before;
    const deadline = performance.now() + 10_000;
    while (performance.now() < deadline) {
      peak = Math.max(peak, await residentBytes(daemon.info.pid));
      if (clients.every((c) => c.state.text.includes('\r\n\r\n'))) break;
      await sleep(100);
    }
    await sleep(300);
    peak = Math.max(peak, await residentBytes(daemon.info.pid));
    const statuses = clients.map(
      (c) => /^HTTP\/1\.1 (\d+) /.exec(c.state.text)?.[1] ?? (c.state.closed ? 'closed' : 'none'),
    );
    for (const c of clients) c.socket.destroy();
    const grown = peak - before;
    console.log(
      `daemon RSS ${Math.round(before / 2 ** 20)} MB -> peak ${Math.round(peak / 2 ** 20)} MB with 60 bodies; answers ${[...new Set(statuses)].join(',')}`,
    );
    expect(grown).toBeLessThan(64 * 2 ** 20);
    // Each was refused: 413 at the limit, 429 past the deliveries read at once; a client still
    // sending when its 413 went may see the close (a reset) before it reads the answer.
    expect(statuses.filter((s) => s !== '413' && s !== '429' && s !== 'closed')).toEqual([]);
  });

  it('answers 429 to a client guessing tokens, logs it without the token, and still serves others', async () => {
    const guesses: number[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await call(base, {
        path: '/v1/services',
        token: `guess-number-${i}-of-the-attacker`,
        localAddress: '127.0.0.6',
      });
      guesses.push(r.status);
      if (r.status === 429) expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    }
    expect(guesses).toEqual([401, 401, 401, 401, 401, 429, 429]);
    // The right token from the same address is refused too while it is blocked (no more guessing)...
    expect(
      (await call(base, { path: '/v1/services', token: daemon.token, localAddress: '127.0.0.6' })).status,
    ).toBe(429);
    // ...but another client is served.
    const other = await call(base, { path: '/v1/services', token: daemon.token, localAddress: '127.0.0.2' });
    expect(other.status).toBe(200);

    // The dashboard's login counts the same way, per address.
    const logins: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await call(base, {
        path: '/login',
        method: 'POST',
        body: `token=login-guess-${i}&next=%2F`,
        localAddress: '127.0.0.3',
      });
      logins.push(r.status);
    }
    expect(logins).toEqual([401, 401, 401, 401, 401, 429]);

    await sleep(200);
    const log = daemon.log();
    const refusals = log.split('\n').filter((l) => l.includes('refused a wrong API token'));
    expect(refusals).toHaveLength(5);
    expect(JSON.parse(refusals[0]!)).toMatchObject({
      level: 'warn',
      client: '127.0.0.6',
      path: '/v1/services',
    });
    expect(log).toContain('refused a wrong dashboard login');
    expect(log).toContain('refusing a client after repeated wrong credentials');
    expect(log).not.toContain('guess-number-');
    expect(log).not.toContain('login-guess-');
  });

  it('closes connections past the cap at once, and serves again once the idle ones time out', async () => {
    const held = await Promise.all(Array.from({ length: 100 }, () => raw(base, '127.0.0.7')));
    await sleep(100);
    const extra = await raw(base, '127.0.0.8');
    extra.socket.write(
      `GET /v1/services HTTP/1.1\r\nHost: teal\r\nAuthorization: Bearer ${daemon.token}\r\n\r\n`,
    );
    await until('the connection past the cap to be closed', () => extra.state.closed, 3_000);
    expect(extra.state.text).toBe('');
    // The held ones sent nothing: the header timeout (1 s) frees their places.
    await until('the held connections to time out', () => held.every((c) => c.state.closed), 5_000);
    const after = await call(base, { path: '/v1/services', token: daemon.token, localAddress: '127.0.0.8' });
    expect(after.status).toBe(200);
  });

  it('answers 400 naming the segment to malformed percent-encoding, without a log line each', async () => {
    const before = daemon.log().split('\n').length;
    for (let i = 0; i < 20; i++) {
      const r = await call(base, {
        path: '/v1/services/%E0%A4%A',
        token: daemon.token,
        localAddress: '127.0.0.4',
      });
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body).error.message).toContain(
        'malformed percent-encoding in the path segment "%E0%A4%A"',
      );
    }
    await sleep(200);
    expect(daemon.log().split('\n').length - before).toBeLessThan(3);
  });

  it('keeps event streams and log follows open past the request timeout', async () => {
    // deployAndWait follows the deployment's event stream to its end (a few seconds: past 1.5 s).
    const record = await deployAndWait(daemon.client, 'web', 'v1');
    expect(record.state).toBe('done');

    const follow = await raw(base, '127.0.0.5');
    follow.socket.write(
      `GET /v1/services/web/logs?follow=1 HTTP/1.1\r\nHost: teal\r\nAuthorization: Bearer ${daemon.token}\r\n\r\n`,
    );
    await until('the log stream to begin', () => follow.state.text.startsWith('HTTP/1.1 200'), 3_000);
    await sleep(4_000);
    expect(follow.state.closed).toBe(false);
    follow.socket.destroy();
  }, 60_000);
});

describe('teal up with a short TEAL_TOKEN', () => {
  it('refuses to start, saying how long the token must be', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-short-'));
    try {
      writeFileSync(
        path.join(dir, 'teal.yml'),
        `proxy: { kind: builtin, listen: 127.0.0.1:0 }\napi: { listen: 127.0.0.1:0 }\nservices:\n  web:\n${helloService()}\n`,
      );
      // Spawned here, not through runCli: if it did start, it is stopped (and its data plane too).
      const child = spawn(process.execPath, [cliEntry(), 'up', '-c', path.join(dir, 'teal.yml')], {
        cwd: dir,
        env: { ...process.env, NO_COLOR: '1', TEAL_TOKEN: 'short-token-of-31-characters-xx' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.stdout!.resume();
      const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const [code] = (await once(child, 'exit')) as [number | null];
      clearTimeout(killer);
      await teardown(statePaths(path.join(dir, '.teal')), { stopTimeoutMs: 2_000 }).catch(() => undefined);
      const r = { code, stderr };
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('TEAL_TOKEN is 31 characters; it must be at least 32');
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
