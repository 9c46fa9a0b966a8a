import type { IncomingMessage, ServerResponse } from 'node:http';
import { audited, listAudit } from '../core/audit.js';
import { parseDuration } from '../core/config/duration.js';
import type { LoadedConfig } from '../core/config/load.js';
import { deploymentMetrics } from '../core/deploy-metrics.js';
import type { Engine } from '../core/engine.js';
import { TealError } from '../core/errors.js';
import { entryJson, entryText, type LogEntry, serviceLogs } from '../core/log-follow.js';
import type { Slot } from '../core/model.js';
import { PREVIEW_LINK_PATH } from '../core/previews.js';
import { type DeploymentRecord, keys, readDeployment } from '../core/records.js';
import { parseSince } from '../core/since.js';
import { isTerminal } from '../core/state.js';
import { serviceHistory, serviceStatus, summarize } from '../core/status.js';
import { supervisionMetrics } from '../core/supervision-metrics.js';
import { jsonText } from '../core/visible.js';
import { pipelineMetrics } from '../pipeline/metrics.js';
import type { DataPlaneStatus } from '../proxy/builtin/watchdog.js';
import { renderPrometheus, slotTraffic } from '../proxy/metrics.js';
import type { TrafficSwitch } from '../proxy/switch.js';
import type { Runtime } from '../runtimes/runtime.js';
import type { Store } from '../stores/store.js';
import { actorOf } from './actor.js';
import { Router, readJson, sendJson } from './http.js';
import { followRecord } from './sse.js';

export interface ApiContext {
  engine: Engine;
  store: Store;
  runtime: Runtime;
  traffic: TrafficSwitch;
  version: string;
  /** Where users reach the data plane: the base of preview links when a service's route names no host. */
  proxyUrl?: string;
  /** Aborts every open stream when the daemon stops. */
  closing: AbortSignal;
  /** teal.yml as a reload would apply it now (daemon/config-source.ts), for --dry-run. */
  previewConfig?: () => LoadedConfig;
  /** The builtin data plane's watchdog: up, restarts, why it is down (absent for nginx and haproxy). */
  dataPlane?: () => DataPlaneStatus;
}

function waitOf(value: unknown): number | undefined {
  if (value === undefined || value === null || value === false) return undefined;
  if (value === true) return 30 * 60_000;
  if (typeof value === 'number' && value >= 0) return value;
  if (typeof value === 'string') {
    try {
      return parseDuration(value);
    } catch (err) {
      throw new TealError('TEAL_BAD_REQUEST', `wait: ${(err as Error).message}`);
    }
  }
  throw new TealError('TEAL_BAD_REQUEST', 'wait: expected a duration like "10m", milliseconds, or true');
}

/**
 * Where a preview link points: the base asked for, else the host of the service's first route that
 * names one (on the data plane's port), else the data plane's own URL.
 */
function linkBase(
  asked: unknown,
  routes: { host?: string | undefined }[],
  proxyUrl: string | undefined,
): string {
  if (asked !== undefined) {
    if (typeof asked !== 'string' || !/^https?:\/\/[^/\s?#]+$/.test(asked.replace(/\/$/, '')))
      throw new TealError(
        'TEAL_BAD_REQUEST',
        `base: expected a URL like "https://web.example.com", got ${JSON.stringify(asked)}`,
      );
    return asked.replace(/\/$/, '');
  }
  const proxy = new URL(proxyUrl ?? 'http://127.0.0.1:8080');
  const host = routes.find((r) => r.host)?.host;
  if (host === undefined) return proxy.origin;
  return `http://${host}${proxy.port === '' || proxy.port === '80' ? '' : `:${proxy.port}`}`;
}

function numberParam(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new TealError(
      'TEAL_BAD_REQUEST',
      `${what} must be a positive integer, got ${JSON.stringify(value)}`,
    );
  return n;
}

function dataPlaneMetrics(s: DataPlaneStatus | undefined): string {
  if (!s) return '';
  return [
    '# HELP teal_dataplane_restarts_total Builtin data planes the control plane started because the one before had died.',
    '# TYPE teal_dataplane_restarts_total counter',
    `teal_dataplane_restarts_total ${s.restarts}`,
    '# HELP teal_dataplane_running 1 while the watched builtin data plane runs, 0 while it is being started again.',
    '# TYPE teal_dataplane_running gauge',
    `teal_dataplane_running ${s.state === 'up' ? 1 : 0}`,
    '',
  ].join('\n');
}

export function apiRoutes(ctx: ApiContext): Router {
  const { engine, store, runtime } = ctx;
  const router = new Router();

  router.add(
    'GET',
    '/v1/health',
    async (_req, res) => sendJson(res, 200, { ok: true, version: ctx.version, pid: process.pid }),
    {
      auth: false,
    },
  );

  // Prometheus scrapes with the API token (bearer_token in its scrape config).
  // The data plane's counters, then the control plane's (deployments, steps, lock waits, pipeline runs). A data
  // plane that does not answer leaves teal_proxy_up at 0 rather than failing the whole scrape.
  router.add('GET', '/metrics', async (_req, res) => {
    let proxy: string;
    try {
      proxy = `${renderPrometheus(await ctx.traffic.stats())}teal_proxy_up 1\n`;
    } catch {
      proxy = '';
    }
    const text = `${proxy || 'teal_proxy_up 0\n'}${dataPlaneMetrics(ctx.dataPlane?.())}${await deploymentMetrics(store, Object.keys(engine.serviceConfigs()))}${await supervisionMetrics(store, Object.keys(engine.serviceConfigs()))}${await pipelineMetrics(store)}`;
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'cache-control': 'no-store' });
    res.end(text);
  });

  // What runs the public port: the builtin data plane's watchdog, or only the kind teal drives.
  router.add('GET', '/v1/dataplane', async (_req, res) => {
    sendJson(res, 200, ctx.dataPlane?.() ?? { kind: ctx.traffic.kind });
  });

  router.add('GET', '/v1/services', async (_req, res) => {
    const names = Object.keys(engine.serviceConfigs());
    sendJson(res, 200, await Promise.all(names.map((svc) => serviceStatus(store, runtime, svc))));
  });

  router.add('GET', '/v1/services/:svc', async (_req, res, { svc }) => {
    engine.serviceConfig(svc!);
    sendJson(res, 200, await serviceStatus(store, runtime, svc!));
  });

  // The data plane's counters for one service per slot, as JSON (the dashboard's rates).
  router.add('GET', '/v1/services/:svc/traffic', async (_req, res, { svc }) => {
    engine.serviceConfig(svc!);
    sendJson(res, 200, slotTraffic(await ctx.traffic.stats(), svc!));
  });

  router.add('POST', '/v1/services/:svc/deployments', async (req, res, { svc }) => {
    const body = await readJson(req);
    if (typeof body.version !== 'string' || body.version.length === 0) {
      throw new TealError('TEAL_BAD_REQUEST', 'version: expected a string like "v2"');
    }
    if (body.dryRun === true) {
      // The file as it is now, as the deploy itself would read it, but nothing applied.
      const fresh = ctx.previewConfig?.().config.services[svc!];
      sendJson(res, 200, {
        plan: await engine.planDeploy(svc!, body.version, fresh ? { config: fresh } : {}),
      });
      return;
    }
    const waitMs = waitOf(body.wait);
    engine.serviceConfig(svc!);
    const version = body.version;
    const record = await audited(
      store,
      { service: svc!, action: 'deploy', ...actorOf(req), detail: `version ${version}` },
      () =>
        engine.deploy(svc!, {
          version,
          actor: actorOf(req).actor,
          ...(waitMs === undefined ? {} : { waitMs }),
        }),
      (r) => r.n,
    );
    sendJson(res, 202, record);
  });

  // Every release, newest first, with whether `rollback --to` may go to it (only ones that served).
  router.add('GET', '/v1/services/:svc/releases', async (_req, res, { svc }) => {
    sendJson(res, 200, await engine.releases(svc!));
  });

  router.add('POST', '/v1/services/:svc/rollback', async (req, res, { svc }) => {
    const body = await readJson(req);
    const waitMs = waitOf(body.wait);
    if (body.to !== undefined && (typeof body.to !== 'number' || !Number.isInteger(body.to) || body.to < 1)) {
      throw new TealError('TEAL_BAD_REQUEST', 'to: expected a release number');
    }
    engine.serviceConfig(svc!);
    const record = await audited(
      store,
      {
        service: svc!,
        action: 'rollback',
        ...actorOf(req),
        ...(body.to === undefined ? {} : { detail: `to release ${body.to}` }),
      },
      () =>
        engine.rollback(svc!, {
          actor: actorOf(req).actor,
          ...(body.to === undefined ? {} : { to: body.to as number }),
          ...(waitMs === undefined ? {} : { waitMs }),
        }),
      (r) => r.n,
    );
    sendJson(res, 202, record);
  });

  // The manual gate and stopping a deployment before its switch. Both answer with the deployment
  // as it is once the decision is recorded (the run goes on in the background: follow its events).
  for (const action of ['promote', 'abort'] as const) {
    router.add('POST', `/v1/services/:svc/${action}`, async (req, res, { svc }) => {
      await readJson(req);
      engine.serviceConfig(svc!);
      const n = await audited(
        store,
        { service: svc!, action, ...actorOf(req) },
        async () =>
          action === 'promote'
            ? engine.promote(svc!, actorOf(req).actor)
            : engine.abort(svc!, actorOf(req).actor),
        (deployment) => deployment,
      );
      sendJson(res, 202, await deploymentOrThrow(store, svc!, n));
    });
  }

  // Preview links (core/previews.ts): the API token makes a grant; its link goes to the public port.
  router.add('POST', '/v1/services/:svc/previews', async (req, res, { svc }) => {
    const body = await readJson(req);
    if (body.slot !== undefined && body.slot !== 'blue' && body.slot !== 'green')
      throw new TealError(
        'TEAL_BAD_REQUEST',
        `slot: expected blue or green, got ${JSON.stringify(body.slot)}`,
      );
    let ttlMs: number | undefined;
    if (body.ttl !== undefined) {
      if (typeof body.ttl === 'number') ttlMs = body.ttl;
      else if (typeof body.ttl === 'string') {
        try {
          ttlMs = parseDuration(body.ttl);
        } catch (err) {
          throw new TealError('TEAL_BAD_REQUEST', `ttl: ${(err as Error).message}`);
        }
      } else throw new TealError('TEAL_BAD_REQUEST', 'ttl: expected a duration like "1h" or milliseconds');
    }
    const base = linkBase(body.base, engine.serviceConfig(svc!).routes, ctx.proxyUrl);
    const grant = await audited(
      store,
      {
        service: svc!,
        action: 'preview.grant',
        ...actorOf(req),
        ...(body.slot ? { detail: `slot ${body.slot}` } : {}),
      },
      () =>
        engine.grantPreview(svc!, {
          actor: actorOf(req).actor,
          ...(body.slot === undefined ? {} : { slot: body.slot as Slot }),
          ...(ttlMs === undefined ? {} : { ttlMs }),
        }),
      () => undefined,
    );
    sendJson(res, 201, { ...grant, link: `${base}${PREVIEW_LINK_PATH}?grant=${grant.id}` });
  });

  router.add('GET', '/v1/services/:svc/previews', async (_req, res, { svc }) => {
    sendJson(res, 200, await engine.previews(svc!));
  });

  for (const path of ['/v1/services/:svc/previews', '/v1/services/:svc/previews/:id']) {
    router.add('DELETE', path, async (req, res, { svc, id }) => {
      const revoked = await audited(
        store,
        {
          service: svc!,
          action: 'preview.revoke',
          ...actorOf(req),
          ...(id ? { detail: `grant ${id.slice(0, 8)}…` } : {}),
        },
        () => engine.revokePreviews(svc!, id),
        () => undefined,
      );
      sendJson(res, 200, { revoked });
    });
  }

  router.add('GET', '/v1/services/:svc/lock', async (_req, res, { svc }) => {
    sendJson(res, 200, await engine.lockStatus(svc!));
  });

  router.add('DELETE', '/v1/services/:svc/lock', async (req, res, { svc }) => {
    engine.serviceConfig(svc!);
    const result = await audited(
      store,
      { service: svc!, action: 'lock.release', ...actorOf(req) },
      () => engine.releaseLock(svc!),
      () => undefined,
    );
    sendJson(res, 200, result);
  });

  router.add('GET', '/v1/services/:svc/audit', async (_req, res, { svc }, url) => {
    engine.serviceConfig(svc!);
    const limit = Number(url.searchParams.get('limit') ?? 50);
    sendJson(res, 200, await listAudit(store, svc!, Number.isInteger(limit) && limit > 0 ? limit : 50));
  });

  router.add('GET', '/v1/services/:svc/deployments', async (_req, res, { svc }, url) => {
    engine.serviceConfig(svc!);
    const limit = Number(url.searchParams.get('limit') ?? 50);
    sendJson(res, 200, await serviceHistory(store, svc!, Number.isInteger(limit) && limit > 0 ? limit : 50));
  });

  router.add('GET', '/v1/services/:svc/deployments/:n', async (_req, res, { svc, n }) => {
    sendJson(res, 200, await deploymentOrThrow(store, svc!, numberParam(n!, 'deployment')));
  });

  router.add('GET', '/v1/services/:svc/deployments/:n/events', async (req, res, { svc, n }, url) => {
    const number = numberParam(n!, 'deployment');
    const first = await deploymentOrThrow(store, svc!, number);
    await streamDeployment(req, res, ctx, first, Number(url.searchParams.get('from') ?? 0) || 0);
  });

  router.add('GET', '/v1/services/:svc/logs', async (req, res, { svc }, url) => {
    engine.serviceConfig(svc!);
    await streamLogs(req, res, ctx, svc!, url);
  });

  return router;
}

async function deploymentOrThrow(store: Store, svc: string, n: number): Promise<DeploymentRecord> {
  const record = await readDeployment(store, svc, n);
  if (!record) throw new TealError('TEAL_NOT_FOUND', `${svc} has no deployment #${n}`);
  return record;
}

/** Sends the deployment's events from `from` on, then each new one as the store changes, until it ends. */
async function streamDeployment(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: ApiContext,
  first: DeploymentRecord,
  from: number,
): Promise<void> {
  let sent = from;
  let state = '';
  await followRecord<DeploymentRecord>({
    req,
    res,
    store: ctx.store,
    key: keys.deployment(first.service, first.n),
    closing: ctx.closing,
    push: (stream, record) => {
      for (; sent < record.events.length; sent++) stream.send('step', record.events[sent]);
      if (record.state !== state) {
        state = record.state;
        stream.send('state', { state });
      }
      if (!isTerminal(record.state)) return false;
      stream.send('end', summarize(record));
      return true;
    },
  });
}

/**
 * GET /v1/services/:svc/logs: core/log-follow.ts over HTTP. `slot`, `instance` (id or index),
 * `tail` (lines per instance, default 100), `since` (a duration back or a time), `follow`, and
 * `format`: `text` (default: one line each, "<time> <instance> <line>", markers between ──) or
 * `json` (one object per line). Lines reach only authenticated clients (the router's auth).
 */
async function streamLogs(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: ApiContext,
  svc: string,
  url: URL,
): Promise<void> {
  const params = url.searchParams;
  const asked = params.get('slot');
  if (asked !== null && asked !== 'blue' && asked !== 'green') {
    throw new TealError('TEAL_BAD_REQUEST', `slot: expected blue or green, got ${JSON.stringify(asked)}`);
  }
  const instance = params.get('instance');
  if (instance !== null && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/.test(instance)) {
    throw new TealError(
      'TEAL_BAD_REQUEST',
      `instance: expected an instance id or index, got ${JSON.stringify(instance)}`,
    );
  }
  const tailText = params.get('tail') ?? '100';
  const tail = tailText === 'all' ? undefined : Number(tailText);
  if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) {
    throw new TealError(
      'TEAL_BAD_REQUEST',
      `tail: expected a number of lines (0 or more) or "all", got ${JSON.stringify(tailText)}`,
    );
  }
  const sinceText = params.get('since');
  let since: number | undefined;
  if (sinceText !== null) {
    try {
      since = parseSince(sinceText);
    } catch (err) {
      throw new TealError('TEAL_BAD_REQUEST', `since: ${(err as Error).message}`);
    }
  }
  const format = params.get('format') ?? 'text';
  if (format !== 'text' && format !== 'json') {
    throw new TealError('TEAL_BAD_REQUEST', `format: expected text or json, got ${JSON.stringify(format)}`);
  }
  const follow = params.get('follow') === '1' || params.get('follow') === 'true';
  const stop = new AbortController();
  const onClose = () => stop.abort();
  req.on('close', onClose);
  ctx.closing.addEventListener('abort', onClose, { once: true });
  let entries: AsyncIterable<LogEntry>;
  try {
    // Before any header: a selection that names nothing is an error answer (404), not an empty 200.
    entries = await serviceLogs(
      ctx.store,
      ctx.runtime,
      svc,
      { ...(asked ? { slot: asked as Slot } : {}), ...(instance === null ? {} : { instance }) },
      {
        follow,
        signal: stop.signal,
        ...(tail === undefined ? {} : { tail }),
        ...(since === undefined ? {} : { since }),
      },
    );
  } catch (err) {
    req.off('close', onClose);
    ctx.closing.removeEventListener('abort', onClose);
    throw err;
  }
  try {
    res.writeHead(200, {
      'content-type': format === 'json' ? 'application/x-ndjson; charset=utf-8' : 'text/plain; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    const write = (entry: LogEntry) =>
      res.write(format === 'json' ? `${jsonText(entryJson(entry))}\n` : `${entryText(entryJson(entry))}\n`);
    for await (const entry of entries) write(entry);
    if (follow && ctx.closing.aborted) {
      write({
        kind: 'marker',
        marker: 'end',
        time: Date.now(),
        service: svc,
        line: 'teal up is stopping: this stream ends',
      });
    }
  } finally {
    req.off('close', onClose);
    ctx.closing.removeEventListener('abort', onClose);
    stop.abort();
    res.end();
  }
}
