import { describe, expect, it } from 'vitest';
import { parseConfig } from './config/load.js';
import type { ServiceConfig } from './config/schema.js';
import { planDeploy, planRollback, previousRelease } from './plan.js';
import {
  type DeploymentRecord,
  emptySlot,
  type ReleaseRecord,
  type ServiceState,
  type SlotRecord,
} from './records.js';

function service(extra = ''): ServiceConfig {
  const text = `services:\n  web:\n    command: [node, server.js, --version, "{{version}}"]\n    cwd: app\n    env: { V: "{{version}}", S: "{{slot}}" }\n${extra}`;
  return parseConfig(text, '/srv/teal.yml').config.services.web!;
}

function slot(s: 'blue' | 'green', patch: Partial<SlotRecord> = {}): SlotRecord & { revision: number } {
  return { ...emptySlot(s), ...patch, revision: 1 };
}

function state(patch: Partial<ServiceState> = {}): ServiceState {
  return {
    service: 'web',
    live: null,
    liveRevision: 0,
    slots: { blue: slot('blue'), green: slot('green') },
    ...patch,
  };
}

const release = (n: number, version: string): ReleaseRecord => ({
  n,
  service: 'web',
  version,
  runtime: 'process',
  command: ['node', 'server.js', '--version', version],
  cwd: '/srv/app',
  env: { V: version, S: '{{slot}}' },
  configHash: `hash${n}`,
  createdAt: '2026-01-01T00:00:00.000Z',
});

const done = (n: number, rel: number, from: number | null): DeploymentRecord => ({
  n,
  service: 'web',
  kind: 'deploy',
  state: 'done',
  version: `v${rel}`,
  release: rel,
  targetSlot: 'blue',
  fromSlot: null,
  fromRelease: from,
  fromVersion: null,
  mode: 'start',
  actor: 't',
  createdAt: '2026-01-01T00:00:00.000Z',
  events: [],
});

describe('planDeploy', () => {
  it('a first deploy targets blue, resolves the release and ends by going live', () => {
    const plan = planDeploy({
      service: 'web',
      config: service(),
      configDir: '/srv',
      version: 'v1',
      state: state(),
      releases: [],
    });
    expect(plan).toMatchObject({
      mode: 'start',
      targetSlot: 'blue',
      fromSlot: null,
      releaseN: null,
      clear: [],
    });
    expect(plan.release).toMatchObject({
      version: 'v1',
      command: ['node', 'server.js', '--version', 'v1'],
      cwd: '/srv/app',
      env: { V: 'v1', S: '{{slot}}' },
    });
    expect(plan.instances).toEqual([{ index: 0 }]);
    expect(plan.steps.at(-1)).toBe('switch web live to blue (first release)');
  });

  it('targets the idle slot, and stops what is left there before starting', () => {
    const live = state({
      live: 'blue',
      slots: {
        blue: slot('blue', { state: 'live', release: 2, version: 'v2' }),
        green: slot('green', {
          state: 'warm',
          release: 1,
          version: 'v1',
          instances: [{ id: 'old', host: '127.0.0.1', port: 9002, index: 0 }],
        }),
      },
    });
    const plan = planDeploy({
      service: 'web',
      config: service(),
      configDir: '/srv',
      version: 'v3',
      state: live,
      releases: [],
    });
    expect(plan).toMatchObject({ targetSlot: 'green', fromSlot: 'blue', fromRelease: 2, fromVersion: 'v2' });
    // The warm v1 is a rollback target: the new release starts beside it, and it goes after the switch.
    expect(plan.clear).toEqual([]);
    expect(plan.warm).toEqual({ release: 1, version: 'v1', instances: 1, how: 'beside' });
    expect(plan.steps[0]).toMatch(
      /^start 1 instance\(s\) of web v3 in green beside the warm release 1 \(v1\), which stays the instant rollback until the switch/,
    );
    const switchAt = plan.steps.findIndex((s) => s.startsWith('switch web'));
    expect(plan.steps[switchAt + 1]).toBe(
      'stop the release 1 (v1) that was warm in green: v3 took its place',
    );

    // What a crash left in a slot (not warm) is no rollback target: stopped first, as before.
    const leftover = planDeploy({
      service: 'web',
      config: service(),
      configDir: '/srv',
      version: 'v3',
      state: { ...live, slots: { ...live.slots, green: { ...live.slots.green, state: 'stopping' } } },
      releases: [],
    });
    expect(leftover.warm).toBe(null);
    expect(leftover.clear.map((i) => i.id)).toEqual(['old']);
    expect(leftover.steps[0]).toBe('stop the 1 instance(s) left in green');

    // Fixed ports are the warm instances' own: the plan says plainly that the warm release goes first.
    const fixed = planDeploy({
      service: 'web',
      config: service('    ports: { blue: 9001, green: 9002 }\n'),
      configDir: '/srv',
      version: 'v3',
      state: live,
      releases: [],
    });
    expect(fixed.warm).toMatchObject({ release: 1, how: 'replace' });
    expect(fixed.clear.map((i) => i.id)).toEqual(['old']);
    expect(fixed.steps[0]).toBe(
      "the green slot's ports are fixed (9002): stop the warm release 1 (v1) to start v3; after a failure nothing is warm",
    );
  });

  it('uses the fixed ports of the target slot, one per instance', () => {
    const plan = planDeploy({
      service: 'web',
      config: service('    instances: 2\n    ports: { blue: 9001, green: 9101 }\n'),
      configDir: '/srv',
      version: 'v1',
      state: state({ live: 'blue', slots: { blue: slot('blue', { state: 'live' }), green: slot('green') } }),
      releases: [],
    });
    expect(plan.instances).toEqual([
      { index: 0, port: 9101, portSource: 'services.web.ports.green' },
      { index: 1, port: 9102, portSource: 'services.web.ports.green' },
    ]);
  });

  it('reuses the release number when the same version and config were released before', () => {
    const first = planDeploy({
      service: 'web',
      config: service(),
      configDir: '/srv',
      version: 'v1',
      state: state(),
      releases: [],
    });
    const existing = { ...first.release, n: 7, createdAt: 'x' };
    expect(
      planDeploy({
        service: 'web',
        config: service(),
        configDir: '/srv',
        version: 'v1',
        state: state(),
        releases: [existing],
      }).releaseN,
    ).toBe(7);
    expect(
      planDeploy({
        service: 'web',
        config: service(),
        configDir: '/srv',
        version: 'v2',
        state: state(),
        releases: [existing],
      }).releaseN,
    ).toBe(null);
  });

  it('refuses a version that could not be a label', () => {
    expect(() =>
      planDeploy({
        service: 'web',
        config: service(),
        configDir: '/srv',
        version: 'v1; rm -rf /',
        state: state(),
        releases: [],
      }),
    ).toThrow(/version "v1; rm -rf \/" is not valid/);
  });
});

describe('planRollback', () => {
  const warm = state({
    live: 'green',
    slots: {
      blue: slot('blue', {
        state: 'warm',
        release: 1,
        version: 'v1',
        instances: [{ id: 'b0', host: '127.0.0.1', port: 9001, index: 0 }],
      }),
      green: slot('green', { state: 'live', release: 2, version: 'v2' }),
    },
  });

  it('flips to the warm slot when it holds the previous release', () => {
    const plan = planRollback({
      service: 'web',
      config: service(),
      state: warm,
      releases: [release(1, 'v1'), release(2, 'v2')],
      deployments: [],
    });
    expect(plan).toMatchObject({
      kind: 'rollback',
      mode: 'flip',
      targetSlot: 'blue',
      releaseN: 1,
      fromSlot: 'green',
      fromRelease: 2,
    });
    expect(plan.instances).toEqual([{ index: 0, port: 9001 }]);
  });

  it('starts the previous release cold once the warm slot is gone, through every step', () => {
    const cold = state({
      live: 'green',
      slots: { blue: slot('blue'), green: slot('green', { state: 'live', release: 2, version: 'v2' }) },
    });
    const plan = planRollback({
      service: 'web',
      config: service(),
      state: cold,
      releases: [release(1, 'v1'), release(2, 'v2')],
      deployments: [done(1, 1, null), done(2, 2, 1)],
    });
    expect(plan).toMatchObject({ mode: 'start', targetSlot: 'blue', releaseN: 1 });
    expect(plan.release.version).toBe('v1');
    expect(plan.steps.some((s) => s.startsWith('wait until /health passes'))).toBe(true);
  });

  it('goes to a named release, cold when it is not the warm one', () => {
    const plan = planRollback({
      service: 'web',
      config: service(),
      state: warm,
      releases: [release(1, 'v1'), release(2, 'v2'), release(3, 'v0')],
      deployments: [done(1, 3, null)],
      to: 3,
    });
    // Started beside the warm release 1, which stays until the switch (the same rule as deploys).
    expect(plan).toMatchObject({
      mode: 'start',
      releaseN: 3,
      clear: [],
      warm: { release: 1, how: 'beside' },
    });
  });

  it('refuses a release that never went live, with the reason and the ones that served', () => {
    const failed: DeploymentRecord = {
      ...done(3, 3, 2),
      state: 'failed',
      events: [
        { at: '', t: 0, step: 'health', status: 'failed', message: 'x' },
        { at: '', t: 0, step: 'stop', status: 'done', message: 'y' },
      ],
      error: { code: 'TEAL_HEALTH_FAILED', message: '/health never passed\nmore' },
    };
    const request = {
      service: 'web',
      config: service(),
      state: warm,
      releases: [release(1, 'v1'), release(2, 'v2'), release(3, 'v3')],
      deployments: [done(1, 1, null), done(2, 2, 1), failed],
    };
    expect(() => planRollback({ ...request, to: 3 })).toThrow(
      'release 3 (v3) of web never went live: its deployment #3 failed at health (/health never passed); roll back to a release that served: 1 (v1)',
    );
    // The warm release is still the default target.
    expect(planRollback(request)).toMatchObject({ mode: 'flip', releaseN: 1 });
  });

  it('explains when there is nothing to go back to', () => {
    expect(() =>
      planRollback({ service: 'web', config: service(), state: state(), releases: [], deployments: [] }),
    ).toThrow(/web has no live release to roll back from/);
    const first = state({
      live: 'blue',
      slots: { blue: slot('blue', { state: 'live', release: 1, version: 'v1' }), green: slot('green') },
    });
    expect(() =>
      planRollback({
        service: 'web',
        config: service(),
        state: first,
        releases: [release(1, 'v1')],
        deployments: [done(1, 1, null)],
      }),
    ).toThrow(/no earlier release to roll back to; name one with --to/);
    expect(() =>
      planRollback({ service: 'web', config: service(), state: warm, releases: [], deployments: [], to: 2 }),
    ).toThrow(/release 2 of web is already live/);
    expect(() =>
      planRollback({ service: 'web', config: service(), state: warm, releases: [], deployments: [], to: 9 }),
    ).toThrow(/web has no release 9/);
  });

  it('previousRelease follows the completed deployments back', () => {
    const history = [done(1, 1, null), done(2, 2, 1), done(3, 3, 2)];
    expect(previousRelease(history, 3)).toBe(2);
    expect(previousRelease(history, 2)).toBe(1);
    expect(previousRelease(history, 1)).toBe(null);
  });
});

describe('container releases', () => {
  const docker = (extra = '') =>
    parseConfig(
      `services:\n  web:\n    runtime: docker\n    image: "registry.local/{{service}}:{{version}}"\n    port: 3000\n    env: { V: "{{version}}" }\n${extra}`,
      '/srv/teal.yml',
    ).config.services.web!;
  const deploy = (config: ServiceConfig, version: string) =>
    planDeploy({ service: 'web', config, configDir: '/srv', version, state: state(), releases: [] });

  it('resolves the image with the version and service, and the docker defaults into the release', () => {
    const plan = deploy(docker('    memory: 256MB\n    volumes: ["/srv/{{service}}:/data"]\n'), 'v7');
    expect(plan.release).toMatchObject({
      runtime: 'docker',
      command: [],
      container: {
        image: 'registry.local/web:v7',
        port: 3000,
        pull: 'missing',
        init: true,
        memoryBytes: 256 * 1024 * 1024,
        volumes: ['/srv/web:/data'],
      },
    });
    expect(plan.host).toBe('127.0.0.1');
    expect(plan.image).toBeUndefined();
    expect(plan.steps[0]).toBe(
      'start 1 instance(s) of web v7 in blue on 127.0.0.1:a free port: container of registry.local/web:v7 (pull missing)',
    );
  });

  it('gives a different release for a different container definition, the same one for the same', () => {
    const a = deploy(docker(), 'v1').release.configHash;
    expect(deploy(docker(), 'v1').release.configHash).toBe(a);
    expect(deploy(docker('    cpus: 1\n'), 'v1').release.configHash).not.toBe(a);
    expect(deploy(docker('    pull: never\n'), 'v1').release.configHash).not.toBe(a);
  });

  it('a rollback starts the image a release ran, by its ID, without pulling', () => {
    const ran = { ref: 'registry.local/web:v1', id: `sha256:${'a'.repeat(64)}` };
    const rel1 = {
      ...release(1, 'v1'),
      runtime: 'docker',
      command: [],
      container: { image: ran.ref, port: 3000 },
    };
    const plan = planRollback({
      service: 'web',
      config: docker(),
      state: state({
        live: 'green',
        slots: { blue: slot('blue'), green: slot('green', { state: 'live', release: 2, version: 'v2' }) },
      }),
      releases: [rel1, release(2, 'v2')],
      deployments: [{ ...done(1, 1, null), image: ran }, done(2, 2, 1)],
      to: 1,
    });
    expect(plan).toMatchObject({ mode: 'start', releaseN: 1, image: ran });
    expect(plan.steps[0]).toContain('as it ran; not pulled');
  });
});

describe('placement on fleet hosts', () => {
  const fleet = (extra: string) =>
    parseConfig(
      `store: { kind: etcd, endpoints: [http://10.0.0.1:2379] }\nservices:\n  web:\n    command: [node, server.js]\n${extra}`,
      '/srv/teal.yml',
    ).config.services.web!;
  const host = (id: string, labels: Record<string, string>) => ({
    id,
    address: '10.0.0.2',
    labels,
    capacity: 0,
    runtime: 'process',
    pid: 1,
    hostname: id,
    startedAt: '2026-01-01T00:00:00.000Z',
  });
  const plan = (config: ServiceConfig, hosts = [host('h1', {})]) =>
    planDeploy({
      service: 'web',
      config,
      configDir: '/srv',
      version: 'v1',
      state: state(),
      releases: [],
      hosts,
    });

  it('puts instancesPerHost instances on each named host, with fixed ports counted per host', () => {
    const p = plan(
      fleet('    hosts: [h1, h2]\n    instancesPerHost: 2\n    ports: { blue: 9001, green: 9101 }\n'),
    );
    expect(p.instances.map((i) => [i.index, i.hostId, i.port])).toEqual([
      [0, 'h1', 9001],
      [1, 'h1', 9002],
      [2, 'h2', 9001],
      [3, 'h2', 9002],
    ]);
    expect(p.steps[0]).toMatch(/on fleet host\(s\) h1, h2/);
  });

  it('selects registered hosts by label, and refuses a deploy no host matches', () => {
    const config = fleet('    hostLabels: { zone: b }\n');
    const hosts = [host('h2', { zone: 'b' }), host('h1', { zone: 'a' }), host('h3', { zone: 'b' })];
    expect(plan(config, hosts).instances.map((i) => i.hostId)).toEqual(['h2', 'h3']);
    expect(() => plan(config, [host('h1', { zone: 'a' })])).toThrow(
      /no registered host matches services\.web\.hostLabels \(zone=b\)/,
    );
  });

  it('places a docker service on hosts too: its instances carry the container to the agents', () => {
    const config = parseConfig(
      'store: { kind: etcd, endpoints: [http://10.0.0.1:2379] }\nservices:\n  web:\n    runtime: docker\n    image: "registry.local/web:{{version}}"\n    port: 3000\n    hosts: [h1, h2]\n',
      '/srv/teal.yml',
    ).config.services.web!;
    const p = plan(config);
    expect(p.instances.map((i) => i.hostId)).toEqual(['h1', 'h2']);
    expect(p.release.container).toMatchObject({ image: 'registry.local/web:v1', port: 3000 });
  });

  it('refuses fleet placement without etcd, or with both hosts and hostLabels', () => {
    expect(() =>
      parseConfig('services:\n  web:\n    command: [node, s.js]\n    hosts: [h1]\n', '/srv/teal.yml'),
    ).toThrow(/services\.web\.hosts: fleet hosts need store: \{ kind: etcd \}/);
    expect(() => fleet('    hosts: [h1]\n    hostLabels: { zone: a }\n')).toThrow(
      /use either hosts or hostLabels/,
    );
    expect(() => fleet('    instancesPerHost: 2\n')).toThrow(/only with hosts or hostLabels/);
  });
});
