import type { Instance, InstanceSpec } from '../runtimes/runtime.js';
import { formatDuration } from './config/duration.js';
import type { VerifyStep } from './config/schema.js';
import type { EngineDeps, VerifyResult } from './deps.js';
import { TealError, toTealError } from './errors.js';
import { waitHealthy } from './healthy.js';
import { endpointText } from './model.js';
import type { DeployPlan } from './plan.js';
import type { Recorder } from './recorder.js';
import { createNumbered, keys, type ReleaseRecord, readServiceState, type SlotRecord } from './records.js';
import { forInstance } from './release.js';
import { pruneImages } from './retention.js';
import { refOf, slotInstances, stopAll, writeSlot } from './slots.js';
import { retireOld, switchTraffic } from './switchover.js';
import type { TableSync } from './table.js';

/** Everything one deployment's steps need. */
export interface RunContext {
  deps: EngineDeps;
  tables: TableSync;
  plan: DeployPlan;
  rec: Recorder;
  /** Aborts when the control plane stops; steps before the switch then clean up and end "interrupted". */
  signal: AbortSignal;
}

interface Progress {
  started: Instance[];
  switched: boolean;
}

/**
 * Applies a plan: start, wait healthy, verify, switch, drain, keep warm. Any failure before the
 * switch stops what was started and leaves the live slot untouched; after the switch, traffic stays
 * on the new release whatever happens to the old one.
 */
export async function applyPlan(ctx: RunContext): Promise<void> {
  const progress: Progress = { started: [], switched: false };
  try {
    if (ctx.plan.mode === 'start') await startTarget(ctx, progress);
    await switchTraffic(ctx);
    progress.switched = true;
    await retireOld(ctx);
    const { plan, rec } = ctx;
    if (plan.release.container) await pruneOld(ctx);
    await rec.event('done', 'done', `${plan.service} ${plan.release.version} is live on ${plan.targetSlot}`, {
      ms: Date.now() - Date.parse(rec.record.createdAt),
    });
    await rec.finish('done');
  } catch (err) {
    await fail(ctx, progress, err);
  }
}

/** Removes the images of releases past the service's `retain`; a failure only warns (the deploy is done). */
async function pruneOld(ctx: RunContext): Promise<void> {
  const { deps, plan, rec } = ctx;
  const retain = deps.config().config.services[plan.service]?.retain ?? 5;
  try {
    const removed = await pruneImages(deps, plan.service, retain, rec.record.release ?? 0);
    if (removed.length > 0) {
      await rec.event(
        'done',
        'info',
        `removed images of releases older than the last ${retain}: ${removed.join(', ')}`,
      );
    }
  } catch (err) {
    deps.log.warn('removing old release images failed', {
      service: plan.service,
      error: toTealError(err).message,
    });
  }
}

async function startTarget(ctx: RunContext, progress: Progress): Promise<void> {
  const { deps, plan, rec, signal } = ctx;
  const { store, runtime } = deps;
  const svc = plan.service;
  const target = plan.targetSlot;

  const release =
    plan.releaseN ??
    (
      await createNumbered<ReleaseRecord>(store, keys.releases(svc), (n) => ({
        ...plan.release,
        n,
        createdAt: new Date().toISOString(),
      }))
    ).n;
  await rec.update({ release });

  let slot: SlotRecord = (await readServiceState(store, svc)).slots[target];
  if (slot.state !== 'empty') {
    const stale = slotInstances(svc, slot);
    await rec.step(
      'clear',
      `stop ${stale.length} instance(s) of ${slot.version ?? '?'} left in ${target}`,
      async () => {
        // Already stopping when an earlier clear failed half way (the runtime out of reach).
        if (slot.state !== 'stopping') slot = await writeSlot(store, svc, slot, { state: 'stopping' });
        await stopAll(runtime, stale, plan.stopTimeoutMs);
        slot = await writeSlot(store, svc, slot, { state: 'empty' });
      },
    );
    await ctx.tables.sync();
  }

  await rec.moveTo('starting');
  slot = await writeSlot(store, svc, slot, {
    state: 'starting',
    release,
    version: plan.release.version,
    deployment: rec.n,
    instances: [],
  });
  const { command, env } = forInstance(plan.release, target);
  await rec.step(
    'start',
    `start ${plan.instances.length} instance(s) of ${plan.release.version} in ${target}`,
    async () => {
      const container = plan.release.container && {
        ...plan.release.container,
        ...(plan.image ? { imageId: plan.image.id, pull: 'never' as const } : {}),
      };
      for (const i of plan.instances) {
        const spec: InstanceSpec = {
          labels: { service: svc, slot: target, release, deployment: rec.n, version: plan.release.version },
          index: i.index,
          command,
          cwd: plan.release.cwd,
          env,
          host: plan.host,
          ...(i.port === undefined ? {} : { port: i.port }),
          ...(i.portSource === undefined ? {} : { portSource: i.portSource }),
          ...(container ? { container } : {}),
        };
        const instance = await runtime.start(spec, { signal });
        progress.started.push(instance);
        slot = await writeSlot(store, svc, slot, {
          state: 'starting',
          instances: [...slot.instances, refOf(instance)],
        });
      }
    },
    () =>
      `started ${progress.started.map((i) => `${i.id} on ${endpointText(i)}`).join(', ')}${imageText(progress.started)}`,
  );
  const image = progress.started[0]?.image;
  if (image) await rec.update({ image });

  const probe = deps.probe(plan.health);
  await rec.step(
    'health',
    `wait until ${plan.health.path} passes ${plan.health.healthyThreshold} times in a row (up to ${formatDuration(plan.health.deadline)})`,
    () => waitHealthy(progress.started, { runtime, probe, health: plan.health, signal }),
    () => `${progress.started.length} instance(s) healthy`,
  );

  slot = await writeSlot(store, svc, slot, { state: 'verifying' });
  await rec.moveTo('verifying');
  // The preview route (X-Teal-Slot) reaches the new slot from here on.
  await ctx.tables.sync();

  const first = progress.started[0]!;
  const verifyTarget = {
    service: svc,
    slot: target,
    version: plan.release.version,
    url: `http://${endpointText(first)}`,
    ...(deps.proxyUrl ? { previewUrl: deps.proxyUrl } : {}),
    instances: progress.started.map((i) => ({ host: i.host, port: i.port })),
  };
  for (const [index, step] of plan.verify.entries()) {
    const label = `verify ${index + 1}/${plan.verify.length}: ${describeStep(step)}`;
    await rec.step(
      'verify',
      label,
      async () => {
        const result: VerifyResult = await deps.verifier.run(step, verifyTarget, { signal });
        if (!result.ok) {
          throw new TealError(
            'TEAL_VERIFY_FAILED',
            `${label} failed: ${result.detail}${result.output ? `\n${result.output}` : ''}`,
            {
              step: index + 1,
              detail: result.detail,
              ...(result.output === undefined ? {} : { output: result.output }),
            },
          );
        }
        return result;
      },
      (result) => `${label}: ${result.detail}`,
    );
  }
}

function imageText(started: Instance[]): string {
  const image = started[0]?.image;
  if (!image) return '';
  return ` from ${image.ref} (${image.id}${image.digest ? `, ${image.digest}` : ''})`;
}

export function describeStep(step: VerifyStep): string {
  if ('run' in step) return `run ${JSON.stringify(step.run)}`;
  if ('load' in step)
    return `load ${step.load.method} ${step.load.path} on ${step.load.connections} connection(s)`;
  return `${step.http.method} ${step.http.path} -> ${step.http.status}`;
}

async function fail(ctx: RunContext, progress: Progress, err: unknown): Promise<void> {
  const { deps, plan, rec, signal } = ctx;
  // When the control plane is stopping, say so rather than echo whichever step noticed the abort.
  const error = toTealError(signal.aborted ? (signal.reason ?? err) : err);
  const end = signal.aborted ? 'interrupted' : progress.switched ? 'done' : 'failed';
  if (progress.switched) {
    // Traffic already moved: the deployment did its job; what failed was retiring the old slot.
    deps.log.warn('retiring the old slot failed after the switch', {
      service: plan.service,
      deployment: rec.n,
      error: error.message,
    });
    await rec.event(
      'drain',
      'info',
      `traffic is on ${plan.targetSlot}; retiring ${plan.fromSlot} failed: ${error.message}`,
    );
    await rec.finish(end, error);
    return;
  }
  if (plan.mode === 'start') {
    try {
      await rec.step(
        'stop',
        `stop what this deployment started in ${plan.targetSlot}; ${plan.fromSlot ?? 'nothing'} stays live`,
        async () => {
          const state = await readServiceState(deps.store, plan.service);
          let slot: SlotRecord = state.slots[plan.targetSlot];
          const ours = slot.deployment === rec.n && slot.state !== 'empty' && slot.state !== 'live';
          const known = new Set(slot.instances.map((i) => i.id));
          const strays = progress.started.filter((i) => !known.has(i.id));
          if (ours) slot = await writeSlot(deps.store, plan.service, slot, { state: 'stopping' });
          await stopAll(
            deps.runtime,
            [...(ours ? slotInstances(plan.service, slot) : []), ...strays],
            plan.stopTimeoutMs,
          );
          if (ours) await writeSlot(deps.store, plan.service, slot, { state: 'empty' });
          await ctx.tables.sync();
        },
      );
    } catch (cleanupErr) {
      deps.log.error('cleanup after a failed deployment failed', {
        service: plan.service,
        deployment: rec.n,
        error: toTealError(cleanupErr).message,
      });
    }
  }
  await rec.finish(end, error);
}
