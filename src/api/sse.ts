import type { ServerResponse } from 'node:http';

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
