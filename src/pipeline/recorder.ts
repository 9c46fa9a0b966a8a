import type { Json, Store } from '../stores/store.js';
import { type PipelineRun, pipelineKeys, type RunStep } from './records.js';

/** Keeps one run's record and writes it whole to the store after each change, in order. */
export class RunRecorder {
  readonly #store: Store;
  readonly record: PipelineRun;
  #writes: Promise<unknown> = Promise.resolve();

  constructor(store: Store, record: PipelineRun) {
    this.#store = store;
    this.record = record;
  }

  update(patch: Partial<PipelineRun>): Promise<void> {
    Object.assign(this.record, patch);
    return this.#flush();
  }

  /** Adds a step and returns its index. */
  async add(step: RunStep): Promise<number> {
    this.record.steps.push(step);
    await this.#flush();
    return this.record.steps.length - 1;
  }

  step(i: number, patch: Partial<RunStep>): Promise<void> {
    Object.assign(this.record.steps[i]!, patch);
    return this.#flush();
  }

  #flush(): Promise<void> {
    const snapshot = structuredClone(this.record) as unknown as Json;
    const key = pipelineKeys.run(this.record.pipeline, this.record.n);
    const write = this.#writes.then(() => this.#store.put(key, snapshot));
    this.#writes = write.catch(() => undefined);
    return write.then(() => undefined);
  }
}
