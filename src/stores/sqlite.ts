import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { LocalStore, type LocalStoreOptions } from './local.js';
import type { ChangeRow, LeaseRow, Row, Tables } from './tables.js';

const SCHEMA = `
  create table if not exists meta (name text primary key, value integer not null);
  insert or ignore into meta (name, value) values ('revision', 0);
  create table if not exists kv (
    key text primary key, value text not null,
    revision integer not null, create_revision integer not null, lease integer
  );
  create index if not exists kv_lease on kv (lease) where lease is not null;
  create table if not exists changes (
    seq integer primary key autoincrement,
    revision integer not null, type text not null, key text not null, value text
  );
  create index if not exists changes_revision on changes (revision);
  create table if not exists leases (
    id integer primary key, ttl_ms integer not null, expires_at integer not null,
    owner_pid integer not null, owner_host text not null
  );
`;

interface KvRow {
  key: string;
  value: string;
  revision: number;
  create_revision: number;
  lease: number | null;
}

interface LeaseSqlRow {
  id: number;
  ttl_ms: number;
  expires_at: number;
  owner_pid: number;
  owner_host: string;
}

const toRow = (r: KvRow): Row => ({
  key: r.key,
  value: r.value,
  revision: r.revision,
  createRevision: r.create_revision,
  lease: r.lease,
});

const toLease = (r: LeaseSqlRow): LeaseRow => ({
  id: r.id,
  ttlMs: r.ttl_ms,
  expiresAt: r.expires_at,
  ownerPid: r.owner_pid,
  ownerHost: r.owner_host,
});

class SqliteTables implements Tables {
  readonly kind = 'sqlite';
  readonly #db: Database.Database;
  readonly #q;

  constructor(file: string) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    // SQLite gives the -wal and -shm files the database file's mode, so 0600 here covers all three.
    if (file !== ':memory:') closeSync(openSync(file, 'a', 0o600));
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode survives a process crash; only an OS crash can lose the last commits.
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('busy_timeout = 5000');
    this.#db.exec(SCHEMA);
    const db = this.#db;
    this.#q = {
      get: db.prepare<[string], KvRow>('select * from kv where key = ?'),
      range: db.prepare<[number, string], KvRow>('select * from kv where substr(key, 1, ?) = ? order by key'),
      set: db.prepare(
        'insert or replace into kv (key, value, revision, create_revision, lease) values (@key, @value, @revision, @createRevision, @lease)',
      ),
      del: db.prepare<[string]>('delete from kv where key = ?'),
      revision: db.prepare<[], { value: number }>("select value from meta where name = 'revision'"),
      setRevision: db.prepare<[number]>("update meta set value = ? where name = 'revision'"),
      log: db.prepare(
        'insert into changes (revision, type, key, value) values (@revision, @type, @key, @value)',
      ),
      changes: db.prepare<[number, number, string, number], ChangeRow>(
        'select revision, type, key, value from changes where revision > ? and substr(key, 1, ?) = ? order by seq limit ?',
      ),
      oldest: db.prepare<[], { revision: number | null }>('select min(revision) as revision from changes'),
      compact: db.prepare<[number]>('delete from changes where revision <= ?'),
      leaseGet: db.prepare<[number], LeaseSqlRow>('select * from leases where id = ?'),
      leasePut: db.prepare(
        'insert or replace into leases (id, ttl_ms, expires_at, owner_pid, owner_host) values (@id, @ttlMs, @expiresAt, @ownerPid, @ownerHost)',
      ),
      leaseDel: db.prepare<[number]>('delete from leases where id = ?'),
      leases: db.prepare<[], LeaseSqlRow>('select * from leases'),
      keysOfLease: db.prepare<[number], { key: string }>('select key from kv where lease = ?'),
    };
  }

  tx<T>(fn: () => T): T {
    // IMMEDIATE takes the write lock up front, so two processes never interleave a read-check-write.
    return this.#db.transaction(fn).immediate();
  }

  get(key: string): Row | undefined {
    const r = this.#q.get.get(key);
    return r ? toRow(r) : undefined;
  }

  range(prefix: string): Row[] {
    return this.#q.range.all(prefix.length, prefix).map(toRow);
  }

  set(row: Row): void {
    this.#q.set.run(row);
  }

  del(key: string): void {
    this.#q.del.run(key);
  }

  revision(): number {
    return this.#q.revision.get()!.value;
  }

  setRevision(revision: number): void {
    this.#q.setRevision.run(revision);
  }

  log(change: ChangeRow): void {
    this.#q.log.run(change);
  }

  changes(after: number, prefix: string, limit: number): ChangeRow[] {
    return this.#q.changes.all(after, prefix.length, prefix, limit);
  }

  oldestLogged(): number {
    return this.#q.oldest.get()?.revision ?? this.revision() + 1;
  }

  compact(keepAfter: number): void {
    this.#q.compact.run(keepAfter);
  }

  leaseGet(id: number): LeaseRow | undefined {
    const r = this.#q.leaseGet.get(id);
    return r ? toLease(r) : undefined;
  }

  leasePut(lease: LeaseRow): void {
    this.#q.leasePut.run(lease);
  }

  leaseDel(id: number): void {
    this.#q.leaseDel.run(id);
  }

  leases(): LeaseRow[] {
    return this.#q.leases.all().map(toLease);
  }

  keysOfLease(id: number): string[] {
    return this.#q.keysOfLease.all(id).map((r) => r.key);
  }

  close(): void {
    this.#db.close();
  }
}

/** The embedded default store: one SQLite file (WAL) in the state dir. */
export function sqliteStore(file: string, options: LocalStoreOptions = {}): LocalStore {
  // Another process may write the same file (a second control plane, a CLI): look for its writes.
  return new LocalStore(new SqliteTables(file), { pollMs: 100, ...options });
}
