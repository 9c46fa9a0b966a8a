import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Failpoint } from '../src/core/failpoints.js';
import type { DeploymentRecord } from '../src/core/records.js';
import type { ReleaseView } from '../src/core/rollback-targets.js';
import type { ServiceStatus, SlotView } from '../src/core/status.js';
import { pidAlive } from '../src/proc.js';
import { ProcessRuntime } from '../src/runtimes/process.js';
import { HELLO, helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait, staleAfterSwitch, waitEnded } from './helpers.js';

/**
 * Issue 14: a failed deploy keeps the rollback. The new release starts beside the warm one in the
 * slot it will take; the warm one is stopped only once the switch has moved traffic to the new one.
 * A deploy that fails (health, verification, a crash of the control plane) leaves the warm slot
 * exactly as it was, and `teal rollback` still flips to it without starting anything. Releases that
 * never went live are no rollback targets. Everything under keep-alive load: one failed request
 * fails the test.
 */

let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
});

/**
 * The example app, except that versions named bad-health* never pass /health (ready after 10
 * minutes) and bad-verify* answer with another version than the one deployed (health passes, the
 * verify step's body check fails). {{version}} is filled by teal in the command.
 */
function service(overrides: Record<string, string> = {}, markers?: string): string {
  // With `markers`, a file <markers>/fail-<version> makes that version fail health from then on:
  // a release that served once can fail when started again (a rollback that starts it).
  const marked = markers ? `[ -e ${markers}/fail-{{version}} ] && export START_DELAY_MS=600000; ` : '';
  const script = `${marked}case "{{version}}" in bad-health*) export START_DELAY_MS=600000;; bad-verify*) export APP_VERSION=broken;; esac; exec "$0" "$1"`;
  return `  hello:\n${helloService({
    command: JSON.stringify(['/bin/sh', '-c', script, process.execPath, HELLO]),
    health: '{ interval: 50ms, healthyThreshold: 2, deadline: 3s }',
    keepWarm: '10m',
    ...overrides,
  })}`;
}

async function status(d: TestDaemon): Promise<ServiceStatus> {
  return d.client.request<ServiceStatus>('GET', '/v1/services/hello');
}

function pids(slot: SlotView): number[] {
  return slot.instances.map((i) => i.pid!);
}

/** Waits until the deployment has written its first instance beside the warm slot. */
async function candidateStarted(d: TestDaemon): Promise<ServiceStatus> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const s = await status(d);
    if ((s.candidate?.instances.length ?? 0) > 0) return s;
    if (Date.now() > deadline) throw new Error(`no candidate instance appeared: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a failed deploy keeps the warm release, and rollback flips to it', () => {
  it.each([
    { bad: 'bad-health', code: 'TEAL_HEALTH_FAILED', step: 'health' },
    { bad: 'bad-verify', code: 'TEAL_VERIFY_FAILED', step: 'verify' },
  ])(
    'a deploy failing at $step leaves v1 warm with the same processes; rollback flips to it; the failed release is refused',
    async ({ bad, code, step }) => {
      daemon = await startTestDaemon({ services: service() });
      const v1 = await deployAndWait(daemon.client, 'hello', 'v1');
      const v2 = await deployAndWait(daemon.client, 'hello', 'v2');
      expect([v1.state, v2.state]).toEqual(['done', 'done']);
      const before = await status(daemon);
      expect(before.live).toBe('green');
      const warm = before.slots.blue;
      expect(warm).toMatchObject({ state: 'warm', version: 'v1', release: 1 });
      expect(warm.instances).toHaveLength(1);

      const load = backgroundLoad(`${daemon.info.proxy}/`, 16);
      const asked = await daemon.client.request<DeploymentRecord>('POST', '/v1/services/hello/deployments', {
        version: bad,
      });
      // While it starts: both sets run at once, the new one beside the warm one, not in its record.
      const during = await candidateStarted(daemon);
      expect(during.candidate).toMatchObject({ slot: 'blue', version: bad, deployment: asked.n });
      expect(during.slots.blue).toEqual(warm);
      const candidatePids = during.candidate!.instances.map((i) => i.pid!);
      expect([...pids(warm), ...candidatePids].every((pid) => pidAlive(pid))).toBe(true);

      const failed = await waitEnded(daemon.client, asked);
      expect(failed.state).toBe('failed');
      expect(failed.error?.code).toBe(code);
      expect(failed.events.some((e) => e.step === 'clear')).toBe(false);

      // The warm slot's record is exactly as it was (state, release, instances, warmUntil, since).
      const after = await status(daemon);
      expect(after.slots.blue).toEqual(warm);
      expect(after.candidate).toBeUndefined();
      expect(pids(after.slots.blue).every((pid) => pidAlive(pid))).toBe(true);
      expect(candidatePids.some((pid) => pidAlive(pid))).toBe(false);

      // The failed release is no rollback target: refused before anything is recorded, with why.
      const deploymentsBefore = (
        await daemon.client.request<unknown[]>('GET', '/v1/services/hello/deployments')
      ).length;
      const refused = await daemon.cli(['rollback', 'hello', '--to', String(failed.release), '--json']);
      expect(refused.code).toBe(1);
      const error = (JSON.parse(refused.stdout) as { error: { code: string; message: string } }).error;
      expect(error.code).toBe('TEAL_NEVER_LIVE');
      expect(error.message).toContain(
        `release ${failed.release} (${bad}) of hello never went live: its deployment #${failed.n} failed at ${step}`,
      );
      expect(error.message).toMatch(/roll back to a release that served: 1 \(v1\)$/);
      expect((await daemon.client.request<unknown[]>('GET', '/v1/services/hello/deployments')).length).toBe(
        deploymentsBefore,
      );
      const plain = await daemon.cli(['rollback', 'hello', '--to', String(failed.release)]);
      expect(plain.code).toBe(1);
      expect(plain.stderr).toContain('never went live');
      const releases = await daemon.client.request<ReleaseView[]>('GET', '/v1/services/hello/releases');
      expect(releases.map((r) => [r.n, r.wentLive, r.target])).toEqual([
        [failed.release, false, false],
        [2, true, false],
        [1, true, true],
      ]);
      const history = await daemon.cli(['history', 'hello']);
      expect(history.stdout).toContain('roll back to: 1 (v1, warm)');
      expect(history.stdout).toContain(`never went live: ${failed.release} (${bad})`);

      // The rollback is the instant flip to the warm v1: nothing started, the same processes serve.
      const rolled = await daemon.cli(['rollback', 'hello', '--json']);
      expect(rolled.code, rolled.stderr).toBe(0);
      const back = JSON.parse(rolled.stdout) as DeploymentRecord;
      expect(back).toMatchObject({ state: 'done', mode: 'flip', release: 1, targetSlot: 'blue' });
      expect(back.events.some((e) => e.step === 'start')).toBe(false);
      const flipped = await status(daemon);
      expect(flipped.live).toBe('blue');
      expect(flipped.slots.blue.instances.map((i) => [i.id, i.pid])).toEqual(
        warm.instances.map((i) => [i.id, i.pid]),
      );
      expect(flipped.slots.green).toMatchObject({ state: 'warm', version: 'v2' });

      // A good deploy now goes to green beside the warm v2, which goes only after the switch.
      const v2pids = pids(flipped.slots.green);
      const v3 = await deployAndWait(daemon.client, 'hello', 'v3');
      expect(v3.state, v3.error?.message).toBe('done');
      const steps = v3.events.map((e) => `${e.step}:${e.status}`);
      expect(steps.indexOf('stop:started')).toBeGreaterThan(steps.indexOf('switch:done'));
      const end = await status(daemon);
      expect(end.live).toBe('green');
      expect(end.slots.green).toMatchObject({ state: 'live', version: 'v3' });
      expect(end.slots.blue).toMatchObject({ state: 'warm', version: 'v1' });
      expect(v2pids.some((pid) => pidAlive(pid))).toBe(false);

      await new Promise((r) => setTimeout(r, 200));
      const { report, samples } = await load.stop();
      expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
      expect(report.sent).toBeGreaterThan(200);
      expect(samples.some((s) => s.version === bad || s.version === 'broken')).toBe(false);
      expect(staleAfterSwitch(samples, [back, v3])).toEqual([]);
    },
    90_000,
  );
});

describe('the control plane SIGKILLed while a release starts beside the warm one', () => {
  it.each<{ point: Failpoint; outcome: 'interrupted' | 'done' }>([
    { point: 'starting', outcome: 'interrupted' },
    { point: 'verifying', outcome: 'interrupted' },
    { point: 'after-store-switch', outcome: 'done' },
  ])(
    'at $point: recorded $outcome, the warm release intact unless switched past, no orphan',
    async ({ point, outcome }) => {
      daemon = await startTestDaemon({ services: service() });
      await deployAndWait(daemon.client, 'hello', 'v1');
      await deployAndWait(daemon.client, 'hello', 'v2');
      const warm = (await status(daemon)).slots.blue;
      const load = backgroundLoad(`${daemon.info.proxy}/`, 16);

      await daemon.stop();
      await daemon.restart({ env: { TEAL_FAILPOINT: point } });
      await daemon.client
        .request<DeploymentRecord>('POST', '/v1/services/hello/deployments', { version: 'v3' })
        .catch(() => undefined);
      expect(await daemon.exited()).toBe('SIGKILL');
      await daemon.restart();

      const after = await status(daemon);
      const v3 = await daemon.client.request<DeploymentRecord>(
        'GET',
        `/v1/services/hello/deployments/${after.lastDeployment!.n}`,
      );
      expect(v3.version).toBe('v3');
      expect(v3.state, v3.error?.message).toBe(outcome);
      expect(after.candidate).toBeUndefined();
      if (outcome === 'interrupted') {
        // The warm slot was never touched: same record, same processes; rollback flips to it.
        expect(after.live).toBe('green');
        expect(after.slots.blue).toEqual(warm);
      } else {
        // Switched: v3 took blue in the switch's transaction; the displaced v1 was stopped as a stray.
        expect(after.live).toBe('blue');
        expect(after.slots.blue).toMatchObject({ state: 'live', version: 'v3' });
        expect(after.slots.green).toMatchObject({ state: 'warm', version: 'v2' });
        expect(pids(warm).some((pid) => pidAlive(pid))).toBe(false);
      }
      // The runtime runs exactly what the slots refer to: the candidates were stopped as strays.
      const runtime = new ProcessRuntime({ stateDir: daemon.paths.dir });
      const listed = await runtime.list();
      await runtime.close();
      const referenced = [...after.slots.blue.instances, ...after.slots.green.instances].map((i) => i.id);
      expect(listed.map((i) => i.id).sort()).toEqual(referenced.sort());
      expect(listed.every((i) => i.status.state === 'running')).toBe(true);

      if (outcome === 'interrupted') {
        const rolled = await daemon.cli(['rollback', 'hello', '--json']);
        expect(rolled.code, rolled.stderr).toBe(0);
        expect(JSON.parse(rolled.stdout)).toMatchObject({ state: 'done', mode: 'flip', release: 1 });
      }
      const { report } = await load.stop();
      expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
      expect(report.sent).toBeGreaterThan(100);
    },
    60_000,
  );
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('fixed ports: the warm release is replaced, and the plan says so first', () => {
  it('--dry-run and the deployment both say the warm release is stopped to start the new one', async () => {
    const [blue, green] = [await freePort(), await freePort()];
    daemon = await startTestDaemon({ services: service({ ports: `{ blue: ${blue}, green: ${green} }` }) });
    await deployAndWait(daemon.client, 'hello', 'v1');
    await deployAndWait(daemon.client, 'hello', 'v2');
    expect((await status(daemon)).slots.blue).toMatchObject({ state: 'warm', version: 'v1' });
    const load = backgroundLoad(`${daemon.info.proxy}/`, 16);

    const said = `the blue slot's ports are fixed (${blue}): stop the warm release 1 (v1) to start v3; after a failure nothing is warm`;
    const dry = await daemon.cli(['deploy', 'hello', '--version', 'v3', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(said);
    expect(dry.stdout.indexOf(said)).toBeLessThan(dry.stdout.indexOf('start 1 instance(s)'));

    const v3 = await deployAndWait(daemon.client, 'hello', 'v3');
    expect(v3.state, v3.error?.message).toBe('done');
    const plan = v3.events.find((e) => e.step === 'plan')!;
    expect(plan.message.split('\n')[0]).toBe(said);
    expect(v3.events.find((e) => e.step === 'clear' && e.status === 'started')?.message).toBe(said);
    const end = await status(daemon);
    expect(end.slots.blue).toMatchObject({ state: 'live', version: 'v3' });
    expect(end.slots.blue.instances[0]!.port).toBe(blue);

    const { report } = await load.stop();
    expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
    expect(report.sent).toBeGreaterThan(100);
  }, 60_000);
});

describe('a rollback that starts a release keeps the warm one until it is proven', () => {
  it('rollback --to an older release that fails health leaves the warm release as it was; rollback flips to it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-it-'));
    chmodSync(dir, 0o755);
    daemon = await startTestDaemon({ dir, services: service({}, dir) });
    for (const v of ['v1', 'v2', 'v3']) {
      const d = await deployAndWait(daemon.client, 'hello', v);
      expect(d.state, d.error?.message).toBe('done');
    }
    // v3 went to blue beside the warm v1, which went after the switch: live blue v3, warm green v2.
    const before = await status(daemon);
    expect(before.live).toBe('blue');
    const warm = before.slots.green;
    expect(warm).toMatchObject({ state: 'warm', version: 'v2', release: 2 });
    const load = backgroundLoad(`${daemon.info.proxy}/`, 16);

    writeFileSync(path.join(dir, 'fail-v1'), '');
    const cold = await daemon.cli(['rollback', 'hello', '--to', '1', '--json']);
    expect(cold.code).toBe(1);
    const failed = JSON.parse(cold.stdout) as DeploymentRecord;
    expect(failed).toMatchObject({ kind: 'rollback', mode: 'start', release: 1, state: 'failed' });
    expect(failed.error?.code).toBe('TEAL_HEALTH_FAILED');
    const after = await status(daemon);
    expect(after.slots.green).toEqual(warm);
    expect(after.candidate).toBeUndefined();
    expect(pids(warm).every((pid) => pidAlive(pid))).toBe(true);

    const rolled = await daemon.cli(['rollback', 'hello', '--json']);
    expect(rolled.code, rolled.stderr).toBe(0);
    const back = JSON.parse(rolled.stdout) as DeploymentRecord;
    expect(back).toMatchObject({ state: 'done', mode: 'flip', release: 2, targetSlot: 'green' });
    expect((await status(daemon)).slots.green.instances.map((i) => i.pid)).toEqual(pids(warm));

    await new Promise((r) => setTimeout(r, 200));
    const { report, samples } = await load.stop();
    expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
    expect(report.sent).toBeGreaterThan(100);
    expect(samples.some((s) => s.version === 'v1')).toBe(false);
    expect(staleAfterSwitch(samples, [back])).toEqual([]);
  }, 90_000);
});
