import { fromJSON, TealError } from '../core/errors.js';
import { visibleDeep } from '../core/visible.js';

export interface SseEvent {
  event: string;
  data: unknown;
}

/**
 * The CLI's side of the control API. Connection failures become TEAL_DAEMON_UNREACHABLE (exit 3)
 * with the command that starts the daemon; error bodies become the same TealError the daemon threw.
 */
export class ApiClient {
  readonly base: string;
  readonly #token: string | undefined;
  readonly #actor: string;
  readonly #startHint: string;
  readonly #shown: <T>(value: T) => T;

  /**
   * `forTerminal`: every string the daemon sends (records, events, log text, error messages) is
   * passed through `visibleDeep` on the way in, so a verb printing for people cannot print a raw
   * control sequence it got from outside. Off for --json, whose output must be the data exactly.
   */
  constructor(options: {
    base: string;
    token: string | undefined;
    actor: string;
    startHint: string;
    forTerminal?: boolean;
  }) {
    this.base = options.base;
    this.#token = options.token;
    this.#actor = options.actor;
    this.#startHint = options.startHint;
    this.#shown = options.forTerminal ? visibleDeep : (value) => value;
  }

  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const res = await this.#fetch(method, path, body, signal);
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = { error: { message: text.slice(0, 500) } };
    }
    parsed = this.#shown(parsed);
    if (!res.ok) throw fromJSON(parsed, res.status);
    return parsed as T;
  }

  /** A streaming response body as text chunks (logs). */
  async *text(path: string, signal?: AbortSignal): AsyncIterable<string> {
    for await (const chunk of this.#chunks(path, signal)) yield this.#shown(chunk);
  }

  /** A streaming response of one JSON value per line (logs with format=json), parsed. */
  async *jsonLines(path: string, signal?: AbortSignal): AsyncIterable<unknown> {
    let buffer = '';
    for await (const chunk of this.#chunks(path, signal)) {
      buffer += chunk;
      for (let end = buffer.indexOf('\n'); end !== -1; end = buffer.indexOf('\n')) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        if (line.trim() !== '') yield this.#shown(JSON.parse(line) as unknown);
      }
    }
  }

  /** Server-sent events, parsed. */
  async *events(path: string, signal?: AbortSignal): AsyncIterable<SseEvent> {
    let buffer = '';
    // Raw chunks: JSON escapes control characters as \u001b, so they reappear only once parsed.
    for await (const chunk of this.#chunks(path, signal)) {
      buffer += chunk;
      for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
        }
        if (data.length > 0) yield { event, data: this.#shown(JSON.parse(data.join('\n')) as unknown) };
      }
    }
  }

  async *#chunks(path: string, signal?: AbortSignal): AsyncIterable<string> {
    const res = await this.#fetch('GET', path, undefined, signal);
    if (!res.ok) throw fromJSON(this.#shown(await res.json().catch(() => undefined)), res.status);
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>)
      yield decoder.decode(chunk, { stream: true });
  }

  async #fetch(method: string, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { 'x-teal-actor': this.#actor };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      return await fetch(`${this.base}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      const cause = (err as { cause?: { code?: string } }).cause;
      throw new TealError(
        'TEAL_DAEMON_UNREACHABLE',
        `cannot reach the teal daemon at ${this.base} (${cause?.code ?? (err as Error).message}); start it with: ${this.#startHint}`,
        { api: this.base },
      );
    }
  }
}
