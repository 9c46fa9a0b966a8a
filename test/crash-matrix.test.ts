import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import type { Failpoint } from '../src/core/failpoints.js';
import type { DeploymentRecord } from '../src/core/records.js';
import { isTerminal } from '../src/core/state.js';
import type { ServiceStatus } from '../src/core/status.js';
import type { RoutingTable } from '../src/proxy/switch.js';
import { ProcessRuntime } from '../src/runtimes/process.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait, staleAfterSwitch } from './helpers.js';

/**
 * The crash matrix: the control plane SIGKILLs itself at each step of a deploy (failpoints.ts),
 * under keep-alive load, and is restarted. The data plane is a separate process and keeps serving;
 * the restarted control plane must leave store, runtime and data plane agreeing.
 */

let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
});

interface Case {
  point: Failpoint;
  keepWarm: string;
  /** How the deployment killed at this point is recorded once the control plane is back. */
  outcome: 'interrupted' | 'done';
}

const CASES: Case[] = [
  { point: 'before-start', keepWarm: '1m', outcome: 'interrupted' },
  { point: 'starting', keepWarm: '1m', outcome: 'interrupted' },
  { point: 'verifying', keepWarm: '1m', outcome: 'interrupted' },
  // The store decided the switch: the restarted control plane applies it and completes it.
  { point: 'after-store-switch', keepWarm: '1m', outcome: 'done' },
  { point: 'after-store-switch', keepWarm: '0s', outcome: 'done' },
  { point: 'draining', keepWarm: '1m', outcome: 'done' },
  { point: 'draining', keepWarm: '0s', outcome: 'done' },
];

async function status(d: TestDaemon): Promise<ServiceStatus> {
  return d.client.request<ServiceStatus>('GET', '/v1/services/hello');
}

describe('the control plane SIGKILLed at each step of a deploy, then restarted', () => {
  it.each(CASES)(
    'at $point (keepWarm $keepWarm): recorded $outcome, traffic never stopped, no orphan',
    async ({ point, keepWarm, outcome }) => {
      daemon = await startTestDaemon({ services: `  hello:\n${helloService({ keepWarm })}` });
      const v1 = await deployAndWait(daemon.client, 'hello', 'v1');
      expect(v1.state, v1.error?.message).toBe('done');
      const load = backgroundLoad(`${daemon.info.proxy}/`, 16);

      await daemon.stop();
      await daemon.restart({ env: { TEAL_FAILPOINT: point } });
      // The daemon may die before it answers (the kill can beat the response).
      await daemon.client
        .request<DeploymentRecord>('POST', '/v1/services/hello/deployments', { version: 'v2' })
        .catch(() => undefined);
      expect(await daemon.exited()).toBe('SIGKILL');
      // Nobody runs the control plane for a moment; the data plane serves on its own.
      const before = load.samples.length;
      await new Promise((r) => setTimeout(r, 300));
      expect(load.samples.length).toBeGreaterThan(before + 20);

      // The restarted daemon answers once its reconciliation is over; its outcome is in the store.
      await daemon.restart();
      const after = await status(daemon);
      const last = after.lastDeployment!;
      expect(last.version).toBe('v2');
      expect(isTerminal(last.state)).toBe(true);
      const v2 = await daemon.client.request<DeploymentRecord>(
        'GET',
        `/v1/services/hello/deployments/${last.n}`,
      );
      expect(v2.state, v2.error?.message).toBe(outcome);

      // The store: the live slot and the others' states.
      const switched = outcome === 'done';
      const live = switched ? 'green' : 'blue';
      const old = switched ? 'blue' : 'green';
      expect(after.live).toBe(live);
      expect(after.slots[live]).toMatchObject({ state: 'live', version: switched ? 'v2' : 'v1' });
      const warm = switched && keepWarm !== '0s';
      expect(after.slots[old]).toMatchObject(warm ? { state: 'warm', version: 'v1' } : { state: 'empty' });
      // The data plane: its applied table routes to the store's live slot, and so do requests.
      const table = JSON.parse(readFileSync(daemon.paths.proxyState, 'utf8')) as RoutingTable;
      expect(table.services.find((s) => s.service === 'hello')?.live).toMatchObject({
        slot: live,
        version: switched ? 'v2' : 'v1',
      });
      for (let i = 0; i < 5; i++) {
        expect(await (await fetch(`${daemon.info.proxy}/`)).text()).toContain(
          `hello ${switched ? 'v2' : 'v1'}`,
        );
      }
      // The runtime: exactly the instances the live (and warm) slot refer to, all running.
      const runtime = new ProcessRuntime({ stateDir: daemon.paths.dir });
      const listed = await runtime.list();
      await runtime.close();
      const referenced = [...after.slots[live].instances, ...after.slots[old].instances].map((i) => i.id);
      expect(listed.map((i) => i.id).sort()).toEqual(referenced.sort());
      expect(listed.every((i) => i.status.state === 'running')).toBe(true);
      expect(referenced.length).toBe(warm ? 2 : 1);

      const v3 = await deployAndWait(daemon.client, 'hello', 'v3');
      expect(v3.state, v3.error?.message).toBe('done');
      const { report, samples } = await load.stop();
      expect(report.failures).toEqual([]);
      expect(report.sent).toBeGreaterThan(300);
      expect(staleAfterSwitch(samples, switched ? [v2, v3] : [v3])).toEqual([]);
      if (!switched) expect(samples.some((s) => s.version === 'v2')).toBe(false);
    },
    30_000,
  );
});
