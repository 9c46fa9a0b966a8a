import http from 'node:http';
import type { Logger } from '../core/deps.js';
import { TealError, toTealError } from '../core/errors.js';
import { dashboardRoutes } from '../dashboard/routes.js';
import { authorize } from './auth.js';
import { Router, sendError } from './http.js';
import { AuthGuard } from './limiter.js';
import { Sessions } from './sessions.js';

/**
 * Sent with every response, API and dashboard alike: the dashboard loads only its own script,
 * style and API (no inline script, no CDN), may not be framed, and leaks no URL in Referer.
 */
export const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

/** What a stranger may hold of the API: deadlines and caps (api.timeouts, api.limits in teal.yml). */
export interface ApiSettings {
  /** A request head must arrive within this (slow-loris): 408 and closed. */
  headersTimeoutMs: number;
  /** A whole request (head and body, not the response: streams stay open) within this. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  idleTimeoutMs: number;
  /** Connections open at once; more are closed as they arrive. */
  maxConnections: number;
  /** Wrong API tokens or dashboard logins per client address per minute before 429. */
  authFailuresPerMinute: number;
}

export const DEFAULT_API_SETTINGS: ApiSettings = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 5_000,
  maxConnections: 512,
  authFailuresPerMinute: 10,
};

/**
 * The control API's HTTP server, with the dashboard on the same port: authentication, routing and
 * the mapping of errors to statuses, all here at the edge; route handlers only call the engine and
 * throw TealErrors.
 */
export function createApiServer(options: {
  router: Router;
  token: string;
  log: Logger;
  sessions?: Sessions;
  settings?: Partial<ApiSettings>;
}): http.Server {
  const { token, log } = options;
  const settings = { ...DEFAULT_API_SETTINGS, ...options.settings };
  const sessions = options.sessions ?? new Sessions();
  const guard = new AuthGuard(log, { perWindow: settings.authFailuresPerMinute });
  const router = new Router().include(options.router).include(dashboardRoutes({ token, sessions, guard }));
  // Node checks both deadlines on a timer of its own (30 s by default: a slow-loris would get that
  // much more); the head's deadline cannot be past the whole request's.
  const headersTimeout = Math.min(settings.headersTimeoutMs, settings.requestTimeoutMs);
  const server = http.createServer(
    {
      headersTimeout,
      requestTimeout: settings.requestTimeoutMs,
      keepAliveTimeout: settings.idleTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(headersTimeout / 4))),
    },
    async (req, res) => {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://teal');
      } catch {
        url = new URL('http://teal/');
      }
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
      try {
        const found = router.match(req.method ?? 'GET', url.pathname);
        if ('allowed' in found) {
          if (found.allowed.length > 0) {
            res.setHeader('allow', found.allowed.join(', '));
            throw new TealError(
              'TEAL_BAD_REQUEST',
              `${req.method} is not allowed on ${url.pathname} (allowed: ${found.allowed.join(', ')})`,
            );
          }
          throw new TealError('TEAL_NOT_FOUND', `no API endpoint ${req.method} ${url.pathname}`);
        }
        if (found.route.auth) {
          guard.check(req);
          try {
            authorize(req, token, sessions);
          } catch (err) {
            // A token that was sent and is wrong is a guess; a missing one is not.
            if (req.headers.authorization !== undefined) guard.failed(req, 'API token');
            throw err;
          }
        }
        await found.route.handler(req, res, found.params, url);
      } catch (err) {
        const e = toTealError(err);
        if (e.httpStatus >= 500)
          log.error('API request failed', {
            method: req.method,
            path: url.pathname,
            code: e.code,
            error: e.message,
          });
        sendError(res, e);
      }
    },
  );
  // Event and log streams stay open for long: requestTimeout only bounds receiving the request.
  server.maxConnections = settings.maxConnections;
  return server;
}
