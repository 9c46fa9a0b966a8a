import type { Lock } from '../stores/store.js';
import type { EngineDeps } from './deps.js';
import { toTealError } from './errors.js';
import { SLOTS } from './model.js';
import { lockName, readServiceState, type SlotRecord } from './records.js';
import { slotInstances, stopAll, writeSlot } from './slots.js';
import type { TableSync } from './table.js';

/**
 * Stops warm slots whose keep-warm time is over. The deadline lives in the store (`warmUntil`), so
 * a restarted control plane honours it. Takes the service's deploy lock, and skips a service whose
 * lock is held: a running deployment or rollback owns the slots for now.
 */
export class WarmReaper {
  readonly #deps: EngineDeps;
  readonly #tables: TableSync;
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> = Promise.resolve();

  constructor(deps: EngineDeps, tables: TableSync) {
    this.#deps = deps;
    this.#tables = tables;
  }

  start(everyMs = 1_000): void {
    this.#timer = setInterval(() => {
      this.#sweeping = this.#sweeping
        .then(async () => void (await this.sweep()))
        .catch((err: unknown) =>
          this.#deps.log.error('stopping warm slots failed', { error: toTealError(err).message }),
        );
    }, everyMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#sweeping;
  }

  /** Stops every warm slot past its time; returns how many it stopped. */
  async sweep(now = Date.now()): Promise<number> {
    const { store, runtime } = this.#deps;
    let stopped = 0;
    for (const [svc, config] of Object.entries(this.#deps.config().config.services)) {
      const state = await readServiceState(store, svc);
      const due = SLOTS.filter(
        (s) => state.slots[s].state === 'warm' && Date.parse(state.slots[s].warmUntil ?? '') <= now,
      );
      if (due.length === 0) continue;
      let lock: Lock;
      try {
        lock = await store.lock(lockName(svc), {
          ttlMs: 15_000,
          holder: { description: `keep-warm expiry of ${svc}` },
        });
      } catch {
        continue;
      }
      try {
        const fresh = await readServiceState(store, svc);
        for (const s of due) {
          let slot: SlotRecord = fresh.slots[s];
          if (slot.state !== 'warm' || Date.parse(slot.warmUntil ?? '') > now) continue;
          this.#deps.log.info('keep-warm time is over; stopping the old slot', {
            service: svc,
            slot: s,
            version: slot.version,
          });
          const instances = slotInstances(svc, slot);
          slot = await writeSlot(store, svc, slot, { state: 'stopping' });
          await this.#tables.sync();
          await stopAll(runtime, instances, config.stopTimeout);
          await writeSlot(store, svc, slot, { state: 'empty' });
          stopped++;
        }
      } finally {
        await lock.release();
      }
    }
    return stopped;
  }
}
