import type { IncomingMessage } from 'node:http';
import type { Logger } from '../core/deps.js';
import { TealError } from '../core/errors.js';

/** Clients remembered at most; past this, the ones whose window ended go first, then the oldest. */
const MAX_CLIENTS = 10_000;

interface Window {
  start: number;
  failures: number;
  /** The refusal (429) of this window was logged: one line per client per window, not a flood. */
  logged: boolean;
}

/**
 * Failed credentials per client address: after `perWindow` wrong API tokens or dashboard logins
 * within `windowMs`, that address gets 429 (with Retry-After) until its window ends, whatever it
 * sends, so a token cannot be guessed faster than that. A missing token is not a guess and is not
 * counted. Each failure is logged (the address, the path, never what was sent) until the limit,
 * then the refusal once per window.
 */
export class AuthGuard {
  private readonly clients = new Map<string, Window>();
  private readonly log: Logger;
  private readonly perWindow: number;
  private readonly windowMs: number;
  private readonly now: () => number;

  constructor(log: Logger, options: { perWindow: number; windowMs?: number; now?: () => number }) {
    this.log = log;
    this.perWindow = options.perWindow;
    this.windowMs = options.windowMs ?? 60_000;
    this.now = options.now ?? Date.now;
  }

  /** Throws TEAL_RATE_LIMITED while the request's address is over its limit. */
  check(req: IncomingMessage): void {
    const client = clientOf(req);
    const w = this.clients.get(client);
    if (!w) return;
    const now = this.now();
    if (now - w.start >= this.windowMs) {
      this.clients.delete(client);
      return;
    }
    if (w.failures < this.perWindow) return;
    const retryAfter = Math.max(1, Math.ceil((w.start + this.windowMs - now) / 1000));
    if (!w.logged) {
      w.logged = true;
      this.log.warn('refusing a client after repeated wrong credentials', {
        client,
        failures: w.failures,
        retryAfterSeconds: retryAfter,
        path: pathOf(req),
      });
    }
    throw new TealError(
      'TEAL_RATE_LIMITED',
      `too many wrong credentials from ${client}; try again in ${retryAfter}s`,
      { retryAfterSeconds: retryAfter },
    );
  }

  /** A wrong API token or dashboard login from the request's address. */
  failed(req: IncomingMessage, what: string): void {
    const client = clientOf(req);
    const now = this.now();
    let w = this.clients.get(client);
    if (!w || now - w.start >= this.windowMs) {
      if (w) this.clients.delete(client);
      this.evict(now);
      w = { start: now, failures: 0, logged: false };
      this.clients.set(client, w);
    }
    w.failures++;
    this.log.warn(`refused a wrong ${what}`, {
      client,
      method: req.method ?? '',
      path: pathOf(req),
      failures: w.failures,
    });
  }

  private evict(now: number): void {
    if (this.clients.size < MAX_CLIENTS) return;
    for (const [client, w] of this.clients) if (now - w.start >= this.windowMs) this.clients.delete(client);
    // Still full: the oldest windows go (Map keeps insertion order).
    for (const client of this.clients.keys()) {
      if (this.clients.size < MAX_CLIENTS) break;
      this.clients.delete(client);
    }
  }
}

function clientOf(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unknown';
}

/** The path without its query string, which may carry secrets. */
function pathOf(req: IncomingMessage): string {
  return (req.url ?? '/').split('?')[0]!.slice(0, 200);
}
