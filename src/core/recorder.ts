import type { Json, Store } from '../stores/store.js';
import { type TealError, toTealError } from './errors.js';
import { type DeploymentEvent, type DeploymentRecord, keys, type StepName } from './records.js';
import { assertDeploymentMove, type DeploymentState } from './state.js';

/**
 * Keeps one deployment's record and writes it to the store after every change, in order. Watchers
 * of the store (the API's event stream, a dashboard, another control plane) see each step as it
 * happens; after a crash, the record says how far the deployment got.
 */
export class Recorder {
  readonly #store: Store;
  readonly #record: DeploymentRecord;
  readonly #created: number;
  #writes: Promise<unknown> = Promise.resolve();

  constructor(store: Store, record: DeploymentRecord) {
    this.#store = store;
    this.#record = record;
    this.#created = Date.parse(record.createdAt);
  }

  get record(): Readonly<DeploymentRecord> {
    return this.#record;
  }

  get n(): number {
    return this.#record.n;
  }

  /** Appends an event and writes the record. */
  event(
    step: StepName,
    status: DeploymentEvent['status'],
    message: string,
    extra: { ms?: number; data?: Json } = {},
  ): Promise<void> {
    const now = Date.now();
    const event: DeploymentEvent = {
      at: new Date(now).toISOString(),
      t: now - this.#created,
      step,
      status,
      message,
    };
    if (extra.ms !== undefined) event.ms = Math.round(extra.ms);
    if (extra.data !== undefined) event.data = extra.data;
    this.#record.events.push(event);
    return this.#flush();
  }

  /** Runs one step between a `started` and a `done` (or `failed`) event carrying its duration. */
  async step<T>(
    step: StepName,
    message: string,
    fn: () => Promise<T>,
    done?: (result: T) => string,
  ): Promise<T> {
    const t0 = performance.now();
    await this.event(step, 'started', message);
    try {
      const result = await fn();
      await this.event(step, 'done', done ? done(result) : message, { ms: performance.now() - t0 });
      return result;
    } catch (err) {
      await this.event(step, 'failed', toTealError(err).message, { ms: performance.now() - t0 });
      throw err;
    }
  }

  update(patch: Partial<DeploymentRecord>): Promise<void> {
    Object.assign(this.#record, patch);
    return this.#flush();
  }

  moveTo(state: DeploymentState): Promise<void> {
    if (this.#record.state === state) return Promise.resolve();
    assertDeploymentMove(`deployment #${this.#record.n}`, this.#record.state, state);
    this.#record.state = state;
    return this.#flush();
  }

  async finish(state: 'done' | 'failed' | 'rolled_back' | 'interrupted', error?: TealError): Promise<void> {
    if (error) this.#record.error = error.toJSON() as DeploymentRecord['error'];
    this.#record.endedAt = new Date().toISOString();
    await this.moveTo(state);
  }

  /** Resolves when every write so far has reached the store. */
  flushed(): Promise<void> {
    return this.#writes.then(() => undefined);
  }

  #flush(): Promise<void> {
    const snapshot = JSON.parse(JSON.stringify(this.#record)) as Json;
    const write = this.#writes.then(() =>
      this.#store.put(keys.deployment(this.#record.service, this.#record.n), snapshot),
    );
    this.#writes = write.catch(() => undefined);
    return write.then(() => undefined);
  }
}
