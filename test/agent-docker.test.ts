import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fleetKeys, type HostRecord, type InstanceReport } from '../src/core/fleet.js';
import { cliEntry } from '../src/paths.js';
import { FleetRuntime } from '../src/runtimes/fleet.js';
import { answers, get, testLabels, waitFor } from '../src/runtimes/runtime.contract.js';
import type { InstanceSpec } from '../src/runtimes/runtime.js';
import { etcdStore } from '../src/stores/etcd.js';
import type { Store } from '../src/stores/store.js';
import { haveBinary } from '../src/testing/binaries.js';
import {
  type BuiltImage,
  buildNodeImage,
  dockerdAvailable,
  startDockerd,
  type TestDockerd,
} from '../src/testing/docker.js';
import { type EtcdInstance, startEtcd } from '../src/testing/etcd.js';

/**
 * `teal agent` running a container assignment: the agent (the CLI, in the root network namespace)
 * on an isolated dockerd given with --docker-host, the control plane's side a FleetRuntime on a
 * private etcd. The image is examples/hello built FROM scratch on that dockerd.
 */
const available = dockerdAvailable();
const hasEtcd = haveBinary('etcd', 'etcd-server');
const IMAGE = 'teal-test/hello:agent';

describe.runIf(available && hasEtcd)('teal agent with container assignments (docker)', () => {
  let dockerd: TestDockerd;
  let built: BuiltImage;
  let etcd: EtcdInstance;
  let store: Store;
  let fleet: FleetRuntime;
  let dir: string;
  let agent: { child: ChildProcess; log: () => string } | undefined;
  const prefix = `/teal-agent-docker-${process.pid}`;

  async function startAgent(): Promise<{ child: ChildProcess; log: () => string }> {
    const logFile = path.join(dir, 'agent.out');
    const out = openSync(logFile, 'a');
    const child = spawn(
      process.execPath,
      [
        cliEntry(),
        'agent',
        '--id',
        'h1',
        '--address',
        '127.0.0.1',
        '--etcd',
        etcd.endpoint,
        '--prefix',
        prefix,
        '--state-dir',
        path.join(dir, 'agent'),
        '--docker-host',
        dockerd.host,
        '--lease-ttl',
        '2s',
        '--log-format',
        'json',
      ],
      // No DOCKER_HOST: the flag alone names the engine.
      { stdio: ['ignore', out, out], env: { ...process.env, DOCKER_HOST: '' } },
    );
    closeSync(out);
    const log = () => readFileSync(logFile, 'utf8');
    const deadline = Date.now() + 20_000;
    for (;;) {
      const registered = (await store.get<HostRecord>(fleetKeys.host('h1')))?.value;
      if (registered?.pid === child.pid) return { child, log };
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`the agent did not register:\n${log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function stopAgent(): Promise<void> {
    const child = agent?.child;
    agent = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }

  async function containers(): Promise<{ Id: string; Names: string[]; State: string }[]> {
    return dockerd.engine.json('GET', '/containers/json', { query: { all: true } });
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'teal-agent-docker-'));
    [dockerd, etcd] = await Promise.all([startDockerd(), startEtcd()]);
    built = await buildNodeImage(dockerd.engine, IMAGE);
    store = etcdStore({ endpoints: [etcd.endpoint], prefix });
    fleet = new FleetRuntime({ store, startTimeoutMs: 20_000 });
    agent = await startAgent();
  }, 120_000);

  afterAll(async () => {
    await stopAgent();
    await store?.close();
    await etcd?.close();
    await dockerd?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs the container on the host engine, reports it with its image, is adopted after a restart, and stops it', async () => {
    const spec: InstanceSpec = {
      labels: testLabels(),
      index: 0,
      command: [],
      cwd: '/',
      env: { APP_VERSION: '4.5.6' },
      // The control plane's bind address: the agent publishes on its own --address instead.
      host: '0.0.0.0',
      hostId: 'h1',
      container: { image: IMAGE, port: 3000, pull: 'never' },
    };
    const instance = await fleet.start(spec, { signal: AbortSignal.timeout(20_000) });
    expect(instance).toMatchObject({ hostId: 'h1', host: '127.0.0.1', labels: testLabels() });
    expect(instance.port).toBeGreaterThan(0);
    expect(instance.image).toMatchObject({ ref: IMAGE, id: built.id });
    expect((await answers(instance)).body).toMatch(/^hello 4\.5\.6/);

    // The assignment kept the container part; the report carries the engine's view of it.
    const assigned = (await store.get<{ spec: InstanceSpec }>(fleetKeys.assignment('h1', instance.id)))
      ?.value;
    expect(assigned?.spec.container).toEqual(spec.container);
    const report = (await store.get<InstanceReport>(fleetKeys.report('h1', instance.id)))?.value;
    expect(report).toMatchObject({
      state: 'running',
      address: '127.0.0.1',
      port: instance.port,
      image: { ref: IMAGE, id: built.id },
    });
    const running = (await containers()).filter((c) => c.State === 'running');
    expect(running).toHaveLength(1);
    expect(running[0]!.Names[0]).toContain(report!.localId);
    const registered = (await store.get<HostRecord>(fleetKeys.host('h1')))?.value;
    expect(registered?.runtime).toBe('process,docker');

    // The agent goes away: the container keeps serving; a restarted agent adopts it, not a double.
    await stopAgent();
    expect(await store.get(fleetKeys.report('h1', instance.id))).toBeUndefined();
    expect((await get(instance.host, instance.port)).status).toBe(200);
    agent = await startAgent();
    const adopted = await waitFor(
      async () => (await store.get<InstanceReport>(fleetKeys.report('h1', instance.id)))?.value,
      'the restarted agent to report the container',
    );
    expect(adopted).toMatchObject({
      state: 'running',
      port: instance.port,
      localId: report!.localId,
      image: { ref: IMAGE, id: built.id },
    });
    expect(agent.log()).toMatch(/adopted a running instance/);
    expect((await containers()).map((c) => c.Id)).toEqual(running.map((c) => c.Id));
    expect(await fleet.status(instance)).toEqual({ state: 'running' });

    await fleet.stop(instance, { timeoutMs: 2_000 });
    expect(await containers()).toEqual([]);
    expect(await store.get(fleetKeys.report('h1', instance.id))).toBeUndefined();
    await expect(get(instance.host, instance.port)).rejects.toThrow();
  });
});
