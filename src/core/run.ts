import type { Instance, InstanceSpec } from '../runtimes/runtime.js';
import { watchNewSlot } from './analysis.js';
import { dropCandidate, writeCandidate } from './candidate.js';
import { formatDuration } from './config/duration.js';
import type { VerifyStep } from './config/schema.js';
import type { EngineDeps, VerifyResult, VerifyTarget } from './deps.js';
import { isTealError, TealError, toTealError } from './errors.js';
import { failpoint } from './failpoints.js';
import type { Gates } from './gate.js';
import { waitHealthy } from './healthy.js';
import { runHook } from './hooks.js';
import { endpointText, type Slot } from './model.js';
import { type DeployPlan, replaceWarmText } from './plan.js';
import type { Recorder } from './recorder.js';
import {
  type CandidateRecord,
  createNumbered,
  keys,
  type ReleaseRecord,
  readServiceState,
  type SlotRecord,
} from './records.js';
import { commandEnvOf, forInstance } from './release.js';
import { pruneImages } from './retention.js';
import { refOf, slotInstances, stopAll, writeSlot } from './slots.js';
import { retireOld, stopDisplaced, switchBack, switchTraffic } from './switchover.js';
import type { TableSync } from './table.js';
import { poolOf } from './table.js';

/** Everything one deployment's steps need. */
export interface RunContext {
  deps: EngineDeps;
  tables: TableSync;
  plan: DeployPlan;
  rec: Recorder;
  /**
   * Aborts when the control plane stops (steps before the switch then clean up and end
   * "interrupted"), or when someone runs `teal abort` (they end "failed", TEAL_ABORTED).
   */
  signal: AbortSignal;
  /** Where a `promote: manual` deployment waits for its decision. */
  gates: Gates;
}

interface Progress {
  started: Instance[];
  switched: boolean;
  /** The new instances started beside the target slot's warm release (candidate.ts), not in the slot. */
  beside?: boolean;
}

/**
 * Applies a plan: start, wait healthy, verify, switch, drain, keep warm. Any failure before the
 * switch stops what was started and leaves the live slot untouched; after the switch, traffic stays
 * on the new release whatever happens to the old one.
 */
export async function applyPlan(ctx: RunContext): Promise<void> {
  const progress: Progress = { started: [], switched: false };
  try {
    await runHook(ctx, 'preDeploy', hookTarget(ctx, progress));
    if (ctx.plan.mode === 'start') await startTarget(ctx, progress);
    const displaced = await switchTraffic(ctx);
    progress.switched = true;
    if (displaced) await stopDisplaced(ctx, displaced);
    await runHook(ctx, 'postSwitch', hookTarget(ctx, progress));
    if (ctx.plan.analysis && ctx.plan.fromSlot && !(await analyse(ctx, progress))) return;
    await retireOld(ctx);
    const { plan, rec } = ctx;
    // Images on fleet hosts are their engines' (agents do not prune them yet): only local ones.
    if (plan.release.container && !plan.instances.some((i) => i.hostId)) await pruneOld(ctx);
    await rec.event('done', 'done', `${plan.service} ${plan.release.version} is live on ${plan.targetSlot}`, {
      ms: Date.now() - Date.parse(rec.record.createdAt),
    });
    // Hooks run before the outcome is recorded: whoever waits for the end can deploy again at once.
    await runHook(ctx, 'postDeploy', hookTarget(ctx, progress));
    await rec.finish('done');
  } catch (err) {
    await fail(ctx, progress, err);
  }
}

/** The TEAL_* values a hook sees: the new slot once it runs, else the data plane. */
function hookTarget(ctx: RunContext, progress: Progress): VerifyTarget {
  const { deps, plan } = ctx;
  const first = progress.started[0];
  return {
    service: plan.service,
    slot: plan.targetSlot,
    version: plan.release.version,
    url: first ? `http://${endpointText(first)}` : (deps.proxyUrl ?? ''),
    ...(deps.previewUrl ? { previewUrl: deps.previewUrl } : {}),
    instances: progress.started.map((i) => ({ host: i.host, port: i.port })),
    exec: commandEnvOf(plan.release, plan.targetSlot),
  };
}

/**
 * The post-switch analysis. True: the new release stays. False: it failed, traffic went back to
 * the old slot (still running: it was only draining), and the deployment ended rolled back.
 */
async function analyse(ctx: RunContext, progress: Progress): Promise<boolean> {
  const { deps, plan, rec } = ctx;
  const state = await readServiceState(deps.store, plan.service);
  const next = poolOf(plan.service, state.slots[plan.targetSlot]);
  const previous = poolOf(plan.service, state.slots[plan.fromSlot!]);
  await rec.moveTo('analyzing');
  const live = { ...hookTarget(ctx, progress), url: deps.proxyUrl ?? hookTarget(ctx, progress).url };
  delete (live as { previewUrl?: string }).previewUrl;
  const verdict = await rec.step(
    'analysis',
    `watch ${plan.targetSlot} for ${formatDuration(plan.analysis!.window)}`,
    () => watchNewSlot(ctx, { next: next?.id ?? '', previous: previous?.id ?? null }, live),
    (v) => `${v.ok ? 'passed' : 'failed'}: ${v.detail}`,
  );
  await rec.update({ analysis: { ok: verdict.ok, detail: verdict.detail } });
  if (verdict.ok) return true;
  const error = new TealError(
    'TEAL_ANALYSIS_FAILED',
    `the analysis after the switch failed: ${verdict.detail}`,
    {
      window: verdict.window as never,
    },
  );
  try {
    await switchBack(ctx, verdict.detail);
  } catch (err) {
    // Could not switch back: traffic stays on the new release; say so loudly.
    const why = toTealError(err).message;
    deps.log.error('switching back after a failed analysis failed', { service: plan.service, error: why });
    await rec.finish(
      'done',
      new TealError('TEAL_ANALYSIS_FAILED', `${error.message}; switching back failed: ${why}`),
    );
    return false;
  }
  await runHook(ctx, 'onFailure', hookTarget(ctx, progress));
  await rec.finish('rolled_back', error);
  return false;
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

  const now = await readServiceState(store, svc);
  let slot: SlotRecord = now.slots[target];
  // Beside the warm release when the plan says so and it is still there (the lock kept it so).
  const beside = plan.warm?.how === 'beside' && slot.state === 'warm' && slot.instances.length > 0;
  progress.beside = beside;
  if (now.candidate) {
    // Left by a deployment that died without a restart settling it: nothing refers to it but this key.
    await dropCandidate(store, runtime, svc, plan.stopTimeoutMs);
  }
  if (slot.state !== 'empty' && !beside) {
    const stale = slotInstances(svc, slot);
    const warm = plan.warm?.how === 'replace' && slot.state === 'warm' ? plan.warm : null;
    await rec.step(
      'clear',
      warm
        ? replaceWarmText(plan, warm)
        : `stop ${stale.length} instance(s) of ${slot.version ?? '?'} left in ${target}`,
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
  // Where the new instances are recorded: the target slot itself, or, beside a warm release, the
  // candidate key (candidate.ts), which leaves the warm slot record exactly as it is.
  let candidate: (CandidateRecord & { revision: number }) | undefined;
  const record = async (next: { state: 'starting' | 'verifying'; add?: Instance }): Promise<void> => {
    const instances = next.add ? [refOf(next.add)] : [];
    if (candidate) {
      candidate = await writeCandidate(
        store,
        svc,
        {
          ...candidate,
          state: next.state,
          instances: [...candidate.instances, ...instances],
          since: new Date().toISOString(),
        },
        candidate.revision,
      );
    } else {
      slot = await writeSlot(store, svc, slot, {
        state: next.state,
        instances: [...slot.instances, ...instances],
      });
    }
  };
  if (beside) {
    candidate = await writeCandidate(
      store,
      svc,
      {
        slot: target,
        state: 'starting',
        release,
        version: plan.release.version,
        deployment: rec.n,
        instances: [],
        since: new Date().toISOString(),
      },
      0,
    );
  } else {
    slot = await writeSlot(store, svc, slot, {
      state: 'starting',
      release,
      version: plan.release.version,
      deployment: rec.n,
      instances: [],
    });
  }
  const { command, env } = forInstance(plan.release, target);
  failpoint('before-start'); // tests only (failpoints.ts)
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
          ...(plan.release.envFrom ? { envFrom: plan.release.envFrom } : {}),
          ...(plan.release.inheritEnv ? { inheritEnv: plan.release.inheritEnv } : {}),
          ...(plan.release.user === undefined ? {} : { user: plan.release.user }),
          ...(plan.release.group === undefined ? {} : { group: plan.release.group }),
          host: plan.host,
          ...(i.port === undefined ? {} : { port: i.port }),
          ...(i.portSource === undefined ? {} : { portSource: i.portSource }),
          ...(container ? { container } : {}),
          ...(i.hostId === undefined ? {} : { hostId: i.hostId }),
        };
        const instance = await runtime.start(spec, { signal });
        progress.started.push(instance);
        if (progress.started.length === 1) failpoint('starting'); // tests only (failpoints.ts)
        await record({ state: 'starting', add: instance });
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

  await record({ state: 'verifying' });
  await rec.moveTo('verifying');
  // The preview route (X-Teal-Slot on the preview listener) reaches the new slot from here on.
  await ctx.tables.sync();

  const first = progress.started[0]!;
  const verifyTarget = {
    service: svc,
    slot: target,
    version: plan.release.version,
    url: `http://${endpointText(first)}`,
    ...(deps.previewUrl ? { previewUrl: deps.previewUrl } : {}),
    instances: progress.started.map((i) => ({ host: i.host, port: i.port })),
    exec: commandEnvOf(plan.release, plan.targetSlot),
  };
  for (const [index, step] of plan.verify.entries()) {
    const label = `verify ${index + 1}/${plan.verify.length}: ${describeStep(step)}`;
    await rec.step(
      'verify',
      label,
      async () => {
        failpoint('verifying'); // tests only (failpoints.ts)
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
  if (plan.promote === 'manual') await awaitPromotion(ctx);
}

/** How to reach a slot on the preview listener, for the gate's message. */
function previewHint(previewUrl: string | undefined, slot: Slot): string {
  return previewUrl === undefined
    ? `X-Teal-Slot: ${slot} on the preview listener`
    : `curl -H 'X-Teal-Slot: ${slot}' ${previewUrl}/`;
}

/** The manual gate: the new slot stays on the preview route until promote, abort or the timeout. */
async function awaitPromotion(ctx: RunContext): Promise<void> {
  const { plan, rec, signal } = ctx;
  await rec.moveTo('verified');
  const timeout =
    plan.promoteTimeoutMs === undefined ? '' : ` (aborted after ${formatDuration(plan.promoteTimeoutMs)})`;
  await rec.event(
    'gate',
    'started',
    `${plan.release.version} is verified and on the preview route (${previewHint(ctx.deps.previewUrl, plan.targetSlot)}): waiting for \`teal promote ${plan.service}\` or \`teal abort ${plan.service}\`${timeout}`,
  );
  const decision = await ctx.gates.wait(plan.service, rec.n, {
    ...(plan.promoteTimeoutMs === undefined ? {} : { timeoutMs: plan.promoteTimeoutMs }),
    signal,
  });
  if (decision.action === 'promote') {
    await rec.update({
      decidedBy: { action: 'promote', actor: decision.actor, at: new Date().toISOString() },
    });
    await rec.event('gate', 'done', `promoted by ${decision.actor}`);
    return;
  }
  const error =
    decision.action === 'abort'
      ? new TealError('TEAL_ABORTED', `aborted by ${decision.actor} at the promote gate`, {
          actor: decision.actor,
        })
      : new TealError(
          'TEAL_ABORTED',
          `nobody promoted ${plan.release.version} within ${formatDuration(plan.promoteTimeoutMs!)}; aborted`,
        );
  if (decision.action === 'abort')
    await rec.update({ decidedBy: { action: 'abort', actor: decision.actor, at: new Date().toISOString() } });
  await rec.event('gate', 'failed', error.message);
  throw error;
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
  // `teal abort` aborts the signal with a reason naming who asked: that ends failed, not interrupted.
  const byUser = signal.aborted && isTealError(signal.reason, 'TEAL_ABORTED') && signal.reason.details?.actor;
  // After the switch the deployment did its job whatever stopped it: `done`, as reconcile records
  // a switched deployment whose control plane died (docs/ARCHITECTURE.md, Crash recovery).
  const end = progress.switched ? 'done' : signal.aborted && !byUser ? 'interrupted' : 'failed';
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
  if (plan.mode === 'start' && progress.beside && plan.warm) {
    try {
      await rec.step(
        'stop',
        `stop what this deployment started beside the warm ${plan.targetSlot} (release ${plan.warm.release}, ${plan.warm.version}); ${plan.fromSlot ?? 'nothing'} stays live and ${plan.targetSlot} stays warm`,
        async () => {
          const state = await readServiceState(deps.store, plan.service);
          // A candidate that is not this deployment's is not ours to stop (it cannot be: the lock).
          const ours = state.candidate === undefined || state.candidate.deployment === rec.n;
          if (ours)
            await dropCandidate(deps.store, deps.runtime, plan.service, plan.stopTimeoutMs, progress.started);
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
  } else if (plan.mode === 'start') {
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
  if (end === 'failed') await runHook(ctx, 'onFailure', hookTarget(ctx, progress));
  await rec.finish(end, error);
}
