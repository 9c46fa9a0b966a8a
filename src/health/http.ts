import http from 'node:http';
import { type Endpoint, endpointText } from '../core/model.js';
import type { Probe, ProbeResult } from './probe.js';

export interface HttpProbeOptions {
  path: string;
  timeoutMs: number;
}

/**
 * GET <path> on the instance itself (never through the proxy); any 2xx passes. A fresh connection
 * each time (no keep-alive): the probe must see a listener that accepts new connections, as users'
 * requests will.
 */
export class HttpProbe implements Probe {
  readonly #options: HttpProbeOptions;

  constructor(options: HttpProbeOptions) {
    this.#options = options;
  }

  check(endpoint: Endpoint, options: { signal: AbortSignal }): Promise<ProbeResult> {
    const { path, timeoutMs } = this.#options;
    const target = `http://${endpointText(endpoint)}${path}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        req.destroy();
        resolve({ ok: false, detail: `GET ${target}: no answer within ${timeoutMs}ms` });
      }, timeoutMs);
      const req = http.get(
        {
          host: endpoint.host,
          port: endpoint.port,
          path,
          agent: false,
          signal: options.signal,
          headers: { 'user-agent': 'teal-health' },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            clearTimeout(timer);
            const status = res.statusCode ?? 0;
            resolve({ ok: status >= 200 && status < 300, detail: `GET ${target}: HTTP ${status}` });
          });
          res.on('error', () => undefined);
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        resolve({ ok: false, detail: `GET ${target}: ${err.code ?? err.message}` });
      });
    });
  }
}
