import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { clientResponseHeaders, requestIdOf, upstreamRequestHeaders } from './headers.js';
import type { Flight, PoolRuntime, UpstreamEndpoint } from './pool.js';
import { type CompiledTable, Refusal, selectPool } from './select.js';

/** What the request handlers read on every request: the current table, swapped whole by apply. */
export interface PlaneView {
  table: CompiledTable | null;
  /** Set while the data plane shuts down: responses then close their connection. */
  closing: boolean;
}

export const CONNECT_TIMEOUT_MS = 5_000;
export const HEADERS_TIMEOUT_MS = 60_000;

const RETRY_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const RETRY_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED']);

/** A short text answer from the data plane itself, naming the request id. */
export function reply(res: http.ServerResponse, status: number, message: string, requestId: string): void {
  const body = `${status} ${http.STATUS_CODES[status] ?? ''}: ${message} (request ${requestId})\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
  });
  res.end(body);
}

export function forward(plane: PlaneView, req: http.IncomingMessage, res: http.ServerResponse): void {
  const id = requestIdOf(req);
  if (plane.closing) res.setHeader('connection', 'close');
  const pool = selectPool(plane.table, req);
  if (pool instanceof Refusal) {
    reply(res, pool.status, pool.reason, id);
    return;
  }
  new HttpExchange(pool, req, res, id).send(undefined);
}

function errorCode(err: Error): string {
  return (err as NodeJS.ErrnoException).code ?? err.message;
}

/**
 * One request through the data plane: it belongs to the pool it was routed to until its response
 * ends, whatever the table does meanwhile. Bodies stream through unbuffered in both directions.
 */
class HttpExchange implements Flight {
  private readonly pool: PoolRuntime;
  private readonly req: http.IncomingMessage;
  private readonly res: http.ServerResponse;
  private readonly id: string;
  private readonly started = performance.now();
  private readonly headers: http.OutgoingHttpHeaders;
  private readonly hasBody: boolean;
  private upstream: http.ClientRequest | undefined;
  private endpoint: UpstreamEndpoint | undefined;
  private timer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private stream = false;
  private upstreamError = false;
  /** The client's response: started from the upstream's, or answered by the data plane itself. */
  private responded = false;
  private closed = false;

  constructor(pool: PoolRuntime, req: http.IncomingMessage, res: http.ServerResponse, id: string) {
    this.pool = pool;
    this.req = req;
    this.res = res;
    this.id = id;
    this.headers = upstreamRequestHeaders(req, id, false);
    const length = req.headers['content-length'];
    this.hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
    pool.begin(this);
    res.on('close', this.onClose);
  }

  send(avoid: UpstreamEndpoint | undefined): void {
    const ep = this.pool.pick(avoid);
    ep.outstanding++;
    this.endpoint = ep;
    let upstream: http.ClientRequest;
    try {
      upstream = http.request({
        host: ep.host,
        port: ep.port,
        method: this.req.method,
        path: this.req.url,
        headers: this.headers,
        // A retry goes out on a fresh connection: the kept-alive one just failed.
        agent: this.attempt === 0 ? ep.agent : false,
      });
    } catch (err) {
      this.releaseEndpoint();
      this.fail(502, `cannot forward this request to ${this.pool.meta.id}: ${(err as Error).message}`);
      return;
    }
    this.upstream = upstream;
    upstream.on('response', this.onResponse);
    upstream.on('error', this.onError);
    // One timer per request: first the connect deadline, then (re-armed) the response-headers one.
    this.timer = setTimeout(this.onTimeout, CONNECT_TIMEOUT_MS);
    if (this.hasBody) this.req.pipe(upstream);
    else upstream.end();
  }

  destroy(): void {
    this.upstream?.destroy();
    this.res.destroy();
  }

  private releaseEndpoint(): void {
    this.endpoint?.release();
    this.endpoint = undefined;
  }

  private readonly onTimeout = (): void => {
    const socket = this.upstream?.socket;
    const connecting = !socket || socket.connecting;
    if (!connecting && performance.now() - this.started < HEADERS_TIMEOUT_MS) {
      this.timer = setTimeout(this.onTimeout, HEADERS_TIMEOUT_MS - CONNECT_TIMEOUT_MS);
      return;
    }
    this.fail(
      504,
      connecting
        ? `${this.pool.meta.id} did not accept a connection within ${CONNECT_TIMEOUT_MS / 1000}s`
        : `${this.pool.meta.id} sent no response within ${HEADERS_TIMEOUT_MS / 1000}s`,
    );
  };

  private readonly onError = (err: Error): void => {
    if (this.closed) return;
    if (this.responded) {
      this.onBodyBroken();
      return;
    }
    clearTimeout(this.timer);
    const upstream = this.upstream!;
    const failed = this.endpoint;
    this.releaseEndpoint();
    if (this.canRetry(err, upstream)) {
      this.attempt++;
      this.send(failed);
      return;
    }
    this.fail(502, `${this.pool.meta.id} failed before responding (${errorCode(err)})`);
  };

  /**
   * An upstream may close an idle kept-alive socket just as we reuse it; the request then fails
   * before any response byte. A request without a body and with a safe method is retried once on a
   * fresh connection (another endpoint if there is one), so the client never sees that race.
   */
  private canRetry(err: Error, upstream: http.ClientRequest): boolean {
    if (this.attempt > 0 || this.hasBody || this.res.headersSent) return false;
    if (!RETRY_METHODS.has(this.req.method ?? '')) return false;
    const code = errorCode(err);
    if (!RETRY_CODES.has(code)) return false;
    return upstream.reusedSocket || (code === 'ECONNREFUSED' && this.pool.endpoints.length > 1);
  }

  private fail(status: 502 | 504, message: string): void {
    clearTimeout(this.timer);
    this.responded = true;
    this.upstreamError = true;
    this.upstream?.destroy();
    reply(this.res, status, message, this.id);
  }

  private readonly onResponse = (upRes: http.IncomingMessage): void => {
    clearTimeout(this.timer);
    if (this.closed || this.responded) {
      upRes.destroy();
      return;
    }
    this.responded = true;
    const res = this.res;
    try {
      res.writeHead(
        upRes.statusCode ?? 502,
        upRes.statusMessage,
        clientResponseHeaders(upRes.headers, this.id),
      );
    } catch (err) {
      upRes.destroy();
      this.fail(
        502,
        `${this.pool.meta.id} sent a response that cannot be relayed: ${(err as Error).message}`,
      );
      return;
    }
    const type = upRes.headers['content-type'];
    if (type?.startsWith('text/event-stream')) {
      // Server-sent events: a long-lived stream, counted as such; the headers go out at once.
      this.stream = true;
      this.pool.promote();
      res.flushHeaders();
    }
    upRes.on('error', this.onBodyBroken);
    upRes.on('close', () => {
      if (!upRes.complete) this.onBodyBroken();
    });
    upRes.pipe(res);
  };

  /** The upstream went away mid-body: the client must see a cut response, not a short complete one. */
  private readonly onBodyBroken = (): void => {
    if (!this.res.writableEnded) this.res.destroy();
  };

  private readonly onClose = (): void => {
    this.closed = true;
    clearTimeout(this.timer);
    const res = this.res;
    const finished = res.writableFinished;
    if (!finished) this.upstream?.destroy();
    this.releaseEndpoint();
    this.pool.end(
      this,
      this.stream,
      res.headersSent ? res.statusCode : 0,
      finished ? performance.now() - this.started : -1,
      this.upstreamError,
    );
  };
}
