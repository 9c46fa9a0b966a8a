import { readFileSync } from 'node:fs';
import {
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  type ICompare,
  type IDuplexStream,
  type IKeyValue,
  type ILeaseKeepAliveRequest,
  type ILeaseKeepAliveResponse,
  type IOptions,
  type IRequestOp,
  type ITxnResponse,
  type IWatchRequest,
  type IWatchResponse,
  isRecoverableError,
} from 'etcd3';
import { TealError } from '../core/errors.js';
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

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;
type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

interface HeldLease {
  id: number;
  ttlMs: number;
  renewedAt: number;
  timer: NodeJS.Timeout;
  lost: AbortController;
}

/**
 * etcd3's default fault handling retries a call three times and then opens a circuit breaker that
 * refuses every call for 5s, even after etcd is back. teal wants one bounded try per member instead
 * (so failover still works) and to work again the moment etcd answers.
 */
function tryEachMember(members: number): Policy {
  return {
    execute: async (fn: (context: { signal: AbortSignal }) => unknown) => {
      const context = { signal: new AbortController().signal };
      for (let attempt = 1; ; attempt++) {
        try {
          return await fn(context);
        } catch (err) {
          if (attempt >= members || !(err instanceof Error) || !isRecoverableError(err)) throw err;
        }
      }
    },
  } as unknown as Policy;
}

const passThrough = tryEachMember(1);

class Timeout extends Error {
  constructor(ms: number, detail?: string) {
    super(`no answer within ${ms}ms${detail ? `; last error: ${detail}` : ''}`);
  }
}

export class EtcdStore implements Store {
  readonly kind = 'etcd';
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #where: string;
  readonly #timeoutMs: number;
  readonly #held = new Map<number, HeldLease>();
  readonly #watches = new Set<AbortController>();
  #keepAlive: KeepAliveStream | undefined;
  #opening = false;
  #closed = false;

  constructor(config: EtcdStoreConfig) {
    this.#prefix = config.prefix ?? '/teal';
    this.#where = `etcd at ${config.endpoints.join(', ')}`;
    this.#timeoutMs = config.callTimeoutMs ?? 5_000;
    const options: IOptions = {
      hosts: config.endpoints,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + this.#timeoutMs }),
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

  #failure(what: string, err: unknown): TealError {
    if (err instanceof TealError) return err;
    const detail = message(err).replace(/\. Resolution note:.*$/s, '');
    if (
      err instanceof GRPCUnavailableError ||
      err instanceof GRPCDeadlineExceededError ||
      err instanceof Timeout
    ) {
      return new TealError('TEAL_STORE_FAILED', `${this.#where} is unreachable (${detail})`, undefined, {
        cause: err,
      });
    }
    return new TealError('TEAL_STORE_FAILED', `${this.#where} failed to ${what}: ${detail}`, undefined, {
      cause: err,
    });
  }

  #check(): void {
    if (this.#closed) throw new TealError('TEAL_STORE_FAILED', 'the etcd store is closed');
  }

  /** One call to etcd, answered or failed within the call timeout. */
  async #call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    this.#check();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Timeout(this.#timeoutMs)), this.#timeoutMs);
    });
    try {
      return await Promise.race([fn(), timeout]);
    } catch (err) {
      throw this.#failure(what, err);
    } finally {
      clearTimeout(timer);
    }
  }

  async get<T = Json>(key: string): Promise<Entry<T> | undefined> {
    const res = await this.#call(`read ${key}`, () => this.#client.kv.range({ key: this.#key(key) }));
    const kv = res.kvs[0];
    return kv ? this.#entry<T>(kv) : undefined;
  }

  async list<T = Json>(prefix: string): Promise<Entry<T>[]> {
    const key = this.#key(prefix);
    const res = await this.#call(`list ${prefix}`, () =>
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
    const res = await this.#call(what, () =>
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
    const res = await this.#call('read the revision', () =>
      this.#client.kv.range({ key: this.#key(''), count_only: true }),
    );
    return Number(res.header.revision);
  }

  /**
   * One gRPC watch stream per call, resumed by us rather than by etcd3's Watcher: that one resumes
   * from the header revision of the last response it saw, which can be past events it never
   * delivered (a created response during catch-up; a catch-up batch capped at 1000 revisions).
   * We resume after the last revision we delivered (or a progress notification vouched for), and
   * etcd never splits one revision's events across responses, so nothing is missed or repeated.
   */
  async *watch<T = Json>(prefix: string, options: WatchOptions): AsyncIterable<Change<T>> {
    const { signal } = options;
    // As a local store's: a watch on a closed store, like one the close interrupts, just ends.
    if (signal.aborted || this.#closed) return;
    let last = options.afterRevision ?? (await this.revision());
    const key = this.#key(prefix);
    const queue: Change<T>[] = [];
    const stop = new AbortController();
    let failure: TealError | undefined;
    let wake: (() => void) | undefined;
    let stream: WatchStream | undefined;
    let lastError = 'no answer';
    let retryMs = 100;
    let retry: NodeJS.Timeout | undefined;

    const notify = () => {
      wake?.();
      wake = undefined;
    };
    const fail = (err: TealError) => {
      failure ??= err;
      stop.abort();
    };
    // The first answer comes within the call timeout, as for any call; later outages are waited out.
    const firstAnswer = setTimeout(
      () => fail(this.#failure(`watch ${prefix}`, new Timeout(this.#timeoutMs, lastError))),
      this.#timeoutMs,
    );
    const drop = (s: WatchStream) => {
      if (stream === s) stream = undefined;
      s.end();
      s.cancel();
    };
    const reconnect = (s: WatchStream, err: unknown) => {
      if (stream !== s || stop.signal.aborted) return;
      lastError = message(err);
      drop(s);
      retry = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 1_000);
    };
    const onResponse = (s: WatchStream, res: IWatchResponse) => {
      if (stream !== s) return;
      if (res.canceled) {
        const compacted = Number(res.compact_revision);
        const why =
          compacted > 0
            ? `${this.#where} has compacted its history up to revision ${compacted}`
            : res.cancel_reason || 'etcd cancelled it';
        fail(
          new TealError(
            'TEAL_STORE_FAILED',
            `watch of ${prefix} cannot go on after revision ${last}: ${why}`,
          ),
        );
      } else if (res.created) {
        clearTimeout(firstAnswer);
        retryMs = 100;
      } else if (res.events.length === 0) {
        // A progress notification: etcd sends one only after every earlier event of this watch.
        last = Math.max(last, Number(res.header.revision));
      } else {
        try {
          queue.push(...this.#changes<T>(res, last));
        } catch (err) {
          fail(this.#failure(`watch ${prefix}`, err));
        }
        last = Math.max(last, ...res.events.map((e) => Number(e.kv.mod_revision)));
      }
      notify();
    };
    const connect = () => {
      if (stop.signal.aborted) return;
      this.#client.watchClient.watch().then(
        (s) => {
          s.on('data', (res) => onResponse(s, res));
          s.on('error', (err) => reconnect(s, err));
          s.on('end', () => reconnect(s, new Error('the watch stream ended')));
          stream = s;
          if (stop.signal.aborted) return drop(s);
          const create = { key, range_end: prefixEnd(key), start_revision: last + 1, progress_notify: true };
          s.write({ create_request: create });
        },
        (err: unknown) => {
          lastError = message(err);
          retry = setTimeout(connect, retryMs);
        },
      );
    };
    const onAbort = () => stop.abort();
    stop.signal.addEventListener('abort', () => {
      clearTimeout(firstAnswer);
      clearTimeout(retry);
      if (stream) drop(stream);
      notify();
    });
    signal.addEventListener('abort', onAbort, { once: true });
    this.#watches.add(stop);

    try {
      connect();
      for (;;) {
        const change = queue.shift();
        if (change) {
          yield change;
          if (signal.aborted) return;
        } else if (failure) {
          throw failure;
        } else if (stop.signal.aborted) {
          return;
        } else {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.#watches.delete(stop);
      stop.abort();
    }
  }

  /** The changes of one watch response after revision `last`, keys made relative again. */
  #changes<T>(res: IWatchResponse, last: number): Change<T>[] {
    return res.events
      .filter((event) => Number(event.kv.mod_revision) > last)
      .map((event) => ({
        type: event.type === 'Delete' ? 'delete' : 'put',
        key: this.#relative(event.kv.key),
        value: event.type === 'Delete' ? undefined : this.#parse<T>(event.kv),
        revision: Number(event.kv.mod_revision),
      }));
  }

  async grant(ttlMs: number): Promise<Lease> {
    // etcd counts TTLs in whole seconds (and may raise one to its minimum, 2s by default). Our ids
    // stay below 2^53, as local.ts's do, so they survive being a JS number; etcd's own are 64-bit.
    const ttl = Math.max(1, Math.ceil(ttlMs / 1000));
    const id = 1 + Math.floor(Math.random() * (Number.MAX_SAFE_INTEGER - 1));
    const res = await this.#call('grant a lease', () =>
      this.#client.leaseClient.leaseGrant({ ID: id, TTL: ttl }),
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

  async #revoke(held: HeldLease): Promise<void> {
    if (this.#closed) return;
    this.#forget(held);
    try {
      await this.#call(`revoke lease ${held.id}`, () =>
        this.#client.leaseClient.leaseRevoke({ ID: held.id }).catch((err: unknown) => {
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
        `${this.#where} has not renewed it for ${silentMs}ms, past its TTL of ${held.ttlMs}ms`,
      );
      return;
    }
    // A renewal already missed: the stream may be dead without having said so; start a fresh one.
    if (silentMs > held.ttlMs / 2 && this.#keepAlive) this.#dropKeepAlive(this.#keepAlive);
    if (this.#keepAlive) this.#keepAlive.write({ ID: held.id });
    else this.#openKeepAlive();
  }

  #openKeepAlive(): void {
    if (this.#opening || this.#closed) return;
    this.#opening = true;
    this.#client.leaseClient
      .leaseKeepAlive()
      .then(
        (stream) => {
          stream.on('data', (res) => this.#renewed(res));
          stream.on('error', () => this.#dropKeepAlive(stream));
          stream.on('end', () => this.#dropKeepAlive(stream));
          if (this.#closed) return this.#dropKeepAlive(stream);
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
    if (res.TTL === '0') this.#lose(held, `${this.#where} says it expired or was revoked`);
    else held.renewedAt = Date.now();
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
    await Promise.allSettled([...this.#held.values()].map((held) => this.#revoke(held)));
    this.#closed = true;
    for (const watch of this.#watches) watch.abort();
    if (this.#keepAlive) this.#dropKeepAlive(this.#keepAlive);
    this.#client.close();
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The first key after every key that starts with `prefix`: etcd's range_end for a prefix. */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
