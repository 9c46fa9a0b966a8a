import { randomBytes } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { ParsedHead } from './http1.js';

/**
 * Heads on the wire: what the data plane reads from a client's request, writes to the upstream,
 * and writes back. Hop-by-hop headers describe one connection, not the message, so they never cross
 * the proxy in either direction (RFC 9110 7.6.1), nor do the headers `Connection` names (but the
 * protected ones, see `isProtected`), nor the preview header, which is for the data plane alone.
 */

export const SLOT_HEADER = 'x-teal-slot';

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

/**
 * Headers a `Connection` option never removes, in either direction: the ones that frame the
 * message, route it, or that the data plane itself sets or reads. RFC 9110 7.6.1 has a proxy drop
 * what Connection names, and forbids a sender to name "a header field that is intended for all
 * recipients"; obeying such an option blindly lets a client unframe its own body (`Connection:
 * content-length` forwarded the body without its length, read upstream as a second request) or
 * hide what the data plane set. nginx never acts on Connection options; haproxy acts only on
 * close, keep-alive and upgrade. teal keeps RFC 9110's rule for every other name and ignores these
 * (rather than answering 400: `Connection: TE` is what RFC 9110 10.1.4 asks a client sending TE to
 * send, and these headers get the data plane's own treatment whatever Connection says).
 */
const PROTECTED = new Set([
  'connection',
  'keep-alive',
  'upgrade',
  'content-length',
  'transfer-encoding',
  'te',
  'trailer',
  'host',
  'forwarded',
  'x-real-ip',
  'x-request-id',
  'content-type',
  'cookie',
  'set-cookie',
]);

/** Whether a Connection option naming `lower` must be ignored; every `x-forwarded-*` and `x-teal-*` is. */
export function isProtected(lower: string): boolean {
  return PROTECTED.has(lower) || lower.startsWith('x-forwarded-') || lower.startsWith('x-teal-');
}

/** Replaced by the data plane's own values on the way to the upstream, whoever sent the request. */
const REPLACED_UPSTREAM = new Set(['x-forwarded-for', 'x-request-id']);

/**
 * What a client says about where a request came from. Anyone can write these, so from a peer
 * outside `proxy.trustedProxies` they are dropped and the data plane says what it saw
 * (X-Forwarded-For and X-Real-IP: the peer address; X-Forwarded-Proto: http; X-Forwarded-Host: the
 * Host); an app reading the leftmost X-Forwarded-For then reads the truth. From a trusted peer (a
 * load balancer in front of teal) they are kept, and X-Forwarded-For gets the peer appended, as
 * nginx's realip module (set_real_ip_from) and haproxy's `option forwardfor` are set up to do.
 * Forwarded (RFC 7239) is passed only from a trusted peer and never written: teal's apps read the
 * X-Forwarded-* headers, and one spoofable header fewer is one fewer to get wrong.
 */
const FROM_TRUSTED = new Set(['x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'forwarded']);

/** What the data plane needs from a request head, read in one pass. */
export interface RequestHead {
  method: string;
  url: string;
  versionMinor: number;
  /** Flat raw list: name, value, ... */
  headers: string[];
  keepAlive: boolean;
  upgrade: boolean;
  remoteAddress: string;
  host: string | undefined;
  slot: string | undefined;
  requestId: string;
  /** -1 when absent. */
  contentLength: number;
  chunked: boolean;
  forwardedFor: string | undefined;
  /** The peer is in `proxy.trustedProxies`: its forwarded headers are kept (see FROM_TRUSTED). */
  trusted: boolean;
  upgradeProtocol: string | undefined;
  /** Lower-cased names the Connection headers list that the data plane drops (none protected), if any. */
  connectionListed: Set<string> | undefined;
  /** Set when the data plane must refuse the request on its head alone (see `refusalFor`). */
  refusal: { status: 400 | 501 | 505; reason: string } | undefined;
}

// Request ids: this process's random prefix and a counter; unique across data planes and
// restarts, and far cheaper per request than a random UUID.
const ID_PREFIX = randomBytes(6).toString('hex');
let counter = 0;

function newRequestId(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${ID_PREFIX}-${counter.toString(36)}`;
}

/** The names one Connection header value lists that are to be dropped, added to `into`. */
function listed(value: string, into: Set<string> | undefined): Set<string> | undefined {
  let set = into;
  for (const part of value.split(',')) {
    const name = part.trim().toLowerCase();
    if (!name || name === 'close' || isProtected(name)) continue;
    set ??= new Set();
    set.add(name);
  }
  return set;
}

export function readRequestHead(head: ParsedHead, remoteAddress: string, trusted = false): RequestHead {
  const h = head.headers;
  const out: RequestHead = {
    method: head.method,
    url: head.url,
    versionMinor: head.versionMinor,
    headers: h,
    keepAlive: head.keepAlive,
    upgrade: head.upgrade,
    remoteAddress,
    host: undefined,
    slot: undefined,
    requestId: '',
    contentLength: -1,
    chunked: false,
    forwardedFor: undefined,
    trusted,
    upgradeProtocol: undefined,
    connectionListed: undefined,
    refusal: undefined,
  };
  let hosts = 0;
  let codings: string | undefined;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    // Only a handful of names matter here; compare lengths first to skip most without lower-casing.
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host' && hosts++ === 0) out.host = h[i + 1];
        break;
      case 7:
        if (name.toLowerCase() === 'upgrade') out.upgradeProtocol = h[i + 1];
        break;
      case 10:
        if (name.toLowerCase() === 'connection')
          out.connectionListed = listed(h[i + 1]!, out.connectionListed);
        break;
      case 11:
        if (name.toLowerCase() === SLOT_HEADER) out.slot = h[i + 1];
        break;
      case 12:
        if (name.toLowerCase() === 'x-request-id') {
          const id = h[i + 1]!;
          if (id.length > 0 && id.length <= 200) out.requestId = id;
        }
        break;
      case 14:
        if (name.toLowerCase() === 'content-length') out.contentLength = Number(h[i + 1]);
        break;
      case 15:
        if (name.toLowerCase() === 'x-forwarded-for') {
          out.forwardedFor = out.forwardedFor === undefined ? h[i + 1] : `${out.forwardedFor}, ${h[i + 1]}`;
        }
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') {
          out.chunked = true;
          codings = codings === undefined ? h[i + 1]! : `${codings},${h[i + 1]}`;
        }
        break;
    }
  }
  if (!out.requestId) out.requestId = newRequestId();
  out.refusal = refusalFor(head, out, hosts, codings);
  return out;
}

/** host[:port], a bracketed IPv6 address or a name of letters, digits, '-', '.' and '_'. */
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{0,5})?$/;
/** An absolute-form request target: the authority, then the path and query (fragment excluded). */
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([/?][^#]*)?$/i;

/**
 * What llhttp lets through that the data plane still refuses, because the upstream (or the router)
 * could read it otherwise than the data plane does (RFC 9112 3.2, 3.2.2, 6.1, 6.3): Transfer-Encoding
 * in HTTP/1.0 (ambiguous framing), Transfer-Encoding not ending in chunked (no reliable length),
 * codings besides chunked (the upstream would take coded bytes for plain ones: 501, as nginx does),
 * not exactly one valid Host in HTTP/1.1, and a request target that is neither a path nor an
 * absolute http(s) URL. An absolute URL becomes a path, its authority replacing the Host header, so
 * the router and the upstream agree on the host. Versions other than 1.x get 505.
 */
function refusalFor(
  head: ParsedHead,
  req: RequestHead,
  hosts: number,
  codings: string | undefined,
): RequestHead['refusal'] {
  if (head.versionMajor !== 1) {
    return { status: 505, reason: `HTTP/${head.versionMajor}.${head.versionMinor} is not supported` };
  }
  if (req.chunked && head.versionMinor === 0) {
    return { status: 400, reason: 'Transfer-Encoding is not allowed in an HTTP/1.0 request' };
  }
  if (codings !== undefined && codings.trim().toLowerCase() !== 'chunked') {
    const list = codings.split(',').map((c) => c.trim().toLowerCase());
    // Not ending in chunked, the body has no length the upstream would read the same (RFC 9112 6.3).
    if (list[list.length - 1] !== 'chunked') {
      return {
        status: 400,
        reason: `Transfer-Encoding ${JSON.stringify(codings.slice(0, 100))} does not end in chunked`,
      };
    }
    return {
      status: 501,
      reason: `transfer coding ${JSON.stringify(codings.slice(0, 100))} is not supported, only chunked`,
    };
  }
  if (hosts > 1) return { status: 400, reason: 'more than one Host header' };
  if (hosts === 0 && head.versionMinor > 0)
    return { status: 400, reason: 'an HTTP/1.1 request needs a Host header' };
  if (req.host !== undefined && !AUTHORITY.test(req.host)) {
    return { status: 400, reason: `invalid Host header ${JSON.stringify(req.host.slice(0, 100))}` };
  }
  // Origin form, the usual case; CONNECT (authority form) is answered 405 by the upgrade path.
  if (req.url.charCodeAt(0) === 47 /* / */ || req.method === 'CONNECT') return undefined;
  if (req.url === '*' && req.method === 'OPTIONS') return undefined;
  const m = ABSOLUTE_FORM.exec(req.url);
  if (!m || !AUTHORITY.test(m[1]!)) {
    return {
      status: 400,
      reason: `request target ${JSON.stringify(req.url.slice(0, 100))} is neither a path nor an absolute http URL`,
    };
  }
  const authority = m[1]!;
  const rest = m[2] ?? '';
  req.url = rest.startsWith('/') ? rest : `/${rest}`;
  req.host = authority;
  const h = req.headers;
  let replaced = false;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i]!.length === 4 && h[i]!.toLowerCase() === 'host') {
      h[i + 1] = authority;
      replaced = true;
    }
  }
  if (!replaced) h.push('Host', authority);
  return undefined;
}

/** Whether the request carries a body (a length above zero, or chunked). */
export function hasBody(req: RequestHead): boolean {
  return req.chunked || req.contentLength > 0;
}

/**
 * The head sent to the upstream: always HTTP/1.1 on a kept-alive connection, the client's
 * end-to-end headers, then X-Forwarded-For/-Proto/-Host, X-Real-IP (see FROM_TRUSTED) and the
 * request id. A chunked request is re-chunked by the data plane (the parser hands over the decoded
 * body).
 */
export function upstreamHead(req: RequestHead): string {
  let out = `${req.method} ${req.url} HTTP/1.1\r\n`;
  const h = req.headers;
  const skip = req.connectionListed;
  // Which of FROM_TRUSTED a trusted peer sent (then ours is not added).
  let proto = false;
  let forwardedHost = false;
  let realIp = false;
  for (let i = 0; i < h.length; i += 2) {
    const lower = h[i]!.toLowerCase();
    if (HOP_BY_HOP.has(lower) || REPLACED_UPSTREAM.has(lower) || skip?.has(lower)) continue;
    if (FROM_TRUSTED.has(lower)) {
      if (!req.trusted) continue;
      if (lower === 'x-forwarded-proto') proto = true;
      else if (lower === 'x-forwarded-host') forwardedHost = true;
      else if (lower === 'x-real-ip') realIp = true;
    }
    out += `${h[i]}: ${h[i + 1]}\r\n`;
  }
  const peer = req.remoteAddress;
  out += `x-forwarded-for: ${req.trusted && req.forwardedFor !== undefined ? `${req.forwardedFor}, ${peer}` : peer}\r\n`;
  if (!realIp) out += `x-real-ip: ${peer}\r\n`;
  if (!proto) out += 'x-forwarded-proto: http\r\n';
  if (!forwardedHost && req.host !== undefined) out += `x-forwarded-host: ${req.host}\r\n`;
  out += `x-request-id: ${req.requestId}\r\n`;
  if (req.upgrade) out += `connection: Upgrade\r\nupgrade: ${req.upgradeProtocol ?? ''}\r\n`;
  else if (req.chunked) out += 'transfer-encoding: chunked\r\n';
  return `${out}\r\n`;
}

export interface ResponseFraming {
  /** The upstream gave a Content-Length (kept as is for the client). */
  contentLength: boolean;
  /** The upstream's Content-Type says server-sent events. */
  eventStream: boolean;
}

/**
 * The client's head for an upstream response, without framing and connection headers (the
 * exchange adds those). Returns the end-to-end header lines and what framing the upstream used.
 */
export function responseHeaderLines(
  head: ParsedHead,
  requestId: string,
): { lines: string; framing: ResponseFraming } {
  const h = head.headers;
  let lines = '';
  let skip: Set<string> | undefined;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i]!.length === 10 && h[i]!.toLowerCase() === 'connection') skip = listed(h[i + 1]!, skip);
  }
  const framing: ResponseFraming = { contentLength: false, eventStream: false };
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === 'x-request-id' || skip?.has(lower)) continue;
    if (lower === 'content-length') framing.contentLength = true;
    else if (lower === 'content-type' && h[i + 1]!.startsWith('text/event-stream'))
      framing.eventStream = true;
    lines += `${name}: ${h[i + 1]}\r\n`;
  }
  lines += `x-request-id: ${requestId}\r\n`;
  return { lines, framing };
}

export function statusLine(status: number, message: string): string {
  return `HTTP/1.1 ${status} ${message || STATUS_CODES[status] || ''}\r\n`;
}

/**
 * What the public is told when an upstream failed: the status, a sentence and the request id,
 * never the pool, the instance's address or the socket error (they map the inside for an
 * attacker). The detail goes to the data plane's `upstream_error` log line under the same id.
 */
export const UPSTREAM_FAILED = {
  failed: 'the service failed before responding',
  connect: 'the service did not accept the connection in time',
  response: 'the service did not respond in time',
  send: 'the service did not read the request in time',
  notHttp: 'the service sent an answer that is not HTTP',
} as const;

/** A short text answer from the data plane itself, naming the request id; written as latin1, like every head. */
export function plainResponse(status: number, message: string, requestId: string, close: boolean): string {
  const body = `${status} ${STATUS_CODES[status] ?? ''}: ${message} (request ${requestId})\n`;
  return (
    statusLine(status, '') +
    `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body, 'latin1')}\r\n` +
    `x-request-id: ${requestId}\r\n${close ? 'connection: close\r\n' : ''}\r\n${body}`
  );
}
