import { describe, expect, it } from 'vitest';
import { type DeploymentRecord, emptySlot, type ReleaseRecord, type ServiceState } from './records.js';
import { assertRollbackTarget, releaseViews } from './rollback-targets.js';

const release = (n: number, version: string): ReleaseRecord => ({
  n,
  service: 'web',
  version,
  runtime: 'process',
  command: ['node'],
  cwd: '/srv',
  env: {},
  configHash: `h${n}`,
  createdAt: '2026-01-01T00:00:00.000Z',
});

function deployment(n: number, rel: number, patch: Partial<DeploymentRecord>): DeploymentRecord {
  return {
    n,
    service: 'web',
    kind: 'deploy',
    state: 'done',
    version: `v${rel}`,
    release: rel,
    targetSlot: 'blue',
    fromSlot: null,
    fromRelease: null,
    fromVersion: null,
    mode: 'start',
    actor: 't',
    createdAt: '2026-01-01T00:00:00.000Z',
    events: [],
    ...patch,
  };
}

const state: ServiceState = {
  service: 'web',
  live: 'green',
  liveRevision: 1,
  slots: {
    blue: { ...emptySlot('blue'), state: 'warm', release: 2, version: 'v2', revision: 1 },
    green: { ...emptySlot('green'), state: 'live', release: 4, version: 'v4', revision: 1 },
  },
};

describe('rollback targets', () => {
  const releases = [1, 2, 3, 4, 5, 6].map((n) => release(n, `v${n}`));
  const deployments = [
    deployment(1, 1, { switchedAt: 10 }),
    deployment(2, 2, { switchedAt: 20 }),
    // Failed at health, then redeployed as the same release and switched: it went live.
    deployment(3, 3, { state: 'failed' }),
    deployment(4, 3, { switchedAt: 30 }),
    deployment(5, 4, { switchedAt: 40 }),
    deployment(6, 5, {
      state: 'interrupted',
      error: {
        code: 'TEAL_ABORTED',
        message: 'the control plane stopped while this deployment was verifying',
      },
      events: [{ at: '', t: 0, step: 'done', status: 'failed', message: '' }],
    }),
    deployment(7, 6, {
      state: 'failed',
      error: { code: 'TEAL_ABORTED', message: 'aborted by alice at the promote gate' },
      events: [{ at: '', t: 0, step: 'gate', status: 'failed', message: '' }],
    }),
  ];
  const views = releaseViews(state, releases, deployments);

  it('offers only releases that served and are not live now, newest first', () => {
    expect(views.map((v) => [v.n, v.running, v.wentLive, v.target])).toEqual([
      [6, null, false, false],
      [5, null, false, false],
      [4, 'live', true, false],
      [3, null, true, true],
      [2, 'warm', true, true],
      [1, null, true, true],
    ]);
    expect(views.find((v) => v.n === 3)?.lastSwitchedAt).toBe(30);
  });

  it('says why a release never went live, from its last deployment', () => {
    expect(views.find((v) => v.n === 5)?.why).toBe(
      'its deployment #6 was interrupted (the control plane stopped while this deployment was verifying)',
    );
    expect(views.find((v) => v.n === 6)?.why).toBe(
      'its deployment #7 failed at gate (aborted by alice at the promote gate)',
    );
    expect(() => assertRollbackTarget('web', 6, views)).toThrow(
      'release 6 (v6) of web never went live: its deployment #7 failed at gate (aborted by alice at the promote gate); roll back to a release that served: 3 (v3), 2 (v2), 1 (v1)',
    );
    expect(() => assertRollbackTarget('web', 3, views)).not.toThrow();
  });
});
