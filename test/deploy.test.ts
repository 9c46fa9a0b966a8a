import { afterEach, describe, expect, it } from 'vitest';
import type { DeploymentRecord } from '../src/core/records.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait, staleAfterSwitch } from './helpers.js';

let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
});

describe('blue-green deploys through the real daemon, data plane and app', () => {
  it('20 deploys in a row under keep-alive load: no failed request, and the new version from each switch on', async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService()}` });
    const first = await deployAndWait(daemon.client, 'hello', 'v0');
    expect(first.state).toBe('done');

    const load = backgroundLoad(`${daemon.info.proxy}/`, 32);
    const deployments: DeploymentRecord[] = [first];
    for (let i = 1; i <= 20; i++) {
      const d = await deployAndWait(daemon.client, 'hello', `v${i}`);
      expect(d.state, `deploy v${i}: ${d.error?.message}`).toBe('done');
      expect(d.targetSlot).toBe(i % 2 === 1 ? 'green' : 'blue');
      deployments.push(d);
    }
    await new Promise((r) => setTimeout(r, 300));
    const { report, samples } = await load.stop();

    expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
    expect(report.failed).toBe(0);
    expect(report.sent).toBeGreaterThan(1_000);
    expect(staleAfterSwitch(samples, deployments)).toEqual([]);
    // Every version was served at some point: each switch really happened under load.
    const served = new Set(samples.map((s) => s.version));
    for (let i = 1; i <= 20; i++) expect(served.has(`v${i}`), `v${i} never answered`).toBe(true);

    // The daemon's log: one JSON line as each deployment starts and ends, with its id.
    const lines = daemon
      .log()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; message?: string; deployment?: number; state?: string });
    const said = (what: string) => lines.filter((l) => (l.msg ?? l.message) === what);
    expect(said('deployment started').map((l) => l.deployment)).toEqual(deployments.map((d) => d.n));
    expect(said('deployment ended').map((l) => [l.deployment, l.state])).toEqual(
      deployments.map((d) => [d.n, 'done']),
    );

    const status = await daemon.cli(['status', 'hello', '--json']);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      service: 'hello',
      live: 'blue',
      slots: { blue: { version: 'v20', state: 'live' }, green: { version: 'v19', state: 'warm' } },
    });
  }, 240_000);
});
