import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeploymentRecord } from '../src/core/records.js';
import { request } from '../src/proxy/switch.contract.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait, staleAfterSwitch, waitEnded } from './helpers.js';

let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
});

const deployment = (svc: string, n: number) =>
  daemon!.client.request<DeploymentRecord>('GET', `/v1/services/${svc}/deployments/${n}`);

async function waitForState(svc: string, n: number, state: string): Promise<DeploymentRecord> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const d = await deployment(svc, n);
    if (d.state === state) return d;
    if (Date.now() > deadline) throw new Error(`deployment #${n} is ${d.state}, not ${state}`);
    await sleep(50);
  }
}

describe('the manual gate', () => {
  it('a deploy waits verified on the preview route; promote switches with no failed request; abort drops the next one', async () => {
    daemon = await startTestDaemon({
      services: `  hello:\n${helloService({ promote: 'manual', promoteTimeout: '1m' })}`,
    });
    // The first release also waits at the gate.
    const first = await daemon.cli(['deploy', 'hello', '--version', 'v1']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain('teal promote hello');
    const promotedFirst = await daemon.cli(['promote', 'hello', '--json']);
    expect(promotedFirst.code, promotedFirst.stderr).toBe(0);
    expect(JSON.parse(promotedFirst.stdout)).toMatchObject({ state: 'done', version: 'v1' });

    const load = backgroundLoad(`${daemon.info.proxy}/`, 16);
    const waiting = await daemon.cli(['deploy', 'hello', '--version', 'v2', '--json']);
    expect(waiting.code, waiting.stderr).toBe(0);
    const v2 = JSON.parse(waiting.stdout) as DeploymentRecord;
    expect(v2.state).toBe('verified');
    // Users still get v1, whatever slot header they send; the preview listener (loopback) reaches v2.
    expect((await request(`${daemon.info.proxy}/`)).body).toBe('hello v1\n');
    for (const slot of ['green', 'GREEN', ' Green '])
      expect((await request(`${daemon.info.proxy}/`, { headers: { 'x-teal-slot': slot } })).body).toBe(
        'hello v1\n',
      );
    expect(daemon.info.preview).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await request(`${daemon.info.preview}/`, { headers: { 'x-teal-slot': 'green' } })).body).toBe(
      'hello v2\n',
    );
    await sleep(300);
    const promoted = await daemon.cli(['promote', 'hello', '--json']);
    expect(promoted.code, promoted.stderr).toBe(0);
    const done = JSON.parse(promoted.stdout) as DeploymentRecord;
    expect(done).toMatchObject({ state: 'done', version: 'v2', decidedBy: { action: 'promote' } });

    // v3 is aborted at the gate: its slot is stopped, v2 never stops serving.
    const v3 = await daemon.cli(['deploy', 'hello', '--version', 'v3', '--json']);
    expect(JSON.parse(v3.stdout)).toMatchObject({ state: 'verified' });
    const aborted = await daemon.cli(['abort', 'hello', '--json']);
    expect(aborted.code, aborted.stderr).toBe(0);
    const a = JSON.parse(aborted.stdout) as DeploymentRecord;
    expect(a).toMatchObject({
      state: 'failed',
      error: { code: 'TEAL_ABORTED' },
      decidedBy: { action: 'abort' },
    });
    expect(a.error?.message).toContain('aborted by');
    await sleep(200);
    const { report, samples } = await load.stop();

    expect(report.failed, JSON.stringify(report.failures.slice(0, 3))).toBe(0);
    expect(staleAfterSwitch(samples, [done])).toEqual([]);
    expect(samples.some((s) => s.version === 'v3')).toBe(false);
    const status = JSON.parse((await daemon.cli(['status', 'hello', '--json'])).stdout);
    expect(status).toMatchObject({ live: 'green', slots: { green: { version: 'v2', state: 'live' } } });
    // v3 started in blue beside the warm v1 and was stopped by the abort: v1 is still the rollback.
    expect(status.slots.blue).toMatchObject({ state: 'warm', version: 'v1' });

    // Nothing waits now: promote says so.
    const none = await daemon.cli(['promote', 'hello']);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no deployment of hello is waiting');
  }, 120_000);

  it('abort stops a deployment still starting; a gate nobody answers aborts at its timeout', async () => {
    daemon = await startTestDaemon({
      services: `  hello:\n${helloService({ env: '{ APP_VERSION: "{{version}}", START_DELAY_MS: "3000" }', promoteTimeout: '1s', promote: 'manual' })}`,
    });
    const first = await daemon.client.request<DeploymentRecord>('POST', '/v1/services/hello/deployments', {
      version: 'v1',
    });
    await waitForState('hello', first.n, 'starting');
    const aborted = await daemon.cli(['abort', 'hello', '--json']);
    expect(aborted.code, aborted.stderr).toBe(0);
    const a = JSON.parse(aborted.stdout) as DeploymentRecord;
    expect(a.state).toBe('failed');
    expect(a.error?.message).toMatch(/aborted by/);
    const status = JSON.parse((await daemon.cli(['status', 'hello', '--json'])).stdout);
    expect(status.slots.blue.state).toBe('empty');

    const second = await daemon.client.request<DeploymentRecord>('POST', '/v1/services/hello/deployments', {
      version: 'v2',
    });
    const ended = await waitEnded(daemon.client, second);
    expect(ended.state).toBe('failed');
    expect(ended.error?.message).toContain('nobody promoted v2 within 1.00s');
  }, 60_000);
});

describe('verification before the switch', () => {
  it('a load step through the preview listener catches a release that fails under traffic and passes a sound one; the live slot never notices', async () => {
    daemon = await startTestDaemon({
      services: `  hello:\n${helloService({
        env: '{ APP_VERSION: "{{version}}", ERROR_VERSIONS: "v2-broken" }',
        verify:
          '[{ http: { path: /, body: "hello {{version}}" } }, { load: { path: /, requests: 200, connections: 4, maxErrorRate: 0, maxP99: 2s, through: preview } }]',
      })}`,
    });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 16);
    const bad = await deployAndWait(daemon.client, 'hello', 'v2-broken');
    await sleep(200);
    // A sound release passes the same steps through the preview listener, under the same load.
    const good = await deployAndWait(daemon.client, 'hello', 'v3');
    await sleep(200);
    const { report, samples } = await load.stop();

    expect(good.state, good.error?.message).toBe('done');
    expect(bad.state).toBe('failed');
    expect(bad.error?.code).toBe('TEAL_VERIFY_FAILED');
    expect(bad.error?.message).toMatch(
      /verify 2\/2: load GET \/ .*200 requests on 4 connection\(s\), 50 failed \(25\.00%\).*error rate over 0%/,
    );
    expect(bad.switchedAt).toBeUndefined();
    expect(report.failed, JSON.stringify(report.failures.slice(0, 3))).toBe(0);
    expect(new Set(samples.map((x) => x.version))).toEqual(new Set(['v1', 'v3']));
    const status = JSON.parse((await daemon.cli(['status', 'hello', '--json'])).stdout);
    expect(status).toMatchObject({ live: 'green', slots: { green: { version: 'v3' } } });
  }, 60_000);
});

describe('post-switch analysis', () => {
  it('a release that fails under traffic is switched back to the old slot at once', async () => {
    daemon = await startTestDaemon({
      services: `  hello:\n${helloService({
        env: '{ APP_VERSION: "{{version}}", ERROR_VERSIONS: "v2-broken" }',
        analysis: '{ window: 3s, interval: 200ms, maxErrorRate: 0.05, minRequests: 40 }',
      })}`,
    });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 16);
    await sleep(300);
    const bad = await deployAndWait(daemon.client, 'hello', 'v2-broken');
    await sleep(300);
    const { report, samples } = await load.stop();

    expect(bad.state).toBe('rolled_back');
    expect(bad.error?.code).toBe('TEAL_ANALYSIS_FAILED');
    expect(bad.analysis?.detail).toMatch(/error rate over 5\.00%/);
    expect(bad.switchedBackAt).toBeGreaterThan(bad.switchedAt!);
    // The window's cost, reported: only v2-broken's own 500s, only between the switch and the switch back.
    const window = bad.switchedBackAt! - bad.switchedAt!;
    console.log(
      `analysis: switched back ${window} ms after the switch; ${report.failed} of ${report.sent} requests failed (all 500s from v2-broken)`,
    );
    expect(Object.keys(report.errors)).toEqual([]);
    expect(report.failures.every((f) => f.status === 500)).toBe(true);
    expect(samples.filter((s) => s.status === 500 && s.start > bad.switchedBackAt! + 50)).toEqual([]);
    expect(samples.at(-1)?.version).toBe('v1');
    const status = JSON.parse((await daemon.cli(['status', 'hello', '--json'])).stdout);
    expect(status).toMatchObject({
      live: 'blue',
      slots: { blue: { version: 'v1', state: 'live' }, green: { state: 'empty' } },
    });
    expect(bad.events.some((e) => e.step === 'analysis' && (e.data as { logs?: unknown })?.logs)).toBe(true);

    // A good release passes the same analysis.
    const good = await deployAndWait(daemon.client, 'hello', 'v3');
    expect(good.state, good.error?.message).toBe('done');
    expect(good.analysis?.ok).toBe(true);
  }, 120_000);
});

describe('hooks', () => {
  it('run with the deployment in their env; a failing preDeploy aborts before anything starts and onFailure runs', async () => {
    // Hooks run as nobody (teal runs as root here) in the service's folder: give them a place to write.
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-it-'));
    mkdirSync(path.join(dir, 'out'), { mode: 0o777 });
    chmodSync(path.join(dir, 'out'), 0o777);
    daemon = await startTestDaemon({
      dir,
      services: `  hello:\n${helloService({
        hooks: `{ preDeploy: 'test "$TEAL_VERSION" != v-refused || { echo "release window closed" >&2; exit 3; }', postSwitch: 'echo "$TEAL_VERSION $TEAL_SLOT $TEAL_URL $(id -un)" >> out/hooks.log', postDeploy: 'echo "done $TEAL_VERSION" >> out/hooks.log', onFailure: 'echo "failed $TEAL_VERSION" >> out/hooks.log' }`,
      })}`,
    });
    const log = path.join(daemon.dir, 'out', 'hooks.log');
    const v1 = await deployAndWait(daemon.client, 'hello', 'v1');
    expect(v1.state, v1.error?.message).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 8);
    const refused = await deployAndWait(daemon.client, 'hello', 'v-refused');
    await sleep(100);
    const { report } = await load.stop();
    expect(refused.state).toBe('failed');
    expect(refused.error?.code).toBe('TEAL_HOOK_FAILED');
    expect(refused.error?.message).toContain('exited with code 3');
    expect(refused.events.some((e) => e.step === 'start')).toBe(false);
    expect(report.failed).toBe(0);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines[0]).toMatch(
      new RegExp(`^v1 blue http://127\\.0\\.0\\.1:\\d+ ${process.getuid?.() === 0 ? 'nobody' : '\\S+'}$`),
    );
    expect(lines.slice(1)).toEqual(['done v1', 'failed v-refused']);
    expect(existsSync(log)).toBe(true);
  }, 60_000);
});
