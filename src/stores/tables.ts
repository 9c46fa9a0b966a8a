/**
 * The storage underneath a local (single-machine) store: rows, a change log, leases. `LocalStore`
 * gives them etcd's semantics once; SQLite and memory only say where the rows live.
 */

export interface Row {
  key: string;
  /** JSON text. */
  value: string;
  revision: number;
  createRevision: number;
  lease: number | null;
}

export interface ChangeRow {
  revision: number;
  type: 'put' | 'delete';
  key: string;
  /** JSON text; null for deletes. */
  value: string | null;
}

export interface LeaseRow {
  id: number;
  ttlMs: number;
  /** Epoch ms after which the lease is over unless renewed. */
  expiresAt: number;
  /** The process that keeps it alive: when that process is gone, so is the lease. */
  ownerPid: number;
  ownerHost: string;
}

export interface Tables {
  readonly kind: string;
  /** Runs fn atomically, serialised against every other writer of the same tables. */
  tx<T>(fn: () => T): T;
  get(key: string): Row | undefined;
  /** Rows whose key starts with prefix, in key order. */
  range(prefix: string): Row[];
  set(row: Row): void;
  del(key: string): void;
  revision(): number;
  setRevision(revision: number): void;
  log(change: ChangeRow): void;
  /** Changes with revision > after whose key starts with prefix, in order. */
  changes(after: number, prefix: string, limit: number): ChangeRow[];
  /** The lowest revision still in the change log (older ones were compacted). */
  oldestLogged(): number;
  compact(keepAfter: number): void;
  leaseGet(id: number): LeaseRow | undefined;
  leasePut(lease: LeaseRow): void;
  leaseDel(id: number): void;
  leases(): LeaseRow[];
  keysOfLease(id: number): string[];
  close(): void;
}
