/**
 * Which run of a pipeline goes next: pure bookkeeping, no IO, so its rules are tested alone.
 *
 * - one run per pipeline at a time;
 * - the newest commit wins: it supersedes the run waiting in the queue, and also the running one
 *   while that is still in its stages (nothing deployed yet). A run already deploying is never cut
 *   short: the newest waits behind it;
 * - a delivery id seen before names the run it started, so a redelivered webhook starts nothing.
 */
export interface Queued<T> {
  n: number;
  request: T;
}

export interface Offer {
  /** Runs that will never start (were waiting): record them superseded. */
  superseded: number[];
  /** The running run to stop (still in its stages), if any. */
  cancel?: number;
}

const DELIVERIES_KEPT = 1000;

export class RunQueue<T> {
  readonly #lanes = new Map<
    string,
    { running?: { n: number; phase: 'stages' | 'deploying' }; next?: Queued<T> }
  >();
  readonly #deliveries = new Map<string, number>();

  /** The run a delivery id started, if it was seen. */
  delivered(delivery: string): number | undefined {
    return this.#deliveries.get(delivery);
  }

  /** Remembers a delivery id (the most recent ones are kept). */
  remember(delivery: string, n: number): void {
    this.#deliveries.delete(delivery);
    this.#deliveries.set(delivery, n);
    if (this.#deliveries.size > DELIVERIES_KEPT) {
      this.#deliveries.delete(this.#deliveries.keys().next().value as string);
    }
  }

  /** Queues run `n`; it starts when `next` hands it out. */
  offer(pipeline: string, n: number, request: T): Offer {
    const lane = this.#lane(pipeline);
    const superseded = lane.next ? [lane.next.n] : [];
    lane.next = { n, request };
    const running = lane.running;
    return running && running.phase === 'stages' ? { superseded, cancel: running.n } : { superseded };
  }

  /** The run to start now, if none runs and one waits. */
  next(pipeline: string): Queued<T> | undefined {
    const lane = this.#lane(pipeline);
    if (lane.running || !lane.next) return undefined;
    const next = lane.next;
    lane.next = undefined;
    lane.running = { n: next.n, phase: 'stages' };
    return next;
  }

  /** A run moves on to deploying: from now on a newer commit waits for it. */
  deploying(pipeline: string, n: number): void {
    const running = this.#lane(pipeline).running;
    if (running?.n === n) running.phase = 'deploying';
  }

  /** Removes a waiting run (cancelled before it started); true if it was waiting. */
  drop(pipeline: string, n: number): boolean {
    const lane = this.#lane(pipeline);
    if (lane.next?.n !== n) return false;
    lane.next = undefined;
    return true;
  }

  finished(pipeline: string, n: number): void {
    const lane = this.#lane(pipeline);
    if (lane.running?.n === n) lane.running = undefined;
  }

  running(pipeline: string): number | undefined {
    return this.#lanes.get(pipeline)?.running?.n;
  }

  waiting(pipeline: string): number | undefined {
    return this.#lanes.get(pipeline)?.next?.n;
  }

  #lane(pipeline: string) {
    let lane = this.#lanes.get(pipeline);
    if (!lane) {
      lane = {};
      this.#lanes.set(pipeline, lane);
    }
    return lane;
  }
}
