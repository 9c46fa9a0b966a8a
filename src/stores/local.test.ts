import { describe, expect, it } from 'vitest';
import { memoryStore } from './memory.js';

describe('LocalStore leases', () => {
  it('a lease not renewed within its TTL ends, and its keys and locks vanish', async () => {
    let now = 1_000_000;
    const store = memoryStore({ now: () => now });
    const lease = await store.grant(1_000);
    await store.put('/ephemeral', 1, { lease: lease.id });
    await store.lock('web', { ttlMs: 1_000, holder: 'stalled' });
    now += 999;
    expect((await store.get('/ephemeral'))?.value).toBe(1);
    // The holder stalled (no renewal ran) past the TTL: the next operation ends the lease.
    now += 2;
    expect(await store.get('/ephemeral')).toBeUndefined();
    expect(lease.lost.aborted).toBe(true);
    expect(await store.lockHolder('web')).toBeUndefined();
    await store.close();
  });

  it('refuses to attach a key to a lease that has ended', async () => {
    const store = memoryStore();
    const lease = await store.grant(1_000);
    await lease.revoke();
    await expect(store.put('/k', 1, { lease: lease.id })).rejects.toMatchObject({
      code: 'TEAL_STORE_FAILED',
    });
    await store.close();
  });

  it('a watcher resuming from a compacted revision is told so, not silently skipped ahead', async () => {
    const store = memoryStore({ historySize: 10 });
    for (let i = 0; i < 1_000; i++) await store.put('/k', i);
    const ac = new AbortController();
    const iter = store.watch('/k', { signal: ac.signal, afterRevision: 1 })[Symbol.asyncIterator]();
    await expect(iter.next()).rejects.toMatchObject({ code: 'TEAL_STORE_FAILED' });
    ac.abort();
    await store.close();
  });
});
