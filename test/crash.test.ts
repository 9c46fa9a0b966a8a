import { afterEach, describe, expect, it } from 'vitest';
import type { DeploymentRecord, SlotRecord } from '../src/core/records.js';
import type { ServiceStatus } from '../src/core/status.js';
import { pidAlive } from '../src/proc.js';
import { ProcessRuntime } from '../src/runtimes/process.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait, staleAfterSwitch } from './helpers.js';

let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
});

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('the control plane dies in the middle of a deploy', () => {
  it('SIGKILL while the new release starts: the proxy keeps serving, the deployment is interrupted, its instances are gone, the next deploy works', async () => {
    // Every release takes 2 s to become ready, so there is time to kill the daemon mid-start.
    daemon = await startTestDaemon({
      services: `  hello:\n${helloService({ env: '{ APP_VERSION: "{{version}}", START_DELAY_MS: "2000" }' })}`,
    });
    const v1 = await deployAndWait(daemon.client, 'hello', 'v1');
    expect(v1.state).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 32);

    const v2 = await daemon.client.request<DeploymentRecord>('POST', '/v1/services/hello/deployments', {
      version: 'v2',
    });
    const starting = await until('v2 to have an instance running', async () => {
      const s = await daemon!.client.request<ServiceStatus>('GET', '/v1/services/hello');
      const green = s.slots.green;
      return green.state === 'starting' && green.instances.length > 0 ? green.instances[0] : undefined;
    });
    expect(pidAlive(starting.pid!)).toBe(true);
    await daemon.kill();
    // The half-started instance outlives the control plane (it is detached), until reconciled.
    expect(pidAlive(starting.pid!)).toBe(true);
    await new Promise((r) => setTimeout(r, 500));

    await daemon.restart();
    const record = await daemon.client.request<DeploymentRecord>(
      'GET',
      `/v1/services/hello/deployments/${v2.n}`,
    );
    expect(record.state).toBe('interrupted');
    expect(record.error?.message).toContain('the control plane stopped while this deployment was starting');
    expect(pidAlive(starting.pid!)).toBe(false);
    const status = await daemon.client.request<ServiceStatus>('GET', '/v1/services/hello');
    expect(status.live).toBe('blue');
    expect(status.slots.blue).toMatchObject({ version: 'v1', state: 'live' });
    expect(status.slots.green).toMatchObject({ state: 'empty', instances: [] } satisfies Partial<SlotRecord>);

    const v3 = await deployAndWait(daemon.client, 'hello', 'v3');
    expect(v3.state, v3.error?.message).toBe('done');
    await new Promise((r) => setTimeout(r, 200));
    const { report, samples } = await load.stop();
    expect(report.failures).toEqual([]);
    expect(report.sent).toBeGreaterThan(500);
    expect(staleAfterSwitch(samples, [v3])).toEqual([]);
    expect(samples.some((s) => s.version === 'v2')).toBe(false);
  }, 120_000);

  it('SIGTERM stops the control plane cleanly while the data plane and the app keep serving', async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService()}` });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 16);
    await new Promise((r) => setTimeout(r, 300));
    await daemon.stop();
    expect(daemon.child.exitCode).toBe(0);
    const during = load.samples.length;
    await new Promise((r) => setTimeout(r, 700));
    expect(load.samples.length).toBeGreaterThan(during + 50);
    // The CLI says the daemon is down, with the command to start it.
    const down = await daemon.cli(['status']);
    expect(down.code).toBe(3);
    expect(down.stderr).toMatch(
      /cannot reach the teal daemon at http:\/\/127\.0\.0\.1:\d+ .*start it with: teal up -c /,
    );
    await daemon.restart();
    expect((await deployAndWait(daemon.client, 'hello', 'v2')).state).toBe('done');
    const { report } = await load.stop();
    expect(report.failures).toEqual([]);

    // `teal down` then stops what outlives the control plane: the data plane and the instances.
    await daemon.stop();
    const stopped = await daemon.cli(['down']);
    expect(stopped.code, stopped.stderr).toBe(0);
    await expect(fetch(`${daemon.info.proxy}/`)).rejects.toThrow();
    const runtime = new ProcessRuntime({ stateDir: daemon.paths.dir });
    expect(await runtime.list()).toEqual([]);
    await runtime.close();
  }, 120_000);
});
