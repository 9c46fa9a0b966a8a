import type { IncomingMessage, ServerResponse } from 'node:http';
import { TealError } from '../core/errors.js';
import { isTerminalRun, type PipelineRun, pipelineKeys } from '../pipeline/records.js';
import type { PipelineRunner } from '../pipeline/runner.js';
import { authenticate, PROVIDERS, type Provider, parseDelivery, skipReason } from '../pipeline/webhooks.js';
import type { Store } from '../stores/store.js';
import { actorOf } from './actor.js';
import { type Router, readJson, sendJson } from './http.js';
import { followRecord } from './sse.js';

export interface PipelineApiContext {
  runner: PipelineRunner;
  store: Store;
  closing: AbortSignal;
}

/** GitHub's push deliveries can be large (many commits); anything past this is refused unread. */
const MAX_DELIVERY = 5 * 1024 * 1024;

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
      (req, res, { name }) => hook(provider, req, res, name!, ctx),
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
  const raw = await readRaw(req);
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

async function readRaw(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_DELIVERY) throw new TealError('TEAL_BAD_REQUEST', `delivery over ${MAX_DELIVERY} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
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
