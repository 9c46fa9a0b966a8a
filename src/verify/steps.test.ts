import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VerifyStep } from '../core/config/schema.js';
import type { VerifyTarget } from '../core/deps.js';
import { StepVerifier, valueAt } from './steps.js';

/** An app that answers JSON, fails every `n`th request of /flaky, and is slow on /slow. */
let server: http.Server;
let url = '';
const seen: { slotHeader: string | undefined; method: string | undefined }[] = [];
let flaky = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push({ slotHeader: req.headers['x-teal-slot'] as string | undefined, method: req.method });
    if (req.url === '/status') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ status: 'ok', version: 'v2', checks: [{ name: 'db', ok: true }] }));
    } else if (req.url === '/flaky') {
      res.statusCode = ++flaky % 10 === 0 ? 500 : 200;
      res.end('x');
    } else if (req.url === '/slow') {
      setTimeout(() => res.end('slow'), 40);
    } else res.end('hello');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const target = (over: Partial<VerifyTarget> = {}): VerifyTarget => ({
  service: 'web',
  slot: 'green',
  version: 'v2',
  url,
  instances: [],
  ...over,
});

const verify = (step: unknown, t = target()) =>
  new StepVerifier().run(VerifyStep.parse(step), t, { signal: new AbortController().signal });

describe('verify steps', () => {
  it('valueAt walks objects and arrays, and says when a path is missing', () => {
    const doc = { a: { b: [{ c: 1 }, { c: null }] } };
    expect(valueAt(doc, 'a.b[1].c')).toEqual({ found: true, value: null });
    expect(valueAt(doc, 'a.b[2].c')).toEqual({ found: false });
    expect(valueAt(doc, 'a.x')).toEqual({ found: false });
  });

  it('http checks JSON paths exactly, naming the first that differs', async () => {
    const pass = await verify({ http: { path: '/status', json: { status: 'ok', 'checks[0].ok': true } } });
    expect(pass).toMatchObject({ ok: true });
    const fail = await verify({ http: { path: '/status', json: { status: 'ok', version: 'v3' } } });
    expect(fail).toMatchObject({ ok: false });
    expect(fail.detail).toContain('version is "v2", expected "v3"');
    const notJson = await verify({ http: { path: '/', json: { status: 'ok' } } });
    expect(notJson.detail).toContain('the body is not JSON');
  });

  it('through: preview goes to the preview listener with X-Teal-Slot; without that URL it fails clearly', async () => {
    seen.length = 0;
    expect(
      await verify(
        { http: { path: '/', through: 'preview' } },
        target({ url: 'http://127.0.0.1:1', previewUrl: url }),
      ),
    ).toMatchObject({ ok: true });
    expect(seen.at(-1)?.slotHeader).toBe('green');
    const missing = await verify({ http: { path: '/', through: 'preview' } });
    expect(missing).toMatchObject({
      ok: false,
      detail: 'GET /: through: preview, but the preview listener URL is not known',
    });
  });

  it('load passes within its limits and reports what it measured', async () => {
    seen.length = 0;
    const r = await verify({ load: { path: '/', requests: 200, connections: 4, method: 'HEAD' } });
    expect(r.ok, r.detail).toBe(true);
    expect(r.detail).toMatch(/200 requests on 4 connection\(s\), 0 failed \(0\.00%\)/);
    expect(seen.length).toBe(200);
    expect(seen.every((s) => s.method === 'HEAD')).toBe(true);
  });

  it('load fails on an error rate over its limit, and passes when the limit allows it', async () => {
    const strict = await verify({ load: { path: '/flaky', requests: 100, connections: 2 } });
    expect(strict.ok).toBe(false);
    expect(strict.detail).toMatch(/10 failed \(10\.00%\).*error rate over 0%/);
    expect(strict.output).toContain('status 500');
    const lenient = await verify({
      load: { path: '/flaky', requests: 100, connections: 2, maxErrorRate: 0.15 },
    });
    expect(lenient.ok, lenient.detail).toBe(true);
  });

  it('load fails when p99 is over maxP99', async () => {
    const r = await verify({ load: { path: '/slow', requests: 20, connections: 2, maxP99: '10ms' } });
    expect(r.ok).toBe(false);
    expect(r.detail).toContain('p99 over 10 ms');
  });

  it('load runs for a duration when no request count is given', async () => {
    const t0 = Date.now();
    const r = await verify({ load: { path: '/', duration: '300ms', connections: 2 } });
    expect(r.ok, r.detail).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });
});
