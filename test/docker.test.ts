import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DeploymentRecord } from '../src/core/records.js';
import type { ServiceStatus } from '../src/core/status.js';
import { cliEntry } from '../src/paths.js';
import { DockerRuntime } from '../src/runtimes/docker/docker.js';
import { containerName } from '../src/runtimes/docker/labels.js';
import { freePort as freeLoopbackPort } from '../src/runtimes/ports.js';
import { startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { buildNodeImage, dockerdAvailable, startDockerd, type TestDockerd } from '../src/testing/docker.js';
import { backgroundLoad, deployAndWait, staleAfterSwitch } from './helpers.js';

/**
 * `runtime: docker` end to end: the real daemon, data plane and an isolated dockerd, the example app
 * in an image built FROM scratch. Each version is its own tag (teal-test/hello:v1, v2, ...) of one
 * image; APP_VERSION from the release makes the served version change with every deploy.
 */

const available = dockerdAvailable();
const REPO = 'teal-test/hello';
let dockerd: TestDockerd;
let daemon: TestDaemon | undefined;

async function tag(version: string, source = `${REPO}:base`): Promise<void> {
  await dockerd.engine.json('POST', `/images/${source}/tag`, { query: { repo: REPO, tag: version } });
}

async function tags(): Promise<string[]> {
  const images = await dockerd.engine.json<{ RepoTags: string[] | null }[]>('GET', '/images/json');
  return images.flatMap((i) => i.RepoTags ?? []).filter((t) => t.startsWith(`${REPO}:v`));
}

if (available) {
  beforeAll(async () => {
    dockerd = await startDockerd();
    await buildNodeImage(dockerd.engine, `${REPO}:base`);
    // An app that dies at once, in the same layout: the node and library layers come from the cache.
    const crash = path.join(tmpdir(), `teal-crash-${process.pid}.js`);
    writeFileSync(crash, "console.log('crash: cannot open the database'); process.exit(3);\n");
    await buildNodeImage(dockerd.engine, `${REPO}:crash`, { '/app/server.js': crash });
  }, 120_000);
  // Retention untags old versions as deploys go on: every test starts with all of them.
  beforeEach(async () => {
    for (let i = 0; i <= 12; i++) await tag(`v${i}`);
  });
  afterAll(async () => {
    await dockerd?.close();
  });
  afterEach(async () => {
    await daemon?.cleanup();
    daemon = undefined;
    // What a test daemon started on the engine goes with it.
    const runtime = new DockerRuntime({ stateDir: tmpdir(), host: dockerd.host });
    const leftovers = await dockerd.engine.json<{ Id: string }[]>('GET', '/containers/json', {
      query: { all: true },
    });
    for (const { Id } of leftovers) {
      await dockerd.engine.json('DELETE', `/containers/${Id}`, { query: { force: true } });
    }
    await runtime.close();
  });
}

function dockerService(extra: Record<string, string> = {}): string {
  const fields: Record<string, string> = {
    runtime: 'docker',
    image: `"${REPO}:{{version}}"`,
    port: '3000',
    pull: 'never',
    env: '{ APP_VERSION: "{{version}}" }',
    health: '{ interval: 50ms, healthyThreshold: 2, deadline: 15s }',
    verify: '[{ http: { path: /, body: "hello {{version}}" } }]',
    drain: '3s',
    keepWarm: '1m',
    stopTimeout: '3s',
    ...extra,
  };
  return `  hello:\n${Object.entries(fields)
    .map(([k, v]) => `    ${k}: ${v}`)
    .join('\n')}`;
}

function startDaemon(extra: Record<string, string> = {}): Promise<TestDaemon> {
  return startTestDaemon({
    services: dockerService(extra),
    extraConfig: `docker: { host: "${dockerd.host}", timeout: 3s }\n`,
  });
}

describe.runIf(available)('runtime docker through the real daemon', () => {
  it('deploys containers blue-green under keep-alive load with no failed or stale request, across a control-plane restart that adopts them', async () => {
    daemon = await startDaemon();
    const first = await deployAndWait(daemon.client, 'hello', 'v0');
    expect(first.state, first.error?.message).toBe('done');
    expect(first.image).toMatchObject({ ref: `${REPO}:v0`, id: expect.stringMatching(/^sha256:/) });

    const load = backgroundLoad(`${daemon.info.proxy}/`, 32);
    const deployments: DeploymentRecord[] = [first];
    const took: number[] = [];
    for (let i = 1; i <= 6; i++) {
      const d = await deployAndWait(daemon.client, 'hello', `v${i}`);
      expect(d.state, `deploy v${i}: ${d.error?.message}`).toBe('done');
      took.push(Date.parse(d.endedAt!) - Date.parse(d.createdAt));
      deployments.push(d);
    }

    // The control plane dies; the containers and the data plane keep serving, and the next one adopts them.
    const before = (await daemon.client.request<ServiceStatus>('GET', '/v1/services/hello')).slots;
    await daemon.kill();
    await daemon.restart();
    const after = await daemon.client.request<ServiceStatus>('GET', '/v1/services/hello');
    expect(after.live).toBe('blue');
    expect(after.slots.blue.instances.map((i) => [i.id, i.status])).toEqual(
      before.blue.instances.map((i) => [i.id, 'running']),
    );
    expect(after.slots.green.instances.map((i) => i.status)).toEqual(['running']);
    expect(after.slots.blue.instances[0]!.image).toMatchObject({ ref: `${REPO}:v6` });

    // `teal logs -f` follows the warm slot's container: the deploy that clears it shows its SIGTERM.
    const follow = spawn(
      process.execPath,
      [cliEntry(), 'logs', 'hello', '--slot', 'green', '--follow', '-c', daemon.configFile],
      { env: { ...process.env, TEAL_TOKEN: daemon.token }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let followed = '';
    follow.stdout.setEncoding('utf8').on('data', (c: string) => {
      followed += c;
    });
    for (let waited = 0; !followed.includes('hello v5 listening'); waited += 50) {
      if (waited > 10_000) throw new Error(`teal logs -f printed nothing: ${followed}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const d7 = await deployAndWait(daemon.client, 'hello', 'v7');
    expect(d7.state, d7.error?.message).toBe('done');
    deployments.push(d7);
    await new Promise((r) => setTimeout(r, 300));
    follow.kill();
    expect(followed).toContain('hello v5 listening');
    expect(followed).toContain('hello v5 got SIGTERM');

    const { report, samples } = await load.stop();
    expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
    expect(report.sent).toBeGreaterThan(500);
    expect(staleAfterSwitch(samples, deployments)).toEqual([]);
    const served = new Set(samples.map((s) => s.version));
    for (let i = 1; i <= 7; i++) expect(served.has(`v${i}`), `v${i} never answered`).toBe(true);

    const history = await daemon.cli(['history', 'hello', '--json']);
    expect(JSON.parse(history.stdout)[0]).toMatchObject({ version: 'v7', image: { ref: `${REPO}:v7` } });
    took.sort((a, b) => a - b);
    process.stderr.write(
      `docker deploys (request to end): median ${took[Math.floor(took.length / 2)]} ms of ${took.join(', ')}\n`,
    );
  }, 90_000);

  it('failed deploys leave the live containers serving with no failed request: image missing, instant exit, port taken, engine frozen; then an engine stop is named and the next deploy works', async () => {
    const ports = await twoFreePorts();
    daemon = await startDaemon({ ports: `{ blue: ${ports[0]}, green: ${ports[1]} }` });
    const live = await deployAndWait(daemon.client, 'hello', 'v1');
    expect(live.state, live.error?.message).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 32);

    const missing = await deployAndWait(daemon.client, 'hello', 'v99');
    expect(missing.state).toBe('failed');
    expect(missing.error?.message).toContain(`image "${REPO}:v99" is not on the Docker engine`);
    expect(missing.error?.message).toContain('pull policy is "never"');

    const crashed = await deployAndWait(daemon.client, 'hello', 'crash');
    expect(crashed.state).toBe('failed');
    expect(crashed.error?.code).toBe('TEAL_INSTANCE_EXITED');
    expect(crashed.error?.message).toContain('exited with code 3 while starting');
    expect(crashed.error?.message).toContain('crash: cannot open the database');

    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(ports[1], '127.0.0.1', resolve));
    const taken = await deployAndWait(daemon.client, 'hello', 'v2').finally(
      () => new Promise((resolve) => holder.close(resolve)),
    );
    expect(taken.state).toBe('failed');
    expect(taken.error?.code).toBe('TEAL_PORT_IN_USE');
    expect(taken.error?.message).toContain(`port ${ports[1]} (services.hello.ports.green) is already in use`);

    // A hung engine (frozen): its containers and port proxies keep running; the deploy gives up after docker.timeout.
    process.kill(dockerd.pid()!, 'SIGSTOP');
    let frozen: DeploymentRecord;
    try {
      frozen = await deployAndWait(daemon.client, 'hello', 'v3');
    } finally {
      process.kill(dockerd.pid()!, 'SIGCONT');
    }
    expect(frozen.state).toBe('failed');
    expect(frozen.error?.message).toContain(`the Docker engine at ${dockerd.host} did not answer`);

    const ok = await deployAndWait(daemon.client, 'hello', 'v4');
    expect(ok.state, ok.error?.message).toBe('done');
    await new Promise((r) => setTimeout(r, 200));
    const { report, samples } = await load.stop();
    expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
    // Until v4's switch began, only v1 answered: no failed deploy ever reached the live slot.
    const switchBegan = Date.parse(ok.events.find((e) => e.step === 'switch' && e.status === 'started')!.at);
    expect(new Set(samples.filter((s) => s.end < switchBegan).map((s) => s.version))).toEqual(
      new Set(['v1']),
    );

    // A stopped engine takes its containers (and their published ports) down with it: no load here.
    await dockerd.stop();
    let stopped: DeploymentRecord;
    try {
      stopped = await deployAndWait(daemon.client, 'hello', 'v5');
    } finally {
      await dockerd.restart();
    }
    expect(stopped.state).toBe('failed');
    expect(stopped.error?.message).toContain(
      `cannot reach the Docker engine at ${dockerd.host} (configured)`,
    );
    const back = await deployAndWait(daemon.client, 'hello', 'v6');
    expect(back.state, back.error?.message).toBe('done');
    expect(await (await fetch(`${daemon.info.proxy}/`)).text()).toContain('hello v6');
  }, 90_000);

  it("a live container killed: teal's supervision replaces it from the image it ran, health-checked, and serves again (restart policy stays no)", async () => {
    daemon = await startDaemon();
    const first = await deployAndWait(daemon.client, 'hello', 'v1');
    expect(first.state, first.error?.message).toBe('done');
    const status = () => daemon!.client.request<ServiceStatus>('GET', '/v1/services/hello');
    const before = (await status()).slots.blue.instances[0]!;
    await dockerd.engine.json('POST', `/containers/${containerName(before.id)}/kill`);
    const deadline = Date.now() + 60_000;
    let after = before;
    while (after.id === before.id || after.status !== 'running') {
      if (Date.now() > deadline) throw new Error(`not replaced:\n${daemon.log().slice(-2_000)}`);
      await new Promise((r) => setTimeout(r, 100));
      after = (await status()).slots.blue.instances[0] ?? before;
    }
    expect(after.image?.id).toBe(before.image?.id);
    const res = await fetch(`${daemon.info.proxy}/`);
    expect(await res.text()).toContain('hello v1');
    const inspect = await dockerd.engine.json<{ HostConfig: { RestartPolicy: { Name: string } } }>(
      'GET',
      `/containers/${containerName(after.id)}/json`,
    );
    expect(inspect.HostConfig.RestartPolicy.Name).toBe('no');
    expect((await status()).slots.blue.supervision).toMatchObject({
      restarts: 1,
      last: { reason: 'exited' },
    });
  }, 120_000);

  it('rollback --to starts a retained release from the image it ran, without pulling, and untags images past retain', async () => {
    daemon = await startDaemon({ retain: '3', keepWarm: '0s' });
    for (let i = 8; i <= 11; i++) {
      const d = await deployAndWait(daemon.client, 'hello', `v${i}`);
      expect(d.state, d.error?.message).toBe('done');
    }
    // Releases 2-4 (v9-v11) are retained; v8's tag is gone.
    expect((await tags()).filter((t) => /:v(8|9|10|11)$/.test(t)).sort()).toEqual(
      [`${REPO}:v10`, `${REPO}:v11`, `${REPO}:v9`].sort(),
    );
    // Without its tag, only the recorded image ID can bring v9 back: pull is never and a pull would fail.
    await dockerd.engine.json('DELETE', `/images/${REPO}:v9`);
    const r = await daemon.cli(['rollback', 'hello', '--to', '2', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const record = JSON.parse(r.stdout) as DeploymentRecord;
    expect(record).toMatchObject({
      kind: 'rollback',
      mode: 'start',
      release: 2,
      version: 'v9',
      state: 'done',
    });
    expect(record.events.map((e) => e.step)).toEqual(expect.arrayContaining(['health', 'verify', 'switch']));
    expect(await (await fetch(`${daemon.info.proxy}/`)).text()).toContain('hello v9');
  }, 60_000);
});

async function twoFreePorts(): Promise<[number, number]> {
  for (;;) {
    const a = await freeLoopbackPort('127.0.0.1');
    if (await portFree(a + 1)) return [a, a + 1];
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    s.on('error', () => resolve(false));
  });
}
