/**
 * A small client for the Docker Engine API (and podman's Docker-compatible one) over node:http:
 * JSON requests, and raw responses for the endpoints that stream (logs, wait, pull and build
 * progress). Paths carry no API version: the engine then speaks its own current version, which
 * keeps working against engines whose minimum version has moved past an old pinned one; every field
 * teal uses has been stable since API 1.25.
 *
 * @example
 *   const engine = new Engine({ host: 'unix:///var/run/docker.sock' });
 *   const info = await engine.json<{ Id: string }>('GET', '/containers/teal-web-blue-r3-0-abc123/json');
 */
import http from 'node:http';
import type { Readable } from 'node:stream';
import { TealError } from '../../core/errors.js';

export const DEFAULT_ENGINE_HOST = 'unix:///var/run/docker.sock';

/** Where the engine listens: a unix socket or a tcp address (plain HTTP; TLS is not supported yet). */
export type EngineAddress =
  | { kind: 'unix'; socketPath: string }
  | { kind: 'tcp'; host: string; port: number };

export interface EngineOptions {
  /** `unix:///path/docker.sock` or `tcp://host:port`; default `DOCKER_HOST`, else the standard socket. */
  host?: string;
  /** How long a request waits for the answer's headers unless it says otherwise; default 30 s. */
  timeoutMs?: number;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  /** Sent as JSON, or as it is when a Readable (with `contentType`). */
  body?: unknown;
  contentType?: string;
  headers?: Record<string, string>;
  /** Aborting rejects with the signal's reason and drops the connection. */
  signal?: AbortSignal;
  /** Until the response headers arrive (default the engine's, 30 s); 0 waits forever (long polls, pulls). */
  timeoutMs?: number;
}

/** The engine answered with an error status (or an error inside a progress stream). */
export class EngineError extends TealError {
  /** HTTP status; 200 for an error reported inside a progress stream. */
  readonly status: number;
  /** The engine's own words: `No such container: x`. */
  readonly engineMessage: string;

  constructor(what: string, status: number, engineMessage: string) {
    super('TEAL_RUNTIME_FAILED', `Docker engine: ${what} answered ${status}: ${engineMessage}`, {
      status,
      engineMessage,
    });
    this.status = status;
    this.engineMessage = engineMessage;
  }
}

export function isEngineError(err: unknown, status?: number): err is EngineError {
  return err instanceof EngineError && (status === undefined || err.status === status);
}

export function parseEngineHost(host: string): EngineAddress {
  if (host.startsWith('unix://')) {
    const socketPath = host.slice('unix://'.length);
    if (socketPath.startsWith('/')) return { kind: 'unix', socketPath };
  } else if (host.startsWith('tcp://')) {
    const url = new URL(`http://${host.slice('tcp://'.length)}`);
    return { kind: 'tcp', host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 2375) };
  }
  throw new TealError(
    'TEAL_RUNTIME_FAILED',
    `unsupported Docker engine address "${host}": expected unix:///path/to/docker.sock or tcp://host:port`,
    { host },
  );
}

export class Engine {
  /** The address as given: `unix:///var/run/docker.sock`. */
  readonly host: string;
  /** Where the address came from, for error messages. */
  readonly hostSource: string;
  readonly address: EngineAddress;
  readonly timeoutMs: number;
  /** Requests in flight, ended by destroy(). */
  private readonly inFlight = new Set<http.ClientRequest>();

  constructor(options: EngineOptions = {}) {
    const fromEnv = process.env.DOCKER_HOST;
    this.host = options.host ?? fromEnv ?? DEFAULT_ENGINE_HOST;
    this.hostSource = options.host ? 'configured' : fromEnv ? 'from DOCKER_HOST' : 'the default';
    this.address = parseEngineHost(this.host);
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** The engine runs on this machine, so ports it publishes can be checked and picked here. */
  get isLocal(): boolean {
    return this.address.kind === 'unix' || ['127.0.0.1', 'localhost', '::1'].includes(this.address.host);
  }

  /** A request whose answer is JSON (else its text, or undefined when empty); an error status throws EngineError. */
  async json<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.open(method, path, options);
    const text = await readText(res, options.signal);
    if (text === '') return undefined as T;
    return (res.headers['content-type']?.includes('json') ? JSON.parse(text) : text) as T;
  }

  /** A request whose answer streams: the caller reads (or destroys) the response. */
  async open(method: string, path: string, options: RequestOptions = {}): Promise<http.IncomingMessage> {
    const res = await this.send(method, path, options);
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return res;
    const text = await readText(res, options.signal).catch((err: unknown) => (err as Error).message);
    throw new EngineError(`${method} ${path}`, status, engineMessage(text));
  }

  /** Ends every request in flight (follows, waits): for shutting down. */
  destroy(): void {
    for (const req of this.inFlight) {
      req.destroy(new TealError('TEAL_RUNTIME_FAILED', 'the Docker engine client was closed'));
    }
    this.inFlight.clear();
  }

  private send(method: string, path: string, options: RequestOptions): Promise<http.IncomingMessage> {
    const { signal, body } = options;
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) search.set(key, String(value));
    }
    const query = search.toString() === '' ? '' : `?${search}`;
    const streamed = isReadable(body);
    const payload = body === undefined || streamed ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { ...options.headers };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    } else if (streamed) {
      headers['content-type'] = options.contentType ?? 'application/octet-stream';
    }
    const target =
      this.address.kind === 'unix'
        ? { socketPath: this.address.socketPath }
        : { host: this.address.host, port: this.address.port };

    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      // No keep-alive: a connection per request costs little on a local socket, and a pooled one
      // left over from an engine that has since restarted would fail the next request.
      const req = http.request({ ...target, method, path: `${path}${query}`, headers, agent: false });
      this.inFlight.add(req);
      const timeoutMs = options.timeoutMs ?? this.timeoutMs;
      const timer =
        timeoutMs > 0
          ? setTimeout(
              () =>
                req.destroy(
                  new TealError(
                    'TEAL_RUNTIME_FAILED',
                    `the Docker engine at ${this.host} did not answer ${method} ${path} within ${timeoutMs} ms`,
                    { host: this.host },
                  ),
                ),
              timeoutMs,
            )
          : undefined;
      const onAbort = () => req.destroy(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      req.on('close', () => this.inFlight.delete(req));
      req.on('error', (err) => {
        done();
        if (signal?.aborted) return reject(signal.reason);
        reject(err instanceof TealError ? err : this.unreachable(err));
      });
      req.on('response', (res) => {
        done();
        // Aborting after the headers ends the body the caller reads.
        if (signal) {
          const onAbortBody = () => res.destroy(signal.reason);
          signal.addEventListener('abort', onAbortBody, { once: true });
          res.once('close', () => signal.removeEventListener('abort', onAbortBody));
        }
        resolve(res);
      });
      if (streamed) {
        (body as Readable).once('error', (err) => req.destroy(err));
        (body as Readable).pipe(req);
      } else {
        req.end(payload);
      }
    });
  }

  private unreachable(err: Error): TealError {
    return new TealError(
      'TEAL_RUNTIME_FAILED',
      `cannot reach the Docker engine at ${this.host} (${this.hostSource}): ${err.message}`,
      { host: this.host },
      { cause: err },
    );
  }
}

/** The `message` of an engine's JSON error body, else the body itself. */
function engineMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    // Not JSON (a proxy in between, an old engine): the text is the message.
  }
  return text.trim() || '(no message)';
}

async function readText(res: http.IncomingMessage, signal?: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res) chunks.push(chunk as Buffer);
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw err;
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isReadable(body: unknown): body is Readable {
  return typeof (body as Readable | undefined)?.pipe === 'function';
}

/** One message of a pull or build progress stream. */
export interface ProgressMessage {
  status?: string;
  stream?: string;
  error?: string;
  errorDetail?: { message?: string };
  aux?: { ID?: string };
}

/**
 * Reads a pull or build progress stream (one JSON message a line) to its end. The engine reports
 * a failure that happens after it started answering as an `error` message inside the stream, with
 * status 200: that throws EngineError, so a failed pull can never pass for a finished one.
 */
export async function readProgress(
  res: http.IncomingMessage,
  what: string,
  signal?: AbortSignal,
): Promise<ProgressMessage[]> {
  const messages: ProgressMessage[] = [];
  for (const line of (await readText(res, signal)).split('\n')) {
    if (line.trim() === '') continue;
    const message = JSON.parse(line) as ProgressMessage;
    if (message.error !== undefined || message.errorDetail?.message !== undefined) {
      throw new EngineError(what, 200, message.errorDetail?.message ?? message.error ?? '(no message)');
    }
    messages.push(message);
  }
  return messages;
}
