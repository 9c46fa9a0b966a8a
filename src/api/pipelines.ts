import type { IncomingMessage, ServerResponse } from 'node:http';
import { TealError } from '../core/errors.js';
import { isTerminalRun, type PipelineRun, pipelineKeys } from '../pipeline/records.js';
import type { PipelineRunner } from '../pipeline/runner.js';
import {
  authenticate,
  PROVIDERS,
  type Provider,
  parseDelivery,
  requireSignatureHeader,
  skipReason,
} from '../pipeline/webhooks.js';
import type { Store } from '../stores/store.js';
import { actorOf } from './actor.js';
import { type Router, readJson, sendJson } from './http.js';
import { followRecord } from './sse.js';

export interface PipelineApiContext {
  runner: PipelineRunner;
  store: Store;
  closing: AbortSignal;
  /** Deliveries over this get 413, read no further (api.limits.webhookBody; 1 MB by default). */
  maxDeliveryBytes?: number;
}

/** A push delivery is a few KB (GitHub's with many commits, some hundred KB). */
export const DEFAULT_MAX_DELIVERY = 1024 * 1024;

/**
 * Deliveries read at once. A delivery is buffered whole before its signature can be checked, so
 * this times the size limit bounds the memory strangers can make the daemon hold (16 MB by
 * default); more at once get 429 with Retry-After (a forge retries, or redelivers by hand).
 */
export const MAX_DELIVERIES_READING = 16;

function runNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new TealError('TEAL_BAD_REQUEST', `run must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return n;
}

/**
 * The pipelines' endpoints: runs, their logs and events (API token), and the webhook receivers,
 * which take no API token: a delivery is authenticated by its provider's signature over the raw
 * body, checked before anything in it is read.
 */
export function pipelineRoutes(router: Router, ctx: PipelineApiContext): Router {
  const { runner } = ctx;
  const reading = { count: 0 };

  router.add('GET', '/v1/pipelines', async (_req, res) => {
    const list = await Promise.all(
      runner.names().map(async (name) => {
        const config = runner.pipeline(name);
        const [last] = await runner.list(name, 1);
        return {
          name,
          source: config.source,
          stages: config.stages.map((s) => s.name),
          environments: config.environments.map((e) => e.service),
          lastRun: last ?? null,
        };
      }),
    );
    sendJson(res, 200, list);
  });

  router.add('GET', '/v1/pipelines/:name/runs', async (_req, res, { name }, url) => {
    const limit = Number(url.searchParams.get('limit') ?? 20);
    sendJson(res, 200, await runner.list(name!, Number.isInteger(limit) && limit > 0 ? limit : 20));
  });

  router.add('POST', '/v1/pipelines/:name/runs', async (req, res, { name }) => {
    const body = await readJson(req);
    for (const key of ['commit', 'branch'] as const) {
      if (body[key] !== undefined && typeof body[key] !== 'string') {
        throw new TealError('TEAL_BAD_REQUEST', `${key}: expected a string`);
      }
    }
    const run = await runner.runNow(name!, {
      actor: actorOf(req).actor,
      ...(body.commit === undefined ? {} : { commit: body.commit as string }),
      ...(body.branch === undefined ? {} : { branch: body.branch as string }),
    });
    sendJson(res, 202, run);
  });

  router.add('GET', '/v1/pipelines/:name/runs/:n', async (_req, res, { name, n }) => {
    sendJson(res, 200, await runner.get(name!, runNumber(n!)));
  });

  router.add('POST', '/v1/pipelines/:name/cancel', async (req, res, { name }) => {
    const body = await readJson(req);
    if (body.run !== undefined && (typeof body.run !== 'number' || !Number.isInteger(body.run))) {
      throw new TealError('TEAL_BAD_REQUEST', 'run: expected a run number');
    }
    sendJson(res, 202, await runner.cancel(name!, body.run as number | undefined, actorOf(req).actor));
  });

  router.add('GET', '/v1/pipelines/:name/runs/:n/events', async (req, res, { name, n }) => {
    const first = await runner.get(name!, runNumber(n!));
    await streamRun(req, res, ctx, first);
  });

  router.add('GET', '/v1/pipelines/:name/runs/:n/logs', async (_req, res, { name, n }, url) => {
    const run = await runner.get(name!, runNumber(n!));
    const stage = url.searchParams.get('stage');
    const stages = run.steps.filter((s) => s.kind === 'stage' && (stage === null || s.name === stage));
    if (stage !== null && stages.length === 0) {
      throw new TealError(
        'TEAL_NOT_FOUND',
        `run #${run.n} of ${run.pipeline} has no stage ${JSON.stringify(stage)}`,
      );
    }
    const { readFile } = await import('node:fs/promises');
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    for (const s of stages) {
      const text = s.log ? await readFile(s.log, 'utf8').catch(() => s.tail ?? '') : (s.tail ?? '');
      res.write(stage === null ? `==> ${s.name} (exit ${s.exitCode ?? '-'})\n${text}` : text);
    }
    res.end();
  });

  for (const provider of PROVIDERS) {
    router.add(
      'POST',
      `/v1/hooks/${provider}/:name`,
      (req, res, { name }) => hook(provider, req, res, name!, ctx, reading),
      {
        auth: false,
      },
    );
  }
  return router;
}

async function hook(
  provider: Provider,
  req: IncomingMessage,
  res: ServerResponse,
  name: string,
  ctx: PipelineApiContext,
  reading: { count: number },
): Promise<void> {
  const { runner } = ctx;
  const secret = runner.secret(provider);
  if (secret === undefined) {
    // Not configured (or its env var is empty): nothing here can be authenticated.
    throw new TealError(
      'TEAL_BAD_SIGNATURE',
      `${provider} webhooks are not set up on this teal (webhooks.${provider}.secretEnv in teal.yml, and that variable in teal up's environment)`,
    );
  }
  requireSignatureHeader(provider, req.headers);
  const limit = ctx.maxDeliveryBytes ?? DEFAULT_MAX_DELIVERY;
  if (reading.count >= MAX_DELIVERIES_READING) {
    throw new TealError(
      'TEAL_RATE_LIMITED',
      `${MAX_DELIVERIES_READING} webhook deliveries are being received already; try again shortly`,
      { retryAfterSeconds: 1 },
    );
  }
  reading.count++;
  let raw: Buffer;
  try {
    raw = await readRaw(req, limit);
  } finally {
    reading.count--;
  }
  authenticate(provider, secret, req.headers, raw);
  const config = runner.pipeline(name);
  const delivery = parseDelivery(provider, req.headers, raw);
  if (delivery.kind === 'ping') {
    sendJson(res, 200, { ok: true, pipeline: name, message: 'pong' });
    return;
  }
  if (delivery.kind === 'ignored') {
    sendJson(res, 202, { skipped: `event ${JSON.stringify(delivery.event)} starts no run` });
    return;
  }
  const { push } = delivery;
  const skipped = skipReason(push, config.source.branches);
  if (skipped !== undefined) {
    sendJson(res, 202, { skipped });
    return;
  }
  if (!/^[0-9a-f]{40}$/.test(push.commit)) {
    throw new TealError('TEAL_BAD_REQUEST', 'the push names no commit (expected 40 hex digits)');
  }
  const outcome = await runner.fromWebhook({
    pipeline: name,
    commit: push.commit,
    branch: push.branch,
    message: push.message,
    author: push.author,
    trigger: {
      kind: provider,
      actor: `webhook ${provider}`,
      ...(delivery.delivery === undefined ? {} : { delivery: delivery.delivery }),
    },
  });
  // A replayed or stale push is acknowledged (a provider would retry an error) and starts nothing.
  if ('skipped' in outcome) {
    sendJson(res, 202, outcome);
    return;
  }
  sendJson(res, 202, { run: outcome.run.n, state: outcome.run.state, duplicate: outcome.duplicate });
}

/** The body, refused with 413 on its Content-Length or as soon as it grows past `limit`. */
async function readRaw(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () =>
    new TealError(
      'TEAL_TOO_LARGE',
      `the delivery is over the limit of ${limit} bytes (api.limits.webhookBody in teal.yml)`,
    );
  if (Number(req.headers['content-length'] ?? 0) > limit) throw tooLarge();
  // Events, not for-await: leaving a for-await destroys the request, and its socket with it, so
  // the 413 could not be sent. Paused at the limit, the rest is never read.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (err: Error | null) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', settle);
      req.off('close', onClose);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        settle(tooLarge());
      } else chunks.push(chunk);
    };
    const onEnd = () => settle(null);
    const onClose = () => settle(new TealError('TEAL_BAD_REQUEST', 'the delivery was cut short'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', settle);
    req.on('close', onClose);
  });
}

/** Sends the run as it changes (`run` events), then `end` once it has ended. */
async function streamRun(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: PipelineApiContext,
  first: PipelineRun,
): Promise<void> {
  await followRecord<PipelineRun>({
    req,
    res,
    store: ctx.store,
    key: pipelineKeys.run(first.pipeline, first.n),
    closing: ctx.closing,
    push: (stream, run) => {
      stream.send('run', run);
      if (!isTerminalRun(run.state)) return false;
      stream.send('end', { n: run.n, state: run.state, error: run.error ?? null });
      return true;
    },
  });
}
