import net, { type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Http1Parser, type ParsedHead } from './http1.js';
import type { EventLog } from './log.js';
import type { Flight, PoolRuntime } from './pool.js';
import type { Refusal } from './select.js';
import { SendWatch } from './send-watch.js';
import type { DataPlaneSettings } from './settings.js';
import type { UpstreamEndpoint } from './upstream.js';
import {
  plainResponse,
  type RequestHead,
  responseHeaderLines,
  statusLine,
  UPSTREAM_FAILED,
  upstreamHead,
} from './wire.js';

/**
 * Websocket (and any other `Upgrade`) requests: the upgrade request goes to the upstream on a
 * connection of its own, and once it answers 101 the two sockets are spliced. The connection stays
 * on the pool it was routed to, counted as an open stream, until either side closes it or a drain
 * of that pool times out: a switch never cuts it (kamal-proxy's users complain of exactly that).
 */
export function forwardUpgrade(
  route: PoolRuntime | Refusal,
  req: RequestHead,
  client: Socket,
  head: Buffer,
  settings: DataPlaneSettings,
  upstreamErrors?: EventLog,
): void {
  client.on('error', () => client.destroy());
  if (req.method === 'CONNECT') {
    client.end(plainResponse(405, 'CONNECT is not supported', req.requestId, true), 'latin1');
    return;
  }
  if (!('meta' in route)) {
    client.end(plainResponse(route.status, route.reason, req.requestId, true), 'latin1');
    return;
  }
  new Splice(route, req, client, head, settings.sendTimeoutMs, upstreamErrors).start(
    settings.connectTimeoutMs + settings.responseTimeoutMs,
  );
}

class Splice implements Flight {
  private readonly pool: PoolRuntime;
  private readonly req: RequestHead;
  private readonly client: Socket;
  private readonly head: Buffer;
  private readonly started = performance.now();
  private endpoint: UpstreamEndpoint | undefined;
  private upstream: Socket | undefined;
  private parser: Http1Parser | undefined;
  private timer: NodeJS.Timeout | undefined;
  private upgraded = false;
  private answer: ParsedHead | undefined;
  private status = 0;
  private upstreamError = false;
  private ended = false;
  private readonly upstreamErrors: EventLog | undefined;
  private readonly sendTimeoutMs: number;
  private readonly clientSend = new SendWatch();
  private readonly upstreamSend = new SendWatch();

  constructor(
    pool: PoolRuntime,
    req: RequestHead,
    client: Socket,
    head: Buffer,
    sendTimeoutMs: number,
    upstreamErrors?: EventLog,
  ) {
    this.pool = pool;
    this.req = req;
    this.client = client;
    this.head = head;
    this.upstreamErrors = upstreamErrors;
    this.sendTimeoutMs = sendTimeoutMs;
  }

  /**
   * A side that stopped reading what the other sends (pipe() then pauses the sender, for ever):
   * both are closed once that output has not moved for the send timeout. A quiet websocket, with
   * nothing pending either way, is not a stall.
   */
  checkTimeouts(now: number): void {
    if (this.ended) return;
    if (
      this.clientSend.stalled(this.client, now, this.sendTimeoutMs) ||
      (this.upstream !== undefined && this.upstreamSend.stalled(this.upstream, now, this.sendTimeoutMs))
    )
      this.destroy();
  }

  start(timeoutMs: number): void {
    this.pool.begin(this);
    const ep = this.pool.pick();
    ep.outstanding++;
    this.endpoint = ep;
    this.client.on('close', this.finish);
    const upstream = net.connect({ host: ep.host, port: ep.port, noDelay: true });
    this.upstream = upstream;
    this.parser = new Http1Parser('response', {
      head: (h) => {
        this.answer = h;
        return false;
      },
      body: (chunk) => this.client.write(chunk),
      // A 101 completes as a message of its own, before the splice; only a refusal ends here.
      complete: () => {
        if (this.answer && this.answer.status !== 101) this.client.end();
      },
    });
    upstream.on('data', this.onUpstreamData);
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (this.status === 0) this.reject(502, err.code ?? err.message, 'failed before responding');
    });
    upstream.on('close', this.finish);
    this.timer = setTimeout(
      () => this.reject(504, 'UPGRADE_TIMEOUT', `did not answer the upgrade within ${timeoutMs}ms`),
      timeoutMs,
    );
    upstream.write(upstreamHead(this.req), 'latin1');
    if (this.head.length > 0) upstream.write(this.head);
  }

  destroy(): void {
    this.client.destroy();
    this.upstream?.destroy();
  }

  private readonly onUpstreamData = (data: Buffer): void => {
    let parsed: number;
    try {
      parsed = this.parser!.execute(data);
    } catch {
      this.reject(502, 'NOT_HTTP', 'sent an answer that is not HTTP');
      return;
    }
    const answer = this.answer;
    if (!answer || this.status !== 0) return;
    this.status = answer.status;
    clearTimeout(this.timer);
    const { lines } = responseHeaderLines(answer, this.req.requestId);
    if (answer.status === 101 && answer.upgrade) {
      this.upgraded = true;
      this.pool.promote();
      const upstream = this.upstream!;
      upstream.off('data', this.onUpstreamData);
      this.client.setTimeout(0);
      this.client.write(
        `${statusLine(101, answer.statusMessage)}${lines}connection: Upgrade\r\nupgrade: ${headerOf(answer, 'upgrade') ?? this.req.upgradeProtocol ?? ''}\r\n\r\n`,
        'latin1',
      );
      const rest = data.subarray(parsed);
      if (rest.length > 0) this.client.write(rest);
      upstream.pipe(this.client);
      this.client.pipe(upstream);
      this.client.resume();
      return;
    }
    // The upstream answered without upgrading (400, 401, 404...): relay that answer, then close.
    this.client.write(
      `${statusLine(answer.status, answer.statusMessage)}${lines}connection: close\r\n\r\n`,
      'latin1',
    );
  };

  /** The client gets a generic answer; the log line under its request id says what happened. */
  private reject(status: 502 | 504, code: string, message: string): void {
    clearTimeout(this.timer);
    if (this.ended || this.status !== 0) return;
    this.status = status;
    this.upstreamError = true;
    this.upstream?.destroy();
    const meta = this.pool.meta;
    this.upstreamErrors?.('upstream_error', {
      requestId: this.req.requestId,
      method: this.req.method,
      path: this.req.url.split('?')[0],
      service: meta.service,
      slot: meta.slot,
      version: meta.version,
      pool: meta.id,
      upstream: this.endpoint ? `${this.endpoint.host}:${this.endpoint.port}` : null,
      status,
      code,
      message: `${message} (upgrade)`,
      ms: Math.round(performance.now() - this.started),
    });
    const reply =
      code === 'NOT_HTTP'
        ? UPSTREAM_FAILED.notHttp
        : status === 504
          ? UPSTREAM_FAILED.response
          : UPSTREAM_FAILED.failed;
    this.client.end(plainResponse(status, reply, this.req.requestId, true), 'latin1');
  }

  /** Either side closed or failed: close the other side (after what it still has to send), once. */
  private readonly finish = (): void => {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    const endSoon = (s: Socket | undefined) => {
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
    this.parser?.free();
    this.endpoint?.release();
    this.endpoint = undefined;
    this.pool.end(this, this.upgraded, this.status, performance.now() - this.started, this.upstreamError);
  };
}

function headerOf(head: ParsedHead, name: string): string | undefined {
  for (let i = 0; i < head.headers.length; i += 2)
    if (head.headers[i]!.toLowerCase() === name) return head.headers[i + 1];
  return undefined;
}
