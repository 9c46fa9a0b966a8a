import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import type { Runtime } from '../runtimes/runtime.js';
import { lockKey } from '../stores/lock.js';
import { memoryStore } from '../stores/memory.js';
import { FakeSwitch } from '../testing/fake-switch.js';
import { StepVerifier } from '../verify/steps.js';
import { parseConfig } from './config/load.js';
import { silentLogger } from './deps.js';
import { Engine } from './engine.js';
import { isTealError } from './errors.js';

function engineOn(store = memoryStore()) {
  const loaded = parseConfig('services:\n  web:\n    command: [x]\n', '/srv/teal.yml');
  const engine = new Engine({
    store,
    runtime: {} as Runtime,
    traffic: new FakeSwitch(),
    probe: () => {
      throw new Error('not used');
    },
    verifier: new StepVerifier(),
    config: () => loaded,
    log: silentLogger,
  });
  return { engine, store };
}

/** A pid that surely ran on this host and is gone now. */
function deadPid(): number {
  const out = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
  return Number(out.stdout.trim());
}

const holder = (over: Record<string, unknown>) => ({
  holder: { description: 'deployment #7 (deploy web v3 by bob)', deployment: 7, host: hostname(), ...over },
  since: '2026-11-26T10:00:00.000Z',
});

describe('releasing a deploy lock', () => {
  it('frees a lock whose holder on this host is gone', async () => {
    const { engine, store } = engineOn();
    await store.put(lockKey('web'), holder({ pid: deadPid() }));
    expect((await engine.lockStatus('web')).held).toBe(true);
    expect(await engine.releaseLock('web')).toMatchObject({ released: true, holder: { deployment: 7 } });
    expect(await engine.lockStatus('web')).toEqual({ service: 'web', held: false });
  });

  it('keeps a lock held by a running process, or by one on another host, and says why', async () => {
    const { engine, store } = engineOn();
    await store.put(lockKey('web'), holder({ pid: process.pid }));
    const live = await engine.releaseLock('web').catch((e: unknown) => e);
    expect(isTealError(live, 'TEAL_LOCKED')).toBe(true);
    expect((live as Error).message).toContain('which is running');

    await store.put(lockKey('web'), holder({ pid: 1234, host: 'elsewhere' }));
    const remote = await engine.releaseLock('web').catch((e: unknown) => e);
    expect((remote as Error).message).toMatch(
      /on elsewhere, which cannot be checked from here; .* within 15 s/,
    );
    expect((await engine.lockStatus('web')).held).toBe(true);
  });
});
