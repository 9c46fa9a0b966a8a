import type { Instance, Runtime } from '../runtimes/runtime.js';
import type { Store } from '../stores/store.js';
import { type InstanceRef, keys, type SlotRecord } from './records.js';
import { assertSlotMove, type SlotState } from './state.js';

/** Writes a slot's record, checking the move is legal. Callers hold the service's deploy lock. */
export async function writeSlot(
  store: Store,
  service: string,
  current: SlotRecord,
  next: Partial<SlotRecord> & { state: SlotState },
): Promise<SlotRecord> {
  assertSlotMove(`${service} ${current.slot}`, current.state, next.state);
  const record: SlotRecord = { ...current, ...next, since: new Date().toISOString() };
  if (next.state !== 'warm') delete record.warmUntil;
  // Restarts belong to the instances the slot runs; a new release in it starts with none.
  if (next.state === 'empty' || next.state === 'starting') delete record.supervision;
  if (next.state === 'empty') {
    record.instances = [];
    record.release = null;
    record.version = null;
  }
  // The revision field of a ServiceState slot is bookkeeping, not part of the record.
  const { revision: _r, ...clean } = record as SlotRecord & { revision?: number };
  await store.put(keys.slot(service, current.slot), clean as never);
  return clean;
}

/** The Instance a runtime needs to stop or inspect an instance the store refers to. */
export function instanceOf(service: string, slot: SlotRecord, ref: InstanceRef): Instance {
  const instance: Instance = {
    id: ref.id,
    host: ref.host,
    port: ref.port,
    index: ref.index,
    startedAt: 0,
    labels: {
      service,
      slot: slot.slot,
      release: slot.release ?? 0,
      deployment: slot.deployment ?? 0,
      version: slot.version ?? '',
    },
  };
  if (ref.pid !== undefined) instance.pid = ref.pid;
  if (ref.image !== undefined) instance.image = ref.image;
  if (ref.hostId !== undefined) instance.hostId = ref.hostId;
  return instance;
}

export function refOf(instance: Instance): InstanceRef {
  const ref: InstanceRef = {
    id: instance.id,
    host: instance.host,
    port: instance.port,
    index: instance.index,
  };
  if (instance.pid !== undefined) ref.pid = instance.pid;
  if (instance.image !== undefined) ref.image = instance.image;
  if (instance.hostId !== undefined) ref.hostId = instance.hostId;
  return ref;
}

/** Stops instances in parallel; each gets SIGTERM, then SIGKILL after the timeout. */
export async function stopAll(runtime: Runtime, instances: Instance[], timeoutMs: number): Promise<void> {
  await Promise.all(instances.map((i) => runtime.stop(i, { timeoutMs })));
}

export function slotInstances(service: string, slot: SlotRecord): Instance[] {
  return slot.instances.map((ref) => instanceOf(service, slot, ref));
}
