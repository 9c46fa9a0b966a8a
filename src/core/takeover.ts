import { hostname } from 'node:os';
import { describeHolder } from '../stores/lock.js';
import type { Json } from '../stores/store.js';
import type { EngineDeps } from './deps.js';
import { toTealError } from './errors.js';
import { takeOver } from './reconcile.js';
import { type DeploymentRecord, listDeployments } from './records.js';
import { isTerminal } from './state.js';
import type { TableSync } from './table.js';

const LOCKS = '/locks/';

interface Holder {
  description?: string;
  deployment?: number;
  service?: string;
  host?: string;
  pid?: number;
}

/**
 * Coordinator fail-over between control planes on one store (several `teal up` on one etcd).
 * A service's deploy lock already elects its coordinator: the control plane whose deployment
 * holds the lock (a key under its lease, holder with host, pid and deployment) is the only one
 * that moves the service's slots, and the others find it locked. This watch is the rest: every
 * control plane follows the lock keys, and when one disappears while the deployment its holder
 * ran is not finished (a holder that ends normally records the outcome before releasing), the
 * holder died and its lease ended. The first control plane to take the lock then settles the
 * deployment as a restarted control plane would (`reconcile.ts`: `done` if the switch was
 * committed, else `interrupted`); the others find the lock taken and do nothing.
 */
export class CoordinatorWatch {
  readonly #deps: EngineDeps;
  readonly #tables: TableSync;
  /** The last holder seen per lock key. */
  readonly #holders = new Map<string, Holder>();
  #running: Promise<void> | undefined;
  readonly #work = new Set<Promise<void>>();
  #open: () => void = () => undefined;
  /** Take-overs wait for this: the start-up reconciliation settles what it finds first. */
  readonly #opened = new Promise<void>((resolve) => {
    this.#open = resolve;
  });

  constructor(deps: EngineDeps, tables: TableSync) {
    this.#deps = deps;
    this.#tables = tables;
  }

  /** Starts watching; take-overs wait for `open()`. */
  start(signal: AbortSignal): void {
    this.#running = this.#loop(signal);
  }

  /** Lets take-overs run (after the start-up reconciliation). */
  open(): void {
    this.#open();
  }

  /** Resolves once the watch and any take-over in progress have ended (after `signal` aborts). */
  async stopped(): Promise<void> {
    await this.#running;
    await Promise.all([...this.#work]);
  }

  async #loop(signal: AbortSignal): Promise<void> {
    const { store, log } = this.#deps;
    let after: number | undefined;
    while (!signal.aborted) {
      try {
        if (after === undefined) {
          after = await store.revision();
          this.#holders.clear();
          for (const e of await store.list<{ holder: Json }>(LOCKS)) {
            this.#holders.set(e.key, e.value.holder as Holder);
          }
        }
        for await (const change of store.watch<{ holder: Json }>(LOCKS, { signal, afterRevision: after })) {
          after = change.revision;
          if (change.type === 'put' && change.value) {
            this.#holders.set(change.key, change.value.holder as Holder);
            continue;
          }
          const holder = this.#holders.get(change.key);
          this.#holders.delete(change.key);
          if (holder) this.#ended(change.key.slice(LOCKS.length), holder, signal);
        }
      } catch (err) {
        if (signal.aborted) break;
        // The store is away (or compacted past us): start over from a fresh read.
        log.warn('lost the watch on the deploy locks', { error: toTealError(err).message });
        after = undefined;
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  }

  /** A lock was released or its lease ended: take over if its holder left work unfinished. */
  #ended(svc: string, holder: Holder, signal: AbortSignal): void {
    if (holder.host === hostname() && holder.pid === process.pid) return;
    if (signal.aborted || !this.#deps.config().config.services[svc]) return;
    const previous = describeHolder(holder as Json);
    // Running deployments are the dead holder's (only the holder runs one); a queued one may wait
    // for the lock in a control plane that is alive, unless it is the holder's own.
    const orphan = (d: DeploymentRecord) =>
      !isTerminal(d.state) && (d.state !== 'queued' || d.n === holder.deployment);
    const work = (async () => {
      await this.#opened;
      if (signal.aborted) return;
      // A holder that ended normally recorded its outcome first: then there is nothing to do, and
      // the lock is left free for the next deployment.
      if (!(await listDeployments(this.#deps.store, svc)).some(orphan)) return;
      const report = await takeOver(this.#deps, this.#tables, svc, previous, orphan);
      if (report && report.unfinished.length + report.strays.length > 0) {
        this.#deps.log.warn('took over from a control plane that stopped', {
          service: svc,
          previous,
          unfinished: report.unfinished.map((d) => `${d.service}#${d.deployment}: ${d.outcome}`),
          strays: report.strays,
        });
      }
    })()
      .catch((err: unknown) =>
        this.#deps.log.error('taking over a service failed', {
          service: svc,
          previous,
          error: toTealError(err).message,
        }),
      )
      .finally(() => this.#work.delete(work));
    this.#work.add(work);
  }
}
