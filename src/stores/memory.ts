import { LocalStore, type LocalStoreOptions } from './local.js';
import type { ChangeRow, LeaseRow, Row, Tables } from './tables.js';

class MemoryTables implements Tables {
  readonly kind = 'memory';
  readonly #rows = new Map<string, Row>();
  readonly #log: ChangeRow[] = [];
  readonly #leases = new Map<number, LeaseRow>();
  #revision = 0;

  tx<T>(fn: () => T): T {
    // Snapshot so a throwing transaction (a failed guard) leaves nothing half-written.
    const rows = new Map(this.#rows);
    const logLength = this.#log.length;
    const leases = new Map(this.#leases);
    const revision = this.#revision;
    try {
      return fn();
    } catch (err) {
      this.#rows.clear();
      for (const [k, v] of rows) this.#rows.set(k, v);
      this.#log.length = logLength;
      this.#leases.clear();
      for (const [k, v] of leases) this.#leases.set(k, v);
      this.#revision = revision;
      throw err;
    }
  }

  get(key: string): Row | undefined {
    return this.#rows.get(key);
  }

  range(prefix: string): Row[] {
    return [...this.#rows.values()]
      .filter((r) => r.key.startsWith(prefix))
      .sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  set(row: Row): void {
    this.#rows.set(row.key, row);
  }

  del(key: string): void {
    this.#rows.delete(key);
  }

  revision(): number {
    return this.#revision;
  }

  setRevision(revision: number): void {
    this.#revision = revision;
  }

  log(change: ChangeRow): void {
    this.#log.push(change);
  }

  changes(after: number, prefix: string, limit: number): ChangeRow[] {
    const out: ChangeRow[] = [];
    for (const c of this.#log) {
      if (c.revision > after && c.key.startsWith(prefix)) out.push(c);
      if (out.length >= limit) break;
    }
    return out;
  }

  oldestLogged(): number {
    return this.#log[0]?.revision ?? this.#revision + 1;
  }

  compact(keepAfter: number): void {
    const drop = this.#log.findIndex((c) => c.revision > keepAfter);
    this.#log.splice(0, drop === -1 ? this.#log.length : drop);
  }

  leaseGet(id: number): LeaseRow | undefined {
    return this.#leases.get(id);
  }

  leasePut(lease: LeaseRow): void {
    this.#leases.set(lease.id, lease);
  }

  leaseDel(id: number): void {
    this.#leases.delete(id);
  }

  leases(): LeaseRow[] {
    return [...this.#leases.values()];
  }

  keysOfLease(id: number): string[] {
    return [...this.#rows.values()].filter((r) => r.lease === id).map((r) => r.key);
  }

  close(): void {}
}

/** An in-process store for unit tests: the same semantics as SQLite, nothing on disk. */
export function memoryStore(options: LocalStoreOptions = {}): LocalStore {
  return new LocalStore(new MemoryTables(), options);
}
