import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { isTealError } from '../../core/errors.js';
import { freePort } from '../../runtimes/ports.js';
import { haveBinary } from '../../testing/binaries.js';
import { type HaproxyInstance, startHaproxyConfig } from '../../testing/haproxy.js';
import {
  poolFor,
  request,
  startUpstream,
  switchContract,
  type Upstream,
  webTable,
} from '../switch.contract.js';
import { type BaseConfigOptions, prepareStateDir, renderBaseConfig } from './base-config.js';
import { HaproxySwitch } from './switch.js';

const available = haveBinary('haproxy');

interface Setup {
  haproxy: HaproxyInstance;
  dir: string;
  stateDir: string;
  listen: string;
  url: string;
  previewUrl: string;
  /** Starts haproxy again on the same config and state dir (a restart, as after a reboot). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** A private haproxy on a free loopback port running teal's base config, with its own dir and socket. */
async function setUp(capacity: Partial<BaseConfigOptions> = {}): Promise<Setup> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-haproxy-'));
  const stateDir = path.join(dir, 'state');
  await prepareStateDir(stateDir);
  const port = await freePort('127.0.0.1');
  const listen = `127.0.0.1:${port}`;
  const previewListen = `127.0.0.1:${await freePort('127.0.0.1')}`;
  const start = () =>
    startHaproxyConfig(path.join(dir, 'haproxy'), (socket) =>
      renderBaseConfig({ listen, previewListen, socket, stateDir, lanes: 4, serversPerLane: 4, ...capacity }),
    );
  const s: Setup = {
    haproxy: await start(),
    dir,
    stateDir,
    listen,
    url: `http://${listen}`,
    previewUrl: `http://${previewListen}`,
    async restart() {
      await s.haproxy.stop();
      s.haproxy = await start();
    },
    async close() {
      await s.haproxy.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return s;
}

/** The error a call fails with; a call that succeeds fails the test. */
async function failure(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  if (outcome === undefined) throw new Error('expected the call to fail, and it succeeded');
  return outcome;
}

const switchOf = (s: Setup) => new HaproxySwitch({ socket: s.haproxy.socket, stateDir: s.stateDir });

describe.skipIf(!available)('haproxy', () => {
  switchContract(
    'haproxy',
    {
      create: async () => {
        const s = await setUp();
        return { sw: switchOf(s), url: s.url, previewUrl: s.previewUrl, close: () => s.close() };
      },
    },
    {
      report: (m) => console.log(`haproxy: ${m.failed} failed of ${m.sent} over ${m.switches} switches`),
    },
  );

  describe('HaproxySwitch', () => {
    let s: Setup | undefined;
    const upstreams: Upstream[] = [];
    const app = async (name: string) => {
      const u = await startUpstream(name);
      upstreams.push(u);
      return u;
    };

    afterEach(async () => {
      await s?.close();
      s = undefined;
      await Promise.all(upstreams.splice(0).map((u) => u.close()));
    });

    it('is unreachable, naming the socket, when no haproxy answers', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-haproxy-none-'));
      try {
        const socket = path.join(dir, 'admin.sock');
        const sw = new HaproxySwitch({ socket, stateDir: dir });
        const a = await app('A');
        for (const call of [() => sw.stats(), () => sw.apply(webTable(1, poolFor('web', 'blue', 1, [a])))]) {
          const err = await call().catch((e: unknown) => e);
          expect(isTealError(err, 'TEAL_PROXY_UNREACHABLE'), String(err)).toBe(true);
          expect((err as Error).message).toContain(socket);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("fails with haproxy's own answer and the command when haproxy refuses one", async () => {
      s = await setUp();
      const [a, b] = [await app('A'), await app('B')];
      // A server slot deleted behind teal's back: haproxy answers "No such server." to teal's command.
      expect(await s.haproxy.command('del server teal_lane_1/s2')).toMatch(/deleted/i);
      const sw = switchOf(s);
      const table = webTable(1, poolFor('web', 'blue', 1, [a]), poolFor('web', 'green', 2, [b]));
      const err = await failure(sw.apply(table));
      expect(isTealError(err, 'TEAL_PROXY_FAILED'), String(err)).toBe(true);
      expect(err.message).toBe('haproxy refused "set server teal_lane_1/s2 state maint": No such server.');
      expect(await sw.current()).toBeNull();
      expect((await request(`${s.url}/`)).status).toBe(503);

      // A switch given another state dir than the config names has no map to drive.
      const elsewhere = path.join(s.dir, 'elsewhere');
      const lost = await failure(
        new HaproxySwitch({ socket: s.haproxy.socket, stateDir: elsewhere }).apply(table),
      );
      expect(isTealError(lost, 'TEAL_PROXY_FAILED')).toBe(true);
      expect(lost.message).toContain(`has no map ${elsewhere}/routes.map`);

      // A switch told another prefix finds no lanes.
      const other = new HaproxySwitch({ socket: s.haproxy.socket, stateDir: s.stateDir, prefix: 'other' });
      const none = await failure(other.apply(table));
      expect(none.message).toContain('no other_lane_<n> backends');
    });

    it('reports a refused runtime command with the command and the answer', async () => {
      s = await setUp();
      const { RuntimeApi } = await import('./runtime-api.js');
      const api = new RuntimeApi(s.haproxy.socket);
      const err = await api.run('set server teal_lane_0/s99 state ready', 'empty').catch((e: unknown) => e);
      expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
      expect((err as Error).message).toBe(
        'haproxy refused "set server teal_lane_0/s99 state ready": No such server.',
      );
      expect((err as { details: unknown }).details).toMatchObject({
        command: 'set server teal_lane_0/s99 state ready',
        answer: 'No such server.',
      });
    });

    it('answers current() from the state dir for a new switch object, and null before any apply', async () => {
      s = await setUp();
      const a = await app('A');
      expect(await switchOf(s).current()).toBeNull();
      const table = webTable(5, poolFor('web', 'blue', 1, [a]));
      await switchOf(s).apply(table);
      const again = switchOf(s);
      expect(await again.current()).toEqual(table);
      expect((await again.stats()).revision).toBe(5);
    });

    it('refuses a table that does not fit the running config, says what to do, and keeps serving', async () => {
      s = await setUp({ lanes: 2, serversPerLane: 2 });
      const [a, b, c] = [await app('A'), await app('B'), await app('C')];
      const sw = switchOf(s);
      const table = webTable(1, poolFor('web', 'blue', 1, [a]), poolFor('web', 'green', 2, [b]));
      await sw.apply(table);

      // Too many endpoints for a lane.
      const wide = webTable(2, poolFor('web', 'green', 3, [a, b, c]));
      const err = await failure(sw.apply(wide));
      expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
      expect(err.message).toContain('pool web/green/r3 has 3 endpoints');
      expect(err.message).toContain('2 server slots');
      expect(err.message).toContain('reload haproxy');

      // A third pool while both lanes are in use by the live map.
      const third = {
        revision: 3,
        services: [
          ...table.services,
          { service: 'api', routes: [{ path: '/api' }], live: poolFor('api', 'blue', 1, [c]), preview: null },
        ],
      };
      const full = await failure(sw.apply(third));
      expect(isTealError(full, 'TEAL_PROXY_FAILED')).toBe(true);
      expect(full.message).toContain('only 0 of the running config');
      expect(full.message).toContain('Re-render the base config');

      expect(await sw.current()).toEqual(table);
      expect(await request(`${s.url}/`)).toMatchObject({ status: 200, body: 'A' });
      expect(await request(`${s.previewUrl}/`, { headers: { 'x-teal-slot': 'green' } })).toMatchObject({
        body: 'B',
      });
      expect((await request(`${s.url}/api`)).body).toBe('A');
    });

    it('reuses the lane of a pool that left the table, once it is not routed to', async () => {
      s = await setUp({ lanes: 2 });
      const [a, b, c] = [await app('A'), await app('B'), await app('C')];
      const sw = switchOf(s);
      await sw.apply(webTable(1, poolFor('web', 'blue', 1, [a]), poolFor('web', 'green', 2, [b])));
      await sw.apply(webTable(2, poolFor('web', 'green', 2, [b])));
      await sw.drain('web/blue/r1', { timeoutMs: 1000 });
      await sw.apply(webTable(3, poolFor('web', 'green', 2, [b]), poolFor('web', 'blue', 3, [c])));
      expect((await request(`${s.previewUrl}/`, { headers: { 'x-teal-slot': 'blue' } })).body).toBe('C');
      const stats = await sw.stats();
      expect(stats.pools.map((p) => p.pool).sort()).toEqual(['web/blue/r3', 'web/green/r2']);
      expect(stats.pools.find((p) => p.pool === 'web/blue/r3')).toMatchObject({ requests: 1 });
    });

    it('removes the preview header before the request reaches the app', async () => {
      s = await setUp();
      const seen: (string | undefined)[] = [];
      const http = await import('node:http');
      const server = http.createServer((req, res) => {
        seen.push(req.headers['x-teal-slot'] as string | undefined);
        res.end('ok');
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const port = (server.address() as { port: number }).port;
        const pool = { ...poolFor('web', 'green', 2, []), endpoints: [{ host: '127.0.0.1', port }] };
        await switchOf(s).apply(webTable(1, null, pool));
        expect(await request(`${s.previewUrl}/`, { headers: { 'x-teal-slot': 'Green' } })).toMatchObject({
          status: 200,
        });
        expect(seen).toEqual([undefined]);
        expect((await request(`${s.url}/`)).status).toBe(503);
      } finally {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      }
    });

    it('serves the last applied table after haproxy restarts, from the state dir', async () => {
      s = await setUp();
      const [a, b] = [await app('A'), await app('B')];
      const table = webTable(4, poolFor('web', 'green', 2, [b]), poolFor('web', 'blue', 1, [a]));
      const sw = switchOf(s);
      await sw.apply(table);
      expect(readFileSync(path.join(s.stateDir, 'routes.map'), 'utf8')).toContain('Lweb teal_lane_');
      await s.restart();
      expect(await request(`${s.url}/`)).toMatchObject({ status: 200, body: 'B' });
      expect((await request(`${s.previewUrl}/`, { headers: { 'x-teal-slot': 'blue' } })).body).toBe('A');
      expect(await sw.current()).toEqual(table);
      // Counters restarted with haproxy: the pools count from zero again.
      expect((await sw.stats()).pools.find((p) => p.pool === 'web/green/r2')).toMatchObject({ requests: 1 });
    });

    it('replaces a routes map larger than one runtime API buffer', async () => {
      s = await setUp();
      const [a, b] = [await app('A'), await app('B')];
      const routes = Array.from({ length: 900 }, (_, i) => ({
        path: `/route-${String(i).padStart(4, '0')}`,
      }));
      await switchOf(s).apply({
        revision: 1,
        services: [
          { service: 'web', routes: [{ path: '/' }], live: poolFor('web', 'blue', 1, [a]), preview: null },
          { service: 'many', routes, live: poolFor('many', 'blue', 1, [b]), preview: null },
        ],
      });
      expect(readFileSync(path.join(s.stateDir, 'routes.map'), 'utf8').length).toBeGreaterThan(16_000);
      expect((await request(`${s.url}/route-0000/x`)).body).toBe('B');
      expect((await request(`${s.url}/route-0899`)).body).toBe('B');
      expect((await request(`${s.url}/route-0900`)).body).toBe('A');
    });

    it('counts a request whose endpoint refuses connections as an upstream error', async () => {
      s = await setUp();
      const dead = await freePort('127.0.0.1');
      const pool = { ...poolFor('web', 'blue', 1, []), endpoints: [{ host: '127.0.0.1', port: dead }] };
      const sw = switchOf(s);
      await sw.apply(webTable(1, pool));
      expect((await request(`${s.url}/`)).status).toBe(503);
      const stats = (await sw.stats()).pools[0]!;
      expect(stats).toMatchObject({ pool: 'web/blue/r1', requests: 1, status: { '5xx': 1 } });
      expect(stats.upstreamErrors).toBeGreaterThan(0);
      expect(stats.latency.count).toBe(1);
    });

    it('switches in a few milliseconds', async () => {
      s = await setUp();
      const [a, b] = [await app('A'), await app('B')];
      const sw = switchOf(s);
      const pools = [poolFor('web', 'blue', 1, [a]), poolFor('web', 'green', 2, [b])];
      await sw.apply(webTable(1, pools[0]!, pools[1]!));
      const times: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        await sw.apply(webTable(2 + i, pools[(i + 1) % 2]!, pools[i % 2]!));
        times.push(performance.now() - t0);
      }
      times.sort((x, y) => x - y);
      console.log(
        `haproxy switch latency over 20 applies: p50 ${times[10]!.toFixed(1)} ms, max ${times[19]!.toFixed(1)} ms`,
      );
      expect((await request(`${s.url}/`)).body).toBe('A');
      expect(times[10]).toBeLessThan(250);
    });
  });
});
