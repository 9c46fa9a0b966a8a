import { once } from 'node:events';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../core/deps.js';
import { dashboardRoutes } from '../dashboard/routes.js';
import { Router } from './http.js';
import { pipelineRoutes } from './pipelines.js';
import { apiRoutes } from './routes.js';
import { createApiServer } from './server.js';
import { Sessions } from './sessions.js';

const TOKEN = 'routes-auth-token-0123456789';

/**
 * Every endpoint the daemon serves, checked for authentication: the routes are the real ones (the
 * API's, the pipelines', the dashboard's); their handlers never run here, since a request without
 * a valid token must be refused before any of them is reached. The context is therefore empty.
 */
describe('authentication of every endpoint', () => {
  const none = {} as never;
  const api = pipelineRoutes(apiRoutes(none), none);
  let server: http.Server;
  let base = '';

  beforeAll(async () => {
    // Every route is tried with a wrong token: more guesses than the per-client limit allows.
    server = createApiServer({
      router: api,
      token: TOKEN,
      log: silentLogger,
      settings: { authFailuresPerMinute: 1_000 },
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  const all = new Router()
    .include(api)
    .include(dashboardRoutes({ token: TOKEN, sessions: new Sessions() }))
    .list();
  const concrete = (path: string) => path.replace(/:n\b/g, '1').replace(/:[a-z]+/g, 'web');

  it('leaves open only the liveness check and the signed webhooks under /v1/', () => {
    expect(
      all.filter((r) => !r.auth && r.path.startsWith('/v1/')).map((r) => `${r.method} ${r.path}`),
    ).toEqual([
      'GET /v1/health',
      'POST /v1/hooks/github/:name',
      'POST /v1/hooks/gitlab/:name',
      'POST /v1/hooks/gitea/:name',
      'POST /v1/hooks/generic/:name',
    ]);
  });

  it('sends every dashboard page to the login without a session (only the login and the assets are served)', async () => {
    const pages = all.filter((r) => !r.auth && r.method === 'GET' && !r.path.startsWith('/v1/'));
    expect(pages.length).toBeGreaterThan(3);
    for (const page of pages) {
      const res = await fetch(`${base}${concrete(page.path).replace('/assets/web', '/assets/app.js')}`, {
        redirect: 'manual',
      });
      if (page.path === '/login' || page.path.startsWith('/assets/')) expect(res.status, page.path).toBe(200);
      else {
        expect([302, 303], page.path).toContain(res.status);
        expect(res.headers.get('location'), page.path).toMatch(/^\/login/);
      }
    }
  });

  for (const route of all.filter((r) => r.auth)) {
    it(`${route.method} ${route.path}: 401 without a token and with a wrong one`, async () => {
      const url = `${base}${concrete(route.path)}`;
      const init = { method: route.method, redirect: 'manual' as const };
      const body = route.method === 'GET' || route.method === 'DELETE' ? {} : { body: '{}' };
      const without = await fetch(url, { ...init, ...body });
      expect(without.status).toBe(401);
      const wrong = await fetch(url, {
        ...init,
        ...body,
        headers: { authorization: 'Bearer not-the-token' },
      });
      expect(wrong.status).toBe(401);
      expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('TEAL_UNAUTHORIZED');
    });
  }
});
