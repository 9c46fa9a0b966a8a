import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeploymentRecord } from '../src/core/records.js';
import { request } from '../src/proxy/switch.contract.js';
import { freePort } from '../src/runtimes/ports.js';
import { haveBinary } from '../src/testing/binaries.js';
import { helloService, runCli, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { type HaproxyInstance, startHaproxyConfig } from '../src/testing/haproxy.js';
import { backgroundLoad, deployAndWait, staleAfterSwitch } from './helpers.js';

const available = haveBinary('haproxy');
if (!available && process.env.CI)
  throw new Error('haproxy is required under CI: run scripts/install-test-deps.sh');

let daemon: TestDaemon | undefined;
let haproxy: HaproxyInstance | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  await haproxy?.stop();
  daemon = undefined;
  haproxy = undefined;
});

describe.skipIf(!available)('blue-green deploys through haproxy', () => {
  it('haproxy started from `teal haproxy-config`; 10 deploys under keep-alive load: no failed or stale request', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-it-haproxy-'));
    const port = await freePort('127.0.0.1');
    const previewPort = await freePort('127.0.0.1');
    const proxy = `{ kind: haproxy, socket: hap/admin.sock, listen: "127.0.0.1:${port}", preview: { listen: "127.0.0.1:${previewPort}" } }`;
    // As a user would: render the base config from teal.yml, start haproxy with it, then teal up.
    writeFileSync(path.join(dir, 'teal.yml'), `proxy: ${proxy}\nservices:\n  hello:\n${helloService()}\n`);
    const rendered = await runCli(['haproxy-config', '-c', path.join(dir, 'teal.yml')]);
    expect(rendered.code, rendered.stderr).toBe(0);
    haproxy = await startHaproxyConfig(path.join(dir, 'hap'), (socket) => {
      expect(socket).toBe(path.join(dir, 'hap', 'admin.sock'));
      return rendered.stdout;
    });
    daemon = await startTestDaemon({ dir, proxy, services: `  hello:\n${helloService()}` });
    expect(daemon.info.proxy).toBe(`http://127.0.0.1:${port}`);
    expect(daemon.info.preview).toBe(`http://127.0.0.1:${previewPort}`);

    const first = await deployAndWait(daemon.client, 'hello', 'v0');
    expect(first.state, first.error?.message).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 32);
    const deployments: DeploymentRecord[] = [first];
    for (let i = 1; i <= 10; i++) {
      const d = await deployAndWait(daemon.client, 'hello', `v${i}`);
      expect(d.state, `deploy v${i}: ${d.error?.message}`).toBe('done');
      deployments.push(d);
    }
    await sleep(300);
    const { report, samples } = await load.stop();

    expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
    expect(report.failed).toBe(0);
    expect(report.sent).toBeGreaterThan(1_000);
    expect(staleAfterSwitch(samples, deployments).slice(0, 5)).toEqual([]);
    const served = new Set(samples.map((s) => s.version));
    for (let i = 1; i <= 10; i++) expect(served.has(`v${i}`), `v${i} never answered`).toBe(true);

    // Instant rollback through haproxy: the warm slot takes traffic again.
    const back = await daemon.cli(['rollback', 'hello', '--json']);
    expect(back.code, back.stderr).toBe(0);
    const status = await daemon.cli(['status', 'hello', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({
      live: 'green',
      slots: { green: { version: 'v9', state: 'live' }, blue: { version: 'v10', state: 'warm' } },
    });
    // The warm v10 is reachable on the preview frontend the rendered config binds, never publicly.
    const slot = { headers: { 'x-teal-slot': 'blue' } };
    expect((await request(`${daemon.info.proxy}/`, slot)).body).toBe('hello v9\n');
    expect((await request(`${daemon.info.preview}/`, slot)).body).toBe('hello v10\n');
  }, 180_000);

  it('haproxy-config refuses a teal.yml whose proxy is not haproxy', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-it-haproxy-'));
    writeFileSync(path.join(dir, 'teal.yml'), `services:\n  hello:\n${helloService()}\n`);
    const r = await runCli(['haproxy-config', '-c', path.join(dir, 'teal.yml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('proxy.kind: builtin; haproxy-config is for proxy.kind: haproxy');
  });
});
