import { TealError } from './errors.js';

export type GateDecision =
  | { action: 'promote'; actor: string }
  | { action: 'abort'; actor: string }
  | { action: 'timeout' };

interface Waiting {
  deployment: number;
  decide(decision: GateDecision): void;
}

/**
 * The manual gate of continuous delivery: a verified deployment waits here, its new slot on the
 * preview route, until someone promotes or aborts it (CLI, API, dashboard) or its timeout passes.
 * One per service at most, since the deploy lock allows one deployment per service. Held in the
 * control plane's memory: a control plane that stops ends the wait (the deployment is interrupted
 * and its new slot stopped, as for any step before the switch).
 */
export class Gates {
  readonly #waiting = new Map<string, Waiting>();

  /** Waits for a decision on `service`'s deployment; the signal's abort rejects with its reason. */
  wait(
    service: string,
    deployment: number,
    options: { timeoutMs?: number; signal: AbortSignal },
  ): Promise<GateDecision> {
    options.signal.throwIfAborted();
    return new Promise<GateDecision>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        options.signal.removeEventListener('abort', onAbort);
        if (this.#waiting.get(service)?.deployment === deployment) this.#waiting.delete(service);
      };
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              done();
              resolve({ action: 'timeout' });
            }, options.timeoutMs);
      const onAbort = () => {
        done();
        reject(options.signal.reason);
      };
      options.signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.set(service, {
        deployment,
        decide: (decision) => {
          done();
          resolve(decision);
        },
      });
    });
  }

  /** The deployment waiting on `service`, if any. */
  waiting(service: string): number | undefined {
    return this.#waiting.get(service)?.deployment;
  }

  /** Promotes or aborts the waiting deployment; returns its number. */
  decide(service: string, decision: Exclude<GateDecision, { action: 'timeout' }>): number {
    const w = this.#waiting.get(service);
    if (!w) {
      throw new TealError('TEAL_NOT_WAITING', `no deployment of ${service} is waiting for promote or abort`, {
        service,
      });
    }
    w.decide(decision);
    return w.deployment;
  }
}
