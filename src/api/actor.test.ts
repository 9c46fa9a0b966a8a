import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { actorOf, authenticated, sessionLabel } from './actor.js';
import { authorize } from './auth.js';
import { Sessions } from './sessions.js';

const request = (headers: Record<string, string>, method = 'POST') =>
  ({ headers, method }) as unknown as IncomingMessage;

describe('actorOf', () => {
  it('marks a name from X-Teal-Actor as claimed and names how the request authenticated', () => {
    const req = request({ authorization: 'Bearer right-token', 'x-teal-actor': 'ann@laptop (cli)' });
    authorize(req, 'right-token');
    expect(actorOf(req)).toEqual({
      actor: 'ann@laptop (cli) [claimed; auth: token]',
      principal: 'token',
      claimed: 'ann@laptop (cli)',
    });
  });

  it('names a dashboard session by a hash of its id, never the id (the cookie’s secret)', () => {
    const sessions = new Sessions();
    const session = sessions.create('ann (dashboard)');
    const req = request({
      cookie: `teal_session=${session.id}`,
      'x-teal-csrf': session.csrf,
      'x-teal-actor': 'ann (dashboard)',
    });
    authorize(req, 'right-token', sessions);
    const who = actorOf(req);
    expect(who.principal).toBe(`dashboard session ${sessionLabel(session)}`);
    expect(who.principal).toMatch(/^dashboard session [0-9a-f]{8}$/);
    expect(who.actor).not.toContain(session.id.slice(0, 8));
    expect(who.actor).toBe(`ann (dashboard) [claimed; auth: dashboard session ${sessionLabel(session)}]`);
  });

  it('without a name is the principal alone; a request nobody authenticated says so', () => {
    const req = request({});
    authenticated(req);
    expect(actorOf(req)).toEqual({ actor: 'token', principal: 'token' });
    expect(actorOf(request({ 'x-teal-actor': 'x' })).principal).toBe('unauthenticated');
  });
});
