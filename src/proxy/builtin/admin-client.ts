import http from 'node:http';
import { TealError } from '../../core/errors.js';

export interface AdminCallOptions {
  body?: unknown;
  signal?: AbortSignal;
  /** Gives up when the data plane has not answered in this long (default 30s). */
  timeoutMs?: number;
}

// ECONNRESET too: a data plane that died a moment ago can reset the connection instead of refusing it.
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOENT', 'ENOTSOCK', 'ECONNRESET']);

/**
 * One request to a data plane's admin API over its unix socket, parsed as JSON. Nobody answering
 * is TEAL_PROXY_UNREACHABLE; any other failure, or a non-2xx answer, is TEAL_PROXY_FAILED with the
 * data plane's own message.
 */
export function adminCall<T>(
  socketPath: string,
  method: string,
  path: string,
  options: AdminCallOptions = {},
): Promise<T> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise<T>((resolve, reject) => {
    const req = http.request(
      {
        socketPath,
        method,
        path,
        agent: false,
        signal: options.signal,
        headers:
          payload === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => {
          clearTimeout(timer);
          reject(failed(socketPath, `${method} ${path}: ${err.message}`));
        });
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString();
          let body: unknown;
          try {
            body = text ? JSON.parse(text) : null;
          } catch {
            body = text;
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            resolve(body as T);
            return;
          }
          const message =
            (body as { error?: { message?: string } } | null)?.error?.message ??
            (typeof body === 'string' ? body : text);
          reject(
            new TealError('TEAL_PROXY_FAILED', `the data plane refused ${method} ${path}: ${message}`, {
              socket: socketPath,
              status,
            }),
          );
        });
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      reject(failed(socketPath, `${method} ${path}: no answer within ${timeoutMs}ms`));
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.name === 'AbortError')
        reject(new TealError('TEAL_ABORTED', `${method} ${path} was aborted`, undefined, { cause: err }));
      else if (err.code && UNREACHABLE.has(err.code)) {
        reject(
          new TealError(
            'TEAL_PROXY_UNREACHABLE',
            `no data plane answers on ${socketPath} (${err.code}); \`teal up\` starts one`,
            { socket: socketPath, code: err.code },
            { cause: err },
          ),
        );
      } else reject(failed(socketPath, `${method} ${path}: ${err.code ?? err.message}`, err));
    });
    req.end(payload);
  });
}

function failed(socketPath: string, message: string, cause?: unknown): TealError {
  return new TealError(
    'TEAL_PROXY_FAILED',
    `the data plane on ${socketPath} failed: ${message}`,
    { socket: socketPath },
    { cause },
  );
}
