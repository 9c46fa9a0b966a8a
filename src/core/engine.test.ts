import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HttpProbe } from '../health/http.js';
import { ProcessRuntime } from '../runtimes/process.js';
import { memoryStore } from '../stores/memory.js';
import type { Store } from '../stores/store.js';
import { FakeSwitch } from '../testing/fake-switch.js';
import { HELLO_DIR } from '../testing/paths.js';
import { StepVerifier } from '../verify/steps.js';
import { parseConfig } from './config/load.js';
import { type EngineDeps, silentLogger } from './deps.js';
import { Engine } from './engine.js';
import { Supervisor } from './heal.js';
import { reconcile } from './reconcile.js';
import { type DeploymentRecord, keys, readDeployment, readServiceState, type SlotRecord } from './records.js';
import { WarmReaper } from './warm.js';

const hello = path.join(HELLO_DIR, 'server.js');

interface Variant {
  command?: string[];
  /** Extra env entries, as YAML flow: `, START_DELAY_MS: "700"` */
  env?: string;
  deadline?: string;
  body?: string;
  /** More service keys, indented four spaces. */
  extra?: string;
}

function configText(v: Variant = {}): string {
  const command = v.command ?? [process.execPath, hello];
  return `services:
  hello:
    command: ${JSON.stringify(command)}
    env: { APP_VERSION: "{{version}}"${v.env ?? ''} }
    health: { interval: 50ms, healthyThreshold: 2, deadline: ${v.deadline ?? '10s'} }
    verify: [{ http: { path: /, body: ${JSON.stringify(v.body ?? 'hello {{version}}')} } }]
    drain: 2s
    keepWarm: 1m
    stopTimeout: 2s
${v.extra ?? ''}`;
}

let dir: string;
let store: Store;
let runtime: ProcessRuntime;
let traffic: FakeSwitch;
let engine: Engine;
let deps: EngineDeps;

function setup(text: string): void {
  const loaded = parseConfig(text, path.join(dir, 'teal.yml'));
  deps = {
    store,
    runtime,
    traffic,
    probe: (h) => new HttpProbe({ path: h.path, timeoutMs: h.timeout }),
    verifier: new StepVerifier(),
    config: () => loaded,
    log: silentLogger,
  };
  engine = new Engine(deps);
}

async function finished(record: DeploymentRecord): Promise<DeploymentRecord> {
  await engine.settled(record.service);
  return (await readDeployment(store, record.service, record.n))!;
}

async function deploy(version: string, waitMs?: number): Promise<DeploymentRecord> {
  return finished(await engine.deploy('hello', { version, actor: 'test', ...(waitMs ? { waitMs } : {}) }));
}

async function get(port: number, urlPath = '/'): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`);
  return (await res.text()).trim();
}

async function running(): Promise<string[]> {
  return (await runtime.list())
    .filter((i) => i.status.state === 'running')
    .map((i) => `${i.labels.slot}:${i.labels.version}`)
    .sort();
}

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'teal-engine-'));
  // The app runs as nobody (these tests run as root) with this folder as its cwd.
  chmodSync(dir, 0o755);
  store = memoryStore();
  runtime = new ProcessRuntime({ stateDir: dir });
  traffic = new FakeSwitch();
  setup(configText());
});

afterEach(async () => {
  await engine.close();
  for (const i of await runtime.list()) await runtime.stop(i, { timeoutMs: 1_000 });
  await runtime.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('Engine deploy', () => {
  it('deploys a first release to blue, then the next to green, keeping blue warm', async () => {
    const first = await deploy('v1');
    expect(first).toMatchObject({
      state: 'done',
      targetSlot: 'blue',
      fromSlot: null,
      release: 1,
      version: 'v1',
    });
    expect(first.events.map((e) => `${e.step}:${e.status}`)).toEqual([
      'lock:done',
      'plan:info',
      'start:started',
      'start:done',
      'health:started',
      'health:done',
      'verify:started',
      'verify:done',
      'switch:started',
      'switch:done',
      'done:done',
    ]);
    let state = await readServiceState(store, 'hello');
    expect(state.live).toBe('blue');
    expect(await get(state.slots.blue.instances[0]!.port)).toBe('hello v1');
    expect(traffic.live('hello')).toBe('hello/blue/r1');
    expect((await store.get(keys.url('hello')))?.value).toBe(
      `127.0.0.1:${state.slots.blue.instances[0]!.port}`,
    );

    const second = await deploy('v2');
    expect(second).toMatchObject({
      state: 'done',
      targetSlot: 'green',
      fromSlot: 'blue',
      fromVersion: 'v1',
      release: 2,
    });
    expect(second.switchedAt).toBeGreaterThan(Date.parse(second.createdAt));
    state = await readServiceState(store, 'hello');
    expect(state.live).toBe('green');
    expect(state.slots.blue).toMatchObject({ state: 'warm', version: 'v1' });
    expect(Date.parse(state.slots.blue.warmUntil!)).toBeGreaterThan(Date.now() + 50_000);
    expect(traffic.drained).toEqual(['hello/blue/r1']);
    expect(traffic.live('hello')).toBe('hello/green/r2');
    expect(await running()).toEqual(['blue:v1', 'green:v2']);

    // The third deploy goes to blue beside the warm v1, which is stopped only after the switch.
    const third = await deploy('v3');
    expect(third.events.some((e) => e.step === 'clear')).toBe(false);
    const steps = third.events.map((e) => `${e.step}:${e.status}`);
    expect(steps.indexOf('stop:done')).toBeGreaterThan(steps.indexOf('switch:done'));
    expect(await running()).toEqual(['blue:v3', 'green:v2']);
    expect((await readServiceState(store, 'hello')).candidate).toBeUndefined();
  });

  it('keeps the live slot when verification fails, and stops what it started', async () => {
    await deploy('v1');
    setup(configText({ body: 'goodbye' }));
    const failed = await deploy('v2');
    expect(failed.state).toBe('failed');
    expect(failed.error?.code).toBe('TEAL_VERIFY_FAILED');
    expect(failed.error?.message).toContain('does not contain "goodbye"');
    const state = await readServiceState(store, 'hello');
    expect(state.live).toBe('blue');
    expect(state.slots.green.state).toBe('empty');
    expect(traffic.live('hello')).toBe('hello/blue/r1');
    expect(await running()).toEqual(['blue:v1']);
  });

  it('fails at once with the exit code and the log when the app exits while starting', async () => {
    await deploy('v1');
    setup(
      configText({ command: [process.execPath, '-e', "console.log('cannot open db'); process.exit(3)"] }),
    );
    const t0 = Date.now();
    const failed = await deploy('v2');
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(failed.error?.code).toBe('TEAL_INSTANCE_EXITED');
    expect(failed.error?.message).toMatch(/exited with code 3 while starting/);
    expect(failed.error?.message).toContain('cannot open db');
    expect((await readServiceState(store, 'hello')).live).toBe('blue');
    expect(await running()).toEqual(['blue:v1']);
  });

  it('fails at the deadline with the last probe when the app never becomes healthy', async () => {
    setup(configText({ deadline: '600ms', env: ', START_DELAY_MS: "60000"' }));
    const failed = await deploy('v1');
    expect(failed.error?.code).toBe('TEAL_HEALTH_FAILED');
    expect(failed.error?.message).toMatch(
      /did not become healthy within 600ms; last probe: GET http:\/\/127\.0\.0\.1:\d+\/health: HTTP 503/,
    );
    expect((await readServiceState(store, 'hello')).live).toBeNull();
    expect(await running()).toEqual([]);
  });

  it('fails with the program named when the command does not exist', async () => {
    setup(configText({ command: ['no-such-program-teal', '--flag'] }));
    const failed = await deploy('v1');
    expect(failed.error?.code).toBe('TEAL_START_FAILED');
    expect(failed.error?.message).toContain('no-such-program-teal');
    expect(await running()).toEqual([]);
  });

  it('fails with the port named when the fixed port is taken, and keeps the live slot', async () => {
    const blocker = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    const taken = (blocker.address() as net.AddressInfo).port;
    try {
      const free = await new Promise<number>((resolve) => {
        const probe = net.createServer().listen(0, '127.0.0.1', () => {
          const port = (probe.address() as net.AddressInfo).port;
          probe.close(() => resolve(port));
        });
      });
      setup(configText({ extra: `    ports: { blue: ${free}, green: ${taken} }\n` }));
      const first = await deploy('v1');
      if (first.state !== 'done') throw new Error(`first deploy failed: ${first.error?.message}`);
      const failed = await deploy('v2');
      expect(failed.error?.code).toBe('TEAL_PORT_IN_USE');
      expect(failed.error?.message).toContain(String(taken));
      expect(failed.error?.message).toContain('services.hello.ports.green');
      expect((await readServiceState(store, 'hello')).live).toBe('blue');
      expect(await running()).toEqual(['blue:v1']);
    } finally {
      blocker.close();
    }
  });

  it('puts the store back when the data plane refuses the switch', async () => {
    await deploy('v1');
    // The data plane refuses exactly the table that would make green live.
    traffic.refuse = (table) =>
      table.services.find((s) => s.service === 'hello')?.live?.slot === 'green'
        ? new Error('admin socket gone')
        : undefined;
    const failed = await deploy('v2');
    expect(failed.error?.code).toBe('TEAL_PROXY_FAILED');
    expect(failed.error?.message).toContain('so hello stays on blue: admin socket gone');
    const state = await readServiceState(store, 'hello');
    expect(state.live).toBe('blue');
    expect(state.slots.blue.state).toBe('live');
    expect(state.slots.green.state).toBe('empty');
    expect(traffic.live('hello')).toBe('hello/blue/r1');
    expect(await running()).toEqual(['blue:v1']);
  });

  it('refuses a second deploy while one runs, naming the holder; --wait queues it', async () => {
    setup(configText({ env: ', START_DELAY_MS: "700"' }));
    const first = await engine.deploy('hello', { version: 'v1', actor: 'alice' });
    await expect(engine.deploy('hello', { version: 'v2', actor: 'bob' })).rejects.toMatchObject({
      code: 'TEAL_LOCKED',
      message: expect.stringContaining(`deployment #${first.n} (deploy hello v1 by alice)`),
    });
    const queued = await engine.deploy('hello', { version: 'v3', actor: 'carol', waitMs: 30_000 });
    expect(queued.state).toBe('queued');
    const done = await finished(queued);
    expect(done).toMatchObject({ state: 'done', version: 'v3', fromVersion: 'v1' });
    expect((await readDeployment(store, 'hello', first.n))?.state).toBe('done');
    const refused = (await readDeployment(store, 'hello', first.n + 1))!;
    expect(refused).toMatchObject({ state: 'failed', error: { code: 'TEAL_LOCKED' }, actor: 'bob' });
  });

  it('refuses an unknown service, naming the ones there are', async () => {
    await expect(engine.deploy('nope', { version: 'v1', actor: 't' })).rejects.toMatchObject({
      code: 'TEAL_UNKNOWN_SERVICE',
      message: expect.stringContaining('(services: hello)'),
    });
  });

  it('when the control plane stops mid-deploy, what was started is stopped and the deployment is interrupted', async () => {
    await deploy('v1');
    setup(configText({ env: ', START_DELAY_MS: "5000"' }));
    const record = await engine.deploy('hello', { version: 'v2', actor: 't' });
    await new Promise((r) => setTimeout(r, 400));
    await engine.close();
    const after = (await readDeployment(store, 'hello', record.n))!;
    expect(after.state).toBe('interrupted');
    expect(after.error?.message).toBe('the control plane is stopping');
    expect((await readServiceState(store, 'hello')).live).toBe('blue');
    expect(await running()).toEqual(['blue:v1']);
  });
});

describe('Engine rollback', () => {
  it('inside the warm window, flips back to the warm slot without starting anything', async () => {
    await deploy('v1');
    await deploy('v2');
    const before = (await runtime.list()).map((i) => i.id).sort();
    const rb = await finished(await engine.rollback('hello', { actor: 't' }));
    expect(rb).toMatchObject({
      state: 'done',
      kind: 'rollback',
      mode: 'flip',
      targetSlot: 'blue',
      version: 'v1',
      release: 1,
    });
    expect(rb.events.some((e) => e.step === 'start')).toBe(false);
    const state = await readServiceState(store, 'hello');
    expect(state.live).toBe('blue');
    expect(state.slots.green.state).toBe('warm');
    expect(traffic.live('hello')).toBe('hello/blue/r1');
    expect((await runtime.list()).map((i) => i.id).sort()).toEqual(before);
  });

  it('after the warm window, starts the previous release again through every step', async () => {
    await deploy('v1');
    await deploy('v2');
    const reaper = new WarmReaper(deps, engine.tables);
    expect(await reaper.sweep(Date.now() + 120_000)).toBe(1);
    expect(await running()).toEqual(['green:v2']);
    const rb = await finished(await engine.rollback('hello', { actor: 't' }));
    expect(rb).toMatchObject({ state: 'done', mode: 'start', version: 'v1', release: 1, targetSlot: 'blue' });
    expect(rb.events.some((e) => e.step === 'health' && e.status === 'done')).toBe(true);
    expect(rb.events.some((e) => e.step === 'verify' && e.status === 'done')).toBe(true);
    expect(await running()).toEqual(['blue:v1', 'green:v2']);
  });

  it('starts cold when the warm instances died', async () => {
    await deploy('v1');
    await deploy('v2');
    const warm = (await readServiceState(store, 'hello')).slots.blue.instances[0]!;
    process.kill(-warm.pid!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    const rb = await finished(await engine.rollback('hello', { actor: 't' }));
    expect(rb).toMatchObject({ state: 'done', mode: 'start', version: 'v1' });
    expect(rb.events.some((e) => e.message.includes('no longer answers; starting release 1 cold'))).toBe(
      true,
    );
  });
});

describe('reconcile', () => {
  it('empties a warm slot whose processes died and whose window passed while no control plane was running', async () => {
    await deploy('v1');
    await deploy('v2');
    const warm = (await readServiceState(store, 'hello')).slots.blue.instances[0]!;
    process.kill(-warm.pid!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    const blue = (await store.get<SlotRecord>(keys.slot('hello', 'blue')))!.value;
    await store.put(keys.slot('hello', 'blue'), {
      ...blue,
      warmUntil: new Date(Date.now() - 1).toISOString(),
    } as never);
    await reconcile(deps, engine.tables);
    const state = await readServiceState(store, 'hello');
    expect(state.slots.blue.state).toBe('empty');
    expect(state.live).toBe('green');
    expect((await runtime.list()).map((i) => `${i.labels.slot}:${i.labels.version}`)).toEqual(['green:v2']);
  });

  it('keeps a warm slot whose processes died within its window, and the start-up restore runs it again', async () => {
    await deploy('v1');
    await deploy('v2');
    const state = await readServiceState(store, 'hello');
    const dead = [state.slots.blue.instances[0]!, state.slots.green.instances[0]!];
    for (const i of dead) process.kill(-i.pid!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    await reconcile(deps, engine.tables);
    expect((await readServiceState(store, 'hello')).slots.blue.state).toBe('warm');
    const supervisor = new Supervisor(deps, engine.tables);
    try {
      const [result] = await supervisor.restore();
      expect(result).toMatchObject({ service: 'hello', restored: 2, failed: [] });
    } finally {
      await supervisor.close();
    }
    const after = await readServiceState(store, 'hello');
    expect(after.live).toBe('green');
    expect(after.slots.blue.state).toBe('warm');
    for (const s of [after.slots.green, after.slots.blue]) {
      expect(s.instances).toHaveLength(1);
      expect(dead.map((d) => d.id)).not.toContain(s.instances[0]!.id);
      expect(await get(s.instances[0]!.port)).toBe(`hello ${s.version}`);
    }
    // The data plane was given the replacements.
    expect(traffic.applied.at(-1)?.services[0]?.live?.endpoints).toEqual([
      { host: '127.0.0.1', port: after.slots.green.instances[0]!.port },
    ]);
  });

  it('records a deployment the previous control plane left running as interrupted and stops what it started', async () => {
    await deploy('v1');
    // What a control plane killed while starting v2 leaves behind: a record, a slot, a process.
    const instance = await runtime.start(
      {
        labels: { service: 'hello', slot: 'green', release: 2, deployment: 9, version: 'v2' },
        index: 0,
        command: [process.execPath, hello],
        cwd: dir,
        env: { APP_VERSION: 'v2' },
        host: '127.0.0.1',
      },
      { signal: AbortSignal.timeout(5_000) },
    );
    const stray = await runtime.start(
      {
        labels: { service: 'hello', slot: 'green', release: 3, deployment: 10, version: 'v3' },
        index: 0,
        command: [process.execPath, hello],
        cwd: dir,
        env: { APP_VERSION: 'v3' },
        host: '127.0.0.1',
      },
      { signal: AbortSignal.timeout(5_000) },
    );
    const now = new Date().toISOString();
    await store.put(keys.slot('hello', 'green'), {
      slot: 'green',
      state: 'starting',
      release: 2,
      version: 'v2',
      deployment: 9,
      since: now,
      instances: [{ id: instance.id, host: instance.host, port: instance.port, index: 0 }],
    });
    await store.put(keys.deployment('hello', 9), {
      n: 9,
      service: 'hello',
      kind: 'deploy',
      state: 'starting',
      version: 'v2',
      release: 2,
      targetSlot: 'green',
      fromSlot: 'blue',
      fromRelease: 1,
      fromVersion: 'v1',
      mode: 'start',
      actor: 't',
      createdAt: now,
      events: [],
    });
    const report = await reconcile(deps, engine.tables);
    expect(report.unfinished).toEqual([{ service: 'hello', deployment: 9, outcome: 'interrupted' }]);
    expect(report.strays).toEqual([stray.id]);
    expect((await readDeployment(store, 'hello', 9))?.state).toBe('interrupted');
    const state = await readServiceState(store, 'hello');
    expect(state.live).toBe('blue');
    expect(state.slots.green.state).toBe('empty');
    expect(await running()).toEqual(['blue:v1']);
    expect(traffic.live('hello')).toBe('hello/blue/r1');
  });
});
