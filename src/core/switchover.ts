import type { TxnOp } from '../stores/store.js';
import { formatDuration } from './config/duration.js';
import { TealError, toTealError } from './errors.js';
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
export async function switchTraffic(ctx: RunContext): Promise<void> {
  const { deps, plan, rec } = ctx;
  const { store } = deps;
  const svc = plan.service;
  const target = plan.targetSlot;
  await rec.moveTo('switching');
  await rec.step(
    'switch',
    plan.fromSlot ? `switch ${svc} from ${plan.fromSlot} to ${target}` : `switch ${svc} live to ${target}`,
    async () => {
      const state = await readServiceState(store, svc);
      if (state.live !== plan.fromSlot) {
        throw new TealError(
          'TEAL_STORE_CONFLICT',
          `${svc} went live on ${state.live} while this deployment ran; not switching`,
        );
      }
      const to = state.slots[target];
      assertSlotMove(`${svc} ${target}`, to.state, 'live');
      const ops: TxnOp[] = [
        { op: 'put', key: keys.live(svc), value: target, ifRevision: state.liveRevision },
        {
          op: 'put',
          key: keys.slot(svc, target),
          value: { ...withState(to, 'live'), deployment: rec.n } as never,
          ifRevision: to.revision,
        },
        { op: 'put', key: keys.url(svc), value: urlOf(to) },
      ];
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
      await store.txn(ops);
      failpoint('after-store-switch'); // tests only (failpoints.ts)
      try {
        await ctx.tables.sync();
      } catch (err) {
        const undo: TxnOp[] = [
          plan.fromSlot
            ? { op: 'put', key: keys.live(svc), value: plan.fromSlot }
            : { op: 'delete', key: keys.live(svc) },
          { op: 'put', key: keys.slot(svc, target), value: withState(to, to.state) as never },
          from ? { op: 'put', key: keys.url(svc), value: urlOf(from) } : { op: 'delete', key: keys.url(svc) },
        ];
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
    },
    () => `${svc} ${plan.release.version} is taking traffic on ${target}`,
  );
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
