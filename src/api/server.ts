import http from 'node:http';
import type { Logger } from '../core/deps.js';
import { TealError, toTealError } from '../core/errors.js';
import { dashboardRoutes } from '../dashboard/routes.js';
import { authorize } from './auth.js';
import { Router, sendError } from './http.js';
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
}): http.Server {
  const { token, log } = options;
  const sessions = options.sessions ?? new Sessions();
  const router = new Router().include(options.router).include(dashboardRoutes({ token, sessions }));
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://teal');
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
      if (found.route.auth) authorize(req, token, sessions);
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
  });
  // Event and log streams stay open for long; only idle keep-alive sockets time out.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 5_000;
  return server;
}
