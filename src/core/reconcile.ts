import { hostname } from 'node:os';
import type { Lock } from '../stores/store.js';
import { dropCandidate } from './candidate.js';
import type { ServiceConfig } from './config/schema.js';
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
import { poolOf, type TableSync } from './table.js';

export interface ReconcileReport {
  /**
   * Deployments found unfinished (the control plane died under them): `done` when their switch had
   * been committed in the store (traffic now goes there), else `interrupted`.
   */
  unfinished: { service: string; deployment: number; outcome: 'done' | 'interrupted' }[];
  /** Instances the runtime had that no slot refers to: stopped. */
  strays: string[];
  /** Instances a slot refers to that are no longer running. */
  dead: string[];
  /** Services skipped because another control plane holds their lock. */
  busy: string[];
}

/**
 * Run when the control plane starts: makes the runtime and the data plane agree with the store
 * again. A deployment that was running when the previous control plane died is finished here: if
 * its switch had been committed in the store it is completed (`done`): the data plane is given the
 * store's table (which the dead control plane may not have applied), then the old slot is drained
 * and kept warm or stopped, as the deployment would have. Otherwise it is `interrupted`: what it
 * started is stopped and the live slot is left as it was. Instances no slot refers to are stopped.
 * Finally the data plane gets the store's table.
 */
export async function reconcile(deps: EngineDeps, tables: TableSync): Promise<ReconcileReport> {
  const { store } = deps;
  const report: ReconcileReport = { unfinished: [], strays: [], dead: [], busy: [] };
  const services = deps.config().config.services;

  for (const [svc, config] of Object.entries(services)) {
    let lock: Lock;
    try {
      lock = await store.lock(lockName(svc), {
        ttlMs: 15_000,
        holder: {
          description: `start-up reconciliation of ${svc}`,
          service: svc,
          host: hostname(),
          pid: process.pid,
        },
      });
    } catch (err) {
      if (err instanceof TealError && err.code === 'TEAL_LOCKED') {
        report.busy.push(svc);
        continue;
      }
      throw err;
    }
    try {
      await settleService(deps, tables, svc, config, report, () => true);
    } finally {
      await lock.release();
    }
  }

  await stopStrays(deps, report, () => true);

  await tables.sync();
  return report;
}

/**
 * Takes over a service whose coordinator died (`takeover.ts`): under the service's lock, settles what
 * the dead control plane left unfinished as a restarted one would (`done` if its switch was
 * committed, else `interrupted`), by the rules above, and stops the service's instances no slot
 * refers to. `orphan` picks the deployments to settle: never one queued behind the lock in a
 * control plane that is alive. Undefined when another control plane holds the lock by now.
 */
export async function takeOver(
  deps: EngineDeps,
  tables: TableSync,
  svc: string,
  previous: string,
  orphan: (d: DeploymentRecord) => boolean,
): Promise<ReconcileReport | undefined> {
  const config = deps.config().config.services[svc];
  if (!config) return undefined;
  let lock: Lock;
  try {
    lock = await deps.store.lock(lockName(svc), {
      ttlMs: 15_000,
      holder: {
        description: `take-over of ${svc} after ${previous} ended`,
        service: svc,
        host: hostname(),
        pid: process.pid,
      },
    });
  } catch (err) {
    if (err instanceof TealError && err.code === 'TEAL_LOCKED') return undefined;
    throw err;
  }
  const report: ReconcileReport = { unfinished: [], strays: [], dead: [], busy: [] };
  try {
    await settleService(deps, tables, svc, config, report, orphan);
    await stopStrays(deps, report, (s) => s === svc);
  } finally {
    await lock.release();
  }
  if (report.unfinished.length > 0) await tables.sync();
  return report;
}

/** Under the service's lock: settles its unfinished deployments and the slots a crash left mid-move. */
async function settleService(
  deps: EngineDeps,
  tables: TableSync,
  svc: string,
  config: ServiceConfig,
  report: ReconcileReport,
  pick: (d: DeploymentRecord) => boolean,
): Promise<void> {
  const { store, runtime } = deps;
  for (const d of await listDeployments(store, svc)) {
    if (isTerminal(d.state) || !pick(d)) continue;
    report.unfinished.push(await settle(deps, tables, d, config));
  }
  // A release started beside a warm one whose deployment never switched (candidate.ts): stop it.
  // The warm slot it stood beside was never touched, so it stays the instant rollback.
  report.strays.push(...(await dropCandidate(store, runtime, svc, config.stopTimeout)));
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
    } else if (
      slot.state === 'warm' &&
      Date.parse(slot.warmUntil ?? '') <= Date.now() &&
      (await allDead(deps, svc, slot))
    ) {
      // Its processes died while no control plane watched (a reboot) and its window has passed:
      // nothing to keep warm (the reaper would stop it now anyway).
      await stopAll(runtime, slotInstances(svc, slot), config.stopTimeout);
      await writeSlot(store, svc, slot, { state: 'empty' });
    } else if (slot.state === 'draining') {
      // Warm (its dead instances, if any, are restored at start-up, heal.ts) or stopped.
      await keepWarmOrStop(deps, svc, slot, config);
    }
  }
}

/** Stops the instances of the services `which` picks that no slot of any service refers to. */
async function stopStrays(
  deps: EngineDeps,
  report: ReconcileReport,
  which: (service: string) => boolean,
): Promise<void> {
  const { store, runtime, log } = deps;
  const services = deps.config().config.services;
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
    if (!which(instance.labels.service)) continue;
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
}

async function settle(
  deps: EngineDeps,
  tables: TableSync,
  d: DeploymentRecord,
  config: ServiceConfig,
): Promise<ReconcileReport['unfinished'][number]> {
  const { store, runtime } = deps;
  const svc = d.service;
  const state = await readServiceState(store, svc);
  const target = d.targetSlot ? state.slots[d.targetSlot] : null;
  const switched =
    d.targetSlot !== null && state.live === d.targetSlot && target?.deployment === d.n && d.mode !== null;
  let message: string;
  let error: TealError | undefined;
  let switchedAt = d.switchedAt;
  if (switched) {
    // The store decided the switch; the data plane may not have applied it (killed in between).
    // Apply it before the old slot is touched, so no request is sent to instances being stopped.
    await tables.sync();
    switchedAt ??= Date.now();
    message = `the control plane stopped after the switch; the restarted one completed it: ${svc} ${d.version} is live on ${d.targetSlot}`;
    if (d.state === 'analyzing') {
      error = new TealError('TEAL_ABORTED', `${message}; the analysis after the switch did not finish`);
    }
    const old = d.fromSlot ? state.slots[d.fromSlot] : null;
    if (old && old.state === 'draining' && !(await allDead(deps, svc, old))) {
      await keepWarmOrStop(deps, svc, old, config);
    }
  } else {
    message = `the control plane stopped while this deployment was ${d.state}; what it started was stopped and ${
      state.live ? `${state.live} stayed live` : 'nothing was live'
    }`;
    error = new TealError('TEAL_ABORTED', message);
    if (target && target.deployment === d.n && target.state !== 'live' && target.state !== 'empty') {
      await stopAll(runtime, slotInstances(svc, target), config.stopTimeout);
      let slot: SlotRecord = target;
      if (slot.state !== 'stopping') slot = await writeSlot(store, svc, slot, { state: 'stopping' });
      await writeSlot(store, svc, slot, { state: 'empty' });
    }
  }
  const outcome = switched ? 'done' : 'interrupted';
  const now = Date.now();
  const record: DeploymentRecord = {
    ...d,
    state: outcome,
    endedAt: new Date(now).toISOString(),
    ...(switchedAt === undefined ? {} : { switchedAt }),
    ...(error ? { error: error.toJSON() as DeploymentRecord['error'] } : {}),
    events: [
      ...d.events,
      {
        at: new Date(now).toISOString(),
        t: now - Date.parse(d.createdAt),
        step: 'done',
        status: switched ? 'done' : 'failed',
        message,
      },
    ],
  };
  await store.put(keys.deployment(svc, d.n), record as never);
  deps.log.warn(`recorded an unfinished deployment as ${outcome}`, { service: svc, deployment: d.n });
  return { service: svc, deployment: d.n, outcome };
}

async function allDead(deps: EngineDeps, svc: string, slot: SlotRecord): Promise<boolean> {
  for (const instance of slotInstances(svc, slot)) {
    if ((await deps.runtime.status(instance)).state === 'running') return false;
  }
  return true;
}

/** What retireOld would have done to the old slot: keep it warm, or drain it and stop it. */
async function keepWarmOrStop(
  deps: EngineDeps,
  svc: string,
  slot: SlotRecord,
  config: ServiceConfig,
): Promise<void> {
  if (config.keepWarm > 0) {
    await writeSlot(deps.store, svc, slot, {
      state: 'warm',
      warmUntil: new Date(Date.now() + config.keepWarm).toISOString(),
    });
    return;
  }
  try {
    // The data plane routes nothing new to it (it is not live); let what it still serves finish.
    const pool = poolOf(svc, slot);
    if (pool) await deps.traffic.drain(pool.id, { timeoutMs: config.drain });
    const stopping = await writeSlot(deps.store, svc, slot, { state: 'stopping' });
    await stopAll(deps.runtime, slotInstances(svc, slot), config.stopTimeout);
    await writeSlot(deps.store, svc, stopping, { state: 'empty' });
  } catch (err) {
    deps.log.error('stopping an old slot failed', {
      service: svc,
      slot: slot.slot,
      error: toTealError(err).message,
    });
  }
}
