import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Webhook authentication. Every comparison is constant-time (crypto.timingSafeEqual), so the time
 * an answer takes says nothing about how much of a forged signature was right.
 */

/**
 * Checks an HMAC-SHA256 signature of the raw body: `sha256=<64 hex>` (GitHub's X-Hub-Signature-256,
 * teal's X-Teal-Signature-256), or bare hex with `prefix: ''` (Gitea's X-Gitea-Signature). A missing
 * or malformed header is simply a mismatch.
 */
export function hmacMatches(
  secret: string,
  rawBody: Buffer,
  header: string | string[] | undefined,
  prefix = 'sha256=',
): boolean {
  if (typeof header !== 'string' || secret.length === 0) return false;
  if (!header.startsWith(prefix)) return false;
  const hex = header.slice(prefix.length);
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return false;
  const expected = createHmac('sha256', secret).update(rawBody).digest();
  return timingSafeEqual(Buffer.from(hex, 'hex'), expected);
}

/**
 * Checks a shared token sent as is (GitLab's X-Gitlab-Token). Both sides are hashed first so the
 * comparison has equal lengths and does not reveal the token's length either.
 */
export function tokenMatches(secret: string, header: string | string[] | undefined): boolean {
  if (typeof header !== 'string' || secret.length === 0) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(header), digest(secret));
}

/** What a sender computes: `sha256=<hex>` of the body (tests, and the docs' curl example). */
export function signBody(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}
