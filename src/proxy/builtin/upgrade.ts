import http from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { PlaneView } from './forward.js';
import { CONNECT_TIMEOUT_MS, HEADERS_TIMEOUT_MS } from './forward.js';
import { rawResponse, requestIdOf, upstreamRequestHeaders } from './headers.js';
import type { Flight, PoolRuntime, UpstreamEndpoint } from './pool.js';
import { Refusal, selectPool } from './select.js';

/** Response headers that describe the upstream connection rather than the upgraded one. */
const DROP_ON_UPGRADE = new Set([
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'x-request-id',
]);

function headerLines(raw: string[], skip: Set<string>): string {
  let out = '';
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!skip.has(raw[i]!.toLowerCase())) out += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  return out;
}

/**
 * Websocket (and any other `Upgrade`) requests: the upgrade request goes to the upstream, and once
 * it answers 101 the two sockets are spliced. The connection stays on the pool it was routed to,
 * counted as an open stream, until either side closes it or a drain of that pool times out.
 */
export function forwardUpgrade(
  plane: PlaneView,
  req: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  const id = requestIdOf(req);
  const pool = selectPool(plane.table, req);
  if (pool instanceof Refusal) {
    socket.on('error', () => socket.destroy());
    socket.end(
      rawResponse(pool.status, http.STATUS_CODES[pool.status] ?? '', `${pool.reason} (request ${id})\n`, id),
    );
    return;
  }
  new Splice(pool, req, socket, head, id).start();
}

class Splice implements Flight {
  private readonly pool: PoolRuntime;
  private readonly req: http.IncomingMessage;
  private readonly client: Duplex;
  private readonly head: Buffer;
  private readonly id: string;
  private readonly started = performance.now();
  private endpoint: UpstreamEndpoint | undefined;
  private upstreamReq: http.ClientRequest | undefined;
  private upstream: Duplex | undefined;
  private timer: NodeJS.Timeout | undefined;
  private upgraded = false;
  private status = 0;
  private upstreamError = false;
  private ended = false;

  constructor(pool: PoolRuntime, req: http.IncomingMessage, client: Duplex, head: Buffer, id: string) {
    this.pool = pool;
    this.req = req;
    this.client = client;
    this.head = head;
    this.id = id;
  }

  start(): void {
    this.pool.begin(this);
    const ep = this.pool.pick();
    ep.outstanding++;
    this.endpoint = ep;
    this.client.on('error', this.finish);
    this.client.on('close', this.finish);
    const upstreamReq = http.request({
      host: ep.host,
      port: ep.port,
      method: this.req.method,
      path: this.req.url,
      headers: upstreamRequestHeaders(this.req, this.id, true),
      agent: false,
    });
    this.upstreamReq = upstreamReq;
    upstreamReq.on('upgrade', this.onUpgrade);
    upstreamReq.on('response', this.onRefused);
    upstreamReq.on('error', (err: NodeJS.ErrnoException) => {
      if (this.status !== 0 || this.ended) return;
      this.reject(502, `${this.pool.meta.id} failed before responding (${err.code ?? err.message})`);
    });
    this.timer = setTimeout(
      () => this.reject(504, `${this.pool.meta.id} did not answer the upgrade in time`),
      CONNECT_TIMEOUT_MS + HEADERS_TIMEOUT_MS,
    );
    upstreamReq.end();
  }

  destroy(): void {
    this.client.destroy();
    this.upstream?.destroy();
    this.upstreamReq?.destroy();
  }

  private readonly onUpgrade = (upRes: http.IncomingMessage, upstream: Socket, upHead: Buffer): void => {
    clearTimeout(this.timer);
    this.status = upRes.statusCode ?? 101;
    this.upstream = upstream;
    if (this.ended) {
      upstream.destroy();
      return;
    }
    this.upgraded = true;
    this.pool.promote();
    const client = this.client as Socket;
    upstream.setNoDelay(true);
    client.setNoDelay?.(true);
    client.setTimeout?.(0);
    client.write(
      `HTTP/1.1 ${this.status} ${upRes.statusMessage ?? 'Switching Protocols'}\r\n` +
        headerLines(upRes.rawHeaders, DROP_ON_UPGRADE) +
        `x-request-id: ${this.id}\r\n\r\n`,
    );
    if (upHead.length > 0) client.write(upHead);
    if (this.head.length > 0) upstream.write(this.head);
    upstream.on('error', this.finish);
    upstream.on('close', this.finish);
    upstream.pipe(client);
    client.pipe(upstream);
  };

  /** The upstream answered without upgrading (a 400, 401, 404...): relay that answer and close. */
  private readonly onRefused = (upRes: http.IncomingMessage): void => {
    clearTimeout(this.timer);
    this.status = upRes.statusCode ?? 502;
    if (this.ended) {
      upRes.destroy();
      return;
    }
    this.client.write(
      `HTTP/1.1 ${this.status} ${upRes.statusMessage ?? ''}\r\n` +
        headerLines(
          upRes.rawHeaders,
          new Set([...DROP_ON_UPGRADE, 'connection', 'upgrade', 'content-length']),
        ) +
        `x-request-id: ${this.id}\r\nconnection: close\r\n\r\n`,
    );
    upRes.pipe(this.client);
  };

  private reject(status: 502 | 504, message: string): void {
    clearTimeout(this.timer);
    if (this.ended || this.status !== 0) return;
    this.status = status;
    this.upstreamError = true;
    this.upstreamReq?.destroy();
    this.client.end(
      rawResponse(status, http.STATUS_CODES[status] ?? '', `${message} (request ${this.id})\n`, this.id),
    );
  }

  /** Either side closed or failed: close the other side (after what it still has to send), once. */
  private readonly finish = (): void => {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    const endSoon = (s: Duplex | undefined) => {
      if (!s || s.destroyed) return;
      // A peer that never reads would keep the socket open: the flight is no longer counted, so
      // no drain could close it later.
      const force = setTimeout(() => s.destroy(), 5_000).unref();
      s.end(() => {
        clearTimeout(force);
        s.destroy();
      });
    };
    endSoon(this.client);
    endSoon(this.upstream);
    if (!this.upgraded) this.upstreamReq?.destroy();
    this.endpoint?.release();
    this.endpoint = undefined;
    this.pool.end(this, this.upgraded, this.status, performance.now() - this.started, this.upstreamError);
  };
}
