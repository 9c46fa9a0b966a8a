import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isTealError } from '../core/errors.js';
import { hmacMatches, signBody, tokenMatches } from './signature.js';
import { authenticate, parseDelivery, skipReason } from './webhooks.js';

const body = Buffer.from('{"ref":"refs/heads/main"}');
const secret = 's3cret';

describe('webhook signatures', () => {
  it('accepts the HMAC-SHA256 of the raw body, as GitHub sends it', () => {
    const good = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    expect(signBody(secret, body)).toBe(good);
    expect(hmacMatches(secret, body, good)).toBe(true);
    expect(hmacMatches(secret, body, good.toUpperCase().replace('SHA256=', 'sha256='))).toBe(true);
  });

  it('refuses a wrong secret, another body, a missing, malformed or truncated header', () => {
    const good = signBody(secret, body);
    expect(hmacMatches('other', body, good)).toBe(false);
    expect(hmacMatches(secret, Buffer.from(`${body} `), good)).toBe(false);
    expect(hmacMatches(secret, body, undefined)).toBe(false);
    expect(hmacMatches(secret, body, ['a', 'b'])).toBe(false);
    expect(hmacMatches(secret, body, good.slice(0, -2))).toBe(false);
    expect(hmacMatches(secret, body, `sha1=${good.slice(7)}`)).toBe(false);
    expect(hmacMatches(secret, body, 'sha256=zz')).toBe(false);
    expect(hmacMatches(secret, body, good.slice(7))).toBe(false);
    // An empty secret would let anyone sign: never a match.
    expect(hmacMatches('', body, signBody('', body))).toBe(false);
  });

  it('Gitea signs with bare hex; GitLab sends the token itself', () => {
    expect(hmacMatches(secret, body, signBody(secret, body).slice(7), '')).toBe(true);
    expect(tokenMatches(secret, secret)).toBe(true);
    expect(tokenMatches(secret, `${secret}x`)).toBe(false);
    expect(tokenMatches(secret, undefined)).toBe(false);
  });

  it('authenticate names the missing header, and throws TEAL_BAD_SIGNATURE (401)', () => {
    try {
      authenticate('github', secret, {}, body);
      expect.unreachable();
    } catch (err) {
      expect(isTealError(err, 'TEAL_BAD_SIGNATURE')).toBe(true);
      expect((err as Error).message).toBe('missing x-hub-signature-256 header');
      expect((err as { httpStatus: number }).httpStatus).toBe(401);
    }
    expect(() => authenticate('gitea', secret, { 'x-gitea-signature': 'ab' }, body)).toThrow(
      /does not match/,
    );
    expect(() =>
      authenticate('github', secret, { 'x-hub-signature-256': signBody(secret, body) }, body),
    ).not.toThrow();
  });
});

describe('webhook deliveries', () => {
  const sha = 'a'.repeat(40);
  it('reads a GitHub push, a ping and an event it does not act on', () => {
    const push = Buffer.from(
      JSON.stringify({
        ref: 'refs/heads/main',
        after: sha,
        head_commit: { message: 'fix $(rm -rf /)', author: { name: 'Ann' } },
      }),
    );
    expect(parseDelivery('github', { 'x-github-event': 'push', 'x-github-delivery': 'd1' }, push)).toEqual({
      kind: 'push',
      delivery: 'd1',
      push: { branch: 'main', commit: sha, message: 'fix $(rm -rf /)', author: 'Ann' },
    });
    expect(parseDelivery('github', { 'x-github-event': 'ping' }, Buffer.from('{}'))).toEqual({
      kind: 'ping',
    });
    expect(parseDelivery('github', { 'x-github-event': 'issues' }, Buffer.from('{}'))).toMatchObject({
      kind: 'ignored',
    });
  });

  it('reads a GitLab push by its checkout_sha', () => {
    const push = Buffer.from(
      JSON.stringify({
        ref: 'refs/heads/main',
        checkout_sha: sha,
        user_name: 'Bo',
        commits: [{ id: sha, message: 'one [skip ci]' }],
      }),
    );
    const d = parseDelivery('gitlab', { 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': 'u1' }, push);
    expect(d).toEqual({
      kind: 'push',
      delivery: 'u1',
      push: { branch: 'main', commit: sha, message: 'one [skip ci]', author: 'Bo' },
    });
  });

  it('skips tags, deleted branches, branches not followed and [skip ci]', () => {
    const base = { commit: sha, message: 'x', author: '' };
    expect(skipReason({ ...base, branch: 'main' }, ['main'])).toBeUndefined();
    expect(skipReason({ ...base, branch: '' }, ['main'])).toMatch(/not a push of a branch/);
    expect(skipReason({ ...base, branch: 'dev' }, ['main'])).toMatch(/not followed/);
    expect(skipReason({ ...base, branch: 'main', message: 'docs [CI SKIP]' }, ['main'])).toMatch(/skip ci/);
    const deleted = parseDelivery(
      'github',
      { 'x-github-event': 'push' },
      Buffer.from(JSON.stringify({ ref: 'refs/heads/main', after: '0'.repeat(40), deleted: true })),
    );
    expect(deleted.kind === 'push' && deleted.push.branch).toBe('');
  });
});
