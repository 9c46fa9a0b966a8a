/**
 * The Store: teal's source of truth. A small etcd-shaped key-value interface, spoken in teal's terms
 * (revisions are opaque increasing numbers, values are JSON), so SQLite, memory and etcd all fit it
 * without leaking one backend's quirks into the others (confd's `waitIndex` is the lesson).
 *
 * Every implementation passes `store.contract.ts`.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Entry<T = Json> {
  key: string;
  value: T;
  /** Revision of the last write to this key; pass it as `ifRevision` to compare-and-swap. */
  revision: number;
  /** Revision at which the key was created. */
  createRevision: number;
  /** The lease this key lives under, if any: it disappears when the lease ends. */
  lease?: number;
}

export interface PutOptions {
  /** Compare-and-swap: write only if the key's revision is this; 0 means "only if absent". */
  ifRevision?: number;
  /** Attach the key to a lease: it is deleted when the lease expires or is revoked. */
  lease?: number;
}

export type TxnOp =
  | { op: 'put'; key: string; value: Json; ifRevision?: number; lease?: number }
  | { op: 'delete'; key: string; ifRevision?: number };

export interface Change<T = Json> {
  type: 'put' | 'delete';
  key: string;
  /** The new value; undefined for deletes. */
  value: T | undefined;
  revision: number;
}

export interface WatchOptions {
  signal: AbortSignal;
  /** Deliver changes after this revision first (resume after a reconnect); default: only new ones. */
  afterRevision?: number;
}

export interface Lease {
  readonly id: number;
  readonly ttlMs: number;
  /** Aborted when the lease is lost (expired, revoked, or the store closed). */
  readonly lost: AbortSignal;
  /** Ends the lease now and deletes every key attached to it. */
  revoke(): Promise<void>;
}

export interface LockOptions {
  /** How long the lock outlives a holder that stopped renewing it (crashed). */
  ttlMs: number;
  /** Who holds it, shown to whoever is refused: "deployment #12 (web v2) by alice". */
  holder: Json;
  /** Wait for the lock until this signal aborts; without it, fail at once when held. */
  wait?: AbortSignal;
}

export interface Lock {
  readonly name: string;
  readonly lease: Lease;
  release(): Promise<void>;
}

export interface Store {
  readonly kind: string;
  get<T = Json>(key: string): Promise<Entry<T> | undefined>;
  /** Every key under the prefix, in key order. */
  list<T = Json>(prefix: string): Promise<Entry<T>[]>;
  /** Writes a key; returns the new revision. Throws TEAL_STORE_CONFLICT when `ifRevision` does not match. */
  put(key: string, value: Json, options?: PutOptions): Promise<number>;
  /** Deletes a key; returns whether it existed. Throws TEAL_STORE_CONFLICT when `ifRevision` does not match. */
  delete(key: string, options?: { ifRevision?: number }): Promise<boolean>;
  /** Applies every op or none: all guards must hold. Returns the revision of the write. */
  txn(ops: TxnOp[]): Promise<number>;
  /** Changes under the prefix, in revision order, until the signal aborts. */
  watch<T = Json>(prefix: string, options: WatchOptions): AsyncIterable<Change<T>>;
  /** A lease kept alive by this store handle until revoked or the process dies. */
  grant(ttlMs: number): Promise<Lease>;
  /**
   * Takes the named lock on a fresh lease. Throws TEAL_LOCKED (with the holder) when held and
   * `wait` is not given; TEAL_LOCK_TIMEOUT when `wait` aborts first.
   */
  lock(name: string, options: LockOptions): Promise<Lock>;
  /** The holder of a lock, if it is held. */
  lockHolder(name: string): Promise<Json | undefined>;
  /** Current revision of the whole store. */
  revision(): Promise<number>;
  close(): Promise<void>;
}
