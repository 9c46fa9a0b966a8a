import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import net from 'node:net';

/**
 * Raw HTTP for the data plane's tests, where the bytes matter: a client that writes exactly what it
 * is given and parses exactly what comes back, an upstream that records every byte it receives, a
 * listener that never accepts, and the resident memory of a process.
 */

export interface RawResponse {
  status: number;
  /** The head as received, status line included, without the blank line. */
  head: string;
  /** Lower-cased names, in order received. */
  headers: [string, string][];
  body: Buffer;
  /** The body came chunked (`body` is the decoded payload). */
  chunked: boolean;
}

export function headerValues(res: RawResponse, name: string): string[] {
  return res.headers.filter(([n]) => n === name).map(([, v]) => v);
}

/**
 * Complete responses at the start of `data`, 1xx interim answers included. `noBody(i)` says whether
 * the i-th final response answers a HEAD; `closed` lets a body without framing run to the end.
 */
export function parseResponses(
  data: Buffer,
  options: { noBody?: (i: number) => boolean; closed?: boolean } = {},
): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  let finals = 0;
  for (;;) {
    const end = data.indexOf('\r\n\r\n', at, 'latin1');
    if (end < 0) return out;
    const head = data.subarray(at, end).toString('latin1');
    const [statusLine, ...lines] = head.split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? Number.NaN);
    const headers = lines.map((l): [string, string] => {
      const colon = l.indexOf(':');
      return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()];
    });
    const value = (n: string) => headers.find(([h]) => h === n)?.[1];
    let pos = end + 4;
    const res: RawResponse = { status, head, headers, body: Buffer.alloc(0), chunked: false };
    if (status >= 100 && status < 200) {
      out.push(res);
      at = pos;
      continue;
    }
    const bodiless = options.noBody?.(finals) === true || status === 204 || status === 304;
    if (bodiless) {
      // nothing to read
    } else if (value('transfer-encoding')?.toLowerCase() === 'chunked') {
      res.chunked = true;
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = data.indexOf('\r\n', pos, 'latin1');
        if (lineEnd < 0) return out;
        const size = Number.parseInt(data.subarray(pos, lineEnd).toString('latin1'), 16);
        if (size === 0) {
          const trailerEnd = data.indexOf('\r\n', lineEnd + 2, 'latin1');
          if (trailerEnd !== lineEnd + 2) return out; // no trailers are expected here
          pos = trailerEnd + 2;
          break;
        }
        if (data.length < lineEnd + 2 + size + 2) return out;
        parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
        pos = lineEnd + 2 + size + 2;
      }
      res.body = Buffer.concat(parts);
    } else if (value('content-length') !== undefined) {
      const n = Number(value('content-length'));
      if (data.length < pos + n) return out;
      res.body = data.subarray(pos, pos + n);
      pos += n;
    } else {
      if (!options.closed) return out;
      res.body = data.subarray(pos);
      pos = data.length;
    }
    out.push(res);
    finals++;
    at = pos;
  }
}

/** A client on a raw socket: sends exactly the bytes it is given and keeps every byte it receives. */
export class RawClient {
  readonly socket: net.Socket;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  /** The other side ended the connection (FIN). */
  ended = false;
  closed = false;
  error: string | undefined;
  private readonly watchers = new Set<() => void>();

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.size += d.length;
      this.notify();
    });
    socket.on('end', () => {
      this.ended = true;
      this.notify();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err.code ?? err.message;
      this.notify();
    });
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
  }

  /** Connects to `url`'s host and port (an http:// URL or "host:port"), from `localAddress` if given. */
  static connect(url: string, localAddress?: string): Promise<RawClient> {
    const u = new URL(url.includes('://') ? url : `http://${url}`);
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host: u.hostname,
        port: Number(u.port),
        noDelay: true,
        ...(localAddress ? { localAddress } : {}),
      });
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  get received(): Buffer {
    if (this.chunks.length > 1) {
      const all = Buffer.concat(this.chunks);
      this.chunks.splice(0, this.chunks.length, all);
    }
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  get bytesReceived(): number {
    return this.size;
  }

  /** Everything received so far, as latin1 text (byte for byte). */
  get text(): string {
    return this.received.toString('latin1');
  }

  send(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  responses(options: { noBody?: (i: number) => boolean } = {}): RawResponse[] {
    return parseResponses(this.received, { ...options, closed: this.ended || this.closed });
  }

  /** Resolves once `check` holds; rejects after `timeoutMs`, naming `what` and what arrived. */
  until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const watch = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.watchers.delete(watch);
        resolve();
      };
      const timer = setTimeout(() => {
        this.watchers.delete(watch);
        reject(
          new Error(`timed out waiting for ${what}; received ${JSON.stringify(this.text.slice(0, 500))}`),
        );
      }, timeoutMs);
      this.watchers.add(watch);
    });
  }

  /** The first `n` final responses (1xx excluded), once they have all arrived. */
  async finalResponses(n: number, options: { noBody?: (i: number) => boolean; timeoutMs?: number } = {}) {
    const finals = () => this.responses(options).filter((r) => r.status >= 200);
    await this.until(`${n} response(s)`, () => finals().length >= n, options.timeoutMs);
    return finals().slice(0, n);
  }

  /** Resolves once the data plane has ended or closed the connection. */
  waitForClose(timeoutMs = 5_000): Promise<void> {
    return this.until('the connection to close', () => this.ended || this.closed, timeoutMs);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private notify(): void {
    for (const w of [...this.watchers]) w();
  }
}

/** A raw upstream: every byte received is recorded; each request head gets `respond`'s answer. */
export interface RawUpstream {
  port: number;
  /** Connections accepted, and how many of them have closed. */
  connections: number;
  closed: number;
  /** Every byte received on any connection, in order (latin1). */
  received: string;
  /** Request heads received, without the blank line. */
  heads: string[];
  /** Each request's body as framed by its head (a chunked one decoded), once all of it arrived. */
  bodies: string[];
  close(): Promise<void>;
}

const OK = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok';

/**
 * Answers every request head with `respond(head)` (no answer when it returns undefined), as soon as
 * the head has arrived. It frames bodies as a strict HTTP/1.1 server would (Content-Length, or
 * chunked when Transfer-Encoding names it), so `heads` counts the requests it would have served
 * and `bodies` holds what each carried: bytes a proxy forwarded unframed show up as extra heads.
 */
export async function startRawUpstream(
  options: { port?: number; respond?: (head: string) => string | undefined } = {},
): Promise<RawUpstream> {
  const respond = options.respond ?? (() => OK);
  const sockets = new Set<net.Socket>();
  const up: RawUpstream = {
    port: 0,
    connections: 0,
    closed: 0,
    received: '',
    heads: [],
    bodies: [],
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = net.createServer((socket) => {
    up.connections++;
    sockets.add(socket);
    socket.on('close', () => {
      up.closed++;
      sockets.delete(socket);
    });
    socket.on('error', () => socket.destroy());
    let buffered = '';
    // The body being read: `length` bytes still to come, or chunked; `body` so far.
    let body: { length: number; chunked: boolean; data: string } | null = null;
    socket.on('data', (d: Buffer) => {
      const text = d.toString('latin1');
      up.received += text;
      buffered += text;
      for (;;) {
        if (body !== null) {
          const rest = readBody(body, buffered);
          if (rest === undefined) return;
          buffered = rest;
          up.bodies.push(body.data);
          body = null;
        }
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        up.heads.push(head);
        body = {
          length: Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0),
          chunked: /\r\ntransfer-encoding:[^\r]*chunked/i.test(head),
          data: '',
        };
        const answer = respond(head);
        if (answer !== undefined) socket.write(answer, 'latin1');
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  up.port = (server.address() as net.AddressInfo).port;
  return up;
}

/**
 * Reads `body` from `buffered`; returns what follows the body once it is complete, undefined while
 * more is needed. A length is consumed as it arrives (a large body is not kept twice); a chunked
 * body is read whole once its last chunk is in (chunk extensions and trailers are skipped; a size
 * line that is not hex ends it there).
 */
function readBody(
  body: { length: number; chunked: boolean; data: string },
  buffered: string,
): string | undefined {
  if (!body.chunked) {
    const n = Math.min(body.length, buffered.length);
    body.data += buffered.slice(0, n);
    body.length -= n;
    if (body.length > 0) return undefined;
    return buffered.slice(n);
  }
  let at = 0;
  let data = '';
  for (;;) {
    const lineEnd = buffered.indexOf('\r\n', at);
    if (lineEnd < 0) return undefined;
    const size = Number.parseInt(buffered.slice(at, lineEnd), 16);
    if (Number.isNaN(size)) {
      body.data = data;
      return buffered.slice(at);
    }
    if (size === 0) {
      const end = buffered.indexOf('\r\n\r\n', lineEnd);
      if (end < 0) return undefined;
      body.data = data;
      return buffered.slice(end + 4);
    }
    if (buffered.length < lineEnd + 2 + size + 2) return undefined;
    data += buffered.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
  }
}

/**
 * A port whose listen backlog is full: a connect to it neither succeeds nor fails, like a host that
 * has gone away. The listener lives in a child process whose event loop is blocked, so it never
 * accepts; two connections of ours fill its backlog of one.
 */
export async function startUnacceptingListener(): Promise<{ port: number; close(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
         process.stdout.write(s.address().port + '\\n');
         Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
       });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('error', reject);
  });
  const fillers: net.Socket[] = [];
  const close = async () => {
    for (const s of fillers) s.destroy();
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
  };
  // Fill the backlog until a connect hangs.
  for (let i = 0; i < 8; i++) {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    fillers.push(s);
    const connected = await Promise.race([
      new Promise<boolean>((resolve) => s.once('connect', () => resolve(true))),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 200)),
    ]);
    if (!connected) return { port, close };
  }
  await close();
  throw new Error('could not fill the listen backlog of the unaccepting listener');
}

/** Resident memory of a process in bytes, from /proc (Linux). */
export async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

/*
 * A data plane for the tests of one describe block (the HTTP/1.1 suites), with the upstreams and
 * clients each test opens. It registers vitest hooks, so it is called inside a `describe`.
 */

/** Stands in for an Upstream where only the port matters. */
