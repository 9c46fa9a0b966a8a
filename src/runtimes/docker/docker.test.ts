import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isTealError } from '../../core/errors.js';
import {
  type BuiltImage,
  buildNodeImage,
  dockerdAvailable,
  startDockerd,
  type TestDockerd,
} from '../../testing/docker.js';
import { answers, get, runtimeContract, testLabels, waitFor } from '../runtime.contract.js';
import type { InstanceSpec } from '../runtime.js';
import { DockerRuntime } from './docker.js';
import type { ContainerInspect } from './labels.js';

const available = dockerdAvailable();
const IMAGE = 'teal-test/hello:1';
let dockerd: TestDockerd;
let built: BuiltImage;

if (available) {
  beforeAll(async () => {
    dockerd = await startDockerd();
    built = await buildNodeImage(dockerd.engine, IMAGE);
    process.stderr.write(
      `docker tests: dockerd answered /_ping after ${dockerd.startedInMs} ms; ${IMAGE} built in ${built.tookMs} ms\n`,
    );
  }, 120_000);
  afterAll(async () => {
    await dockerd?.close();
  });
}

/** examples/hello in the image built FROM scratch: node at the host's path, the app at /app. */
function appSpec(overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  return {
    labels: testLabels(),
    index: 0,
    command: [process.execPath, '/app/server.js'],
    cwd: '/',
    env: { APP_VERSION: '1.2.3' },
    host: '127.0.0.1',
    container: { image: IMAGE, port: 3000, pull: 'never' },
    ...overrides,
  };
}

function scriptSpec(source: string, overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  return appSpec({ command: [process.execPath, '--input-type=module', '-e', source], ...overrides });
}

if (available) {
  runtimeContract(
    'docker',
    {
      create: async (stateDir) => new DockerRuntime({ stateDir, host: dockerd.host }),
      appSpec,
      scriptSpec,
    },
    // Measured here: in about one run of four, stderr's "two" comes out after stdout's "three".
    { ordersAcrossStreams: false },
  );
}

async function failure(promise: Promise<unknown>): Promise<{ code: unknown; message: string }> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { code: isTealError(err) ? err.code : err, message: (err as Error | undefined)?.message ?? '' };
}

describe('DockerRuntime without an engine', () => {
  it('says which engine address it cannot reach, and where that address came from', async () => {
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = 'unix:///tmp/teal-no-such-dir/docker.sock';
    try {
      const runtime = new DockerRuntime({ stateDir: os.tmpdir() });
      const { code, message } = await failure(runtime.list());
      expect(code).toBe('TEAL_RUNTIME_FAILED');
      expect(message).toContain(
        'cannot reach the Docker engine at unix:///tmp/teal-no-such-dir/docker.sock (from DOCKER_HOST)',
      );
      await runtime.close();
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  });

  it('refuses an engine address it cannot use', () => {
    expect(() => new DockerRuntime({ stateDir: os.tmpdir(), host: 'ssh://deploy@web1' })).toThrow(
      'unsupported Docker engine address "ssh://deploy@web1"',
    );
  });
});

describe.skipIf(!available)('DockerRuntime', () => {
  const dirs: string[] = [];
  const runtimes: DockerRuntime[] = [];

  function runtimeFor(options: { owner?: string } = {}): DockerRuntime {
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'teal-rt-'));
    dirs.push(stateDir);
    const runtime = new DockerRuntime({ stateDir, host: dockerd.host, ...options });
    runtimes.push(runtime);
    return runtime;
  }

  afterEach(async () => {
    for (const runtime of runtimes.splice(0)) {
      for (const instance of await runtime.list()) await runtime.stop(instance, { timeoutMs: 1_000 });
      await runtime.close();
    }
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  function inspect(
    id: string,
  ): Promise<ContainerInspect & { Name: string; HostConfig: Record<string, unknown> }> {
    return dockerd.engine.json('GET', `/containers/teal-${id}/json`);
  }

  it('refuses an image the engine does not have when the pull policy is never', async () => {
    const runtime = runtimeFor();
    const spec = appSpec({ container: { image: 'teal-test/absent:9', port: 3000, pull: 'never' } });
    const { code, message } = await failure(runtime.start(spec, { signal: AbortSignal.timeout(10_000) }));
    expect(code).toBe('TEAL_START_FAILED');
    expect(message).toBe(
      `cannot start services.web: image "teal-test/absent:9" is not on the Docker engine at ${dockerd.host} and its pull policy is "never"`,
    );
    expect(await runtime.list()).toEqual([]);
  });

  it('fails with the engine’s own message when the pull of a missing image fails', async () => {
    const runtime = runtimeFor();
    const ref = '127.0.0.1:1/teal-test/absent:9';
    const spec = appSpec({ container: { image: ref, port: 3000 } });
    const { code, message } = await failure(runtime.start(spec, { signal: AbortSignal.timeout(30_000) }));
    expect(code).toBe('TEAL_START_FAILED');
    expect(message).toMatch(
      new RegExp(
        `^cannot start services\\.web: pulling image "${ref.replace(/\./g, '\\.')}" failed: .*127\\.0\\.0\\.1:1`,
      ),
    );
    expect(message).toContain('connection refused');
    expect(await runtime.list()).toEqual([]);
  });

  it('with pull always, a failed pull fails the start even though the engine has an old copy', async () => {
    const runtime = runtimeFor();
    const ref = '127.0.0.1:1/teal-test/hello:1';
    await dockerd.engine.json('POST', `/images/${IMAGE}/tag`, {
      query: { repo: '127.0.0.1:1/teal-test/hello', tag: '1' },
    });
    const always = appSpec({ container: { image: ref, port: 3000, pull: 'always' } });
    const { code, message } = await failure(runtime.start(always, { signal: AbortSignal.timeout(30_000) }));
    expect(code).toBe('TEAL_START_FAILED');
    expect(message).toContain(`pulling image "${ref}" failed: `);
    expect(await runtime.list()).toEqual([]);
    // The default policy (missing) runs the copy the engine has.
    const missing = appSpec({ container: { image: ref, port: 3000 } });
    const instance = await runtime.start(missing, { signal: AbortSignal.timeout(30_000) });
    expect(instance.image).toEqual({ ref, id: built.id });
  });

  it('records the image ID the instance runs, and lists it back', async () => {
    const runtime = runtimeFor();
    const instance = await runtime.start(appSpec(), { signal: AbortSignal.timeout(30_000) });
    // Built here, never pulled: an image ID and no registry digest.
    expect(instance.image).toEqual({ ref: IMAGE, id: built.id });
    expect((await inspect(instance.id)).Image).toBe(built.id);
    const [listed] = await runtime.list();
    expect(listed?.image).toEqual({ ref: IMAGE, id: built.id });
  });

  it('names and labels the container, and passes init, limits and extra labels to the engine', async () => {
    const runtime = runtimeFor();
    const spec = appSpec({
      index: 2,
      labels: testLabels('api', 'green'),
      container: {
        image: IMAGE,
        port: 3000,
        pull: 'never',
        init: true,
        memoryBytes: 128 * 1024 * 1024,
        cpus: 0.5,
        labels: { 'com.example.team': 'payments' },
      },
    });
    const instance = await runtime.start(spec, { signal: AbortSignal.timeout(30_000) });
    expect(instance.id).toMatch(/^api-green-r3-2-[0-9a-z]{6}$/);
    const container = await inspect(instance.id);
    expect(container.Name).toBe(`/teal-${instance.id}`);
    expect(container.Config.Labels).toEqual({
      'com.example.team': 'payments',
      'teal.owner': runtime.owner,
      'teal.id': instance.id,
      'teal.service': 'api',
      'teal.slot': 'green',
      'teal.release': '3',
      'teal.deployment': '7',
      'teal.version': '1.2.3',
      'teal.index': '2',
      'teal.started-at': String(instance.startedAt),
      'teal.container-port': '3000',
      'teal.image': IMAGE,
    });
    expect(container.HostConfig).toMatchObject({
      Init: true,
      Memory: 128 * 1024 * 1024,
      NanoCpus: 500_000_000,
      PortBindings: { '3000/tcp': [{ HostIp: '127.0.0.1', HostPort: String(instance.port) }] },
      RestartPolicy: { Name: 'no' },
    });
    // With docker-init as PID 1 the app still gets SIGTERM and stops gracefully.
    await answers(instance);
    const exited = runtime.exited(instance, { signal: AbortSignal.timeout(20_000) });
    await runtime.stop(instance, { timeoutMs: 10_000 });
    expect(await exited).toEqual({ code: 0, signal: null });
  });

  it('refuses extra labels in teal’s own namespace and the host network', async () => {
    const runtime = runtimeFor();
    const signal = AbortSignal.timeout(10_000);
    const labelled = appSpec({ container: { image: IMAGE, port: 3000, labels: { 'teal.slot': 'green' } } });
    expect((await failure(runtime.start(labelled, { signal }))).message).toBe(
      'cannot start services.web: labels teal.slot are reserved for teal',
    );
    const hostNetwork = appSpec({ container: { image: IMAGE, port: 3000, network: 'host' } });
    expect((await failure(runtime.start(hostNetwork, { signal }))).code).toBe('TEAL_START_FAILED');
  });

  it('gives the container only the spec’s env (fromEnv, file and inheritEnv resolved), with PORT the container port and HOST 0.0.0.0', async () => {
    const runtime = runtimeFor();
    process.env.TEAL_TOKEN = 'secret-token';
    process.env.TEAL_TEST_SECRET = 'shell-secret';
    process.env.TEAL_TEST_NAMED = 'named';
    process.env.TEAL_TEST_INHERITED = 'inherited';
    const secretFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'teal-docker-env-')), 'key');
    writeFileSync(secretFile, 'from-a-file\n');
    try {
      const keys = [
        'TEAL_TOKEN',
        'TEAL_TEST_SECRET',
        'APP_VERSION',
        'NAMED',
        'FILE',
        'TEAL_TEST_INHERITED',
        'PORT',
        'HOST',
      ];
      const script = `console.log(${JSON.stringify(keys)}.map((k) => k + '=' + process.env[k]).join(' '));`;
      const spec = {
        ...scriptSpec(script),
        envFrom: { NAMED: { fromEnv: 'TEAL_TEST_NAMED' }, FILE: { file: secretFile } },
        inheritEnv: ['TEAL_TEST_INHERITED'],
      };
      const instance = await runtime.start(spec, { signal: AbortSignal.timeout(30_000) });
      expect(await runtime.exited(instance, { signal: AbortSignal.timeout(10_000) })).toEqual({
        code: 0,
        signal: null,
      });
      expect(await runtime.logTail(instance, 5)).toEqual([
        'TEAL_TOKEN=undefined TEAL_TEST_SECRET=undefined APP_VERSION=1.2.3 NAMED=named FILE=from-a-file TEAL_TEST_INHERITED=inherited PORT=3000 HOST=0.0.0.0',
      ]);
    } finally {
      for (const k of ['TEAL_TOKEN', 'TEAL_TEST_SECRET', 'TEAL_TEST_NAMED', 'TEAL_TEST_INHERITED'])
        delete process.env[k];
    }
  });

  it('sees only its owner’s containers: another owner neither lists nor stops them', async () => {
    const mine = runtimeFor({ owner: 'teal-test-mine' });
    const theirs = runtimeFor({ owner: 'teal-test-theirs' });
    const instance = await mine.start(appSpec(), { signal: AbortSignal.timeout(30_000) });
    expect(await theirs.list()).toEqual([]);
    expect(await theirs.status(instance)).toEqual({ state: 'unknown' });
    await theirs.stop(instance, { timeoutMs: 1_000 });
    expect(await mine.status(instance)).toEqual({ state: 'running' });
    const adopted = runtimeFor({ owner: 'teal-test-mine' });
    expect((await adopted.list()).map((i) => i.id)).toEqual([instance.id]);
  });

  it('fails clearly, naming the socket, while the engine is stopped, and works again once it is back', async () => {
    const runtime = runtimeFor();
    const instance = await runtime.start(appSpec(), { signal: AbortSignal.timeout(30_000) });
    await answers(instance);
    await dockerd.stop();
    try {
      const unreachable = `cannot reach the Docker engine at ${dockerd.host} (configured)`;
      for (const attempt of [
        runtime.start(appSpec(), { signal: AbortSignal.timeout(10_000) }),
        runtime.status(instance),
        runtime.list(),
        runtime.stop(instance, { timeoutMs: 1_000 }),
      ]) {
        const { code, message } = await failure(attempt);
        expect(code).toBe('TEAL_RUNTIME_FAILED');
        expect(message).toContain(unreachable);
      }
    } finally {
      await dockerd.restart();
    }
    // The engine stopped its containers on the way down; the instance is still ours to see and remove.
    const [listed, ...rest] = await runtime.list();
    expect(rest).toEqual([]);
    expect(listed).toMatchObject({ id: instance.id, status: { state: 'exited' } });
    await expect(get(instance.host, instance.port)).rejects.toThrow();
    await runtime.stop(instance, { timeoutMs: 1_000 });
    expect(await runtime.list()).toEqual([]);
    await waitFor(async () => (await dockerd.engine.json<string>('GET', '/_ping')) === 'OK', 'the engine');
  });
});
