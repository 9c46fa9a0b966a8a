import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { TealError } from '../core/errors.js';

/** Checks `Authorization: Bearer <token>` in constant time; throws TEAL_UNAUTHORIZED otherwise. */
export function authorize(req: IncomingMessage, token: string): void {
  const header = req.headers.authorization ?? '';
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match) {
    throw new TealError(
      'TEAL_UNAUTHORIZED',
      'missing API token: send "Authorization: Bearer <token>" (the CLI reads TEAL_TOKEN or <state dir>/token)',
    );
  }
  const given = Buffer.from(match[1]!);
  const expected = Buffer.from(token);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new TealError('TEAL_UNAUTHORIZED', 'wrong API token');
  }
}
