import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../src/cli/client.js';
import type { DeploymentRecord } from '../src/core/records.js';
import { readDaemonInfo } from '../src/daemon/files.js';
import { pidAlive } from '../src/proc.js';
import { adminCall } from '../src/proxy/builtin/admin-client.js';
import { dataPlaneInfo } from '../src/proxy/builtin/launcher.js';
import type { DataPlaneStatus } from '../src/proxy/builtin/watchdog.js';
import type { RoutingTable } from '../src/proxy/switch.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait, type VersionSample } from './helpers.js';

let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
});

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const dataPlane = (d: TestDaemon) => d.client.request<DataPlaneStatus>('GET', '/v1/dataplane');

async function killPid(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  await until(`pid ${pid} to exit`, () => (pidAlive(pid) ? undefined : true), 5_000);
}

/** When the first 2xx through `url` came back, polling with fresh connections. */
async function servingAgain(url: string, timeoutMs: number): Promise<number> {
  return until(
    `${url} to answer 2xx`,
    async () => {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) }).catch(() => undefined);
      return res?.ok ? Date.now() : undefined;
    },
    timeoutMs,
  );
}

const tableOf = (d: TestDaemon) => adminCall<RoutingTable>(d.paths.proxySocket, 'GET', '/v1/table');
const livePools = (t: RoutingTable) =>
  t.services.flatMap((s) =>
    s.live ? [{ routes: s.routes, id: s.live.id, endpoints: s.live.endpoints }] : [],
  );

async function metricsOf(d: TestDaemon): Promise<string> {
  const res = await fetch(`${d.info.api}/metrics`, { headers: { authorization: `Bearer ${d.token}` } });
  return res.text();
}

const failedAfter = (samples: VersionSample[], t: number) =>
  samples.filter((s) => s.start > t && (s.status === null || s.status >= 300));

describe('the control plane restarts a dead builtin data plane', () => {
  it('SIGKILL under keep-alive load: a new data plane serves the same table on the same port within 2 s, status and metrics count the restart', async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService()}` });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    // The pid from the data plane itself (the admin socket), as teal up knows it.
    const before = (await dataPlaneInfo(daemon.paths.proxySocket))!;
    const table = await tableOf(daemon);
    expect(livePools(table)).toHaveLength(1);
    const load = backgroundLoad(`${daemon.info.proxy}/`, 16);
    await new Promise((r) => setTimeout(r, 300));

    const killedAt = Date.now();
    await killPid(before.pid);
    const back = await servingAgain(`${daemon.info.proxy}/`, 10_000);
    // Goal under 2 s; the assert keeps margin for a loaded machine (bench:dataplane-heal measures).
    expect(back - killedAt).toBeLessThan(5_000);
    // The same routes and pools: what the dead one served, from its saved table, then the store's.
    expect(livePools(await tableOf(daemon))).toEqual(livePools(table));

    const after = await until('status to show the restart', async () => {
      const s = await dataPlane(daemon!);
      return s.restarts === 1 && s.state === 'up' ? s : undefined;
    });
    expect(after.pid).not.toBe(before.pid);
    expect(pidAlive(after.pid!)).toBe(true);
    expect(after.lastRestart).toMatchObject({ previous: before.pid, pid: after.pid });
    await new Promise((r) => setTimeout(r, 500));

    // A deploy through the new data plane: no failure after it served again.
    const v2 = await deployAndWait(daemon.client, 'hello', 'v2');
    expect(v2.state, v2.error?.message).toBe('done');
    await new Promise((r) => setTimeout(r, 300));
    const { samples } = await load.stop();
    expect(failedAfter(samples, back)).toEqual([]);
    expect(samples.filter((s) => s.start > back && s.version === 'v1').length).toBeGreaterThan(20);
    expect(samples.filter((s) => s.start > back && s.version === 'v2').length).toBeGreaterThan(20);

    const status = await daemon.cli(['status']);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`data plane: up \\(pid ${after.pid}\\), restarted 1 time`));
    const metrics = await metricsOf(daemon);
    expect(metrics).toMatch(/^teal_dataplane_restarts_total 1$/m);
    expect(metrics).toMatch(/^teal_dataplane_running 1$/m);
    expect(daemon.log()).toContain('started the data plane again');
  }, 120_000);

  it('a data plane that cannot start again (its port taken meanwhile) is retried with backoff, status says why, and it serves once the port is free', async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService()}` });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    const before = (await dataPlaneInfo(daemon.paths.proxySocket))!;
    const port = Number(new URL(daemon.info.proxy).port);

    // Taken by another program between the death and the restart. The control plane is paused
    // meanwhile: on a loaded machine its watchdog (every 250 ms) could restart the data plane before
    // the squatter binds, and the squatter would find the port taken instead.
    process.kill(daemon.info.pid, 'SIGSTOP');
    const squatter = net.createServer((s) => s.destroy());
    try {
      await killPid(before.pid);
      await new Promise<void>((resolve, reject) => {
        squatter.once('error', reject);
        squatter.listen(port, '127.0.0.1', () => resolve());
      });
    } finally {
      process.kill(daemon.info.pid, 'SIGCONT');
    }
    try {
      const down = await until('status to say the port is taken', async () => {
        const s = await dataPlane(daemon!);
        return s.state === 'down' && s.lastError ? s : undefined;
      });
      expect(down.pid).toBeNull();
      expect(down.lastError).toMatchObject({ code: 'TEAL_PORT_IN_USE' });
      expect(down.lastError!.message).toContain(`127.0.0.1:${port}`);
      expect(down.lastError!.message).toContain('already in use');
      const status = await daemon.cli(['status']);
      expect(status.stdout).toMatch(/data plane: down since .*already in use.*next attempt/);
      const metrics = await metricsOf(daemon);
      expect(metrics).toMatch(/^teal_dataplane_running 0$/m);

      // Backoff, no busy loop: 250 ms doubling to 10 s makes about 5 attempts in 4 s.
      await new Promise((r) => setTimeout(r, 4_000));
      const attempts = (daemon.log().match(/the data plane could not be started again/g) ?? []).length;
      expect(attempts).toBeGreaterThanOrEqual(2);
      expect(attempts).toBeLessThanOrEqual(8);
    } finally {
      await new Promise((r) => squatter.close(() => r(undefined)));
    }
    await servingAgain(`${daemon.info.proxy}/`, 20_000);
    const up = await until('the data plane to be up again', async () => {
      const s = await dataPlane(daemon!);
      return s.state === 'up' ? s : undefined;
    });
    expect(up).toMatchObject({ restarts: 1, lastError: null });
    const body = await (await fetch(`${daemon.info.proxy}/`)).text();
    expect(body).toContain('hello v1');
  }, 120_000);
});

/** Every live `teal up` of this test's config, by /proc: the test for "never two control planes". */
function controlPlanes(d: TestDaemon): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (argv.includes('up') && argv.includes(d.configFile) && pidAlive(pid)) out.push(pid);
  }
  return out;
}

/** The control plane up again after a death: daemon.json names a live pid other than `old` and its API answers. */
async function respawned(d: TestDaemon, old: number, timeoutMs = 20_000): Promise<number> {
  return until(
    'a respawned control plane',
    async () => {
      const info = readDaemonInfo(d.paths);
      if (!info || info.pid === old || !pidAlive(info.pid)) return undefined;
      const res = await fetch(`${info.api}/v1/health`).catch(() => undefined);
      if (!res?.ok) return undefined;
      d.info = info;
      d.client = new ApiClient({
        base: info.api,
        token: d.token,
        actor: 'test',
        startHint: 'test',
      });
      return info.pid;
    },
    timeoutMs,
  );
}

describe('the data plane respawns a dead control plane', () => {
  it('SIGKILLed under load: started again by the data plane, the API answers, deploys work, 0 failed requests; SIGTERM stops it for good', async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService()}`, respawn: true });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 16);
    await new Promise((r) => setTimeout(r, 300));

    const first = daemon.info.pid;
    await daemon.kill();
    const second = await respawned(daemon, first);
    expect(controlPlanes(daemon)).toEqual([second]);
    const v2 = await deployAndWait(daemon.client, 'hello', 'v2');
    expect(v2.state, v2.error?.message).toBe('done');

    // Killed again: the respawned one is covered the same way.
    await killPid(second);
    const third = await respawned(daemon, second);
    const v3: DeploymentRecord = await deployAndWait(daemon.client, 'hello', 'v3');
    expect(v3.state, v3.error?.message).toBe('done');
    const status = await daemon.client.request<{ respawns: number }>('GET', '/v1/dataplane');
    expect(status).toMatchObject({ state: 'up' });

    // SIGTERM is a stop on purpose: the control plane tells the data plane, which respawns nothing.
    process.kill(third, 'SIGTERM');
    await until('the control plane to stop', () => (pidAlive(third) ? undefined : true), 20_000);
    await new Promise((r) => setTimeout(r, 2_000));
    expect(controlPlanes(daemon)).toEqual([]);
    const { report } = await load.stop();
    expect(report.failures).toEqual([]);
    expect(report.sent).toBeGreaterThan(300);

    const log = readFileSync(daemon.paths.daemonLog, 'utf8');
    expect(log).toMatch(/"msg":"teal is up".*"respawnedBy":\d+/);
  }, 180_000);

  it('SIGKILLed then `teal down` at once: down stops the respawn, the data plane and the instances for good', async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService()}`, respawn: true });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    await daemon.kill();
    const down = await daemon.cli(['down']);
    expect(down.code, down.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 2_000));
    expect(controlPlanes(daemon)).toEqual([]);
    await expect(fetch(`${daemon.info.proxy}/`)).rejects.toThrow();
  }, 120_000);

  it('a supervisor starting teal up while the data plane respawns it: exactly one control plane runs', async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService()}`, respawn: true });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 8);
    const first = daemon.info.pid;
    await daemon.kill();
    // As systemd's Restart= would, at the same moment as the data plane's respawn.
    const race = daemon.restart().catch((err: Error) => err);
    const winner = await respawned(daemon, first);
    await race;
    await new Promise((r) => setTimeout(r, 2_000));
    expect(controlPlanes(daemon)).toEqual([winner]);
    expect((await deployAndWait(daemon.client, 'hello', 'v2')).state).toBe('done');
    const { report } = await load.stop();
    expect(report.failures).toEqual([]);
  }, 120_000);
});
