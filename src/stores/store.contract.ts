import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTealError } from '../core/errors.js';
import { distEntry } from '../testing/paths.js';
import type { Change, Store } from './store.js';

export interface StoreUnderTest {
  /** A fresh, empty store. */
  create(): Promise<Store>;
  /** Another handle on the data of the last store created (another client, or another process's view). */
  reopen?(): Promise<Store>;
  /** How a separate process opens the same store: given to dist/testing/lock-holder.js. */
  processConfig?(): Record<string, unknown>;
}

async function take<T>(iter: AsyncIterable<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iter) {
    out.push(item);
    if (out.length === n) break;
  }
  return out;
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<unknown> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isTealError(err) ? err.code : err).toBe(code);
  return err;
}

/** The behaviour every Store must have. Run from each implementation's test file. */
export function storeContract(name: string, impl: StoreUnderTest): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    const extra: Store[] = [];

    beforeEach(async () => {
      store = await impl.create();
    });

    afterEach(async () => {
      for (const s of extra.splice(0)) await s.close();
      await store.close();
    });

    it('returns undefined for a key never written', async () => {
      expect(await store.get('/nothing/here')).toBeUndefined();
    });

    it('stores JSON values and gives each write a higher revision', async () => {
      const r1 = await store.put('/services/web/live', 'blue');
      const r2 = await store.put('/services/web/slots/blue', { release: 3, instances: [{ port: 9001 }] });
      expect(r2).toBeGreaterThan(r1);
      const live = await store.get('/services/web/live');
      expect(live).toMatchObject({
        key: '/services/web/live',
        value: 'blue',
        revision: r1,
        createRevision: r1,
      });
      expect((await store.get('/services/web/slots/blue'))?.value).toEqual({
        release: 3,
        instances: [{ port: 9001 }],
      });
      const r3 = await store.put('/services/web/live', 'green');
      expect(await store.get('/services/web/live')).toMatchObject({
        value: 'green',
        revision: r3,
        createRevision: r1,
      });
      expect(await store.revision()).toBe(r3);
    });

    it('compare-and-swap: ifRevision 0 creates only when absent', async () => {
      await store.put('/a', 1, { ifRevision: 0 });
      await expectCode(store.put('/a', 2, { ifRevision: 0 }), 'TEAL_STORE_CONFLICT');
      expect((await store.get('/a'))?.value).toBe(1);
    });

    it('compare-and-swap: a stale revision is refused and the value kept', async () => {
      const r1 = await store.put('/live', 'blue');
      const r2 = await store.put('/live', 'green', { ifRevision: r1 });
      await expectCode(store.put('/live', 'blue', { ifRevision: r1 }), 'TEAL_STORE_CONFLICT');
      expect(await store.get('/live')).toMatchObject({ value: 'green', revision: r2 });
    });

    it('deletes, guarded by revision when asked', async () => {
      const r1 = await store.put('/x', 'v');
      await expectCode(store.delete('/x', { ifRevision: r1 + 100 }), 'TEAL_STORE_CONFLICT');
      expect(await store.delete('/x', { ifRevision: r1 })).toBe(true);
      expect(await store.get('/x')).toBeUndefined();
      expect(await store.delete('/x')).toBe(false);
    });

    it('lists a prefix in key order and nothing outside it', async () => {
      await store.put('/services/web/releases/2', { n: 2 });
      await store.put('/services/web/releases/1', { n: 1 });
      await store.put('/services/web2/releases/1', { n: 9 });
      await store.put('/services/api/releases/1', { n: 7 });
      const listed = await store.list('/services/web/');
      expect(listed.map((e) => e.key)).toEqual(['/services/web/releases/1', '/services/web/releases/2']);
      expect(listed.map((e) => e.value)).toEqual([{ n: 1 }, { n: 2 }]);
    });

    it('txn applies every op or none', async () => {
      const r1 = await store.put('/live', 'blue');
      await expectCode(
        store.txn([
          { op: 'put', key: '/slots/green', value: { state: 'live' } },
          { op: 'put', key: '/live', value: 'green', ifRevision: r1 - 1 },
        ]),
        'TEAL_STORE_CONFLICT',
      );
      expect(await store.get('/slots/green')).toBeUndefined();
      expect((await store.get('/live'))?.value).toBe('blue');

      const r2 = await store.txn([
        { op: 'put', key: '/slots/green', value: { state: 'live' } },
        { op: 'put', key: '/live', value: 'green', ifRevision: r1 },
        { op: 'delete', key: '/slots/blue' },
      ]);
      expect((await store.get('/live'))?.revision).toBe(r2);
      expect((await store.get('/slots/green'))?.revision).toBe(r2);
    });

    it('watch delivers puts and deletes under the prefix, in order', async () => {
      const ac = new AbortController();
      const seen = take(store.watch('/services/web/', { signal: ac.signal }), 3);
      await new Promise((r) => setTimeout(r, 20));
      await store.put('/services/web/live', 'blue');
      await store.put('/services/api/live', 'green');
      await store.put('/services/web/url', '127.0.0.1:9001');
      await store.delete('/services/web/live');
      const changes = await seen;
      ac.abort();
      expect(changes.map((c) => [c.type, c.key, c.value])).toEqual([
        ['put', '/services/web/live', 'blue'],
        ['put', '/services/web/url', '127.0.0.1:9001'],
        ['delete', '/services/web/live', undefined],
      ]);
      expect(changes[0]!.revision).toBeLessThan(changes[1]!.revision);
    });

    it('watch resumes after a revision without missing or repeating a change', async () => {
      const r1 = await store.put('/w/a', 1);
      await store.put('/w/b', 2);
      await store.put('/w/c', 3);
      const ac = new AbortController();
      const resumed = await take(store.watch('/w/', { signal: ac.signal, afterRevision: r1 }), 2);
      ac.abort();
      expect(resumed.map((c) => c.key)).toEqual(['/w/b', '/w/c']);
    });

    it('watch ends when its signal aborts', async () => {
      const ac = new AbortController();
      const got: Change[] = [];
      const done = (async () => {
        for await (const c of store.watch('/q/', { signal: ac.signal })) got.push(c);
      })();
      await new Promise((r) => setTimeout(r, 20));
      ac.abort();
      await done;
      expect(got).toEqual([]);
    });

    it('watch ends when its signal aborts while the watch is still starting', async () => {
      // Aborted in the same tick as the first read: before the watch has read the revision it starts
      // from (what a slow store or a loaded machine makes of any early abort).
      const ac = new AbortController();
      const first = store.watch('/q/', { signal: ac.signal })[Symbol.asyncIterator]().next();
      ac.abort();
      const ended = await Promise.race([
        first,
        new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), 3_000)),
      ]);
      expect(ended).toEqual({ done: true, value: undefined });
    });

    it('keys on a lease vanish when the lease is revoked, and watchers see it', async () => {
      const lease = await store.grant(5_000);
      await store.put('/ephemeral', 'here', { lease: lease.id });
      expect((await store.get('/ephemeral'))?.lease).toBe(lease.id);
      const ac = new AbortController();
      const seen = take(store.watch('/ephemeral', { signal: ac.signal }), 1);
      await new Promise((r) => setTimeout(r, 20));
      await lease.revoke();
      expect((await seen)[0]).toMatchObject({ type: 'delete', key: '/ephemeral' });
      ac.abort();
      expect(await store.get('/ephemeral')).toBeUndefined();
      expect(lease.lost.aborted).toBe(true);
    });

    it('a lease stays alive while its holder renews it', async () => {
      const lease = await store.grant(300);
      await store.put('/kept', 1, { lease: lease.id });
      await new Promise((r) => setTimeout(r, 900));
      expect((await store.get('/kept'))?.value).toBe(1);
      expect(lease.lost.aborted).toBe(false);
      await lease.revoke();
    });

    it('refuses a held lock at once, naming the holder', async () => {
      const lock = await store.lock('web', {
        ttlMs: 5_000,
        holder: { description: 'deployment #1 (web v1)' },
      });
      const err = await expectCode(store.lock('web', { ttlMs: 5_000, holder: 'other' }), 'TEAL_LOCKED');
      expect((err as Error).message).toContain('deployment #1 (web v1)');
      expect(await store.lockHolder('web')).toEqual({ description: 'deployment #1 (web v1)' });
      await lock.release();
      expect(await store.lockHolder('web')).toBeUndefined();
    });

    it('a waiter gets the lock when the holder releases it', async () => {
      const first = await store.lock('api', { ttlMs: 5_000, holder: 'first' });
      const ac = new AbortController();
      const order: string[] = [];
      const second = store.lock('api', { ttlMs: 5_000, holder: 'second', wait: ac.signal }).then((l) => {
        order.push('second');
        return l;
      });
      await new Promise((r) => setTimeout(r, 100));
      order.push('release');
      await first.release();
      const lock = await second;
      expect(order).toEqual(['release', 'second']);
      expect(await store.lockHolder('api')).toBe('second');
      await lock.release();
    });

    it('a waiter gives up with TEAL_LOCK_TIMEOUT when its wait ends', async () => {
      const first = await store.lock('db', { ttlMs: 5_000, holder: 'first' });
      await expectCode(
        store.lock('db', { ttlMs: 5_000, holder: 'second', wait: AbortSignal.timeout(150) }),
        'TEAL_LOCK_TIMEOUT',
      );
      await first.release();
    });

    it('locks of different names are independent', async () => {
      const a = await store.lock('web', { ttlMs: 5_000, holder: 'a' });
      const b = await store.lock('web2', { ttlMs: 5_000, holder: 'b' });
      await a.release();
      await b.release();
    });

    if (impl.reopen) {
      const reopen = impl.reopen;
      it('a second handle sees writes and waits on locks of the first', async () => {
        const other = await reopen();
        extra.push(other);
        await store.put('/shared', 'from-first');
        expect((await other.get('/shared'))?.value).toBe('from-first');
        const lock = await store.lock('web', { ttlMs: 5_000, holder: 'first' });
        await expectCode(other.lock('web', { ttlMs: 5_000, holder: 'second' }), 'TEAL_LOCKED');
        const waiting = other.lock('web', {
          ttlMs: 5_000,
          holder: 'second',
          wait: AbortSignal.timeout(10_000),
        });
        await lock.release();
        await (await waiting).release();
      });

      it('closing a handle releases the locks it held', async () => {
        const other = await reopen();
        await other.lock('web', { ttlMs: 60_000, holder: 'closing' });
        await other.close();
        const lock = await store.lock('web', { ttlMs: 5_000, holder: 'next' });
        await lock.release();
      });
    }

    if (impl.processConfig) {
      const config = impl.processConfig;
      it('a lock frees itself when the process holding it is killed', async () => {
        const child = spawn(
          process.execPath,
          [distEntry('testing/lock-holder.js'), JSON.stringify(config()), 'web', '3000'],
          {
            stdio: ['ignore', 'pipe', 'inherit'],
          },
        );
        const [line] = (await once(child.stdout!, 'data')) as [Buffer];
        expect(line.toString()).toContain('locked');
        await expectCode(store.lock('web', { ttlMs: 60_000, holder: 'parent' }), 'TEAL_LOCKED');
        child.kill('SIGKILL');
        await once(child, 'exit');
        // The holder's lease has a 3s TTL; a local store frees it sooner, as soon as it sees the pid gone.
        const lock = await store.lock('web', {
          ttlMs: 5_000,
          holder: 'parent',
          wait: AbortSignal.timeout(15_000),
        });
        expect(await store.lockHolder('web')).toBe('parent');
        await lock.release();
      });
    }
  });
}
