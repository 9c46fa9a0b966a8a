import { performance } from 'node:perf_hooks';
import type { ParsedHead } from './http1.js';
import type { EventLog } from './log.js';
import type { Flight, PoolRuntime } from './pool.js';
import type { Refusal } from './select.js';
import type { DataPlaneSettings } from './settings.js';
import { CONNECT_FAILURES, type UpstreamConn, type UpstreamEndpoint, type UpstreamUser } from './upstream.js';
import {
  hasBody,
  plainResponse,
  type RequestHead,
  responseHeaderLines,
  statusLine,
  UPSTREAM_FAILED,
  upstreamHead,
} from './wire.js';

const RETRY_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const RETRY_CODES = new Set(['ECONNRESET', 'EPIPE']);
/** Failures only a connect can have: the request reached no instance, whatever its method. */
const NOT_CONNECTED = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'CONNECT_TIMEOUT']);

/** The client side of an exchange: the connection it answers on. */
export interface ClientSide {
  readonly settings: DataPlaneSettings;
  /** Where requests that could not be forwarded are logged, with their request id. */
  readonly upstreamErrors?: EventLog | undefined;
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
  /** Whether `exchange` is the one being answered now (not one queued behind it). */
  isCurrent(exchange: Exchange): boolean;
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
  private started = false;
  /** The body went over the limit before the exchange started: answered 413 when it does. */
  private tooLarge = false;
  /** This exchange paused the client (upload back-pressure) or the upstream (download). */
  private pausedClient = false;
  private pausedUpstream = false;

  constructor(client: ClientSide, req: RequestHead, route: PoolRuntime | Refusal) {
    this.client = client;
    this.req = req;
    this.route = route;
  }

  /** Whether the upstream's response has begun reaching the client. */
  get responding(): boolean {
    return this.state === 'streaming';
  }

  /** Called when the exchange reaches the front of its connection's queue; once. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.startedAt = performance.now();
    const route = this.route;
    if (!('meta' in route)) {
      this.answer(route.status, route.reason, route.headers);
      return;
    }
    if (this.tooLarge || this.req.contentLength > this.client.settings.maxBodyBytes) {
      this.answer(
        413,
        this.tooLarge
          ? `the request body is over the limit of ${this.client.settings.maxBodyBytes} bytes`
          : `the request body (${this.req.contentLength} bytes) is over the limit of ${this.client.settings.maxBodyBytes} bytes`,
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
      this.overLimit();
      return;
    }
    const conn = this.conn;
    if (conn && this.state !== 'done') {
      if (!this.writeBody(conn, chunk) && !this.pausedClient) {
        // One pause per drain, undone only while this exchange still writes to that connection.
        this.pausedClient = true;
        this.client.pauseReading();
        conn.socket.once('drain', () => {
          if (this.conn !== conn || !this.pausedClient) return;
          this.pausedClient = false;
          this.client.resumeReading();
        });
      }
    } else if (this.state === 'queued') {
      this.pending.push(chunk);
      // A pipelined request waits for those before it: so does its sender. (The current one is
      // started as soon as the packet that brought this chunk has parsed.)
      if (!this.client.isCurrent(this)) this.client.pauseReading();
    }
  }

  /**
   * The body went over the limit: 413 if nothing was answered yet, the upstream request (if it
   * began) abandoned, and the connection closed after the answer (the rest of the body is dropped).
   */
  private overLimit(): void {
    if (this.state === 'queued') {
      this.tooLarge = true;
      this.pending = [];
    } else if (this.state === 'waiting') {
      this.conn?.destroy();
      this.conn = null;
      this.releaseEndpoint();
      this.answer(413, `the request body is over the limit of ${this.client.settings.maxBodyBytes} bytes`);
    } else if (this.state === 'streaming') {
      // The upstream is already answering: the response cannot be completed.
      this.state = 'done';
      this.conn?.destroy();
      this.conn = null;
      this.releaseEndpoint();
      this.finish(false);
      this.client.destroy();
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
    // A final answer before the whole body arrived (a 413 or 417 to Expect: 100-continue, say): the
    // rest of the body may never come, so the connection closes after it, and says so (RFC 9110 15.5).
    this.closeAfter =
      !this.req.keepAlive || this.client.closingAfterCurrent() || (hasBody(this.req) && !this.requestDone);
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
    const conn = this.conn;
    if (!ok && conn && !this.pausedUpstream) {
      // Undone on the client's drain, only while this exchange still reads that connection: a
      // client that ends never drains, and the connection is resumed when it goes back idle.
      this.pausedUpstream = true;
      conn.socket.pause();
      this.client.onDrain(() => {
        if (this.conn !== conn || !this.pausedUpstream) return;
        this.pausedUpstream = false;
        conn.socket.resume();
      });
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
      this.logUpstreamError(failed, 502, code, `failed before responding (${code})`);
      this.answer(502, UPSTREAM_FAILED.failed);
      return;
    }
    if (this.state === 'streaming') {
      // The upstream went away mid-body: the client must see a cut response, not a short complete one.
      this.logUpstreamError(failed, this.status, code, `went away in the middle of the response (${code})`);
      this.state = 'done';
      this.finish(false);
      this.client.destroy();
    }
  }

  /**
   * An upstream may close an idle kept-alive connection just as it is reused; the request then fails
   * before any answer. A bodiless request with a safe method is retried once on a fresh connection
   * (another endpoint if there is one), so the client never sees that race. The same request cut
   * before any answer on a fresh connection (the instance was killed while it ran) is retried on
   * another instance when the pool has one, as nginx's `proxy_next_upstream error` does for safe
   * methods. A bodiless request that could not connect at all reached no instance: it is retried on
   * another one, whatever its method. (A body is not kept for a replay.)
   */
  private canRetry(code: string, answered: boolean, reused: boolean): boolean {
    if (this.attempt > 0 || answered || this.bodyBytes > 0 || hasBody(this.req)) return false;
    const another = this.pool!.endpoints.length > 1;
    if (!reused && NOT_CONNECTED.has(code)) return another;
    return (reused || another) && RETRY_METHODS.has(this.req.method) && RETRY_CODES.has(code);
  }

  cork(): void {
    this.client.cork();
  }

  uncork(): void {
    this.client.uncork();
  }

  /** Connect, response-head and send deadlines, checked by the sweep for every exchange in flight. */
  checkTimeouts(now: number): void {
    if (!this.conn) return;
    const { sendTimeoutMs } = this.client.settings;
    if (!this.requestDone && this.conn.sendStalled(now, sendTimeoutMs)) {
      // The upstream stopped reading the request body (nginx's proxy_send_timeout): the connection
      // cannot be reused, and the client, paused behind it, would wait for ever.
      this.sendTimedOut(sendTimeoutMs);
      return;
    }
    if (this.state !== 'waiting') return;
    const waited = now - this.sentAt;
    const connecting = this.conn.connecting;
    const { connectTimeoutMs, responseTimeoutMs } = this.client.settings;
    if ((connecting && waited > connectTimeoutMs) || waited > responseTimeoutMs) {
      if (connecting) this.ep?.markFailure();
      const failed = this.ep;
      this.conn.destroy();
      this.conn = null;
      this.releaseEndpoint();
      // An instance that never accepted got nothing: like a refused connect, try another one.
      if (connecting && this.canRetry('CONNECT_TIMEOUT', false, false)) {
        this.attempt++;
        this.send(failed ?? undefined);
        return;
      }
      this.upstreamError = true;
      this.logUpstreamError(
        failed,
        504,
        connecting ? 'CONNECT_TIMEOUT' : 'RESPONSE_TIMEOUT',
        connecting
          ? `did not accept a connection within ${connectTimeoutMs}ms`
          : `sent no response within ${responseTimeoutMs}ms`,
      );
      this.answer(504, connecting ? UPSTREAM_FAILED.connect : UPSTREAM_FAILED.response);
    }
  }

  private sendTimedOut(sendTimeoutMs: number): void {
    const failed = this.ep;
    this.conn?.destroy();
    this.conn = null;
    this.releaseEndpoint();
    this.upstreamError = true;
    const message = `read none of the request body for ${sendTimeoutMs}ms`;
    if (this.state === 'waiting') {
      this.logUpstreamError(failed, 504, 'SEND_TIMEOUT', message);
      this.answer(504, UPSTREAM_FAILED.send);
      return;
    }
    // Already answering: the response cannot be completed.
    this.logUpstreamError(failed, this.status, 'SEND_TIMEOUT', message);
    this.state = 'done';
    this.finish(false);
    this.client.destroy();
  }

  /**
   * A drain ran out of time, or the data plane is stopping: cut both sides. An event stream is
   * ended cleanly instead (its last chunk, then the connection closed): it has no length to fall
   * short of, and EventSource clients reconnect on a clean end as they would on an error.
   */
  destroy(): void {
    const endStream = this.state === 'streaming' && this.stream;
    this.conn?.destroy();
    this.conn = null;
    this.releaseEndpoint();
    if (this.state !== 'done') {
      this.state = 'done';
      this.finish(endStream);
    }
    if (endStream) {
      if (this.chunkedOut) this.client.write('0\r\n\r\n');
      this.client.done(this, true);
    } else this.client.destroy();
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

  /**
   * One line for a request the upstream failed, with the request id the client was answered with
   * (and the upstream was sent), so a user's report finds it. The path goes without its query
   * string, which may carry secrets.
   */
  private logUpstreamError(ep: UpstreamEndpoint | null, status: number, code: string, message: string): void {
    const meta = this.pool?.meta;
    this.client.upstreamErrors?.('upstream_error', {
      requestId: this.req.requestId,
      method: this.req.method,
      path: this.req.url.split('?')[0],
      ...(meta ? { service: meta.service, slot: meta.slot, version: meta.version, pool: meta.id } : {}),
      upstream: ep ? `${ep.host}:${ep.port}` : null,
      status,
      code,
      message,
      ms: Math.round(performance.now() - this.startedAt),
    });
  }

  /** The data plane answers itself (refusal, limit, upstream failure). */
  private answer(status: number, reason: string, headers = ''): void {
    this.status = status;
    this.state = 'done';
    this.pending = [];
    // A body still on its way would be read as the next request: close after answering.
    const close = !this.requestDone && (this.req.chunked || this.req.contentLength > 0);
    const text = plainResponse(status, reason, this.req.requestId, close || !this.req.keepAlive);
    // Extra header lines go right after the status line.
    this.client.write(headers === '' ? text : text.replace('\r\n', `\r\n${headers}`));
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
