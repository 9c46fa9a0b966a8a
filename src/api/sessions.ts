import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** The dashboard's session cookie; it holds a random id, never the API token. */
export const SESSION_COOKIE = 'teal_session';
/** The header a dashboard page sends its session's CSRF token in on every state-changing call. */
export const CSRF_HEADER = 'x-teal-csrf';

export interface Session {
  id: string;
  /** Embedded in the pages of this session; a cross-site page cannot read it, so cannot send it. */
  csrf: string;
  /** Who logged in, as they typed it (the actor of the page's actions); "dashboard" when blank. */
  actor: string;
  expiresAt: number;
}

/**
 * Dashboard logins, in memory: a daemon restart logs everyone out, which is the safe failure (the
 * token is all it takes to log in again). Bounded, so a flood of logins cannot grow it without end.
 */
export class Sessions {
  readonly #byId = new Map<string, Session>();
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #now: () => number;

  constructor(options: { ttlMs?: number; max?: number; now?: () => number } = {}) {
    this.#ttlMs = options.ttlMs ?? 12 * 60 * 60_000;
    this.#max = options.max ?? 1_000;
    this.#now = options.now ?? Date.now;
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  create(actor: string): Session {
    // Maps iterate in insertion order: the first entry is the oldest login.
    while (this.#byId.size >= this.#max) this.#byId.delete(this.#byId.keys().next().value!);
    const session: Session = {
      id: randomBytes(32).toString('base64url'),
      csrf: randomBytes(32).toString('base64url'),
      actor,
      expiresAt: this.#now() + this.#ttlMs,
    };
    this.#byId.set(session.id, session);
    return session;
  }

  /** The live session named by the request's cookie, if any. */
  fromRequest(req: IncomingMessage): Session | undefined {
    const id = cookieValue(req, SESSION_COOKIE);
    if (!id) return undefined;
    const session = this.#byId.get(id);
    if (!session) return undefined;
    if (session.expiresAt <= this.#now()) {
      this.#byId.delete(id);
      return undefined;
    }
    return session;
  }

  destroy(id: string): void {
    this.#byId.delete(id);
  }
}

/** True when the request carries the session's CSRF token in X-Teal-CSRF (compared in constant time). */
export function csrfMatches(req: IncomingMessage, session: Session): boolean {
  const sent = req.headers[CSRF_HEADER];
  if (typeof sent !== 'string') return false;
  return sameSecret(sent, session.csrf);
}

export function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieValue(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * The Set-Cookie value for a session (or, without one, the value that clears it). Secure when the
 * page came over https, directly or through a TLS-terminating proxy that says so; a plain-http
 * loopback daemon could not set a Secure cookie at all.
 */
export function sessionCookie(req: IncomingMessage, session: Session | null, maxAgeMs: number): string {
  const https =
    (req.socket as { encrypted?: boolean }).encrypted === true ||
    req.headers['x-forwarded-proto'] === 'https';
  const value = session ? session.id : '';
  const maxAge = session ? Math.floor(maxAgeMs / 1000) : 0;
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${https ? '; Secure' : ''}`;
}
