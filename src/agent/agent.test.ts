import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../core/deps.js';
import { isTealError } from '../core/errors.js';
import { fleetKeys, type InstanceReport } from '../core/fleet.js';
import type { RestartPolicy } from '../core/supervisor.js';
import { FleetRuntime } from '../runtimes/fleet.js';
import { ProcessRuntime } from '../runtimes/process.js';
import { answers, get, testLabels, waitFor } from '../runtimes/runtime.contract.js';
import type { InstanceSpec } from '../runtimes/runtime.js';
import { memoryStore } from '../stores/memory.js';
import type { Store } from '../stores/store.js';
import { HELLO_DIR } from '../testing/paths.js';
import { runAgent } from './agent.js';

/** Restarts far enough away that a test can look at the exited instance first. */
const LATER: RestartPolicy = {
  initialBackoffMs: 60_000,
  maxBackoffMs: 60_000,
  resetAfterMs: 60_000,
  crashLoop: { restarts: 5, windowMs: 60_000 },
};

const hello = path.join(HELLO_DIR, 'server.js');

function spec(overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  return {
    labels: testLabels(),
    index: 0,
    command: [process.execPath, hello],
    cwd: path.dirname(hello),
    env: { APP_VERSION: '1.2.3' },
    host: '0.0.0.0',
    hostId: 'h1',
    ...overrides,
  };
}

describe('teal agent and the fleet runtime, through one store', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups.length = 0;
  });

  function agent(
    store: Store,
    stateDir: string,
    options: { capacity?: number; restart?: RestartPolicy } = {},
  ) {
    const stop = new AbortController();
    const runtime = new ProcessRuntime({ stateDir });
    const done = runAgent({
      store,
      runtime,
      id: 'h1',
      address: '127.0.0.1',
      labels: { zone: 'a' },
      capacity: options.capacity ?? 0,
      log: silentLogger,
      signal: stop.signal,
      leaseTtlMs: 2_000,
      ...(options.restart ? { restart: options.restart } : {}),
    });
    const stopAgent = async () => {
      stop.abort();
      await done;
      await runtime.close();
    };
    cleanups.push(stopAgent);
    return { stop: stopAgent, runtime };
  }

  function setup() {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-agent-'));
    const store = memoryStore();
    cleanups.push(async () => {
      // Whatever an agent left running in this dir.
      const runtime = new ProcessRuntime({ stateDir: dir });
      for (const i of await runtime.list()) await runtime.stop(i, { timeoutMs: 1_000 });
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    return { dir, store, fleet: new FleetRuntime({ store, startTimeoutMs: 10_000 }) };
  }

  it('starts an assigned instance on the agent, on its address, reports it, and stops it when asked', async () => {
    const { dir, store, fleet } = setup();
    agent(store, dir);
    await waitFor(() => store.get(fleetKeys.host('h1')), 'the agent to register');
    const instance = await fleet.start(spec(), { signal: AbortSignal.timeout(10_000) });
    expect(instance).toMatchObject({ hostId: 'h1', host: '127.0.0.1', labels: testLabels() });
    expect((await answers(instance)).body).toMatch(/^hello 1\.2\.3/);
    expect(await fleet.status(instance)).toEqual({ state: 'running' });
    expect((await fleet.list({ service: 'web' })).map((i) => i.id)).toEqual([instance.id]);
    await fleet.stop(instance, { timeoutMs: 2_000 });
    expect(await store.get(fleetKeys.assignment('h1', instance.id))).toBeUndefined();
    expect(await store.get(fleetKeys.report('h1', instance.id))).toBeUndefined();
    await expect(get(instance.host, instance.port)).rejects.toThrow();
    expect(await fleet.list()).toEqual([]);
  });

  it('fails a start at once on a host that is not registered, and on one the agent cannot start, leaving no assignment', async () => {
    const { dir, store, fleet } = setup();
    const refused = await fleet
      .start(spec({ hostId: 'nowhere' }), { signal: AbortSignal.timeout(5_000) })
      .catch((e) => e);
    expect(isTealError(refused, 'TEAL_HOST_UNAVAILABLE')).toBe(true);
    expect(refused.message).toMatch(/host nowhere is not registered/);
    agent(store, dir);
    await waitFor(() => store.get(fleetKeys.host('h1')), 'the agent to register');
    const bad = await fleet
      .start(spec({ cwd: path.join(dir, 'missing') }), { signal: AbortSignal.timeout(10_000) })
      .catch((e) => e);
    expect(isTealError(bad, 'TEAL_START_FAILED')).toBe(true);
    expect(bad.message).toMatch(/host h1 could not start web blue #0/);
    expect(await store.list(fleetKeys.assignments('h1'))).toEqual([]);
  });

  it('tells a waiting health check that the instance exited, with the tail the agent published', async () => {
    const { dir, store, fleet } = setup();
    agent(store, dir, { restart: LATER });
    await waitFor(() => store.get(fleetKeys.host('h1')), 'the agent to register');
    const instance = await fleet.start(
      spec({
        command: [process.execPath, '-e', 'console.log("going"); setTimeout(() => process.exit(3), 300)'],
      }),
      { signal: AbortSignal.timeout(10_000) },
    );
    const exit = await fleet.exited(instance, { signal: AbortSignal.timeout(10_000) });
    expect(exit.code).toBe(3);
    expect(await fleet.logTail(instance, 5)).toContain('going');
    expect(await fleet.status(instance)).toMatchObject({ state: 'exited', code: 3 });
  });

  it('a restarted agent adopts what is still assigned and stops what was unassigned while it was away', async () => {
    const { dir, store, fleet } = setup();
    const first = agent(store, dir);
    await waitFor(() => store.get(fleetKeys.host('h1')), 'the agent to register');
    const kept = await fleet.start(spec(), { signal: AbortSignal.timeout(10_000) });
    const dropped = await fleet.start(spec({ index: 1 }), { signal: AbortSignal.timeout(10_000) });
    await answers(kept);
    await answers(dropped);
    await first.stop();
    // The agent is gone (its lease revoked): instances keep serving, the host drops out.
    expect(await store.get(fleetKeys.host('h1'))).toBeUndefined();
    expect((await get(kept.host, kept.port)).status).toBe(200);
    await fleet.stop(dropped, { timeoutMs: 2_000 });
    agent(store, dir);
    const report = await waitFor(
      async () => (await store.get<InstanceReport>(fleetKeys.report('h1', kept.id)))?.value,
      'the restarted agent to report the kept instance',
    );
    expect(report).toMatchObject({ state: 'running', port: kept.port });
    await waitFor(
      () =>
        get(dropped.host, dropped.port).then(
          () => false,
          () => true,
        ),
      'the unassigned instance to be stopped',
    );
    expect((await get(kept.host, kept.port)).status).toBe(200);
  });

  it('restarts an assigned instance that exits, on the same port, and reports the restart', async () => {
    const { dir, store, fleet } = setup();
    agent(store, dir);
    await waitFor(() => store.get(fleetKeys.host('h1')), 'the agent to register');
    const instance = await fleet.start(spec(), { signal: AbortSignal.timeout(10_000) });
    await answers(instance);
    const first = (await store.get<InstanceReport>(fleetKeys.report('h1', instance.id)))!.value;
    process.kill(first.pid!, 'SIGKILL');
    const again = await waitFor(async () => {
      const r = (await store.get<InstanceReport>(fleetKeys.report('h1', instance.id)))?.value;
      return r?.state === 'running' && r.pid !== first.pid ? r : undefined;
    }, 'the agent to restart the killed instance');
    expect(again).toMatchObject({ port: instance.port, restarts: 1, degraded: false });
    // Same id and port: the slot record's endpoint in the control plane is still right.
    expect((await answers(instance)).body).toMatch(/^hello 1\.2\.3/);
    expect(await fleet.status(instance)).toEqual({ state: 'running' });
  });

  it('a restarted agent starts again an assigned instance that died while it was away (a reboot)', async () => {
    const { dir, store, fleet } = setup();
    const first = agent(store, dir);
    await waitFor(() => store.get(fleetKeys.host('h1')), 'the agent to register');
    const instance = await fleet.start(spec(), { signal: AbortSignal.timeout(10_000) });
    await answers(instance);
    const before = (await store.get<InstanceReport>(fleetKeys.report('h1', instance.id)))!.value;
    await first.stop();
    process.kill(before.pid!, 'SIGKILL');
    await waitFor(
      () =>
        get(instance.host, instance.port).then(
          () => false,
          () => true,
        ),
      'the instance to be down',
    );
    agent(store, dir);
    const report = await waitFor(async () => {
      const r = (await store.get<InstanceReport>(fleetKeys.report('h1', instance.id)))?.value;
      return r?.state === 'running' && r.pid !== before.pid ? r : undefined;
    }, 'the restarted agent to start the dead instance again');
    expect(report.port).toBe(instance.port);
    expect((await answers(instance)).body).toMatch(/^hello 1\.2\.3/);
  });

  it('stops restarting an instance the control plane asks to stop', async () => {
    const { dir, store, fleet } = setup();
    agent(store, dir);
    await waitFor(() => store.get(fleetKeys.host('h1')), 'the agent to register');
    const instance = await fleet.start(
      spec({ command: [process.execPath, '-e', 'setTimeout(() => process.exit(3), 200)'] }),
      { signal: AbortSignal.timeout(10_000) },
    );
    await waitFor(async () => {
      const r = (await store.get<InstanceReport>(fleetKeys.report('h1', instance.id)))?.value;
      return (r?.restarts ?? 0) >= 2 ? r : undefined;
    }, 'a few restarts');
    await fleet.stop(instance, { timeoutMs: 2_000 });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await store.get(fleetKeys.report('h1', instance.id))).toBeUndefined();
    const leftovers = await new ProcessRuntime({ stateDir: dir }).list();
    expect(leftovers.filter((l) => l.status.state === 'running')).toEqual([]);
  });

  it('refuses an instance past its capacity', async () => {
    const { dir, store, fleet } = setup();
    agent(store, dir, { capacity: 1 });
    await waitFor(() => store.get(fleetKeys.host('h1')), 'the agent to register');
    await fleet.start(spec(), { signal: AbortSignal.timeout(10_000) });
    const full = await fleet
      .start(spec({ index: 1 }), { signal: AbortSignal.timeout(10_000) })
      .catch((e) => e);
    expect(full.message).toMatch(/at its capacity of 1/);
  });
});
