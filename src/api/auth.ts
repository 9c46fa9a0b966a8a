import type { IncomingMessage } from 'node:http';
import { TealError } from '../core/errors.js';
import { authenticated } from './actor.js';
import { CSRF_HEADER, csrfMatches, type Sessions, sameSecret } from './sessions.js';

/** Methods that never change state, so a session cookie alone may call them. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Lets a request in with `Authorization: Bearer <token>` (compared in constant time), or with a
 * dashboard session cookie. A browser sends cookies on cross-site requests too, so a cookie alone
 * only reads: a state-changing call also needs the session's CSRF token in X-Teal-CSRF, which a
 * cross-site page can neither read nor send without a CORS preflight this server never grants.
 */
export function authorize(req: IncomingMessage, token: string, sessions?: Sessions): void {
  const header = req.headers.authorization;
  if (header === undefined && sessions) {
    const session = sessions.fromRequest(req);
    if (session) {
      if (SAFE_METHODS.has(req.method ?? 'GET') || csrfMatches(req, session)) {
        authenticated(req, session);
        return;
      }
      throw new TealError(
        'TEAL_UNAUTHORIZED',
        `a dashboard session changes state only with its CSRF token in the ${CSRF_HEADER} header`,
      );
    }
  }
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  if (!match) {
    throw new TealError(
      'TEAL_UNAUTHORIZED',
      'missing API token: send "Authorization: Bearer <token>" (the CLI reads TEAL_TOKEN or <state dir>/token)',
    );
  }
  if (!sameSecret(match[1]!, token)) throw new TealError('TEAL_UNAUTHORIZED', 'wrong API token');
  authenticated(req);
}
