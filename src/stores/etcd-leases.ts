import {
  EtcdLeaseInvalidError,
  type IDuplexStream,
  type ILeaseKeepAliveRequest,
  type ILeaseKeepAliveResponse,
  type LeaseClient,
} from 'etcd3';
import { TealError } from '../core/errors.js';
import { type CallContext, call } from './etcd-calls.js';
import type { Lease } from './store.js';

/** What the leases need of the etcd store, beyond what any call does. */
export interface LeaseContext extends CallContext {
  readonly leaseClient: LeaseClient;
}

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

interface HeldLease {
  id: number;
  ttlMs: number;
  renewedAt: number;
  timer: NodeJS.Timeout;
  lost: AbortController;
}

/**
 * The etcd leases one store handle holds, kept alive on one keep-alive stream of its own: each is
 * renewed every third of its TTL, and reported lost through its `lost` signal once a TTL passes
 * unrenewed or etcd says it is gone.
 */
export class EtcdLeases {
  readonly #store: LeaseContext;
  readonly #held = new Map<number, HeldLease>();
  #keepAlive: KeepAliveStream | undefined;
  #opening = false;

  constructor(store: LeaseContext) {
    this.#store = store;
  }

  async grant(ttlMs: number): Promise<Lease> {
    // etcd counts TTLs in whole seconds (and may raise one to its minimum, 2s by default). Our ids
    // stay below 2^53, as local.ts's do, so they survive being a JS number; etcd's own are 64-bit.
    const ttl = Math.max(1, Math.ceil(ttlMs / 1000));
    const id = 1 + Math.floor(Math.random() * (Number.MAX_SAFE_INTEGER - 1));
    const res = await call(this.#store, 'grant a lease', () =>
      this.#store.leaseClient.leaseGrant({ ID: id, TTL: ttl }),
    );
    const granted = Number(res.TTL) * 1000;
    const held: HeldLease = {
      id,
      ttlMs: granted,
      renewedAt: Date.now(),
      lost: new AbortController(),
      timer: setInterval(() => this.#renew(held), Math.max(100, Math.floor(granted / 3))),
    };
    held.timer.unref();
    this.#held.set(id, held);
    return { id, ttlMs: granted, lost: held.lost.signal, revoke: () => this.#revoke(held) };
  }

  /** Revokes every lease held, for the store's `close()`: each settles, revoked or failed. */
  revokeAll(): Promise<PromiseSettledResult<void>[]> {
    return Promise.allSettled([...this.#held.values()].map((held) => this.#revoke(held)));
  }

  /** Ends the keep-alive stream, once the store is closed. */
  close(): void {
    if (this.#keepAlive) this.#dropKeepAlive(this.#keepAlive);
  }

  async #revoke(held: HeldLease): Promise<void> {
    if (this.#store.isClosed()) return;
    this.#forget(held);
    try {
      await call(this.#store, `revoke lease ${held.id}`, () =>
        this.#store.leaseClient.leaseRevoke({ ID: held.id }).catch((err: unknown) => {
          if (!(err instanceof EtcdLeaseInvalidError)) throw err; // already gone: that is what we wanted
        }),
      );
    } finally {
      held.lost.abort(new TealError('TEAL_STORE_FAILED', `lease ${held.id} was revoked`));
    }
  }

  #forget(held: HeldLease): void {
    clearInterval(held.timer);
    this.#held.delete(held.id);
  }

  #lose(held: HeldLease, why: string): void {
    this.#forget(held);
    held.lost.abort(new TealError('TEAL_STORE_FAILED', `lease ${held.id} is lost: ${why}`));
  }

  /** Every third of the TTL: one keep-alive on this handle's stream, or the lease is lost once a TTL passes unrenewed. */
  #renew(held: HeldLease): void {
    const silentMs = Date.now() - held.renewedAt;
    if (silentMs > held.ttlMs) {
      this.#lose(
        held,
        `${this.#store.where} has not renewed it for ${silentMs}ms, past its TTL of ${held.ttlMs}ms`,
      );
      return;
    }
    // A renewal already missed: the stream may be dead without having said so; start a fresh one.
    if (silentMs > held.ttlMs / 2 && this.#keepAlive) this.#dropKeepAlive(this.#keepAlive);
    if (this.#keepAlive) this.#keepAlive.write({ ID: held.id });
    else this.#openKeepAlive();
  }

  #openKeepAlive(): void {
    if (this.#opening || this.#store.isClosed()) return;
    this.#opening = true;
    this.#store.leaseClient
      .leaseKeepAlive()
      .then(
        (stream) => {
          stream.on('data', (res) => this.#renewed(res));
          stream.on('error', () => this.#dropKeepAlive(stream));
          stream.on('end', () => this.#dropKeepAlive(stream));
          if (this.#store.isClosed()) return this.#dropKeepAlive(stream);
          this.#keepAlive = stream;
          for (const id of this.#held.keys()) stream.write({ ID: id });
        },
        // Nothing to report yet: the next renewal tries again, and a lease that stays unrenewed
        // past its TTL is reported lost through its `lost` signal.
        () => undefined,
      )
      .finally(() => {
        this.#opening = false;
      });
  }

  #dropKeepAlive(stream: KeepAliveStream): void {
    if (this.#keepAlive === stream) this.#keepAlive = undefined;
    stream.end();
    stream.cancel();
  }

  #renewed(res: ILeaseKeepAliveResponse): void {
    const held = this.#held.get(Number(res.ID));
    if (!held) return;
    if (res.TTL === '0') this.#lose(held, `${this.#store.where} says it expired or was revoked`);
    else held.renewedAt = Date.now();
  }
}
