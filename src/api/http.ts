import type { IncomingMessage, ServerResponse } from 'node:http';
import { TealError, toTealError } from '../core/errors.js';

/** The one place errors become HTTP statuses: `{error: {code, message, details}}` with the catalogue's status. */
export function sendError(res: ServerResponse, err: unknown): void {
  const e = toTealError(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (e.code === 'TEAL_UNAUTHORIZED') headers['www-authenticate'] = 'Bearer realm="teal"';
  const retry = e.details?.retryAfterSeconds;
  if (typeof retry === 'number') headers['retry-after'] = String(retry);
  // Refused before its body was read (a webhook without a signature, a body over the limit): the
  // rest is not read either, so the connection closes after the answer instead of draining it.
  if (!res.req.complete) headers.connection = 'close';
  res.writeHead(e.httpStatus, headers);
  res.end(`${JSON.stringify({ error: e.toJSON() })}\n`);
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(`${JSON.stringify(body)}\n`);
}

const MAX_BODY = 1_000_000;

export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new TealError('TEAL_BAD_REQUEST', `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    const body: unknown = JSON.parse(Buffer.concat(chunks).toString());
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object');
    return body as Record<string, unknown>;
  } catch (err) {
    throw new TealError('TEAL_BAD_REQUEST', `request body is not a JSON object: ${(err as Error).message}`);
  }
}

export type Handler = (
  req: IncomingMessage,
  res: ServerResponse,
  params: Record<string, string>,
  url: URL,
) => Promise<void>;

interface Route {
  method: string;
  /** As added: `/v1/services/:svc`. */
  path: string;
  pattern: RegExp;
  names: string[];
  handler: Handler;
  /** False for the few endpoints anyone may call (the liveness check). */
  auth: boolean;
}

/** A tiny router: "GET /v1/services/:svc" style paths, matched in order. */
export class Router {
  readonly #routes: Route[] = [];

  add(method: string, path: string, handler: Handler, options: { auth?: boolean } = {}): this {
    const names: string[] = [];
    const pattern = new RegExp(
      `^${path.replace(/:([a-z]+)/g, (_, name: string) => {
        names.push(name);
        return '([^/]+)';
      })}$`,
    );
    this.#routes.push({ method, path, pattern, names, handler, auth: options.auth ?? true });
    return this;
  }

  /** Every route, for tests that check each one's authentication. */
  list(): { method: string; path: string; auth: boolean }[] {
    return this.#routes.map(({ method, path, auth }) => ({ method, path, auth }));
  }

  /** Adds another router's routes after this one's (the API's and the dashboard's share a port). */
  include(other: Router): this {
    this.#routes.push(...other.#routes);
    return this;
  }

  match(
    method: string,
    pathname: string,
  ): { route: Route; params: Record<string, string> } | { allowed: string[] } {
    const allowed: string[] = [];
    for (const route of this.#routes) {
      const m = route.pattern.exec(pathname);
      if (!m) continue;
      if (route.method !== method) {
        allowed.push(route.method);
        continue;
      }
      const params = Object.fromEntries(route.names.map((n, i) => [n, decodeSegment(m[i + 1]!)]));
      return { route, params };
    }
    return { allowed };
  }
}

/** A path segment's percent-encoding decoded; malformed (`%E0%A4%A`) is the client's mistake: 400. */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new TealError(
      'TEAL_BAD_REQUEST',
      `malformed percent-encoding in the path segment ${JSON.stringify(segment.slice(0, 100))}`,
    );
  }
}
