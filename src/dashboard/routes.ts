import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { Router } from '../api/http.js';
import type { AuthGuard } from '../api/limiter.js';
import { csrfMatches, type Session, type Sessions, sameSecret, sessionCookie } from '../api/sessions.js';
import { TealError } from '../core/errors.js';
import { packageRoot } from '../paths.js';
import { loginPage, overviewPage, pipelinePage, runPage, servicePage } from './pages.js';

/**
 * The assets ship as plain files beside this module's source (package.json "files" lists the
 * folder), so the daemon serves them from the package root whether it runs from src/ or dist/.
 */
const ASSETS: Record<string, string> = {
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

export function assetPath(file: string): string {
  return path.join(packageRoot(), 'src/dashboard/assets', file);
}

/**
 * The dashboard's routes: login and logout, the overview, a page per service and the two assets.
 * Pages need a session (without one they redirect to the login page); everything they show comes
 * from the API with the same session.
 */
export function dashboardRoutes(options: { token: string; sessions: Sessions; guard?: AuthGuard }): Router {
  const { token, sessions, guard } = options;
  const router = new Router();
  const open = { auth: false };

  router.add(
    'GET',
    '/',
    async (req, res) => redirect(res, sessions.fromRequest(req) ? '/services' : '/login'),
    open,
  );

  router.add(
    'GET',
    '/login',
    async (req, res, _params, url) => {
      const next = safeNext(url.searchParams.get('next'));
      if (sessions.fromRequest(req)) redirect(res, next);
      else sendHtml(res, 200, loginPage({ next }));
    },
    open,
  );

  router.add(
    'POST',
    '/login',
    async (req, res) => {
      refuseCrossOrigin(req);
      guard?.check(req);
      const form = await readForm(req);
      const next = safeNext(form.get('next'));
      const given = form.get('token') ?? '';
      if (!sameSecret(given.trim(), token)) {
        guard?.failed(req, 'dashboard login');
        sendHtml(res, 401, loginPage({ next, error: 'Wrong token: log in with the daemon’s API token.' }));
        return;
      }
      const name = (form.get('actor') ?? '').trim().slice(0, 100);
      const session = sessions.create(name ? `${name} (dashboard)` : 'dashboard');
      res.setHeader('set-cookie', sessionCookie(req, session, sessions.ttlMs));
      redirect(res, next);
    },
    open,
  );

  // A POST with the page's CSRF token, so another site cannot log a user out either.
  router.add(
    'POST',
    '/logout',
    async (req, res) => {
      const session = sessions.fromRequest(req);
      if (session) {
        if (!csrfMatches(req, session)) {
          throw new TealError('TEAL_UNAUTHORIZED', 'logging out takes the page’s CSRF token (X-Teal-CSRF)');
        }
        sessions.destroy(session.id);
      }
      res.setHeader('set-cookie', sessionCookie(req, null, 0));
      res.writeHead(204, { 'cache-control': 'no-store' });
      res.end();
    },
    open,
  );

  const page =
    (render: (session: Session, params: Record<string, string>) => string) =>
    async (req: IncomingMessage, res: ServerResponse, params: Record<string, string>, url: URL) => {
      const session = sessions.fromRequest(req);
      if (!session) redirect(res, `/login?next=${encodeURIComponent(url.pathname)}`);
      else sendHtml(res, 200, render(session, params));
    };
  router.add('GET', '/services', page(overviewPage), open);
  router.add(
    'GET',
    '/services/:svc',
    page((session, { svc }) => servicePage(session, svc!)),
    open,
  );
  router.add(
    'GET',
    '/pipelines/:name',
    page((session, { name }) => pipelinePage(session, name!)),
    open,
  );
  router.add(
    'GET',
    '/pipelines/:name/runs/:n',
    page((session, { name, n }) => {
      if (!/^[1-9][0-9]{0,9}$/.test(n!)) throw new TealError('TEAL_NOT_FOUND', `no run ${JSON.stringify(n)}`);
      return runPage(session, name!, Number(n));
    }),
    open,
  );

  router.add(
    'GET',
    '/assets/:file',
    async (_req, res, { file }) => {
      const type = ASSETS[file!];
      if (!type) throw new TealError('TEAL_NOT_FOUND', `no dashboard asset ${file}`);
      const body = await readFile(assetPath(file!));
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache' });
      res.end(body);
    },
    open,
  );

  return router;
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  // no-store: pages carry the session's CSRF token.
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(303, { location, 'cache-control': 'no-store' });
  res.end();
}

/** Where to go after logging in: a dashboard page of this server (a service, a pipeline, a run), never another site. */
function safeNext(next: string | null | undefined): string {
  return next && /^\/(?:services(?:\/[^/\\?#]+)?|pipelines\/[^/\\?#]+(?:\/runs\/[0-9]+)?)$/.test(next)
    ? next
    : '/services';
}

/**
 * A login posted from another site would log the user into the attacker's session (login CSRF).
 * Browsers say where a request comes from in Sec-Fetch-Site; Origin is the fallback for older
 * ones, but it is "null" on our own form because the pages send no referrer, so "null" is not proof
 * of another site. Clients that send neither (curl) are not browsers.
 */
function refuseCrossOrigin(req: IncomingMessage): void {
  const site = req.headers['sec-fetch-site'];
  if (typeof site === 'string') {
    if (site === 'same-origin' || site === 'none') return;
    throw new TealError('TEAL_BAD_REQUEST', `a login from another site (Sec-Fetch-Site: ${site}) is refused`);
  }
  const origin = req.headers.origin;
  if (origin === undefined || origin === 'null') return;
  let host: string | undefined;
  try {
    host = new URL(origin).host;
  } catch {
    host = undefined;
  }
  if (host !== req.headers.host) {
    throw new TealError('TEAL_BAD_REQUEST', `a login from another origin (${origin}) is refused`);
  }
}

const MAX_FORM = 10_000;

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded')) {
    throw new TealError('TEAL_BAD_REQUEST', 'the login form is sent as application/x-www-form-urlencoded');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM) throw new TealError('TEAL_BAD_REQUEST', `login form over ${MAX_FORM} bytes`);
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString());
}
