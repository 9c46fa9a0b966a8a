import type { IncomingHttpHeaders } from 'node:http';
import { TealError } from '../core/errors.js';
import { hmacMatches, tokenMatches } from './signature.js';

/**
 * The webhook receivers: each provider's way of signing a delivery and of describing a push, turned
 * into one shape. Nothing from a payload is ever executed: branch, message and author go on as data
 * (the run record, stage env vars).
 */

export type Provider = 'github' | 'gitlab' | 'gitea' | 'generic';
export const PROVIDERS: readonly Provider[] = ['github', 'gitlab', 'gitea', 'generic'];

export interface Push {
  branch: string;
  commit: string;
  message: string;
  author: string;
}

export type Delivery =
  | { kind: 'ping'; delivery?: string }
  /** An event teal does not act on (issues, tags...): acknowledged. */
  | { kind: 'ignored'; event: string; delivery?: string }
  | { kind: 'push'; push: Push; delivery?: string };

const SIGNATURE_HEADER: Record<Provider, string> = {
  github: 'x-hub-signature-256',
  gitlab: 'x-gitlab-token',
  gitea: 'x-gitea-signature',
  generic: 'x-teal-signature-256',
};

/** What each provider's signature header looks like: anything else cannot match, body unread. */
const SIGNATURE_FORM: Record<Provider, RegExp> = {
  github: /^sha256=[0-9a-fA-F]{64}$/,
  gitlab: /^[\x21-\x7e]{1,1000}$/,
  gitea: /^[0-9a-fA-F]{64}$/,
  generic: /^sha256=[0-9a-fA-F]{64}$/,
};

/**
 * Throws TEAL_BAD_SIGNATURE when the signature header is missing or not of its provider's form:
 * checked on the head alone, before a byte of the body is read, so an unsigned delivery costs
 * the receiver nothing.
 */
export function requireSignatureHeader(provider: Provider, headers: IncomingHttpHeaders): void {
  const name = SIGNATURE_HEADER[provider];
  const value = headers[name];
  if (value === undefined) throw new TealError('TEAL_BAD_SIGNATURE', `missing ${name} header`);
  if (typeof value !== 'string' || !SIGNATURE_FORM[provider].test(value)) {
    throw new TealError(
      'TEAL_BAD_SIGNATURE',
      provider === 'gitlab'
        ? `${name} is not a token (expected 1-1000 printable characters)`
        : `${name} is not a signature (expected ${provider === 'gitea' ? '' : 'sha256='}<64 hex digits>)`,
    );
  }
}

/** Throws TEAL_BAD_SIGNATURE unless the delivery is signed (or carries the token) with `secret`. */
export function authenticate(
  provider: Provider,
  secret: string,
  headers: IncomingHttpHeaders,
  raw: Buffer,
): void {
  const header = headers[SIGNATURE_HEADER[provider]];
  const ok =
    provider === 'gitlab'
      ? tokenMatches(secret, header)
      : hmacMatches(secret, raw, header, provider === 'gitea' ? '' : 'sha256=');
  if (!ok) {
    throw new TealError(
      'TEAL_BAD_SIGNATURE',
      header === undefined
        ? `missing ${SIGNATURE_HEADER[provider]} header`
        : `${SIGNATURE_HEADER[provider]} does not match this pipeline's webhook secret`,
    );
  }
}

const text = (v: unknown): string => (typeof v === 'string' ? v : '');
const header = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const v = headers[name];
  return typeof v === 'string' && v.length > 0 && v.length <= 200 ? v : undefined;
};

/** Reads an authenticated delivery. */
export function parseDelivery(provider: Provider, headers: IncomingHttpHeaders, raw: Buffer): Delivery {
  let body: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(raw.toString('utf8'));
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
    body = parsed as Record<string, unknown>;
  } catch (err) {
    throw new TealError('TEAL_BAD_REQUEST', `the delivery is not a JSON object: ${(err as Error).message}`);
  }
  const withDelivery = <D extends Delivery>(d: D, id: string | undefined): D =>
    id === undefined ? d : { ...d, delivery: id };

  if (provider === 'generic') {
    const push = {
      branch: text(body.branch),
      commit: text(body.commit),
      message: text(body.message),
      author: text(body.author),
    };
    return withDelivery({ kind: 'push', push }, header(headers, 'x-teal-delivery'));
  }
  if (provider === 'gitlab') {
    const event = header(headers, 'x-gitlab-event') ?? '';
    const id = header(headers, 'x-gitlab-event-uuid') ?? header(headers, 'idempotency-key');
    if (event !== 'Push Hook') return withDelivery({ kind: 'ignored', event }, id);
    const commit = text(body.checkout_sha) || text(body.after);
    const commits = Array.isArray(body.commits) ? (body.commits as Record<string, unknown>[]) : [];
    const head = commits.find((c) => c?.id === commit) ?? commits[commits.length - 1];
    const push = {
      branch: branchOf(text(body.ref)),
      commit,
      message: text(head?.message),
      author: text(body.user_name) || text((head?.author as Record<string, unknown> | undefined)?.name),
    };
    return withDelivery({ kind: 'push', push }, id);
  }
  // GitHub, and Gitea/Forgejo, which sends the same push payload.
  const event = header(headers, provider === 'github' ? 'x-github-event' : 'x-gitea-event') ?? '';
  const id = header(headers, provider === 'github' ? 'x-github-delivery' : 'x-gitea-delivery');
  if (event === 'ping') return withDelivery({ kind: 'ping' }, id);
  if (event !== 'push') return withDelivery({ kind: 'ignored', event }, id);
  const head = (body.head_commit ?? {}) as Record<string, unknown>;
  const deleted = body.deleted === true || /^0+$/.test(text(body.after));
  const push = {
    branch: deleted ? '' : branchOf(text(body.ref)),
    commit: text(body.after),
    message: text(head.message),
    author: text((head.author as Record<string, unknown> | undefined)?.name),
  };
  return withDelivery({ kind: 'push', push }, id);
}

/** `refs/heads/main` -> `main`; a tag or anything else -> '' (not a branch teal follows). */
function branchOf(ref: string): string {
  return ref.startsWith('refs/heads/') ? ref.slice('refs/heads/'.length) : '';
}

/** Why a push starts no run, or undefined when it should start one. */
export function skipReason(push: Push, branches: readonly string[]): string | undefined {
  if (push.branch === '') return 'not a push of a branch (a tag, or a deleted branch)';
  if (!branches.includes(push.branch)) {
    return `branch ${JSON.stringify(push.branch)} is not followed (branches: ${branches.join(', ')})`;
  }
  if (/\[(skip ci|ci skip)\]/i.test(push.message)) return 'the head commit asks to [skip ci]';
  return undefined;
}
