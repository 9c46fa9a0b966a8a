import http from 'node:http';
import type { Logger } from '../core/deps.js';
import { TealError, toTealError } from '../core/errors.js';
import { authorize } from './auth.js';
import { type Router, sendError } from './http.js';

/**
 * The control API's HTTP server: authentication, routing and the mapping of errors to statuses, all
 * here at the edge; route handlers only call the engine and throw TealErrors.
 */
export function createApiServer(options: { router: Router; token: string; log: Logger }): http.Server {
  const { router, token, log } = options;
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://teal');
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
      if (found.route.auth) authorize(req, token);
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
