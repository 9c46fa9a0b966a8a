import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ServiceStatus } from '../src/core/status.js';
import { statePaths } from '../src/daemon/files.js';
import { pidAlive } from '../src/proc.js';
import { dataPlaneInfo } from '../src/proxy/builtin/launcher.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait } from './helpers.js';

let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
});

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}\n${daemon?.log().slice(-3_000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const status = () => daemon!.client.request<ServiceStatus>('GET', '/v1/services/hello');

/** `teal status --json`, as a user reads it. */
async function statusJson(): Promise<ServiceStatus> {
  const out = await daemon!.cli(['status', 'hello', '--json']);
  expect(out.code, out.stderr).toBe(0);
  return JSON.parse(out.stdout) as ServiceStatus;
}

async function get(url: string): Promise<{ status: number; body: string } | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return { status: res.status, body: await res.text() };
  } catch {
    return undefined;
  }
}

describe('supervision of instances', () => {
  it('SIGKILL of the only live instance: it is restarted, the service serves again, the slot record and status say so', async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService()}` });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 8);
    await new Promise((r) => setTimeout(r, 300));
    const before = (await status()).slots.blue.instances[0]!;
    const killedAt = Date.now();
    process.kill(before.pid!, 'SIGKILL');
    const after = await until('a new instance in the live slot', async () => {
      const i = (await status()).slots.blue.instances[0];
      return i && i.id !== before.id && i.status === 'running' ? i : undefined;
    });
    // Served again through the data plane, after the kill.
    await until('a 2xx after the kill', async () =>
      load.samples.some((s) => s.start > killedAt + 50 && s.status === 200 && s.version === 'v1')
        ? true
        : undefined,
    );
    const { report } = await load.stop();
    expect(report.ok).toBeGreaterThan(0);
    const s = await statusJson();
    expect(s.live).toBe('blue');
    expect(s.slots.blue.state).toBe('live');
    expect(s.slots.blue.instances.map((i) => i.id)).toEqual([after.id]);
    expect(s.slots.blue.supervision).toMatchObject({
      restarts: 1,
      degraded: false,
      last: { instance: before.id, reason: 'exited', signal: 'SIGKILL' },
    });
    const text = await daemon.cli(['status', 'hello']);
    expect(text.stdout).toContain('blue: restarted 1 time(s)');
  }, 90_000);

  it('one of two instances SIGKILLed under keep-alive load: 0 failed requests, and the slot is back to 2/2', async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService({ instances: '2' })}` });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 16);
    await new Promise((r) => setTimeout(r, 500));
    const before = (await status()).slots.blue.instances;
    expect(before).toHaveLength(2);
    process.kill(before[0]!.pid!, 'SIGKILL');
    await until('the killed instance replaced', async () => {
      const now = (await status()).slots.blue.instances;
      return now.length === 2 &&
        !now.some((i) => i.id === before[0]!.id) &&
        now.every((i) => i.status === 'running')
        ? true
        : undefined;
    });
    // Traffic after the replacement reaches it too (the table was synced).
    await new Promise((r) => setTimeout(r, 1_000));
    const { report } = await load.stop();
    expect(report.failed, JSON.stringify(report.failures.slice(0, 3))).toBe(0);
    expect(report.ok).toBeGreaterThan(100);
    expect((await status()).slots.blue.instances.map((i) => i.id)).toContain(before[1]!.id);
  }, 90_000);

  it('a release that crashes soon after going live: restarted with backoff, then degraded with its exit code and last log lines', async () => {
    daemon = await startTestDaemon({
      services: `  hello:\n${helloService({
        command: JSON.stringify([process.execPath, 'crashy.js']),
        env: '{ APP_VERSION: "{{version}}", CRASH_AFTER_MS: "2500" }',
        restart: '{ initialBackoff: 100ms, maxBackoff: 20s, crashLoop: { restarts: 3, window: 60s } }',
      })}`,
    });
    writeFileSync(
      path.join(daemon.dir, 'crashy.js'),
      `const http = require('node:http');
http.createServer((req, res) => res.end('hello ' + process.env.APP_VERSION + '\\n'))
  .listen(Number(process.env.PORT), process.env.HOST, () => console.log('crashy listening'));
setTimeout(() => { console.log('crashing now: lost the database'); process.exit(3); }, Number(process.env.CRASH_AFTER_MS));
`,
      { mode: 0o644 },
    );
    writeFileSync(path.join(daemon.dir, 'package.json'), '{"type":"commonjs"}\n', { mode: 0o644 });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    const s = await until(
      'the slot to be degraded',
      async () => {
        const now = await statusJson();
        return now.slots.blue.supervision?.degraded ? now : undefined;
      },
      60_000,
    );
    expect(s.slots.blue.state).toBe('live');
    expect(s.slots.blue.supervision).toMatchObject({ degraded: true, last: { reason: 'exited', code: 3 } });
    expect(s.slots.blue.supervision!.restarts).toBeGreaterThanOrEqual(3);
    expect(s.slots.blue.supervision!.last!.log.join('\n')).toContain('crashing now: lost the database');
    const text = await daemon.cli(['status', 'hello']);
    expect(text.stdout).toContain('blue is degraded (crash loop)');
    expect(text.stdout).toContain('exit code 3');
    expect(text.stdout).toContain('crashing now: lost the database');
    // The event in the audit trail and the metric.
    const audit = await daemon.client.request<{ action: string; detail?: string }[]>(
      'GET',
      '/v1/services/hello/audit',
    );
    expect(audit.some((e) => e.action === 'slot.degraded')).toBe(true);
    const metrics = await (
      await fetch(`${daemon.info.api}/metrics`, { headers: { authorization: `Bearer ${daemon.token}` } })
    ).text();
    expect(metrics).toContain('teal_slot_degraded{service="hello",slot="blue",state="live"} 1');
    expect(metrics).toMatch(/teal_instance_restarts_total\{service="hello",slot="blue",state="live"\} [3-9]/);
  }, 120_000);

  it('liveness: an instance that stops answering (SIGSTOP) while its process runs is replaced', async () => {
    daemon = await startTestDaemon({
      services: `  hello:\n${helloService({
        health:
          '{ interval: 50ms, healthyThreshold: 2, deadline: 15s, liveness: { interval: 200ms, timeout: 300ms, failureThreshold: 3 } }',
        stopTimeout: '1s',
      })}`,
    });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    const before = (await status()).slots.blue.instances[0]!;
    process.kill(before.pid!, 'SIGSTOP');
    try {
      const after = await until('the frozen instance replaced', async () => {
        const i = (await status()).slots.blue.instances[0];
        return i && i.id !== before.id && i.status === 'running' ? i : undefined;
      });
      expect(after.pid).not.toBe(before.pid);
      await until('serving again', async () => {
        const r = await get(`${daemon!.info.proxy}/`);
        return r?.status === 200 ? r : undefined;
      });
      // The frozen one was ended, not left behind.
      await until('the frozen process gone', async () => (pidAlive(before.pid!) ? undefined : true), 10_000);
      expect((await statusJson()).slots.blue.supervision?.last).toMatchObject({
        reason: 'liveness',
        instance: before.id,
      });
    } finally {
      if (pidAlive(before.pid!)) process.kill(before.pid!, 'SIGCONT');
    }
  }, 90_000);
});

describe('start-up restore', () => {
  it('after a reboot (daemon, data plane and apps all SIGKILLed), teal up serves the live release before it says up, and restores the warm one', async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService({ keepWarm: '10m' })}` });
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    expect((await deployAndWait(daemon.client, 'hello', 'v2')).state).toBe('done');
    const before = await status();
    expect(before.live).toBe('green');
    expect(before.slots.blue.state).toBe('warm');
    const apps = [...before.slots.blue.instances, ...before.slots.green.instances].map((i) => i.pid!);
    const plane = await dataPlaneInfo(statePaths(daemon.paths.dir).proxySocket);
    // What a power cut does: everything at once, nothing told.
    await daemon.kill();
    process.kill(plane!.pid, 'SIGKILL');
    for (const pid of apps) process.kill(pid, 'SIGKILL');
    await until('everything gone', async () => ([plane!.pid, ...apps].some(pidAlive) ? undefined : true));
    const upLines = () =>
      daemon!
        .log()
        .split('\n')
        .filter((l) => l.includes('"teal is up"')).length;
    const upsBefore = upLines();

    await daemon.restart();
    // The API answers during the restore; the line that says "up" comes once the live release serves.
    await until('teal up to say it is up', async () => (upLines() > upsBefore ? true : undefined), 60_000);
    const first = await get(`${daemon.info.proxy}/`);
    expect(first?.status).toBe(200);
    expect(first?.body).toContain('hello v2');
    expect(daemon.log()).toContain('restoring hello: starting 2 instance(s)');

    const s = await statusJson();
    expect(s.live).toBe('green');
    expect(s.slots.green.state).toBe('live');
    expect(s.slots.blue.state).toBe('warm');
    for (const slot of [s.slots.green, s.slots.blue]) {
      expect(slot.instances).toHaveLength(1);
      expect(slot.instances[0]!.status).toBe('running');
      expect(apps).not.toContain(slot.instances[0]!.pid);
    }
    const text = await daemon.cli(['status', 'hello']);
    expect(text.stdout).toMatch(/green +live +v2 +\d+ +1\/1 up/);

    // The warm slot really is warm: the instant rollback flips to it, under load, with 0 failures.
    const load = backgroundLoad(`${daemon.info.proxy}/`, 16);
    await new Promise((r) => setTimeout(r, 300));
    const rollback = await daemon.cli(['rollback', 'hello']);
    expect(rollback.code, rollback.stderr + rollback.stdout).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    const { report, samples } = await load.stop();
    expect(report.failed, JSON.stringify(report.failures.slice(0, 3))).toBe(0);
    expect(samples.at(-1)?.version).toBe('v1');
  }, 150_000);
});
