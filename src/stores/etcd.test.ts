import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTealError } from '../core/errors.js';
import { haveBinary } from '../testing/binaries.js';
import { type EtcdCluster, type EtcdInstance, startEtcd, startEtcdCluster } from '../testing/etcd.js';
import { etcdStore } from './etcd.js';
import { openStore } from './open.js';
import { storeContract } from './store.contract.js';
import type { Change } from './store.js';

const available = haveBinary('etcd', 'etcd-server');

let etcd: EtcdInstance;
let prefix = '';
const fresh = () => `/teal-test-${randomBytes(4).toString('hex')}`;

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (err: unknown) => err,
  );
}

/** Retries a call until etcd answers again (gRPC reconnects within its 1s backoff). */
async function eventually<T>(call: () => Promise<T>, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (Date.now() > deadline || !isTealError(err, 'TEAL_STORE_FAILED')) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function until(condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.runIf(available)('etcd store', () => {
  beforeAll(async () => {
    etcd = await startEtcd();
  }, 20_000);

  afterAll(async () => {
    await etcd?.close();
  });

  storeContract('etcd', {
    create: async () => {
      prefix = fresh();
      return etcdStore({ endpoints: [etcd.endpoint], prefix });
    },
    reopen: async () => etcdStore({ endpoints: [etcd.endpoint], prefix }),
    processConfig: () => ({ kind: 'etcd', endpoints: [etcd.endpoint], prefix }),
  });

  describe('on a real etcd', () => {
    it('keeps the keys of DESIGN.md under its prefix, as JSON, for confd and etcdctl', async () => {
      const at = fresh();
      const store = etcdStore({ endpoints: [etcd.endpoint], prefix: at });
      const raw = new Etcd3({ hosts: [etcd.endpoint] });
      try {
        const revision = await store.put('/services/web/live', 'blue');
        await store.put('/services/web/slots/blue', {
          release: 3,
          instances: [{ host: '127.0.0.1', port: 9001 }],
        });
        expect(await raw.get(`${at}/services/web/live`).string()).toBe('"blue"');
        expect(await raw.get(`${at}/services/web/slots/blue`).json()).toEqual({
          release: 3,
          instances: [{ host: '127.0.0.1', port: 9001 }],
        });
        expect(await raw.getAll().prefix(`${at}/`).keys()).toEqual([
          `${at}/services/web/live`,
          `${at}/services/web/slots/blue`,
        ]);
        const [kv] = (await raw.get(`${at}/services/web/live`).exec()).kvs;
        expect(Number(kv!.mod_revision)).toBe(revision);

        const lock = await store.lock('web', { ttlMs: 5_000, holder: 'deployment #1' });
        const [held] = (await raw.get(`${at}/locks/web`).exec()).kvs;
        expect(Number(held!.lease)).toBe(lock.lease.id);
        expect(JSON.parse(held!.value.toString())).toMatchObject({ holder: 'deployment #1' });
        await lock.release();
        expect(await raw.get(`${at}/locks/web`).string()).toBeNull();

        // Without a prefix, keys live under /teal, where DESIGN.md and a confd template look.
        const plain = etcdStore({ endpoints: [etcd.endpoint] });
        const svc = `svc-${randomBytes(3).toString('hex')}`;
        await plain.put(`/services/${svc}/url`, '127.0.0.1:9001');
        expect(await raw.get(`/teal/services/${svc}/url`).string()).toBe('"127.0.0.1:9001"');
        await plain.delete(`/services/${svc}/url`);
        await plain.close();
      } finally {
        raw.close();
        await store.close();
      }
    });

    it('a lease reports itself lost when etcd says it is gone', async () => {
      const store = etcdStore({ endpoints: [etcd.endpoint], prefix: fresh() });
      const raw = new Etcd3({ hosts: [etcd.endpoint] });
      try {
        const lease = await store.grant(2_000);
        await store.put('/mine', 1, { lease: lease.id });
        await raw.leaseClient.leaseRevoke({ ID: lease.id });
        await until(() => lease.lost.aborted, lease.ttlMs);
        expect(String(lease.lost.reason)).toMatch(/says it expired or was revoked/);
        expect(await store.get('/mine')).toBeUndefined();
        const err = await failure(store.put('/mine', 2, { lease: lease.id }));
        expect((err as Error).message).toBe(`lease ${lease.id} does not exist (expired or revoked)`);
      } finally {
        raw.close();
        await store.close();
      }
    });

    it('a watch from a compacted revision throws TEAL_STORE_FAILED', async () => {
      const store = etcdStore({ endpoints: [etcd.endpoint], prefix: fresh() });
      const raw = new Etcd3({ hosts: [etcd.endpoint] });
      try {
        const first = await store.put('/w/a', 1);
        const second = await store.put('/w/b', 2);
        await raw.kv.compact({ revision: second });
        const ac = new AbortController();
        const err = await failure(
          (async () => {
            for await (const _ of store.watch('/w/', { signal: ac.signal, afterRevision: first - 1 })) {
              // the start is compacted: nothing arrives
            }
          })(),
        );
        expect(isTealError(err, 'TEAL_STORE_FAILED')).toBe(true);
        expect((err as Error).message).toMatch(/compacted its history up to revision/);
        // After the compacted revision, a watch still starts.
        const ok = store.watch('/w/', { signal: ac.signal, afterRevision: second - 1 });
        for await (const change of ok) {
          expect(change).toMatchObject({ key: '/w/b', revision: second });
          break;
        }
      } finally {
        raw.close();
        await store.close();
      }
    });
  });

  describe('with authentication', () => {
    let secured: EtcdInstance;
    beforeAll(async () => {
      secured = await startEtcd();
      const raw = new Etcd3({ hosts: [secured.endpoint] });
      await raw.role('root').create();
      await raw.user('root').create('s3cret');
      await raw.user('root').addRole('root');
      await raw.auth.authEnable({});
      raw.close();
    }, 20_000);
    afterAll(async () => {
      await secured?.close();
    });

    it('opens with the password from the environment variable the config names', async () => {
      process.env.TEAL_TEST_ETCD_PASSWORD = 's3cret';
      const store = openStore(
        {
          kind: 'etcd',
          endpoints: [secured.endpoint],
          prefix: '/teal',
          auth: { username: 'root', passwordEnv: 'TEAL_TEST_ETCD_PASSWORD' },
        },
        secured.dir,
      );
      try {
        const revision = await store.put('/services/web/live', 'green');
        expect(await store.get('/services/web/live')).toMatchObject({ value: 'green', revision });
      } finally {
        await store.close();
        delete process.env.TEAL_TEST_ETCD_PASSWORD;
      }
    });

    it('a wrong password fails with TEAL_STORE_FAILED saying why', async () => {
      const store = etcdStore({
        endpoints: [secured.endpoint],
        auth: { username: 'root', password: 'nope' },
      });
      try {
        const err = await failure(store.get('/services/web/live'));
        expect(isTealError(err, 'TEAL_STORE_FAILED')).toBe(true);
        expect((err as Error).message).toMatch(/authentication failed/);
      } finally {
        await store.close();
      }
    });

    it('refuses a passwordEnv that is not set', () => {
      expect(() =>
        openStore(
          {
            kind: 'etcd',
            endpoints: [secured.endpoint],
            prefix: '/teal',
            auth: { username: 'root', passwordEnv: 'TEAL_TEST_UNSET_PASSWORD' },
          },
          secured.dir,
        ),
      ).toThrow(/TEAL_TEST_UNSET_PASSWORD, which is not set/);
    });
  });

  describe('when etcd goes away and comes back', () => {
    it('a watch resumes after the last change it delivered: nothing missed, nothing repeated', async () => {
      const at = fresh();
      const store = etcdStore({ endpoints: [etcd.endpoint], prefix: at, callTimeoutMs: 1_000 });
      const writer = etcdStore({ endpoints: [etcd.endpoint], prefix: at, callTimeoutMs: 1_000 });
      const ac = new AbortController();
      const seen: Change[] = [];
      const watching = (async () => {
        for await (const change of store.watch('/w/', { signal: ac.signal })) seen.push(change);
      })();
      try {
        await new Promise((r) => setTimeout(r, 50));
        await store.put('/w/1', 1);
        await store.txn([
          { op: 'put', key: '/w/2', value: 2 },
          { op: 'put', key: '/w/3', value: 3 },
        ]);
        await until(() => seen.length === 3);

        await etcd.kill();
        await new Promise((r) => setTimeout(r, 300));
        await etcd.restart();
        // Written the moment etcd is back, very likely before the watch has reconnected.
        await eventually(() => writer.put('/w/4', 4));
        await writer.put('/w/5', 5);
        await until(() => seen.length >= 5);
        await new Promise((r) => setTimeout(r, 300));
        expect(seen.map((c) => c.key)).toEqual(['/w/1', '/w/2', '/w/3', '/w/4', '/w/5']);
        expect(seen.map((c) => c.revision)).toEqual([...seen.map((c) => c.revision)].sort((a, b) => a - b));
      } finally {
        ac.abort();
        await watching;
        await writer.close();
        await store.close();
      }
    }, 20_000);

    it('a watch catching up on history resumes mid-way without skipping a change', async () => {
      const at = fresh();
      const store = etcdStore({ endpoints: [etcd.endpoint], prefix: at, callTimeoutMs: 1_000 });
      try {
        const start = await store.revision();
        // More than etcd's 1000-revision catch-up batch, so the history arrives in several responses.
        for (let i = 0; i < 2_500; i += 250) {
          await Promise.all(Array.from({ length: 250 }, (_, j) => store.put(`/h/${i + j}`, i + j)));
        }
        const end = await store.revision();
        const ac = new AbortController();
        const revisions: number[] = [];
        for await (const change of store.watch('/h/', { signal: ac.signal, afterRevision: start })) {
          revisions.push(change.revision);
          if (revisions.length === 1) {
            await etcd.kill();
            await etcd.restart();
          }
          if (change.revision === end) break;
        }
        expect(revisions).toEqual(Array.from({ length: end - start }, (_, i) => start + 1 + i));
      } finally {
        await store.close();
      }
    }, 20_000);

    it('calls fail fast with TEAL_STORE_FAILED while etcd is down, and the same store works when it is back', async () => {
      const store = etcdStore({ endpoints: [etcd.endpoint], prefix: fresh(), callTimeoutMs: 1_000 });
      try {
        const lease = await store.grant(1_000);
        await store.put('/kept', 'before');
        await etcd.kill();

        const calls: [string, () => Promise<unknown>][] = [
          ['get', () => store.get('/kept')],
          ['put', () => store.put('/kept', 'during')],
          ['txn', () => store.txn([{ op: 'delete', key: '/kept' }])],
          ['grant', () => store.grant(5_000)],
          ['lock', () => store.lock('web', { ttlMs: 5_000, holder: 'x' })],
          ['revision', () => store.revision()],
          [
            'watch',
            async () => {
              for await (const _ of store.watch('/', {
                signal: AbortSignal.timeout(5_000),
                afterRevision: 1,
              })) {
                // nothing can arrive while etcd is down
              }
            },
          ],
        ];
        for (const [name, call] of calls) {
          const started = Date.now();
          const err = await failure(call());
          expect(isTealError(err, 'TEAL_STORE_FAILED'), `${name}: ${String(err)}`).toBe(true);
          expect((err as Error).message).toContain(`etcd at ${etcd.endpoint} is unreachable (`);
          expect(Date.now() - started, name).toBeLessThan(1_500);
        }

        // Unrenewed past its TTL (etcd's minimum, 2s), the lease is reported lost.
        await until(() => lease.lost.aborted, lease.ttlMs + 2_000);
        expect(String(lease.lost.reason)).toMatch(/past its TTL/);

        await etcd.restart();
        await eventually(() => store.put('/kept', 'after'), 3_000);
        expect((await store.get('/kept'))?.value).toBe('after');
        const lock = await store.lock('web', { ttlMs: 5_000, holder: 'back' });
        await lock.release();
      } finally {
        await store.close();
      }
    }, 20_000);
  });

  describe('on a cluster of three with one member hung', () => {
    it('every call is answered by the others within the call budget (a hung member gets only its share)', async () => {
      const cluster = await startEtcdCluster(3);
      const prefix = fresh();
      const store = etcdStore({ endpoints: cluster.endpoints, prefix, callTimeoutMs: 5_000 });
      let hung: number | undefined;
      try {
        await store.put('/k', 'v');
        // A follower, so the others keep their leader: SIGSTOP makes it hold every call sent to it
        // without an answer or a reset, as a member does while it shuts down or stalls on its disk.
        const follower = await followerOf(cluster);
        hung = follower.pid();
        process.kill(hung!, 'SIGSTOP');
        for (let i = 0; i < 12; i++) {
          await store.put('/k', `v${i}`);
          expect((await store.get<string>('/k'))?.value).toBe(`v${i}`);
        }
      } finally {
        if (hung) process.kill(hung, 'SIGCONT');
        await store.close();
        await cluster.close();
      }
    }, 120_000);
  });
});

/** A member that is not the leader, from its own status. */
async function followerOf(cluster: EtcdCluster): Promise<EtcdCluster['members'][number]> {
  for (const m of cluster.members) {
    const client = new Etcd3({ hosts: m.endpoint });
    try {
      const status = await client.maintenance.status();
      if (status.header.member_id !== status.leader) return m;
    } finally {
      client.close();
    }
  }
  throw new Error('every member says it is the leader');
}
