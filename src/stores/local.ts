import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { TealError } from '../core/errors.js';
import { pidAlive } from '../proc.js';
import { acquireLock, lockHolder } from './lock.js';
import type {
  Change,
  Entry,
  Json,
  Lease,
  Lock,
  LockOptions,
  PutOptions,
  Store,
  TxnOp,
  WatchOptions,
} from './store.js';
import type { ChangeRow, LeaseRow, Row, Tables } from './tables.js';

export interface LocalStoreOptions {
  /** Prepended to every key, as etcd's `prefix` is: "/teal". */
  prefix?: string;
  /** How often a watcher looks for writes made by other processes (0: never; in-process writes wake it at once). */
  pollMs?: number;
  /** Entries kept in the change log for watchers that resume. */
  historySize?: number;
  now?: () => number;
}

const HOST = hostname();

/**
 * etcd's semantics (global revision, compare-and-swap, txn, prefix watch with resume, leases) over
 * a `Tables` backend. A lease ends when its TTL passes without renewal, or at once when the process
 * that owns it on this host is gone: that is how a deploy lock frees itself when its holder dies.
 */
export class LocalStore implements Store {
  readonly kind: string;
  readonly #tables: Tables;
  readonly #prefix: string;
  readonly #pollMs: number;
  readonly #historySize: number;
  readonly #now: () => number;
  readonly #written = new EventEmitter();
  readonly #leases = new Map<number, { timer: NodeJS.Timeout; lost: AbortController }>();
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;
  #writes = 0;

  constructor(tables: Tables, options: LocalStoreOptions = {}) {
    this.kind = tables.kind;
    this.#tables = tables;
    this.#prefix = options.prefix ?? '/teal';
    this.#pollMs = options.pollMs ?? 0;
    this.#historySize = options.historySize ?? 10_000;
    this.#now = options.now ?? Date.now;
    this.#written.setMaxListeners(0);
    // Expired leases must disappear even when nobody writes, so lock waiters and watchers see it.
    this.#sweeper = setInterval(() => {
      if (!this.#closed) this.#write(() => undefined);
    }, 250);
    this.#sweeper.unref();
  }

  #full(key: string): string {
    return this.#prefix + key;
  }

  #relative(key: string): string {
    return key.slice(this.#prefix.length);
  }

  #check(): void {
    if (this.#closed) throw new TealError('TEAL_STORE_FAILED', `the ${this.kind} store is closed`);
  }

  #entry<T>(row: Row): Entry<T> {
    const entry: Entry<T> = {
      key: this.#relative(row.key),
      value: JSON.parse(row.value) as T,
      revision: row.revision,
      createRevision: row.createRevision,
    };
    if (row.lease !== null) entry.lease = row.lease;
    return entry;
  }

  /** Runs a write transaction after ending expired leases; wakes watchers if the revision moved. */
  #write<T>(fn: (revision: () => number) => T): T {
    this.#check();
    const before = this.#tables.revision();
    const result = this.#tables.tx(() => {
      let next: number | undefined;
      const revision = () => {
        if (next === undefined) {
          next = this.#tables.revision() + 1;
          this.#tables.setRevision(next);
        }
        return next;
      };
      this.#sweep(revision);
      return fn(revision);
    });
    if (this.#tables.revision() !== before) {
      if (++this.#writes % 500 === 0) {
        this.#tables.tx(() => this.#tables.compact(this.#tables.revision() - this.#historySize));
      }
      this.#written.emit('write');
    }
    return result;
  }

  #sweep(revision: () => number): void {
    const now = this.#now();
    for (const lease of this.#tables.leases()) {
      const ownerGone =
        lease.ownerHost === HOST && lease.ownerPid !== process.pid && !pidAlive(lease.ownerPid);
      if (lease.expiresAt <= now || ownerGone) this.#endLease(lease.id, revision);
    }
  }

  #endLease(id: number, revision: () => number): void {
    for (const key of this.#tables.keysOfLease(id)) this.#remove(key, revision);
    this.#tables.leaseDel(id);
    const local = this.#leases.get(id);
    if (local) {
      clearInterval(local.timer);
      local.lost.abort(new TealError('TEAL_STORE_FAILED', `lease ${id} ended`));
      this.#leases.delete(id);
    }
  }

  #remove(key: string, revision: () => number): void {
    this.#tables.del(key);
    this.#tables.log({ revision: revision(), type: 'delete', key, value: null });
  }

  #guard(key: string, ifRevision: number | undefined): void {
    if (ifRevision === undefined) return;
    const current = this.#tables.get(key)?.revision ?? 0;
    if (current !== ifRevision) {
      throw new TealError(
        'TEAL_STORE_CONFLICT',
        `${this.#relative(key)} changed: expected revision ${ifRevision}, found ${current}`,
        { key: this.#relative(key), expected: ifRevision, found: current },
      );
    }
  }

  #set(key: string, value: Json, lease: number | undefined, revision: () => number): void {
    if (lease !== undefined && !this.#tables.leaseGet(lease)) {
      throw new TealError('TEAL_STORE_FAILED', `lease ${lease} does not exist (expired or revoked)`);
    }
    const text = JSON.stringify(value);
    if (text === undefined)
      throw new TealError('TEAL_STORE_FAILED', `cannot store undefined at ${this.#relative(key)}`);
    const existing = this.#tables.get(key);
    const rev = revision();
    this.#tables.set({
      key,
      value: text,
      revision: rev,
      createRevision: existing?.createRevision ?? rev,
      lease: lease ?? null,
    });
    this.#tables.log({ revision: rev, type: 'put', key, value: text });
  }

  async get<T = Json>(key: string): Promise<Entry<T> | undefined> {
    return this.#write(() => {
      const row = this.#tables.get(this.#full(key));
      return row ? this.#entry<T>(row) : undefined;
    });
  }

  async list<T = Json>(prefix: string): Promise<Entry<T>[]> {
    return this.#write(() => this.#tables.range(this.#full(prefix)).map((row) => this.#entry<T>(row)));
  }

  async put(key: string, value: Json, options: PutOptions = {}): Promise<number> {
    return this.#write((revision) => {
      const full = this.#full(key);
      this.#guard(full, options.ifRevision);
      this.#set(full, value, options.lease, revision);
      return revision();
    });
  }

  async delete(key: string, options: { ifRevision?: number } = {}): Promise<boolean> {
    return this.#write((revision) => {
      const full = this.#full(key);
      this.#guard(full, options.ifRevision);
      if (!this.#tables.get(full)) return false;
      this.#remove(full, revision);
      return true;
    });
  }

  async txn(ops: TxnOp[]): Promise<number> {
    return this.#write((revision) => {
      for (const op of ops) this.#guard(this.#full(op.key), op.ifRevision);
      for (const op of ops) {
        const full = this.#full(op.key);
        if (op.op === 'put') this.#set(full, op.value, op.lease, revision);
        else if (this.#tables.get(full)) this.#remove(full, revision);
      }
      return ops.length > 0 ? revision() : this.#tables.revision();
    });
  }

  async revision(): Promise<number> {
    return this.#write(() => this.#tables.revision());
  }

  async *watch<T = Json>(prefix: string, options: WatchOptions): AsyncIterable<Change<T>> {
    const { signal } = options;
    const full = this.#full(prefix);
    let last = options.afterRevision ?? this.#tables.revision();
    while (!signal.aborted && !this.#closed) {
      const oldest = this.#tables.oldestLogged();
      if (last + 1 < oldest) {
        throw new TealError(
          'TEAL_STORE_FAILED',
          `watch of ${prefix} resumed at revision ${last}, compacted up to ${oldest - 1}`,
        );
      }
      const batch = this.#tables.changes(last, full, 1000);
      for (const row of batch) {
        last = row.revision;
        yield this.#change<T>(row);
        if (signal.aborted) return;
      }
      if (batch.length === 0) await this.#nextWrite(signal);
    }
  }

  #change<T>(row: ChangeRow): Change<T> {
    return {
      type: row.type,
      key: this.#relative(row.key),
      value: row.value === null ? undefined : (JSON.parse(row.value) as T),
      revision: row.revision,
    };
  }

  #nextWrite(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#written.off('write', done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.#pollMs > 0 ? setTimeout(done, this.#pollMs) : undefined;
      this.#written.on('write', done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  async grant(ttlMs: number): Promise<Lease> {
    const row = this.#write(() => {
      // Random ids, as etcd's: a stale handle can never revoke a later lease that reused its number.
      let id: number;
      do id = 1 + Math.floor(Math.random() * 2 ** 48);
      while (this.#tables.leaseGet(id));
      const lease: LeaseRow = {
        id,
        ttlMs,
        expiresAt: this.#now() + ttlMs,
        ownerPid: process.pid,
        ownerHost: HOST,
      };
      this.#tables.leasePut(lease);
      return lease;
    });
    const lost = new AbortController();
    const timer = setInterval(() => this.#renew(row.id), Math.max(50, Math.floor(ttlMs / 3)));
    timer.unref();
    this.#leases.set(row.id, { timer, lost });
    return {
      id: row.id,
      ttlMs,
      lost: lost.signal,
      revoke: async () => {
        if (this.#closed) return;
        this.#write((revision) => {
          if (this.#tables.leaseGet(row.id)) this.#endLease(row.id, revision);
        });
      },
    };
  }

  #renew(id: number): void {
    if (this.#closed) return;
    this.#write(() => {
      const lease = this.#tables.leaseGet(id);
      if (lease) this.#tables.leasePut({ ...lease, expiresAt: this.#now() + lease.ttlMs });
    });
  }

  lock(name: string, options: LockOptions): Promise<Lock> {
    return acquireLock(this, name, options);
  }

  lockHolder(name: string): Promise<Json | undefined> {
    return lockHolder(this, name);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#sweeper);
    // Leases held by this handle end with it, as an etcd client's do when its keep-alive stops.
    this.#write((revision) => {
      for (const id of this.#leases.keys()) if (this.#tables.leaseGet(id)) this.#endLease(id, revision);
    });
    this.#closed = true;
    this.#written.emit('write');
    this.#tables.close();
  }
}
