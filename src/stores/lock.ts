import { TealError } from '../core/errors.js';
import type { Json, Lock, LockOptions, Store } from './store.js';

/** The key a named lock lives at, relative to the store's prefix: /locks/<name>. */
export function lockKey(name: string): string {
  return `/locks/${name}`;
}

/**
 * A lock is a key created only-if-absent under a fresh lease: it vanishes when the holder releases
 * it or the lease ends (holder crashed). Waiters watch the key and try again when it is deleted.
 * Shared by every Store, since it needs nothing beyond the Store interface.
 */
export async function acquireLock(store: Store, name: string, options: LockOptions): Promise<Lock> {
  const key = lockKey(name);
  for (;;) {
    const lease = await store.grant(options.ttlMs);
    try {
      await store.put(key, { holder: options.holder, since: new Date().toISOString() } as Json, {
        ifRevision: 0,
        lease: lease.id,
      });
      return {
        name,
        lease,
        release: () => lease.revoke(),
      };
    } catch (err) {
      await lease.revoke();
      if (!(err instanceof TealError) || err.code !== 'TEAL_STORE_CONFLICT') throw err;
    }
    const held = await store.get<{ holder: Json }>(key);
    if (!held) continue;
    if (!options.wait) {
      throw new TealError('TEAL_LOCKED', `${name} is locked by ${describeHolder(held.value.holder)}`, {
        lock: name,
        holder: held.value.holder,
      });
    }
    if (options.wait.aborted) throw timeout(name, held.value.holder);
    await untilDeleted(store, key, held.revision, options.wait);
    if (options.wait.aborted) throw timeout(name, held.value.holder);
  }
}

function timeout(name: string, holder: Json): TealError {
  return new TealError(
    'TEAL_LOCK_TIMEOUT',
    `gave up waiting for ${name}, still locked by ${describeHolder(holder)}`,
    {
      lock: name,
      holder,
    },
  );
}

export function describeHolder(holder: Json): string {
  if (
    holder &&
    typeof holder === 'object' &&
    !Array.isArray(holder) &&
    typeof holder.description === 'string'
  ) {
    return holder.description;
  }
  return JSON.stringify(holder);
}

async function untilDeleted(store: Store, key: string, revision: number, wait: AbortSignal): Promise<void> {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  wait.addEventListener('abort', onAbort, { once: true });
  try {
    // Watch from the revision we saw, so a delete between our read and the watch is not missed.
    for await (const change of store.watch(key, { signal: stop.signal, afterRevision: revision })) {
      if (change.key === key && change.type === 'delete') return;
    }
  } finally {
    wait.removeEventListener('abort', onAbort);
    stop.abort();
  }
}

export async function lockHolder(store: Store, name: string): Promise<Json | undefined> {
  return (await store.get<{ holder: Json }>(lockKey(name)))?.value.holder;
}
