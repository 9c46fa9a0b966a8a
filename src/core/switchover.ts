import type { TxnOp } from '../stores/store.js';
import { formatDuration } from './config/duration.js';
import { isTealError, TealError, toTealError } from './errors.js';
import { failpoint } from './failpoints.js';
import { endpointText } from './model.js';
import { keys, readServiceState, type SlotRecord } from './records.js';
import type { RunContext } from './run.js';
import { slotInstances, stopAll, writeSlot } from './slots.js';
import { assertSlotMove } from './state.js';
import { poolOf } from './table.js';

function withState(slot: SlotRecord & { revision?: number }, state: SlotRecord['state']): SlotRecord {
  const { revision: _r, ...record } = slot;
  return { ...record, state, since: new Date().toISOString() };
}

export function urlOf(slot: SlotRecord): string {
  return slot.instances.map((i) => endpointText(i)).join(',');
}

/**
 * The switch: compare-and-swap `live` in the store first (with the slots' new states and the live
 * url, in one transaction), then make the data plane serve it. If the data plane does not take it,
 * the store is put back, so store and traffic never disagree for longer than the attempt.
 */
export async function switchTraffic(ctx: RunContext): Promise<SlotRecord | null> {
  const { plan, rec } = ctx;
  const svc = plan.service;
  const target = plan.targetSlot;
  await rec.moveTo('switching');
  let displaced: SlotRecord | null = null;
  await rec.step(
    'switch',
    plan.fromSlot ? `switch ${svc} from ${plan.fromSlot} to ${target}` : `switch ${svc} live to ${target}`,
    async () => {
      // The supervisor may replace a dead instance of either slot (a compare-and-swap on its
      // record) between the read and the transaction: read again and retry; that is no reason to fail.
      for (let attempt = 1; ; attempt++) {
        try {
          displaced = await switchOnce(ctx);
          return;
        } catch (err) {
          if (!isTealError(err, 'TEAL_STORE_CONFLICT') || err.details?.retry !== true || attempt >= 5)
            throw err;
        }
      }
    },
    () => `${svc} ${plan.release.version} is taking traffic on ${target}`,
  );
  return displaced;
}

/**
 * One attempt at the switch's transaction and apply. Returns the warm release the new one
 * displaced from the target slot (started beside it, candidate.ts), whose instances the
 * transaction took out of the record: the caller stops them.
 */
async function switchOnce(ctx: RunContext): Promise<SlotRecord | null> {
  const { deps, plan, rec } = ctx;
  const { store } = deps;
  const svc = plan.service;
  const target = plan.targetSlot;
  const state = await readServiceState(store, svc);
  if (state.live !== plan.fromSlot) {
    throw new TealError(
      'TEAL_STORE_CONFLICT',
      `${svc} went live on ${state.live} while this deployment ran; not switching`,
    );
  }
  const to = state.slots[target];
  assertSlotMove(`${svc} ${target}`, to.state, 'live');
  const candidate = state.candidate?.deployment === rec.n ? state.candidate : undefined;
  // Beside a warm release, the slot takes the candidate's instances in this same transaction: the
  // warm release stays the rollback target up to the moment traffic moves.
  const next: SlotRecord = candidate
    ? {
        slot: target,
        state: 'live',
        release: candidate.release,
        version: candidate.version,
        instances: candidate.instances,
        deployment: rec.n,
        since: new Date().toISOString(),
      }
    : { ...withState(to, 'live'), deployment: rec.n };
  const ops: TxnOp[] = [
    { op: 'put', key: keys.live(svc), value: target, ifRevision: state.liveRevision },
    { op: 'put', key: keys.slot(svc, target), value: next as never, ifRevision: to.revision },
    { op: 'put', key: keys.url(svc), value: urlOf(next) },
  ];
  if (candidate) ops.push({ op: 'delete', key: keys.candidate(svc), ifRevision: candidate.revision });
  const from = plan.fromSlot ? state.slots[plan.fromSlot] : null;
  if (from) {
    assertSlotMove(`${svc} ${from.slot}`, from.state, 'draining');
    ops.push({
      op: 'put',
      key: keys.slot(svc, from.slot),
      value: withState(from, 'draining') as never,
      ifRevision: from.revision,
    });
  }
  try {
    await store.txn(ops);
  } catch (err) {
    if (!isTealError(err, 'TEAL_STORE_CONFLICT')) throw err;
    throw new TealError('TEAL_STORE_CONFLICT', err.message, { retry: true });
  }
  failpoint('after-store-switch'); // tests only (failpoints.ts)
  try {
    await ctx.tables.sync();
  } catch (err) {
    const undo: TxnOp[] = [
      plan.fromSlot
        ? { op: 'put', key: keys.live(svc), value: plan.fromSlot }
        : { op: 'delete', key: keys.live(svc) },
      // Beside a warm release, its record goes back exactly as it was, and the candidate with it.
      {
        op: 'put',
        key: keys.slot(svc, target),
        value: (candidate ? bare(to) : withState(to, to.state)) as never,
      },
      from ? { op: 'put', key: keys.url(svc), value: urlOf(from) } : { op: 'delete', key: keys.url(svc) },
    ];
    if (candidate) undo.push({ op: 'put', key: keys.candidate(svc), value: bare(candidate) as never });
    if (from)
      undo.push({
        op: 'put',
        key: keys.slot(svc, from.slot),
        value: withState(from, from.state) as never,
      });
    await store.txn(undo);
    await ctx.tables.sync().catch((syncErr: unknown) =>
      deps.log.error('re-applying the table after a failed switch failed', {
        service: svc,
        error: toTealError(syncErr).message,
      }),
    );
    throw new TealError(
      'TEAL_PROXY_FAILED',
      `the data plane did not take the switch, so ${svc} stays on ${plan.fromSlot ?? 'nothing'}: ${toTealError(err).message}`,
    );
  }
  await rec.update({ switchedAt: Date.now() });
  return candidate ? bare(to) : null;
}

/** A record as stored, without the revision bookkeeping readServiceState adds. */
function bare<T extends object>(record: T & { revision?: number }): T {
  const { revision: _r, ...rest } = record;
  return rest as T;
}

/**
 * After a switch that displaced a warm release (started beside it): stop its instances, which the
 * switch's transaction already took out of the slot record. Traffic moved already, so a failure
 * here only warns: the instances are strays a restart stops.
 */
export async function stopDisplaced(ctx: RunContext, old: SlotRecord): Promise<void> {
  const { deps, plan, rec } = ctx;
  const instances = slotInstances(plan.service, old);
  try {
    await rec.step(
      'stop',
      `stop the release ${old.release} (${old.version}) that was warm in ${old.slot}: ${plan.release.version} took its place`,
      () => stopAll(deps.runtime, instances, plan.stopTimeoutMs),
    );
  } catch (err) {
    deps.log.warn('stopping the displaced warm release failed', {
      service: plan.service,
      instances: instances.map((i) => i.id),
      error: toTealError(err).message,
    });
  }
}

/** After the switch: drain the old slot, then keep it warm for a rollback or stop it. */
export async function retireOld(ctx: RunContext): Promise<void> {
  const { deps, plan, rec } = ctx;
  const { store } = deps;
  const svc = plan.service;
  if (!plan.fromSlot) return;
  await rec.moveTo('draining');
  let old: SlotRecord = (await readServiceState(store, svc)).slots[plan.fromSlot];
  const pool = poolOf(svc, old);
  if (pool) {
    await rec.step(
      'drain',
      `drain ${plan.fromSlot} (up to ${formatDuration(plan.drainMs)})`,
      () => {
        failpoint('draining'); // tests only (failpoints.ts)
        return deps.traffic.drain(pool.id, { timeoutMs: plan.drainMs });
      },
      (r) =>
        r.drained
          ? `${plan.fromSlot} drained in ${formatDuration(r.waitedMs)}`
          : `${plan.fromSlot} still had ${r.remaining} request(s) or stream(s) at the drain timeout; they were closed`,
    );
  }
  if (plan.keepWarmMs > 0) {
    const until = new Date(Date.now() + plan.keepWarmMs);
    old = await writeSlot(store, svc, old, { state: 'warm', warmUntil: until.toISOString() });
    await ctx.tables.sync();
    await rec.event(
      'warm',
      'info',
      `${plan.fromSlot} (${old.version}) stays warm until ${until.toISOString()}: \`teal rollback ${svc}\` switches back at once`,
    );
  } else {
    const instances = slotInstances(svc, old);
    await rec.step('stop', `stop ${plan.fromSlot} (${old.version})`, async () => {
      old = await writeSlot(store, svc, old, { state: 'stopping' });
      await stopAll(deps.runtime, instances, plan.stopTimeoutMs);
      old = await writeSlot(store, svc, old, { state: 'empty' });
    });
  }
}

/**
 * The analysis failed: traffic goes back to the old slot, still running since it was only
 * draining, in one store transaction and one apply, as fast as the switch itself. Then the new slot
 * is drained and stopped; the tail of its output is kept on the deployment for the post-mortem.
 */
export async function switchBack(ctx: RunContext, reason: string): Promise<void> {
  const { deps, plan, rec } = ctx;
  const { store } = deps;
  const svc = plan.service;
  const from = plan.fromSlot!;
  const target = plan.targetSlot;
  await rec.step('switch', `switch ${svc} back from ${target} to ${from}: ${reason}`, async () => {
    const state = await readServiceState(store, svc);
    const back = state.slots[from];
    const bad = state.slots[target];
    assertSlotMove(`${svc} ${from}`, back.state, 'live');
    assertSlotMove(`${svc} ${target}`, bad.state, 'draining');
    await store.txn([
      { op: 'put', key: keys.live(svc), value: from, ifRevision: state.liveRevision },
      {
        op: 'put',
        key: keys.slot(svc, from),
        value: withState(back, 'live') as never,
        ifRevision: back.revision,
      },
      {
        op: 'put',
        key: keys.slot(svc, target),
        value: withState(bad, 'draining') as never,
        ifRevision: bad.revision,
      },
      { op: 'put', key: keys.url(svc), value: urlOf(back) },
    ]);
    await ctx.tables.sync();
    await rec.update({ switchedBackAt: Date.now() });
  });
  let bad: SlotRecord = (await readServiceState(store, svc)).slots[target];
  const instances = slotInstances(svc, bad);
  const logs: Record<string, string[]> = {};
  for (const instance of instances) {
    logs[instance.id] = await deps.runtime.logTail(instance, 50).catch(() => []);
  }
  await rec.event('analysis', 'info', `kept the last lines of ${target}'s output`, { data: { logs } });
  const pool = poolOf(svc, bad);
  if (pool) await deps.traffic.drain(pool.id, { timeoutMs: plan.drainMs }).catch(() => undefined);
  await rec.step('stop', `stop ${target} (${bad.version})`, async () => {
    bad = await writeSlot(store, svc, bad, { state: 'stopping' });
    await stopAll(deps.runtime, instances, plan.stopTimeoutMs);
    bad = await writeSlot(store, svc, bad, { state: 'empty' });
  });
}
