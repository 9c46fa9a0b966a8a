import type { Socket } from 'node:net';
import { type ClientSide, Exchange } from './exchange.js';
import { Http1Parser, ParseError, STOP } from './http1.js';
import type { EventLog } from './log.js';
import type { PoolRuntime } from './pool.js';
import type { Listener, Refusal } from './select.js';
import { SendWatch } from './send-watch.js';
import type { DataPlaneSettings } from './settings.js';
import type { TrustedProxies } from './trusted.js';
import { plainResponse, type RequestHead, readRequestHead } from './wire.js';

/** What a client connection needs from the data plane it belongs to. */
export interface PlaneContext {
  readonly closing: boolean;
  readonly settings: DataPlaneSettings;
  readonly connections: Set<ClientConnection>;
  /** Peers whose forwarded headers are believed (`proxy.trustedProxies`). */
  readonly trustedProxies: TrustedProxies;
  /** Requests that could not be forwarded (rate-limited); absent in tests without a log. */
  readonly upstreamErrors?: EventLog;
  route(req: RequestHead, listener: Listener): PoolRuntime | Refusal;
  upgrade(req: RequestHead, socket: Socket, head: Buffer, listener: Listener): void;
}

/** Pipelined requests beyond this wait in the socket, not in memory. */
const MAX_QUEUED = 16;

/** How long a closing connection keeps reading (and dropping) what the client still sends. */
const LINGER_MS = 5_000;

/**
 * One client connection: parses its requests with llhttp, answers them in order (pipelined ones
 * wait their turn), keeps the connection alive between them, and closes it when the client or the
 * data plane asks. Malformed requests get 400 (431 for oversized heads) and a closed connection,
 * never a forwarded request: nothing of a packet goes upstream before all of it has parsed, so a
 * request whose body turns out malformed in the same packet as its head never leaves.
 */
export class ClientConnection implements ClientSide {
  private readonly plane: PlaneContext;
  readonly socket: Socket;
  /** The listening socket it was accepted on: only the preview one honours the slot header. */
  private readonly listener: Listener;
  private readonly parser: Http1Parser;
  private readonly queue: Exchange[] = [];
  /** The exchange whose body the parser is reading. */
  private reading: Exchange | null = null;
  private pendingUpgrade: { req: RequestHead; head: Buffer } | null = null;
  private upgradeReq: RequestHead | null = null;
  private lastActivity = Date.now();
  private readonly sendWatch = new SendWatch();
  /** When bytes of a head not yet complete started arriving (0 when none). */
  private headStarted = 0;
  private closeRequested = false;
  private ended = false;
  private pausedBy = 0;
  /** Answers wait for the client to take the ones before (see `done`). */
  private awaitingDrain = false;
  /** Inside `parser.execute`: exchanges are started once it returns. */
  private parsing = false;
  /** A head refused by the data plane itself (see RequestHead.refusal), while the parser stops. */
  private headRefusal: { status: number; reason: string; requestId: string } | null = null;
  /** The answer to a malformed request, sent once the requests before it are answered. */
  private refusal: string | null = null;

  constructor(plane: PlaneContext, socket: Socket, listener: Listener = 'public') {
    this.plane = plane;
    this.socket = socket;
    this.listener = listener;
    socket.setNoDelay(true);
    // Asked once: a connection's peer does not change.
    const trusted = plane.trustedProxies.has(socket.remoteAddress);
    this.parser = new Http1Parser('request', {
      head: (head) => {
        this.headStarted = 0;
        const req = readRequestHead(head, socket.remoteAddress ?? '', trusted);
        if (req.refusal) {
          this.headRefusal = { ...req.refusal, requestId: req.requestId };
          return STOP;
        }
        if (req.upgrade) {
          this.upgradeReq = req;
          return false;
        }
        const exchange = new Exchange(this, req, plane.route(req, listener));
        this.queue.push(exchange);
        this.reading = exchange;
        // Started by onData once the packet has parsed.
        if (this.queue.length > MAX_QUEUED) this.pauseReading();
        return false;
      },
      body: (chunk) => this.reading?.requestBody(chunk),
      complete: () => {
        this.reading?.requestEnd();
        this.reading = null;
      },
    });
    socket.on('data', this.onData);
    socket.on('error', () => undefined);
    socket.on('close', this.onClose);
    plane.connections.add(this);
  }

  get settings(): DataPlaneSettings {
    return this.plane.settings;
  }

  get upstreamErrors(): EventLog | undefined {
    return this.plane.upstreamErrors;
  }

  private readonly onData = (data: Buffer): void => {
    this.lastActivity = Date.now();
    if (this.queue.length === 0 && this.headStarted === 0) this.headStarted = this.lastActivity;
    let parsed: number;
    this.parsing = true;
    try {
      parsed = this.parser.execute(data);
    } catch (err) {
      this.parsing = false;
      const refused = this.headRefusal;
      if (refused) this.refuse(refused.status, refused.reason, refused.requestId);
      else
        this.refuse(
          err instanceof ParseError && err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400,
          `malformed request: ${(err as Error).message}`,
          'none',
        );
      return;
    }
    this.parsing = false;
    if (!this.awaitingDrain) this.queue[0]?.start();
    if (this.upgradeReq) {
      // The parser stopped after the upgrade's head; what follows belongs to the new protocol.
      this.pendingUpgrade = { req: this.upgradeReq, head: data.subarray(parsed) };
      this.upgradeReq = null;
      this.socket.off('data', this.onData);
      this.socket.pause();
      this.maybeUpgrade();
    }
  };

  /**
   * A malformed request: the requests complete before it are answered, then it gets `status` and
   * the connection closes. A request whose body turned out malformed is abandoned upstream (its
   * head may have gone in an earlier packet), or cut if its response had already begun.
   */
  private refuse(status: number, reason: string, requestId: string): void {
    this.socket.off('data', this.onData);
    this.refusal = plainResponse(status, reason, requestId, true);
    const broken = this.reading;
    this.reading = null;
    if (broken) {
      const i = this.queue.indexOf(broken);
      if (i >= 0) this.queue.splice(i, 1);
      const answering = broken.responding;
      broken.clientGone();
      if (answering) {
        this.destroy();
        return;
      }
    }
    const front = this.queue[0];
    if (front) front.start();
    else this.sendRefusal();
  }

  private sendRefusal(): void {
    if (this.ended || this.refusal === null) return;
    this.ended = true;
    this.socket.end(this.refusal, 'latin1');
    this.linger();
  }

  /** After ending: reads and drops what the client still sends, so closing does not reset the answer. */
  private linger(): void {
    this.socket.resume();
    setTimeout(() => this.socket.destroy(), LINGER_MS).unref();
  }

  private maybeUpgrade(): void {
    const pending = this.pendingUpgrade;
    if (!pending || this.queue.length > 0) return;
    this.pendingUpgrade = null;
    this.ended = true;
    this.plane.connections.delete(this);
    this.parser.free();
    this.socket.off('close', this.onClose);
    this.plane.upgrade(pending.req, this.socket, pending.head, this.listener);
  }

  closingAfterCurrent(): boolean {
    return this.closeRequested || this.plane.closing;
  }

  /** Whether `exchange` is the one being answered (the others wait, and so does their sender). */
  isCurrent(exchange: Exchange): boolean {
    return this.queue[0] === exchange;
  }

  write(data: string | Buffer): boolean {
    // Heads are latin1 both ways: the parser reads header bytes as latin1, so writing them back as
    // latin1 returns exactly the bytes received (UTF-8 would re-encode obs-text), and it is cheaper.
    if (this.ended) return false;
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
  }

  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  onDrain(fn: () => void): void {
    this.socket.once('drain', fn);
  }

  pauseReading(): void {
    if (this.pausedBy++ === 0) this.socket.pause();
  }

  resumeReading(): void {
    if (this.pausedBy > 0 && --this.pausedBy === 0 && !this.ended) this.socket.resume();
  }

  done(exchange: Exchange, close: boolean): void {
    const i = this.queue.indexOf(exchange);
    if (i >= 0) this.queue.splice(i, 1);
    if (this.reading === exchange && close) this.reading = null;
    this.lastActivity = Date.now();
    if (close || this.closingAfterCurrent()) {
      this.end();
      return;
    }
    if (this.socket.writableNeedDrain) {
      // The client has not taken the answers so far: the next request waits, and reading with it,
      // so a client that pipelines requests and never reads cannot pile answers up in memory (the
      // send timeout closes it if it never drains).
      if (!this.awaitingDrain) {
        this.awaitingDrain = true;
        this.pauseReading();
        this.socket.once('drain', this.onDrained);
      }
      return;
    }
    this.next();
  }

  private readonly onDrained = (): void => {
    this.awaitingDrain = false;
    if (!this.ended) this.next();
  };

  /** Goes on to the next request queued, the refusal waiting, or the upgrade. */
  private next(): void {
    // A pipelined request waiting with its body paused the socket: let it flow again.
    while (this.pausedBy > 0) this.resumeReading();
    const next = this.queue[0];
    if (next) {
      if (!this.parsing) next.start();
    } else if (this.refusal !== null) this.sendRefusal();
    else this.maybeUpgrade();
  }

  /** Ends the connection after what was written; requests queued behind are dropped. */
  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.socket.off('data', this.onData);
    for (const e of this.queue.splice(0)) e.clientGone();
    this.socket.end();
    // A client that never reads its last response must not hold the socket forever.
    this.linger();
  }

  destroy(): void {
    this.ended = true;
    this.socket.destroy();
  }

  /** Closes an idle connection now; a busy one closes after its current response. */
  closeWhenIdle(): void {
    if (this.queue.length === 0 && !this.pendingUpgrade) this.end();
    else this.closeRequested = true;
  }

  /**
   * Since when the connection has been idle (no request in progress, nothing to answer; a head
   * still arriving counts from its first byte), for the connection cap; 0 when it is busy.
   */
  idleSince(): number {
    if (this.ended || this.queue.length > 0 || this.pendingUpgrade || this.refusal !== null) return 0;
    return this.headStarted || this.lastActivity;
  }

  /** Idle, head and send deadlines, checked by the data plane's sweep. */
  sweep(now: number): void {
    if (this.sendWatch.stalled(this.socket, now, this.plane.settings.sendTimeoutMs)) {
      // The client stopped reading: its exchanges are abandoned (their upstream connections closed,
      // never returned to the pool with an answer half read) when the socket closes.
      this.destroy();
      return;
    }
    if (this.ended || this.queue.length > 0) return;
    if (this.headStarted > 0 && now - this.headStarted > this.plane.settings.headersTimeoutMs) {
      this.ended = true;
      // Whatever of the head still comes must not be parsed into a request.
      this.socket.off('data', this.onData);
      this.socket.end(plainResponse(408, 'the request head did not arrive in time', 'none', true), 'latin1');
      this.linger();
    } else if (now - this.lastActivity > this.plane.settings.idleTimeoutMs) this.end();
  }

  private readonly onClose = (): void => {
    this.ended = true;
    this.plane.connections.delete(this);
    for (const e of this.queue.splice(0)) e.clientGone();
    this.reading = null;
    this.parser.free();
  };
}
