import http from 'node:http';
import { TealError, toTealError } from '../../core/errors.js';
import { renderPrometheus } from '../metrics.js';
import type { DrainResult, RoutingTable, TrafficStats } from '../switch.js';
import type { EventLog } from './log.js';
import type { ControlPlaneKeeper } from './respawn.js';
import { type DataPlaneSettings, parseSettings } from './settings.js';
import { parseDrainRequest, parseTable } from './table-shape.js';

/** What `teal proxy` reports about itself on `GET /v1/info`. */
export interface DataPlaneInfo {
  pid: number;
  /** The address actually bound ("127.0.0.1:41234" when asked for port 0). */
  listen: string;
  /** The address it was asked to listen on, as given. */
  requestedListen: string;
  /** The preview listener's address as bound; null when it has none (older data planes: absent). */
  preview?: string | null;
  requestedPreview?: string | null;
  /** Revision of the table it serves; null before any table. */
  revision: number | null;
  startedAt: string;
  version: string;
}

/** The data plane as its admin API drives it. */
export interface AdminTarget {
  info(): DataPlaneInfo;
  currentTable(): RoutingTable | null;
  apply(table: RoutingTable): Promise<void>;
  stats(): TrafficStats;
  drain(pool: string, timeoutMs: number, signal: AbortSignal): Promise<DrainResult>;
  /** Starts a fresh data plane process on the same sockets (with these settings, else the same) and retires this one. */
  handoff(settings?: Partial<DataPlaneSettings>): Promise<{ from: number; to: number }>;
  /** Watches the control plane and starts it again if it dies (respawn.ts); absent in tests of the data plane alone. */
  readonly keeper?: ControlPlaneKeeper;
}

const MAX_BODY = 16 * 1024 * 1024;

/** The request's JSON body; with `optional`, an empty body is undefined rather than an error. */
function readJson(req: http.IncomingMessage, options: { optional?: boolean } = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new TealError('TEAL_BAD_REQUEST', `request body over ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      try {
        const text = Buffer.concat(chunks).toString();
        resolve(options.optional && text.trim() === '' ? undefined : JSON.parse(text));
      } catch (err) {
        reject(new TealError('TEAL_BAD_REQUEST', `request body is not JSON: ${(err as Error).message}`));
      }
    });
  });
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * The admin API, served on a unix socket only the data plane's user can open:
 *
 *   GET  /v1/info    -> DataPlaneInfo
 *   GET  /v1/table   -> RoutingTable | null
 *   PUT  /v1/table   RoutingTable -> {revision}, answered once new requests use it
 *   GET  /v1/stats   -> TrafficStats
 *   GET  /metrics    -> the same counters in Prometheus text format
 *   POST /v1/handoff [{settings}] -> {from, to}: a fresh process took over the sockets (with
 *                    these settings, else this one's); this one retires
 *   POST /v1/drain   {pool, timeoutMs} -> DrainResult, answered when the drain ends (long poll)
 *   GET    /v1/control-plane          -> ControlPlaneStatus
 *   PUT    /v1/control-plane          ControlPlaneRegistration -> ControlPlaneStatus (watch it, respawn it)
 *   DELETE /v1/control-plane?pid=<n>  -> {forgot, stopped}: it stopped on purpose, do not respawn it
 *
 * Errors are `{error: {code, message}}` with the catalogue's HTTP status.
 */
export function createAdminServer(target: AdminTarget, log: EventLog): http.Server {
  return http.createServer((req, res) => {
    handle(target, req, res).catch((err: unknown) => {
      const e = toTealError(err);
      if (e.code !== 'TEAL_BAD_REQUEST')
        log('error', { where: `admin ${req.method} ${req.url}`, message: e.message });
      if (!res.headersSent) send(res, e.httpStatus, { error: { code: e.code, message: e.message } });
      else res.destroy();
    });
  });
}

function keeperOf(target: AdminTarget): ControlPlaneKeeper {
  if (!target.keeper) throw new TealError('TEAL_NOT_FOUND', 'this data plane does not watch a control plane');
  return target.keeper;
}

async function handle(
  target: AdminTarget,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const route = `${req.method} ${req.url?.split('?')[0]}`;
  switch (route) {
    case 'GET /v1/info':
      return send(res, 200, target.info());
    case 'GET /v1/table':
      return send(res, 200, target.currentTable());
    case 'PUT /v1/table': {
      const table = parseTable(await readJson(req));
      await target.apply(table);
      return send(res, 200, { revision: table.revision });
    }
    case 'GET /v1/stats':
      return send(res, 200, target.stats());
    case 'GET /metrics': {
      const text = renderPrometheus(target.stats());
      res.writeHead(200, {
        'content-type': 'text/plain; version=0.0.4',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
      return;
    }
    case 'POST /v1/drain': {
      const { pool, timeoutMs } = parseDrainRequest(await readJson(req));
      // The control plane gave up waiting (aborted, or crashed): stop waiting for it, cut nothing.
      const gone = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) gone.abort();
      });
      return send(res, 200, await target.drain(pool, timeoutMs, gone.signal));
    }
    case 'POST /v1/handoff': {
      const body = await readJson(req, { optional: true });
      let settings: Partial<DataPlaneSettings> | undefined;
      if (body !== undefined) {
        try {
          settings = parseSettings((body as { settings?: unknown }).settings ?? {});
        } catch (err) {
          throw new TealError('TEAL_BAD_REQUEST', (err as Error).message);
        }
      }
      return send(res, 200, await target.handoff(settings));
    }
    case 'GET /v1/control-plane':
      return send(res, 200, keeperOf(target).status());
    case 'PUT /v1/control-plane':
      return send(res, 200, keeperOf(target).register(await readJson(req)));
    case 'DELETE /v1/control-plane': {
      const pid = new URL(req.url ?? '/', 'http://admin').searchParams.get('pid');
      return send(res, 200, await keeperOf(target).forget(pid === null ? undefined : Number(pid)));
    }
    default:
      throw new TealError('TEAL_NOT_FOUND', `no admin endpoint ${route}`);
  }
}
