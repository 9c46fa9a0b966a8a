import net from 'node:net';
import { Http1Parser, type ParsedHead } from './http1.js';
import { SendWatch } from './send-watch.js';

/**
 * Kept-alive connections to one upstream address, with their own response parser each: a request
 * costs a head written to a pooled socket and a parse of the answer, not an http.Agent, a
 * ClientRequest and an IncomingMessage.
 */

/** What uses a connection for one request: the exchange. */
export interface UpstreamUser {
  /** The upstream's response head; return true when the response has no body (HEAD, 204, 304). */
  onHead(head: ParsedHead): boolean;
  onBody(chunk: Buffer): void;
  onEnd(): void;
  /** The connection failed; `answered` says whether any response byte had arrived. */
  onFail(code: string, answered: boolean): void;
  /** Called around each parse, so a head and its body leave in one write to the client. */
  cork(): void;
  uncork(): void;
}

/** Idle connections without a Keep-Alive hint are closed after this (Node servers close at 5 s). */
export const DEFAULT_IDLE_MS = 4_000;
const MAX_IDLE_PER_ENDPOINT = 256;

export class UpstreamConn {
  readonly socket: net.Socket;
  readonly endpoint: UpstreamEndpoint;
  /** Has served a request before: a failure before any answer may be the upstream's idle close. */
  reused = false;
  idleSince = 0;
  private user: UpstreamUser | null = null;
  private answered = false;
  private keepAlive = false;
  private idleMs = DEFAULT_IDLE_MS;
  private errorCode = '';
  private readonly parser: Http1Parser;
  private readonly sendWatch = new SendWatch();

  constructor(endpoint: UpstreamEndpoint) {
    this.endpoint = endpoint;
    this.socket = net.connect({ host: endpoint.host, port: endpoint.port, noDelay: true });
    this.parser = new Http1Parser('response', {
      head: (head) => {
        if (head.status >= 200) {
          this.keepAlive = head.keepAlive;
          this.idleMs = keepAliveHint(head.headers) ?? DEFAULT_IDLE_MS;
        }
        return this.user ? this.user.onHead(head) : false;
      },
      body: (chunk) => this.user?.onBody(chunk),
      complete: () => this.user?.onEnd(),
    });
    this.socket.on('data', this.onData);
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.errorCode ||= err.code ?? err.message;
    });
    this.socket.on('end', this.onEnd);
    this.socket.on('close', this.onClose);
  }

  get connecting(): boolean {
    return this.socket.connecting;
  }

  attach(user: UpstreamUser): void {
    this.user = user;
    this.answered = false;
    this.keepAlive = false;
  }

  write(data: string | Buffer): boolean {
    // latin1: the bytes the client sent, unchanged (see ClientConnection.write).
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
  }

  /** Whether the upstream has taken none of the request (body) written to it for `limitMs`. */
  sendStalled(now: number, limitMs: number): boolean {
    return this.sendWatch.stalled(this.socket, now, limitMs);
  }

  /** The response ended: back to the pool if the upstream keeps it alive, else closed. */
  release(): void {
    this.user = null;
    this.reused = true;
    // An exchange may end while it holds the socket paused for a slow client (whose drain then
    // never comes if it closes): an idle connection must be read, for its close and its next answer.
    this.socket.resume();
    if (this.keepAlive && !this.socket.destroyed && this.endpoint.idle.length < MAX_IDLE_PER_ENDPOINT) {
      this.idleSince = Date.now();
      this.endpoint.idle.push(this);
    } else this.destroy();
  }

  /** Idle longer than the upstream keeps connections: close it before it closes under us. */
  expired(now: number): boolean {
    return now - this.idleSince > this.idleMs;
  }

  destroy(): void {
    this.user = null;
    this.socket.destroy();
    this.endpoint.forget(this);
  }

  private readonly onData = (data: Buffer): void => {
    this.answered = true;
    const user = this.user;
    if (!user) {
      // Bytes on an idle connection: nothing asked for them; it cannot be trusted any more.
      this.destroy();
      return;
    }
    user.cork();
    try {
      this.parser.execute(data);
    } catch {
      this.fail('HPE_INVALID_RESPONSE');
    } finally {
      user.uncork();
    }
  };

  private readonly onEnd = (): void => {
    // A body that runs until the upstream closes ends here.
    if (this.user) {
      try {
        this.parser.finish();
      } catch {
        // Cut short: reported by onClose.
      }
    }
  };

  private readonly onClose = (): void => {
    this.parser.free();
    this.endpoint.forget(this);
    if (this.user) this.fail(this.errorCode || 'ECONNRESET');
  };

  private fail(code: string): void {
    const user = this.user;
    this.user = null;
    this.socket.destroy();
    user?.onFail(code, this.answered);
  }
}

/** `Keep-Alive: timeout=5` -> 4000 ms: a second less than the upstream promised, to never race its close. */
function keepAliveHint(headers: string[]): number | undefined {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.length === 10 && headers[i]!.toLowerCase() === 'keep-alive') {
      const m = /timeout=(\d+)/i.exec(headers[i + 1]!);
      if (m) return Math.max(500, Number(m[1]) * 1000 - 1000);
    }
  }
  return undefined;
}

/** Consecutive connect failures that take an endpoint out of rotation. */
export const FAILURES_TO_EJECT = 2;
/** Errors that say the endpoint itself is unreachable (not the idle-close race of a reused socket). */
export const CONNECT_FAILURES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'CONNECT_TIMEOUT',
]);

/**
 * One upstream address: its idle connections, how many requests are outstanding on it, and its
 * passive health. After FAILURES_TO_EJECT connect failures in a row it is out of rotation; the
 * data plane's sweeper then tries a TCP connect to it on every tick and puts it back once one
 * succeeds. An instance that died is skipped within two requests, not after a health-check period.
 */
export class UpstreamEndpoint {
  readonly host: string;
  readonly port: number;
  readonly key: string;
  outstanding = 0;
  /** Consecutive connect failures. */
  failures = 0;
  /** Out of rotation until a probe connects. */
  down = false;
  private probing = false;
  /** Left the pool's endpoint list: its connections go once its last request is done. */
  removed = false;
  /** Idle kept-alive connections, most recent last: reused first, so the oldest age out. */
  readonly idle: UpstreamConn[] = [];
  private readonly all = new Set<UpstreamConn>();

  constructor(host: string, port: number, key: string) {
    this.host = host;
    this.port = port;
    this.key = key;
  }

  /** An idle connection if there is one, else a new one; `fresh` forces a new one (a retry). */
  acquire(fresh: boolean): UpstreamConn {
    if (!fresh) {
      const now = Date.now();
      for (let conn = this.idle.pop(); conn; conn = this.idle.pop()) {
        if (!conn.socket.destroyed && !conn.expired(now)) return conn;
        conn.destroy();
      }
    }
    const conn = new UpstreamConn(this);
    this.all.add(conn);
    return conn;
  }

  markFailure(): void {
    if (++this.failures >= FAILURES_TO_EJECT) this.down = true;
  }

  markSuccess(): void {
    this.failures = 0;
    this.down = false;
  }

  /** While down: one TCP connect per call (per sweep tick); a connect puts it back in rotation. */
  probe(): void {
    if (!this.down || this.probing) return;
    this.probing = true;
    const socket = net.connect({ host: this.host, port: this.port });
    const done = (up: boolean) => {
      this.probing = false;
      socket.destroy();
      if (up) this.markSuccess();
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(2_000, () => done(false));
  }

  release(): void {
    this.outstanding--;
    if (this.removed && this.outstanding === 0) this.closeIdle();
  }

  forget(conn: UpstreamConn): void {
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** Closes idle connections past their time; probes the endpoint if it is out of rotation. */
  sweep(now: number): void {
    for (const conn of [...this.idle]) if (conn.expired(now)) conn.destroy();
    this.probe();
  }

  closeIdle(): void {
    for (const conn of [...this.idle]) conn.destroy();
  }

  /** Closes every connection, busy or not (the pool was drained or the data plane is stopping). */
  destroyAll(): void {
    for (const conn of [...this.all]) conn.destroy();
  }
}
