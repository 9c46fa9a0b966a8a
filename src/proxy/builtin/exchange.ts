import { performance } from 'node:perf_hooks';
import type { ParsedHead } from './http1.js';
import type { Flight, PoolRuntime } from './pool.js';
import type { Refusal } from './select.js';
import type { DataPlaneSettings } from './settings.js';
import { CONNECT_FAILURES, type UpstreamConn, type UpstreamEndpoint, type UpstreamUser } from './upstream.js';
import { plainResponse, type RequestHead, responseHeaderLines, statusLine, upstreamHead } from './wire.js';

const RETRY_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const RETRY_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED']);

/** The client side of an exchange: the connection it answers on. */
export interface ClientSide {
  readonly settings: DataPlaneSettings;
  /** The client connection will close after this response (data plane stopping, or asked to). */
  closingAfterCurrent(): boolean;
  write(data: string | Buffer): boolean;
  cork(): void;
  uncork(): void;
  /** Runs `fn` once the client has taken what was written (back-pressure). */
  onDrain(fn: () => void): void;
  pauseReading(): void;
  resumeReading(): void;
  /** The exchange is over: the connection goes on to the next request, or closes. */
  done(exchange: Exchange, close: boolean): void;
  /** Cuts the client connection (a response that cannot be completed). */
  destroy(): void;
}

/**
 * One request through the data plane, from its head to the end of its response. It belongs to the
 * pool it was routed to until then, whatever the table does meanwhile. Bodies stream both ways with
 * back-pressure; a request that failed before any answer on a reused connection is retried once.
 */
export class Exchange implements Flight, UpstreamUser {
  private readonly client: ClientSide;
  readonly req: RequestHead;
  private readonly route: PoolRuntime | Refusal;
  private pool: PoolRuntime | null = null;
  private ep: UpstreamEndpoint | null = null;
  private conn: UpstreamConn | null = null;
  private attempt = 0;
  private startedAt = 0;
  private sentAt = 0;
  /** Body received before the request reached the upstream. */
  private pending: Buffer[] = [];
  private bodyBytes = 0;
  private requestDone = false;
  private state: 'queued' | 'waiting' | 'streaming' | 'done' = 'queued';
  private interim = false;
  private chunkedOut = false;
  private closeAfter = false;
  private stream = false;
  private status = 0;
  private upstreamError = false;

  constructor(client: ClientSide, req: RequestHead, route: PoolRuntime | Refusal) {
    this.client = client;
    this.req = req;
    this.route = route;
  }

  /** Called when the exchange reaches the front of its connection's queue. */
  start(): void {
    this.startedAt = performance.now();
    const route = this.route;
    if (!('meta' in route)) {
      this.answer(route.status, route.reason);
      return;
    }
    if (this.req.contentLength > this.client.settings.maxBodyBytes) {
      this.answer(
        413,
        `the request body (${this.req.contentLength} bytes) is over the limit of ${this.client.settings.maxBodyBytes} bytes`,
      );
      return;
    }
    this.pool = route;
    route.begin(this);
    this.send(undefined);
  }

  private send(avoid: UpstreamEndpoint | undefined): void {
    const ep = this.pool!.pick(avoid);
    ep.outstanding++;
    this.ep = ep;
    const conn = ep.acquire(this.attempt > 0);
    conn.attach(this);
    this.conn = conn;
    this.state = 'waiting';
    this.sentAt = Date.now();
    conn.socket.cork();
    conn.write(upstreamHead(this.req));
    for (const chunk of this.pending) this.writeBody(conn, chunk);
    if (this.requestDone && this.req.chunked) conn.write('0\r\n\r\n');
    conn.socket.uncork();
    // Bodies are never replayed (a retry is only for bodiless requests), so let them go.
    this.pending = [];
  }

  private writeBody(conn: UpstreamConn, chunk: Buffer): boolean {
    if (!this.req.chunked) return conn.write(chunk);
    conn.write(`${chunk.length.toString(16)}\r\n`);
    conn.write(chunk);
    return conn.write('\r\n');
  }

  /** A piece of the request body, from the client's parser. */
  requestBody(chunk: Buffer): void {
    this.bodyBytes += chunk.length;
    if (this.bodyBytes > this.client.settings.maxBodyBytes) {
      if (this.state === 'queued' || this.state === 'waiting') {
        this.conn?.destroy();
        this.releaseEndpoint();
        this.answer(413, `the request body is over the limit of ${this.client.settings.maxBodyBytes} bytes`);
      }
      this.client.destroy();
      return;
    }
    const conn = this.conn;
    if (conn && this.state !== 'done') {
      if (!this.writeBody(conn, chunk)) {
        this.client.pauseReading();
        conn.socket.once('drain', () => this.client.resumeReading());
      }
    } else if (this.state === 'queued') {
      this.pending.push(chunk);
      // A queued (pipelined) request waits: so does its sender.
      this.client.pauseReading();
    }
  }

  requestEnd(): void {
    this.requestDone = true;
    if (this.conn && this.req.chunked && this.state !== 'done') this.conn.write('0\r\n\r\n');
  }

  onHead(head: ParsedHead): boolean {
    this.ep?.markSuccess();
    if (head.status < 200) {
      // 100 Continue and other interim answers go to the client as they come; the real one follows.
      this.interim = true;
      if (this.req.versionMinor >= 1) this.client.write(`${statusLine(head.status, head.statusMessage)}\r\n`);
      return false;
    }
    this.state = 'streaming';
    this.status = head.status;
    const noBody = this.req.method === 'HEAD' || head.status === 204 || head.status === 304;
    const { lines, framing } = responseHeaderLines(head, this.req.requestId);
    if (framing.eventStream) {
      // Server-sent events: a long-lived stream, counted as such.
      this.stream = true;
      this.pool!.promote();
    }
    this.closeAfter = !this.req.keepAlive || this.client.closingAfterCurrent();
    let extra = '';
    if (!noBody && !framing.contentLength) {
      // The upstream chunked (or ends by closing): the data plane chunks for HTTP/1.1 clients,
      // and ends by closing for HTTP/1.0 ones.
      if (this.req.versionMinor >= 1) {
        this.chunkedOut = true;
        extra = 'transfer-encoding: chunked\r\n';
      } else this.closeAfter = true;
    }
    if (this.closeAfter) extra += 'connection: close\r\n';
    else if (this.req.versionMinor === 0) extra += 'connection: keep-alive\r\n';
    this.client.write(`${statusLine(head.status, head.statusMessage)}${lines}${extra}\r\n`);
    return noBody;
  }

  onBody(chunk: Buffer): void {
    if (this.state !== 'streaming') return;
    let ok: boolean;
    if (this.chunkedOut) {
      this.client.write(`${chunk.length.toString(16)}\r\n`);
      this.client.write(chunk);
      ok = this.client.write('\r\n');
    } else ok = this.client.write(chunk);
    if (!ok) {
      const socket = this.conn?.socket;
      socket?.pause();
      this.client.onDrain(() => socket?.resume());
    }
  }

  onEnd(): void {
    if (this.interim) {
      this.interim = false;
      return;
    }
    if (this.state !== 'streaming') return;
    if (this.chunkedOut) this.client.write('0\r\n\r\n');
    this.state = 'done';
    const conn = this.conn;
    this.conn = null;
    // An upstream that answered before reading the whole body cannot take another request.
    if (this.requestDone) conn?.release();
    else conn?.destroy();
    this.releaseEndpoint();
    this.finish(true);
    this.client.done(this, this.closeAfter || !this.requestDone);
  }

  onFail(code: string, answered: boolean): void {
    const conn = this.conn;
    this.conn = null;
    const failed = this.ep;
    this.releaseEndpoint();
    if (this.state === 'waiting') {
      if (CONNECT_FAILURES.has(code)) failed?.markFailure();
      if (this.canRetry(code, answered, conn?.reused ?? false)) {
        this.attempt++;
        this.send(failed ?? undefined);
        return;
      }
      this.upstreamError = true;
      this.answer(502, `${this.pool!.meta.id} failed before responding (${code})`);
      return;
    }
    if (this.state === 'streaming') {
      // The upstream went away mid-body: the client must see a cut response, not a short complete one.
      this.state = 'done';
      this.finish(false);
      this.client.destroy();
    }
  }

  /**
   * An upstream may close an idle kept-alive connection just as it is reused; the request then fails
   * before any answer. A bodiless request with a safe method is retried once on a fresh connection
   * (another endpoint if there is one), so the client never sees that race.
   */
  private canRetry(code: string, answered: boolean, reused: boolean): boolean {
    if (this.attempt > 0 || answered || this.bodyBytes > 0 || this.req.contentLength > 0 || this.req.chunked)
      return false;
    if (!RETRY_METHODS.has(this.req.method) || !RETRY_CODES.has(code)) return false;
    return reused || (code === 'ECONNREFUSED' && this.pool!.endpoints.length > 1);
  }

  cork(): void {
    this.client.cork();
  }

  uncork(): void {
    this.client.uncork();
  }

  /** Connect and response-head deadlines, checked once a second for every exchange in flight. */
  checkTimeouts(now: number): void {
    if (this.state !== 'waiting' || !this.conn) return;
    const waited = now - this.sentAt;
    const connecting = this.conn.connecting;
    const { connectTimeoutMs, responseTimeoutMs } = this.client.settings;
    if ((connecting && waited > connectTimeoutMs) || waited > responseTimeoutMs) {
      if (connecting) this.ep?.markFailure();
      this.conn.destroy();
      this.conn = null;
      this.releaseEndpoint();
      this.upstreamError = true;
      this.answer(
        504,
        connecting
          ? `${this.pool!.meta.id} did not accept a connection within ${connectTimeoutMs}ms`
          : `${this.pool!.meta.id} sent no response within ${responseTimeoutMs}ms`,
      );
    }
  }

  /** A drain ran out of time, or the data plane is stopping: cut both sides. */
  destroy(): void {
    this.conn?.destroy();
    this.conn = null;
    this.releaseEndpoint();
    if (this.state !== 'done') {
      this.state = 'done';
      this.finish(false);
    }
    this.client.destroy();
  }

  /** The client went away: the upstream request is abandoned too (its connection cannot be reused). */
  clientGone(): void {
    if (this.state === 'done') return;
    this.conn?.destroy();
    this.conn = null;
    this.releaseEndpoint();
    const began = this.state !== 'queued';
    this.state = 'done';
    if (began) this.finish(false);
  }

  /** The data plane answers itself (refusal, limit, upstream failure). */
  private answer(status: number, reason: string): void {
    this.status = status;
    this.state = 'done';
    this.pending = [];
    // A body still on its way would be read as the next request: close after answering.
    const close = !this.requestDone && (this.req.chunked || this.req.contentLength > 0);
    this.client.write(plainResponse(status, reason, this.req.requestId, close || !this.req.keepAlive));
    if (this.pool) this.finish(true);
    this.client.done(this, close || !this.req.keepAlive);
  }

  private releaseEndpoint(): void {
    this.ep?.release();
    this.ep = null;
  }

  private finish(responded: boolean): void {
    this.pool?.end(
      this,
      this.stream,
      responded ? this.status : 0,
      responded ? performance.now() - this.startedAt : -1,
      this.upstreamError,
    );
  }
}
