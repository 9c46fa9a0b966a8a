import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceStatus } from '../src/core/status.js';
import { ProcessRuntime } from '../src/runtimes/process.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait } from './helpers.js';

/**
 * Bad input and faults, end to end through the CLI: each gives a clear error and the right exit
 * code, the live service keeps serving (a keep-alive load runs through the whole file), and no
 * instance is left behind.
 */
let daemon: TestDaemon;
let blocker: net.Server;
let load: ReturnType<typeof backgroundLoad>;

const node = JSON.stringify(process.execPath);

beforeAll(async () => {
  blocker = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => blocker.once('listening', r));
  const taken = (blocker.address() as net.AddressInfo).port;
  const svc = (name: string, overrides: Record<string, string> = {}) =>
    `  ${name}:\n${helloService({ routes: `[{ path: /${name} }]`, ...overrides })}`;
  daemon = await startTestDaemon({
    services: [
      svc('ok'),
      svc('exits', {
        command: `[${node}, -e, "console.error('boom: DATABASE_URL is not set'); process.exit(3)"]`,
      }),
      svc('sick', {
        env: '{ APP_VERSION: "{{version}}", START_DELAY_MS: "600000" }',
        health: '{ interval: 50ms, deadline: 1s }',
      }),
      svc('liar', { verify: '[{ http: { path: /, body: "goodbye" } }]' }),
      svc('ghost', { command: '[teal-no-such-program, serve]' }),
      svc('taken', { ports: `{ blue: ${taken}, green: ${taken} }` }),
      svc('slow', { env: '{ APP_VERSION: "{{version}}", START_DELAY_MS: "1500" }' }),
    ].join('\n'),
  });
  expect((await deployAndWait(daemon.client, 'ok', 'v1')).state).toBe('done');
  load = backgroundLoad(`${daemon.info.proxy}/ok`, 32);
}, 60_000);

afterAll(async () => {
  const { report } = await load.stop();
  blocker.close();
  await daemon.cleanup();
  // The live service never missed a request while the others failed around it.
  expect(report.failures).toEqual([]);
  expect(report.sent).toBeGreaterThan(500);
});

async function nothingLeft(service: string): Promise<void> {
  const status = JSON.parse((await daemon.cli(['status', service, '--json'])).stdout) as ServiceStatus;
  expect(status.live).toBeNull();
  expect(status.slots.blue.instances).toEqual([]);
  expect(status.slots.green.instances).toEqual([]);
  const runtime = new ProcessRuntime({ stateDir: daemon.paths.dir });
  expect((await runtime.list({ service })).map((i) => i.id)).toEqual([]);
  await runtime.close();
}

describe('faults, end to end', () => {
  it('an app that exits at once: exit 1 with its exit code and the last lines of its log', async () => {
    const r = await daemon.cli(['deploy', 'exits', '--version', 'v1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/exited with code 3 while starting/);
    expect(r.stderr).toContain('boom: DATABASE_URL is not set');
    await nothingLeft('exits');
  });

  it('an app that never becomes healthy: exit 1 naming the last probe', async () => {
    const r = await daemon.cli(['deploy', 'sick', '--version', 'v1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /did not become healthy within 1\.00s; last probe: GET http:\/\/127\.0\.0\.1:\d+\/health: HTTP 503/,
    );
    await nothingLeft('sick');
  });

  it('a verify step that fails: exit 1 saying what was expected', async () => {
    const r = await daemon.cli(['deploy', 'liar', '--version', 'v1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the body does not contain "goodbye"');
    await nothingLeft('liar');
  });

  it('a command that does not exist: exit 1 naming the program', async () => {
    const r = await daemon.cli(['deploy', 'ghost', '--version', 'v1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/program "teal-no-such-program" not found/);
    await nothingLeft('ghost');
  });

  it('a port already taken: exit 1 naming the port and where it was configured', async () => {
    const r = await daemon.cli(['deploy', 'taken', '--version', 'v1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/port \d+ \(services\.taken\.ports\.blue\) is already in use/);
    await nothingLeft('taken');
  });

  it('a second deploy while one runs is refused with the holder named (exit 4); --wait queues it', async () => {
    const first = await daemon.cli(['deploy', 'slow', '--version', 'v1', '--detach', '--json']);
    expect(first.code).toBe(0);
    const n = JSON.parse(first.stdout).n as number;
    const refused = await daemon.cli(['deploy', 'slow', '--version', 'v2']);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(
      new RegExp(`slow is locked by deployment #${n} \\(deploy slow v1 by .*\\)`),
    );
    const queued = await daemon.cli(['deploy', 'slow', '--version', 'v3', '--wait', '1m', '--json']);
    expect(queued.code, queued.stderr).toBe(0);
    expect(JSON.parse(queued.stdout)).toMatchObject({ state: 'done', version: 'v3', fromVersion: 'v1' });
  });

  it('a wrong token is refused with 401 and nothing is done', async () => {
    const before = (await daemon.client.request<unknown[]>('GET', '/v1/services/ok/deployments')).length;
    const r = await daemon.cli(['deploy', 'ok', '--version', 'v9'], { TEAL_TOKEN: 'wrong' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('wrong API token');
    const raw = await fetch(`${daemon.info.api}/v1/services/ok/deployments`, {
      method: 'POST',
      body: '{"version":"v9"}',
      headers: { authorization: 'Bearer nope' },
    });
    expect(raw.status).toBe(401);
    expect((await daemon.client.request<unknown[]>('GET', '/v1/services/ok/deployments')).length).toBe(
      before,
    );
  });

  it('an unknown service and a bad version are usage errors (exit 2)', async () => {
    const unknown = await daemon.cli(['deploy', 'nope', '--version', 'v1']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no service named "nope"');
    const bad = await daemon.cli(['deploy', 'ok', '--version', 'v1 && reboot']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('is not valid');
  });
});
