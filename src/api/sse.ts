import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Store } from '../stores/store.js';

/**
 * A server-sent-events stream. Sends a comment every 15 s so proxies and load balancers in between
 * do not close an idle stream, and says `X-Accel-Buffering: no` so nginx does not buffer it.
 */
export class EventStream {
  readonly #res: ServerResponse;
  readonly #heartbeat: NodeJS.Timeout;
  #id = 0;

  constructor(res: ServerResponse) {
    this.#res = res;
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    this.#heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    this.#heartbeat.unref();
    res.on('close', () => clearInterval(this.#heartbeat));
  }

  send(event: string, data: unknown): void {
    this.#res.write(`id: ${++this.#id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  end(): void {
    clearInterval(this.#heartbeat);
    this.#res.end();
  }
}

/**
 * Streams one record of the store as it changes: `push` sends what is new in it and says when the
 * stream is done (the record reached an end state). The record as it is now goes first, then each
 * change from the store's watch, from the revision read on, so nothing between the two is missed.
 * Stops when the client goes away or the daemon is closing (`closing`).
 */
export async function followRecord<T>(options: {
  req: IncomingMessage;
  res: ServerResponse;
  store: Store;
  key: string;
  closing: AbortSignal;
  push: (stream: EventStream, value: T) => boolean;
}): Promise<void> {
  const { req, store, key, closing } = options;
  const stream = new EventStream(options.res);
  const stop = new AbortController();
  const onClose = () => stop.abort();
  req.on('close', onClose);
  closing.addEventListener('abort', onClose, { once: true });
  try {
    const entry = await store.get<T>(key);
    if (!entry || options.push(stream, entry.value)) return;
    for await (const change of store.watch<T>(key, { signal: stop.signal, afterRevision: entry.revision })) {
      if (change.key === key && change.value && options.push(stream, change.value)) return;
    }
  } finally {
    req.off('close', onClose);
    closing.removeEventListener('abort', onClose);
    stop.abort();
    stream.end();
  }
}
