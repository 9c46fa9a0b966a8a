import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { SLOT_HEADER } from './select.js';

/**
 * Headers between client, data plane and upstream. Hop-by-hop headers describe one connection, not
 * the message, so they never cross the proxy (RFC 9110 7.6.1), in either direction; nor does the
 * preview header, which is for the data plane alone.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  SLOT_HEADER,
]);

/** Headers the `Connection` header names are hop-by-hop too (but Host always passes). */
function connectionListed(connection: string | undefined): Set<string> | undefined {
  if (!connection) return undefined;
  const names = connection.toLowerCase().split(',');
  if (names.length === 1 && (names[0] === 'keep-alive' || names[0] === 'close')) return undefined;
  const listed = new Set<string>();
  for (const n of names) {
    const name = n.trim();
    if (name && name !== 'host') listed.add(name);
  }
  return listed;
}

function endToEnd(src: IncomingHttpHeaders): OutgoingHttpHeaders {
  const listed = connectionListed(src.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in src) {
    if (HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    out[name] = src[name];
  }
  return out;
}

/** What the upstream gets: the client's end-to-end headers plus X-Forwarded-* and the request id. */
export function upstreamRequestHeaders(
  req: IncomingMessage,
  requestId: string,
  upgrade: boolean,
): OutgoingHttpHeaders {
  const src = req.headers;
  const out = endToEnd(src);
  if (upgrade) {
    out.connection = 'Upgrade';
    out.upgrade = src.upgrade;
  }
  const client = req.socket.remoteAddress ?? '';
  const prior = src['x-forwarded-for'];
  out['x-forwarded-for'] = prior ? `${prior}, ${client}` : client;
  out['x-forwarded-proto'] = 'http';
  if (src.host !== undefined) out['x-forwarded-host'] = src.host;
  out['x-request-id'] = requestId;
  return out;
}

/** What the client gets: the upstream's end-to-end headers, with the request id echoed. */
export function clientResponseHeaders(upstream: IncomingHttpHeaders, requestId: string): OutgoingHttpHeaders {
  const out = endToEnd(upstream);
  out['x-request-id'] = requestId;
  return out;
}

// Ids are this process's random prefix and a counter: unique across data planes and restarts,
// and far cheaper per request than a random UUID.
const ID_PREFIX = randomBytes(6).toString('hex');
let counter = 0;

/** The client's X-Request-Id when it sent a sensible one, else a new id. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  if (typeof given === 'string' && given.length > 0 && given.length <= 200) return given;
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${ID_PREFIX}-${counter.toString(36)}`;
}

/** A short text answer written straight to a socket (upgrade requests have no ServerResponse). */
export function rawResponse(status: number, statusText: string, body: string, requestId: string): string {
  return (
    `HTTP/1.1 ${status} ${statusText}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`
  );
}
