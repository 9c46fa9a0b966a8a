import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Session } from './sessions.js';

/**
 * Who asked for an action. Two different facts: how the request authenticated (the principal,
 * which teal checked: "token", "dashboard session 1a2b3c4d") and the name it gave in X-Teal-Actor
 * (which nobody checked: any token holder can write any name there). The audit keeps both, and the
 * actor string people read says "claimed" whenever it came from the header, so a forged
 * `X-Teal-Actor: alice` reads "alice [claimed; auth: token]", never as plain "alice".
 */
export interface Actor {
  /** What history and the audit show: the principal, or the claim marked as one. */
  actor: string;
  /** How the request authenticated. */
  principal: string;
  /** The name the request gave for itself, unverified. */
  claimed?: string;
}

const principals = new WeakMap<IncomingMessage, string>();

/** Called by `authorize` once a request passed: with the session when a dashboard cookie let it in. */
export function authenticated(req: IncomingMessage, session?: Session): void {
  principals.set(req, session ? `dashboard session ${sessionLabel(session)}` : 'token');
}

/**
 * A short name for a session that does not give its id away (the id is the cookie's secret): the
 * start of its SHA-256, enough to tell a day's sessions apart in the audit.
 */
export function sessionLabel(session: Pick<Session, 'id'>): string {
  return createHash('sha256').update(session.id).digest('hex').slice(0, 8);
}

const MAX_CLAIM = 200;

export function actorOf(req: IncomingMessage): Actor {
  const principal = principals.get(req) ?? 'unauthenticated';
  const header = req.headers['x-teal-actor'];
  const claimed = typeof header === 'string' ? header.trim().slice(0, MAX_CLAIM) : '';
  if (claimed === '') return { actor: principal, principal };
  return { actor: `${claimed} [claimed; auth: ${principal}]`, principal, claimed };
}
