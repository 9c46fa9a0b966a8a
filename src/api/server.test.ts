import { once } from 'node:events';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../core/deps.js';
import { Router, readJson, sendJson } from './http.js';
import { createApiServer, SECURITY_HEADERS } from './server.js';
import { Sessions } from './sessions.js';

const TOKEN = 'server-test-token-0123456789';

describe('the API server with the dashboard on its port', () => {
  let server: http.Server;
  let base: string;
  const changes: unknown[] = [];

  beforeAll(async () => {
    const router = new Router()
      .add('GET', '/v1/thing', async (_req, res) => sendJson(res, 200, { changes: changes.length }))
      .add('POST', '/v1/thing', async (req, res) => {
        changes.push(await readJson(req));
        sendJson(res, 202, { n: changes.length });
      });
    server = createApiServer({ router, token: TOKEN, log: silentLogger });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, { headers, redirect: 'manual' });
  const post = (path: string, headers: Record<string, string>, body = '{}') =>
    fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body,
      redirect: 'manual',
    });
  const login = (fields: Record<string, string>, headers: Record<string, string> = {}) =>
    fetch(`${base}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(fields).toString(),
      redirect: 'manual',
    });
  /** Logs in and returns the Cookie header value and the page's CSRF token. */
  async function session(): Promise<{ cookie: string; csrf: string }> {
    const res = await login({ token: TOKEN });
    const cookie = res.headers.get('set-cookie')!.split(';')[0]!;
    const page = await (await get('/services/web', { cookie })).text();
    const csrf = /<meta name="teal-csrf" content="([^"]+)">/.exec(page)![1]!;
    return { cookie, csrf };
  }

  it('sends the strict CSP, nosniff and no-referrer on pages, assets, redirects and API answers', async () => {
    const { cookie } = await session();
    for (const res of [
      await get('/'),
      await get('/login'),
      await get('/services/web', { cookie }),
      await get('/assets/app.js'),
      await get('/assets/style.css'),
      await get('/v1/thing'),
    ]) {
      expect(res.headers.get('content-security-policy')).toBe(SECURITY_HEADERS['content-security-policy']);
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    }
    expect(SECURITY_HEADERS['content-security-policy']).toContain("script-src 'self';");
    expect(SECURITY_HEADERS['content-security-policy']).toContain("frame-ancestors 'none'");
  });

  it('sends pages without a session to the login page, and / to the overview with one', async () => {
    expect((await get('/')).headers.get('location')).toBe('/login');
    const page = await get('/services/web');
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/login?next=%2Fservices%2Fweb');
    expect((await get('/services')).headers.get('location')).toBe('/login?next=%2Fservices');
    const login = await get('/login');
    expect(login.status).toBe(200);
    expect(await login.text()).toContain('<input id="token" name="token" type="password"');

    const { cookie } = await session();
    expect((await get('/', { cookie })).headers.get('location')).toBe('/services');
    const overview = await get('/services', { cookie });
    expect(overview.status).toBe(200);
    expect(overview.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(overview.headers.get('cache-control')).toBe('no-store');
  });

  it('refuses a wrong token at the login page and sets no cookie', async () => {
    const res = await login({ token: 'not-the-token' });
    expect(res.status).toBe(401);
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(await res.text()).toContain('Wrong token');
  });

  it('logs in with a random session id in an HttpOnly, SameSite=Strict cookie, Secure over https', async () => {
    const res = await login({ token: TOKEN, next: '/services/web' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/services/web');
    const cookie = res.headers.get('set-cookie')!;
    expect(cookie).toMatch(
      /^teal_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/,
    );
    expect(cookie).not.toContain(TOKEN);

    const https = await login({ token: TOKEN }, { 'x-forwarded-proto': 'https' });
    expect(https.headers.get('set-cookie')).toMatch(/; Secure$/);
  });

  it('goes back only to a dashboard page after logging in, never to another site', async () => {
    for (const next of [
      'https://evil.example/',
      '//evil.example',
      '/\\evil.example',
      '/v1/thing',
      '/pipelines//evil.example',
      '/pipelines/web/runs/x',
    ]) {
      expect((await login({ token: TOKEN, next })).headers.get('location')).toBe('/services');
    }
    for (const next of ['/pipelines/web', '/pipelines/web/runs/12']) {
      expect((await login({ token: TOKEN, next })).headers.get('location')).toBe(next);
    }
  });

  it('refuses a login posted from another origin', async () => {
    const res = await login({ token: TOKEN }, { origin: 'https://evil.example' });
    expect(res.status).toBe(400);
    expect(res.headers.get('set-cookie')).toBeNull();
    const site = await login({ token: TOKEN }, { 'sec-fetch-site': 'cross-site', origin: 'null' });
    expect(site.status).toBe(400);
    expect((await login({ token: TOKEN }, { origin: base })).status).toBe(303);
    // Our own form, as Chromium posts it from a no-referrer page.
    expect((await login({ token: TOKEN }, { 'sec-fetch-site': 'same-origin', origin: 'null' })).status).toBe(
      303,
    );
  });

  it('lets the API be read with the session cookie or the bearer token, and nothing else', async () => {
    const { cookie } = await session();
    expect((await get('/v1/thing', { cookie })).status).toBe(200);
    expect((await get('/v1/thing', { authorization: `Bearer ${TOKEN}` })).status).toBe(200);
    expect((await get('/v1/thing')).status).toBe(401);
    expect((await get('/v1/thing', { cookie: 'teal_session=forged' })).status).toBe(401);
    expect((await get('/v1/thing', { authorization: 'Bearer wrong' })).status).toBe(401);
  });

  it('changes state with the cookie only when the CSRF header carries the session token', async () => {
    const { cookie, csrf } = await session();
    const before = changes.length;
    const bare = await post('/v1/thing', { cookie });
    expect(bare.status).toBe(401);
    expect(((await bare.json()) as { error: { message: string } }).error.message).toContain('x-teal-csrf');
    expect((await post('/v1/thing', { cookie, 'x-teal-csrf': 'guess' })).status).toBe(401);
    const other = await session();
    expect((await post('/v1/thing', { cookie, 'x-teal-csrf': other.csrf })).status).toBe(401);
    expect(changes.length).toBe(before);

    expect((await post('/v1/thing', { cookie, 'x-teal-csrf': csrf })).status).toBe(202);
    expect((await post('/v1/thing', { authorization: `Bearer ${TOKEN}` })).status).toBe(202);
    expect(changes.length).toBe(before + 2);
  });

  it('logs out only with the CSRF token, and the cookie stops working', async () => {
    const { cookie, csrf } = await session();
    expect((await post('/logout', { cookie })).status).toBe(401);
    expect((await get('/v1/thing', { cookie })).status).toBe(200);
    const out = await post('/logout', { cookie, 'x-teal-csrf': csrf });
    expect(out.status).toBe(204);
    expect(out.headers.get('set-cookie')).toContain('Max-Age=0');
    expect((await get('/v1/thing', { cookie })).status).toBe(401);
    expect((await get('/services', { cookie })).status).toBe(303);
  });

  it('serves the two assets with their types and nothing else from disk', async () => {
    const js = await get('/assets/app.js');
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await js.text()).toContain("document.body.dataset.page === 'service'");
    expect((await get('/assets/style.css')).headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect((await get('/assets/..%2F..%2F..%2Fpackage.json')).status).toBe(404);
    expect((await get('/assets/routes.ts')).status).toBe(404);
  });

  it('escapes the service name in its page', async () => {
    const { cookie } = await session();
    const page = await (await get('/services/%3Cscript%3Ex%3C%2Fscript%3E', { cookie })).text();
    expect(page).not.toContain('<script>x');
    expect(page).toContain('&lt;script&gt;x&lt;/script&gt;');
  });

  it('serves the pipeline and run pages with a session, escaping the name; a run that is no number is 404', async () => {
    expect((await get('/pipelines/web/runs/3')).headers.get('location')).toBe(
      '/login?next=%2Fpipelines%2Fweb%2Fruns%2F3',
    );
    const { cookie } = await session();
    const pipeline = await get('/pipelines/web', { cookie });
    expect(pipeline.status).toBe(200);
    expect(await pipeline.text()).toContain('data-page="pipeline" data-pipeline="web"');
    const run = await (await get('/pipelines/web/runs/3', { cookie })).text();
    expect(run).toContain('data-page="run" data-pipeline="web" data-run="3"');
    const evil = await (await get('/pipelines/%22%3E%3Cscript%3Ex/runs/1', { cookie })).text();
    expect(evil).not.toContain('<script>x');
    expect(evil).toContain('&quot;&gt;&lt;script&gt;x');
    expect((await get('/pipelines/web/runs/x', { cookie })).status).toBe(404);
  });
});

describe('Sessions', () => {
  it('forgets a session at its expiry and the oldest one past the limit', () => {
    let now = 0;
    const sessions = new Sessions({ ttlMs: 1_000, max: 2, now: () => now });
    const req = (id: string) =>
      ({ headers: { cookie: `other=1; teal_session=${id}` } }) as http.IncomingMessage;
    const a = sessions.create('a');
    expect(sessions.fromRequest(req(a.id))).toBe(a);
    now = 1_000;
    expect(sessions.fromRequest(req(a.id))).toBeUndefined();
    const b = sessions.create('b');
    const c = sessions.create('c');
    const d = sessions.create('d');
    expect(sessions.fromRequest(req(b.id))).toBeUndefined();
    expect(sessions.fromRequest(req(c.id))).toBe(c);
    expect(sessions.fromRequest(req(d.id))).toBe(d);
  });
});
