import { readFileSync } from 'node:fs';
import {
  Etcd3,
  EtcdLeaseInvalidError,
  type ICompare,
  type IKeyValue,
  type IOptions,
  type IRequestOp,
  type ITxnResponse,
} from 'etcd3';
import { TealError } from '../core/errors.js';
import { call, message, passThrough, prefixEnd, tryEachMember } from './etcd-calls.js';
import { EtcdLeases, type LeaseContext } from './etcd-leases.js';
import { type WatchContext, watchPrefix } from './etcd-watch.js';
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

export interface EtcdStoreConfig {
  /** Client URLs of the cluster's members: ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  /** Prepended to every key: /services/web/live is stored at /teal/services/web/live. */
  prefix?: string;
  /** PEM files: the CA that signed etcd's certificate, and this client's certificate and key. */
  tls?: { ca?: string; cert?: string; key?: string };
  auth?: { username: string; password: string };
  /** Every call fails with TEAL_STORE_FAILED after this long without an answer (default 5000). */
  callTimeoutMs?: number;
}

/**
 * The Store on etcd v3, the original recipe's store: a confd or consul-template user reads the keys
 * of DESIGN.md under the prefix. Revisions are etcd's; compare-and-swap and txn are etcd
 * transactions; leases are etcd leases kept alive by this handle.
 *
 * @example
 *   const store = etcdStore({ endpoints: ['http://127.0.0.1:2379'] });
 *   await store.put('/services/web/live', 'blue'); // etcdctl get /teal/services/web/live -> "blue"
 */
export function etcdStore(config: EtcdStoreConfig): Store {
  return new EtcdStore(config);
}

export class EtcdStore implements Store {
  readonly kind = 'etcd';
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #where: string;
  readonly #timeoutMs: number;
  readonly #watches = new Set<AbortController>();
  /** What the calls, the watches and the leases need of this store. */
  readonly #context: WatchContext & LeaseContext;
  readonly #leases: EtcdLeases;
  #closed = false;

  constructor(config: EtcdStoreConfig) {
    this.#prefix = config.prefix ?? '/teal';
    this.#where = `etcd at ${config.endpoints.join(', ')}`;
    this.#timeoutMs = config.callTimeoutMs ?? 5_000;
    const options: IOptions = {
      hosts: config.endpoints,
      // Each member gets its share of the call's budget: a member that hangs (a leader shutting
      // down holds calls until its own request timeout, ~7 s) would otherwise take the whole budget
      // and leave none for the members that answer. etcd elects a new leader within about a second.
      defaultCallOptions: (context) =>
        context.isStream
          ? {}
          : { deadline: Date.now() + attemptBudget(this.#timeoutMs, config.endpoints.length) },
      faultHandling: { global: tryEachMember(config.endpoints.length), host: () => passThrough },
      grpcOptions: {
        // Reconnect within a second of etcd coming back (gRPC's default backoff grows to 2 minutes),
        // and notice a silently dead connection (no RST) in 15s.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
      },
    };
    if (config.auth) options.auth = { ...config.auth };
    if (config.tls) {
      const read = (what: string, file: string | undefined) => {
        if (file === undefined) return undefined;
        try {
          return readFileSync(file);
        } catch (err) {
          throw new TealError(
            'TEAL_STORE_FAILED',
            `cannot read the etcd TLS ${what} ${file}: ${message(err)}`,
          );
        }
      };
      // Without a CA file gRPC trusts the system's roots.
      options.credentials = {
        rootCertificate: read('CA', config.tls.ca),
        privateKey: read('key', config.tls.key),
        certChain: read('certificate', config.tls.cert),
      } as IOptions['credentials'];
    }
    this.#client = new Etcd3(options);
    this.#context = {
      where: this.#where,
      timeoutMs: this.#timeoutMs,
      isClosed: () => this.#closed,
      watchClient: this.#client.watchClient,
      leaseClient: this.#client.leaseClient,
      watches: this.#watches,
      key: (key) => this.#key(key),
      relative: (key) => this.#relative(key),
      parse: <T>(kv: IKeyValue) => this.#parse<T>(kv),
      revision: () => this.revision(),
    };
    this.#leases = new EtcdLeases(this.#context);
  }

  #key(key: string): Buffer {
    return Buffer.from(this.#prefix + key);
  }

  #relative(key: Buffer): string {
    return key.toString().slice(this.#prefix.length);
  }

  #parse<T>(kv: IKeyValue): T {
    try {
      return JSON.parse(kv.value.toString()) as T;
    } catch {
      throw new TealError('TEAL_STORE_FAILED', `${this.#where}: ${kv.key.toString()} does not hold JSON`);
    }
  }

  #entry<T>(kv: IKeyValue): Entry<T> {
    const entry: Entry<T> = {
      key: this.#relative(kv.key),
      value: this.#parse<T>(kv),
      revision: Number(kv.mod_revision),
      createRevision: Number(kv.create_revision),
    };
    if (kv.lease !== '0') entry.lease = Number(kv.lease);
    return entry;
  }

  async get<T = Json>(key: string): Promise<Entry<T> | undefined> {
    const res = await call(this.#context, `read ${key}`, () =>
      this.#client.kv.range({ key: this.#key(key) }),
    );
    const kv = res.kvs[0];
    return kv ? this.#entry<T>(kv) : undefined;
  }

  async list<T = Json>(prefix: string): Promise<Entry<T>[]> {
    const key = this.#key(prefix);
    const res = await call(this.#context, `list ${prefix}`, () =>
      this.#client.kv.range({ key, range_end: prefixEnd(key) }),
    );
    return res.kvs.map((kv) => this.#entry<T>(kv));
  }

  async put(key: string, value: Json, options: PutOptions = {}): Promise<number> {
    const res = await this.#commit(`write ${key}`, [{ op: 'put', key, value, ...options }]);
    return Number(res.header.revision);
  }

  async delete(key: string, options: { ifRevision?: number } = {}): Promise<boolean> {
    const res = await this.#commit(`delete ${key}`, [{ op: 'delete', key, ...options }]);
    return res.responses[0]?.response_delete_range.deleted !== '0';
  }

  async txn(ops: TxnOp[]): Promise<number> {
    const res = await this.#commit('commit a transaction', ops);
    return Number(res.header.revision);
  }

  /** Every op in one etcd transaction, guarded by mod_revision (0 = absent); on failure, reads the guarded keys to say which changed. */
  async #commit(what: string, ops: TxnOp[]): Promise<ITxnResponse> {
    const compare: ICompare[] = [];
    const success: IRequestOp[] = [];
    const guards: { key: string; expected: number }[] = [];
    for (const op of ops) {
      const key = this.#key(op.key);
      if (op.ifRevision !== undefined) {
        compare.push({ key, target: 'Mod', result: 'Equal', mod_revision: op.ifRevision });
        guards.push({ key: op.key, expected: op.ifRevision });
      }
      if (op.op === 'delete') {
        success.push({ request_delete_range: { key } });
        continue;
      }
      const text = JSON.stringify(op.value);
      if (text === undefined) throw new TealError('TEAL_STORE_FAILED', `cannot store undefined at ${op.key}`);
      success.push({ request_put: { key, value: Buffer.from(text), lease: op.lease ?? 0 } });
    }
    const failure: IRequestOp[] = guards.map((g) => ({ request_range: { key: this.#key(g.key) } }));
    const res = await call(this.#context, what, () =>
      this.#client.kv.txn({ compare, success, failure }).catch((err: unknown) => {
        if (err instanceof EtcdLeaseInvalidError || /lease not found/.test(message(err))) {
          const lease = ops.find((op) => op.op === 'put' && op.lease !== undefined);
          const id = lease?.op === 'put' ? lease.lease : undefined;
          throw new TealError('TEAL_STORE_FAILED', `lease ${id} does not exist (expired or revoked)`);
        }
        throw err;
      }),
    );
    if (res.succeeded) return res;
    for (const [i, guard] of guards.entries()) {
      const found = Number(res.responses[i]?.response_range.kvs[0]?.mod_revision ?? 0);
      if (found !== guard.expected) {
        throw new TealError(
          'TEAL_STORE_CONFLICT',
          `${guard.key} changed: expected revision ${guard.expected}, found ${found}`,
          { key: guard.key, expected: guard.expected, found },
        );
      }
    }
    throw new TealError(
      'TEAL_STORE_CONFLICT',
      `a guard of the transaction failed: ${JSON.stringify(guards)}`,
    );
  }

  async revision(): Promise<number> {
    const res = await call(this.#context, 'read the revision', () =>
      this.#client.kv.range({ key: this.#key(''), count_only: true }),
    );
    return Number(res.header.revision);
  }

  /** A resumable gRPC watch stream of its own: see `watchPrefix`. */
  watch<T = Json>(prefix: string, options: WatchOptions): AsyncIterable<Change<T>> {
    return watchPrefix<T>(this.#context, prefix, options);
  }

  grant(ttlMs: number): Promise<Lease> {
    return this.#leases.grant(ttlMs);
  }

  lock(name: string, options: LockOptions): Promise<Lock> {
    return acquireLock(this, name, options);
  }

  lockHolder(name: string): Promise<Json | undefined> {
    return lockHolder(this, name);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Leases held by this handle end with it. When etcd is unreachable they expire after their TTL.
    await this.#leases.revokeAll();
    this.#closed = true;
    for (const watch of this.#watches) watch.abort();
    this.#leases.close();
    this.#client.close();
  }
}

/** One member's share of a call's budget: the whole of it with one member, never under a second. */
export function attemptBudget(timeoutMs: number, members: number): number {
  return members <= 1 ? timeoutMs : Math.max(1_000, Math.floor(timeoutMs / members));
}
