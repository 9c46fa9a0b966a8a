import type { Lock } from '../stores/store.js';
import type { EngineDeps } from './deps.js';
import { TealError, toTealError } from './errors.js';
import { SLOTS } from './model.js';
import {
  type DeploymentRecord,
  keys,
  listDeployments,
  lockName,
  readServiceState,
  type SlotRecord,
} from './records.js';
import { slotInstances, stopAll, writeSlot } from './slots.js';
import { isTerminal } from './state.js';
import type { TableSync } from './table.js';

export interface ReconcileReport {
  /** Deployments found unfinished (the control plane died under them), now recorded as interrupted. */
  interrupted: { service: string; deployment: number; switched: boolean }[];
  /** Instances the runtime had that no slot refers to: stopped. */
  strays: string[];
  /** Instances a slot refers to that are no longer running. */
  dead: string[];
  /** Services skipped because another control plane holds their lock. */
  busy: string[];
}

/**
 * Run when the control plane starts: makes the runtime and the data plane agree with the store
 * again. A deployment that was running when the previous control plane died is recorded as
 * interrupted; if its switch had been committed it counts as switched (traffic stays on the new
 * slot, the old one is kept warm), otherwise what it started is stopped and the live slot is left
 * as it was. Instances no slot refers to are stopped. Finally the data plane gets the store's table.
 */
export async function reconcile(deps: EngineDeps, tables: TableSync): Promise<ReconcileReport> {
  const { store, runtime, log } = deps;
  const report: ReconcileReport = { interrupted: [], strays: [], dead: [], busy: [] };
  const services = deps.config().config.services;

  for (const [svc, config] of Object.entries(services)) {
    let lock: Lock;
    try {
      lock = await store.lock(lockName(svc), {
        ttlMs: 15_000,
        holder: { description: `start-up reconciliation of ${svc}` },
      });
    } catch (err) {
      if (err instanceof TealError && err.code === 'TEAL_LOCKED') {
        report.busy.push(svc);
        continue;
      }
      throw err;
    }
    try {
      for (const d of await listDeployments(store, svc)) {
        if (isTerminal(d.state)) continue;
        report.interrupted.push(await interrupt(deps, d, config.keepWarm, config.stopTimeout));
      }
      // Slots left mid-transition by a crash with no deployment to blame.
      const state = await readServiceState(store, svc);
      for (const s of SLOTS) {
        let slot: SlotRecord = state.slots[s];
        if (
          slot.state === 'stopping' ||
          ((slot.state === 'starting' || slot.state === 'verifying') && state.live !== s)
        ) {
          await stopAll(runtime, slotInstances(svc, slot), config.stopTimeout);
          if (slot.state !== 'stopping') slot = await writeSlot(store, svc, slot, { state: 'stopping' });
          await writeSlot(store, svc, slot, { state: 'empty' });
        } else if ((slot.state === 'warm' || slot.state === 'draining') && (await allDead(deps, svc, slot))) {
          // Its processes died while no control plane watched (a reboot, a teardown): nothing to keep warm.
          await stopAll(runtime, slotInstances(svc, slot), config.stopTimeout);
          await writeSlot(store, svc, slot, { state: 'empty' });
        } else if (slot.state === 'draining') {
          await keepWarmOrStop(deps, svc, slot, config.keepWarm, config.stopTimeout);
        }
      }
    } finally {
      await lock.release();
    }
  }

  // Instances that no slot of any service refers to are leftovers: stop them.
  const referenced = new Set<string>();
  for (const svc of Object.keys(services)) {
    const state = await readServiceState(store, svc);
    for (const s of SLOTS) for (const i of state.slots[s].instances) referenced.add(i.id);
  }
  let listed: Awaited<ReturnType<typeof runtime.list>> = [];
  try {
    listed = await runtime.list();
  } catch (err) {
    // An engine out of reach (docker stopped) must not keep the control plane from serving the
    // rest; strays are looked for again at the next start.
    log.warn('could not list instances to remove strays', { error: toTealError(err).message });
  }
  for (const instance of listed) {
    if (referenced.has(instance.id)) {
      if (instance.status.state !== 'running') report.dead.push(instance.id);
      continue;
    }
    if (report.busy.includes(instance.labels.service)) continue;
    report.strays.push(instance.id);
    await runtime.stop(instance, { timeoutMs: services[instance.labels.service]?.stopTimeout ?? 10_000 });
  }
  if (report.dead.length > 0) {
    log.warn('instances the store counts on are not running', { instances: report.dead });
  }

  await tables.sync();
  return report;
}

async function interrupt(
  deps: EngineDeps,
  d: DeploymentRecord,
  keepWarmMs: number,
  stopTimeoutMs: number,
): Promise<ReconcileReport['interrupted'][number]> {
  const { store, runtime } = deps;
  const svc = d.service;
  const state = await readServiceState(store, svc);
  const target = d.targetSlot ? state.slots[d.targetSlot] : null;
  const switched =
    d.targetSlot !== null && state.live === d.targetSlot && target?.deployment === d.n && d.mode !== null;
  let message: string;
  if (switched) {
    message = `the control plane stopped after the switch; ${svc} ${d.version} stays live on ${d.targetSlot}`;
    const old = d.fromSlot ? state.slots[d.fromSlot] : null;
    if (old && old.state === 'draining') await keepWarmOrStop(deps, svc, old, keepWarmMs, stopTimeoutMs);
  } else {
    message = `the control plane stopped while this deployment was ${d.state}; what it started was stopped and ${
      state.live ? `${state.live} stayed live` : 'nothing was live'
    }`;
    if (target && target.deployment === d.n && target.state !== 'live' && target.state !== 'empty') {
      await stopAll(runtime, slotInstances(svc, target), stopTimeoutMs);
      let slot: SlotRecord = target;
      if (slot.state !== 'stopping') slot = await writeSlot(store, svc, slot, { state: 'stopping' });
      await writeSlot(store, svc, slot, { state: 'empty' });
    }
  }
  const now = Date.now();
  const record: DeploymentRecord = {
    ...d,
    state: 'interrupted',
    endedAt: new Date(now).toISOString(),
    error: new TealError('TEAL_ABORTED', message).toJSON() as DeploymentRecord['error'],
    events: [
      ...d.events,
      {
        at: new Date(now).toISOString(),
        t: now - Date.parse(d.createdAt),
        step: 'done',
        status: 'failed',
        message,
      },
    ],
  };
  await store.put(keys.deployment(svc, d.n), record as never);
  deps.log.warn('recorded an interrupted deployment', { service: svc, deployment: d.n, switched });
  return { service: svc, deployment: d.n, switched };
}

async function allDead(deps: EngineDeps, svc: string, slot: SlotRecord): Promise<boolean> {
  for (const instance of slotInstances(svc, slot)) {
    if ((await deps.runtime.status(instance)).state === 'running') return false;
  }
  return true;
}

async function keepWarmOrStop(
  deps: EngineDeps,
  svc: string,
  slot: SlotRecord,
  keepWarmMs: number,
  stopTimeoutMs: number,
): Promise<void> {
  if (keepWarmMs > 0) {
    await writeSlot(deps.store, svc, slot, {
      state: 'warm',
      warmUntil: new Date(Date.now() + keepWarmMs).toISOString(),
    });
    return;
  }
  try {
    await stopAll(deps.runtime, slotInstances(svc, slot), stopTimeoutMs);
    const stopping = await writeSlot(deps.store, svc, slot, { state: 'stopping' });
    await writeSlot(deps.store, svc, stopping, { state: 'empty' });
  } catch (err) {
    deps.log.error('stopping an old slot failed', {
      service: svc,
      slot: slot.slot,
      error: toTealError(err).message,
    });
  }
}
