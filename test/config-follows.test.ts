import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeploymentRecord } from '../src/core/records.js';
import type { ConfigState, ReloadReport } from '../src/daemon/config-source.js';
import { pidAlive } from '../src/proc.js';
import { dataPlaneInfo } from '../src/proxy/builtin/launcher.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait } from './helpers.js';
import {
  endedRun,
  makeRepo,
  pipelineConfig,
  pipelineServices,
  type TestRepo,
  waitRun,
} from './pipeline-helpers.js';

let daemon: TestDaemon | undefined;
let repo: TestRepo | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
  repo?.remove();
  repo = undefined;
});

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Rewrites teal.yml the way the harness wrote it, with these parts. */
function writeConfig(d: TestDaemon, parts: { proxy?: string; api?: string; services: string }): string {
  const text = `proxy: ${parts.proxy ?? '{ kind: builtin, listen: 127.0.0.1:0 }'}\napi: ${parts.api ?? '{ listen: 127.0.0.1:0 }'}\nservices:\n${parts.services}\n`;
  writeFileSync(d.configFile, text);
  return text;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

async function body(url: string): Promise<string> {
  const res = await fetch(url);
  return (await res.text()).trim();
}

/** A raw keep-alive connection: one request, then how long until the proxy closes it (null: still open at `waitMs`). */
function idleCloseAfter(url: string, waitMs: number): Promise<number | null> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let answeredAt = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(null);
    }, waitMs);
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      if (answeredAt === 0 && chunk.toString('latin1').includes('\r\n\r\n')) answeredAt = Date.now();
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answeredAt === 0 ? -1 : Date.now() - answeredAt);
    });
    socket.write(`GET / HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
  });
}

describe('a deploy uses teal.yml as it is when asked for', () => {
  it('an edited env reaches the new release and the record names the file; an invalid edit is refused and the live release keeps serving', async () => {
    daemon = await startTestDaemon({ services: `  web:\n${helloService()}` });
    const v1 = await deployAndWait(daemon.client, 'web', 'v1');
    expect(v1.state, v1.error?.message).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 16);

    // The env and the verify step change in the file; teal up is not restarted.
    const edited = writeConfig(daemon, {
      services: `  web:\n${helloService({
        env: '{ APP_VERSION: "{{version}}-edited" }',
        verify: '[{ http: { path: /, body: "hello {{version}}-edited" } }]',
      })}`,
    });
    // --dry-run plans with the file as it is, and applies nothing.
    const dry = await daemon.client.request<{ plan: { release: { env: Record<string, string> } } }>(
      'POST',
      '/v1/services/web/deployments',
      { version: 'v2', dryRun: true },
    );
    expect(dry.plan.release.env.APP_VERSION).toBe('v2-edited');
    expect((await daemon.client.request<ConfigState>('GET', '/v1/config')).differs).toBe(true);

    const v2 = await deployAndWait(daemon.client, 'web', 'v2');
    expect(v2.state, v2.error?.message).toBe('done');
    expect(await body(`${daemon.info.proxy}/`)).toBe('hello v2-edited');
    expect(v2.config).toMatchObject({ file: daemon.configFile, sha256: sha256(edited) });
    expect(Date.parse(v2.config!.mtime)).toBeGreaterThan(0);
    expect(v1.config?.sha256).not.toBe(v2.config?.sha256);
    const history = await daemon.client.request<DeploymentRecord[]>('GET', '/v1/services/web/deployments');
    expect(history.map((d) => d.config?.sha256)).toEqual([sha256(edited), v1.config?.sha256]);
    const after = await daemon.cli(['status', 'web', '--json']);
    expect(after.code, after.stderr).toBe(0);
    expect((JSON.parse(after.stdout) as { config: ConfigState }).config).toMatchObject({
      file: daemon.configFile,
      differs: false,
      needsRestart: [],
    });

    // A file that does not validate: the deploy is refused with its problems, nothing is recorded.
    const broken = readFileSync(daemon.configFile, 'utf8').replace(
      'health: { interval: 50ms',
      'health: { timeout: fast, interval: 50ms',
    );
    writeFileSync(daemon.configFile, broken);
    const line = broken.split('\n').findIndex((l) => l.includes('timeout: fast')) + 1;
    const refused = await daemon.client
      .request('POST', '/v1/services/web/deployments', { version: 'v3' })
      .then(
        () => undefined,
        (err: { code?: string; message?: string }) => err,
      );
    expect(refused?.code).toBe('TEAL_CONFIG_INVALID');
    expect(refused?.message).toContain(`teal.yml:${line}:`);
    expect(refused?.message).toContain('services.web.health.timeout');
    const cli = await daemon.cli(['deploy', 'web', '--version', 'v3']);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('services.web.health.timeout');
    const state = await daemon.client.request<ConfigState>('GET', '/v1/config');
    expect(state.differs).toBe(true);
    expect(state.onDisk.error).toContain('services.web.health.timeout');
    expect(state.applied.sha256).toBe(sha256(edited));
    expect(
      (await daemon.client.request<DeploymentRecord[]>('GET', '/v1/services/web/deployments')).length,
    ).toBe(2);
    expect(daemon.log()).toContain('was refused; the running config stays');

    // Fixed again: the next deploy takes it.
    writeFileSync(daemon.configFile, edited);
    const v3 = await deployAndWait(daemon.client, 'web', 'v3');
    expect(v3.state, v3.error?.message).toBe('done');
    expect(await body(`${daemon.info.proxy}/`)).toBe('hello v3-edited');

    await new Promise((r) => setTimeout(r, 200));
    const { report } = await load.stop();
    expect(report.failures).toEqual([]);
    expect(report.sent).toBeGreaterThan(300);
  }, 120_000);
});

describe('teal up applies route and proxy changes without a restart', () => {
  it('teal reload and SIGHUP apply routes and proxy settings, say what needs a restart, refuse a broken file and a running service removed, all under load with 0 failed requests', async () => {
    const web = `  web:\n${helloService({ routes: '[{ path: / }]' })}`;
    const api = (routes: string) => `  api:\n${helloService({ routes })}`;
    daemon = await startTestDaemon({ services: `${web}\n${api('[{ path: /api }]')}` });
    for (const svc of ['web', 'api']) {
      const d = await deployAndWait(daemon.client, svc, `${svc}1`);
      expect(d.state, d.error?.message).toBe('done');
    }
    const pid = daemon.child.pid!;
    const proxy = daemon.info.proxy;
    const load = backgroundLoad(`${proxy}/`, 16);
    const loadApi = backgroundLoad(`${proxy}/api/x`, 8);
    expect(await body(`${proxy}/v2`)).toBe('hello web1');

    // 1. A new route and new proxy timeouts, through `teal reload`; the API's timeouts need a restart.
    writeConfig(daemon, {
      proxy: '{ kind: builtin, listen: 127.0.0.1:0, timeouts: { idle: 1s } }',
      api: '{ listen: 127.0.0.1:0, timeouts: { headers: 11s } }',
      services: `${web}\n${api('[{ path: /api }, { path: /v2 }]')}`,
    });
    const status = await daemon.cli(['status']);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain('has changed since it was applied');
    expect(status.stdout).toContain('teal reload');
    const drift = await daemon.cli(['status', 'api', '--json']);
    expect(drift.code, drift.stderr).toBe(0);
    const before = (JSON.parse(drift.stdout) as { config: ConfigState }).config;
    expect(before).toMatchObject({ file: daemon.configFile, differs: true });
    expect(before.onDisk.sha256).toBe(sha256(readFileSync(daemon.configFile, 'utf8')));
    expect(before.onDisk.sha256).not.toBe(before.applied.sha256);
    const planeBefore = await dataPlaneInfo(daemon.paths.proxySocket);
    expect(await idleCloseAfter(proxy, 2_500)).toBeNull();

    const reload = await daemon.cli(['reload', '--json']);
    expect(reload.code, reload.stderr).toBe(0);
    const report = JSON.parse(reload.stdout) as ReloadReport;
    expect(report).toMatchObject({ changed: true, needsRestart: ['api.timeouts'] });
    expect(report.live).toEqual(expect.arrayContaining(['proxy.timeouts', 'services.api.routes']));
    expect(await body(`${proxy}/v2`)).toBe('hello api1');
    const planeAfter = await dataPlaneInfo(daemon.paths.proxySocket);
    expect(planeAfter?.pid).not.toBe(planeBefore?.pid);
    // The successor closes idle connections after 1 s, as the file now says (75 s before).
    const idle = await idleCloseAfter(proxy, 8_000);
    expect(idle).not.toBeNull();
    expect(idle!).toBeGreaterThan(500);
    const applied = await daemon.cli(['status', '--json']);
    const [first] = JSON.parse(applied.stdout) as { config: ConfigState }[];
    expect(first!.config).toMatchObject({ differs: false, needsRestart: ['api.timeouts'] });
    const text = await daemon.cli(['status']);
    expect(text.stdout).not.toContain('has changed since it was applied');
    expect(text.stdout).toContain('needs a restart of teal up to take effect: api.timeouts');

    // 2. Another route, by SIGHUP.
    writeConfig(daemon, {
      proxy: '{ kind: builtin, listen: 127.0.0.1:0, timeouts: { idle: 1s } }',
      api: '{ listen: 127.0.0.1:0, timeouts: { headers: 11s } }',
      services: `${web}\n${api('[{ path: /api }, { path: /v2 }, { path: /v3 }]')}`,
    });
    expect(await body(`${proxy}/v3`)).toBe('hello web1');
    process.kill(pid, 'SIGHUP');
    await until('the SIGHUP to apply the /v3 route', async () =>
      (await body(`${proxy}/v3`)) === 'hello api1' ? true : undefined,
    );

    // 3. A broken file, by SIGHUP and by the API: refused with its problems, the routes stay.
    const good = readFileSync(daemon.configFile, 'utf8');
    writeFileSync(daemon.configFile, good.replace('{ path: /v3 }', '{ path: v3 }'));
    process.kill(pid, 'SIGHUP');
    await until('the refusal in the log', async () =>
      daemon!.log().includes('SIGHUP: ') && daemon!.log().includes('was refused') ? true : undefined,
    );
    const invalid = await daemon.client.request('POST', '/v1/config/reload', {}).then(
      () => undefined,
      (err: { code?: string; message?: string }) => err,
    );
    expect(invalid?.code).toBe('TEAL_CONFIG_INVALID');
    expect(invalid?.message).toMatch(/teal\.yml:\d+:\d+ services\.api\.routes\.2\.path/);
    expect(await body(`${proxy}/v3`)).toBe('hello api1');

    // 4. A running service removed from the file: refused, it keeps its routes.
    writeConfig(daemon, { services: web });
    const removed = await daemon.cli(['reload']);
    expect(removed.code).toBe(2);
    expect(removed.stderr).toContain('services.api: is gone from the file, but release 1 is live in blue');
    expect(await body(`${proxy}/api/x`)).toBe('hello api1');
    const refusedState = await daemon.client.request<ConfigState>('GET', '/v1/config');
    expect(refusedState.differs).toBe(true);

    writeFileSync(daemon.configFile, good);
    expect((await daemon.cli(['reload'])).code).toBe(0);
    expect(pidAlive(pid)).toBe(true);
    expect(daemon.child.exitCode).toBeNull();

    await new Promise((r) => setTimeout(r, 200));
    const main = await load.stop();
    const apis = await loadApi.stop();
    expect(main.report.failures).toEqual([]);
    expect(apis.report.failures).toEqual([]);
    expect(main.report.sent).toBeGreaterThan(300);
    expect(apis.samples.every((s) => s.version === 'api1')).toBe(true);
  }, 120_000);
});

describe('a pipeline run uses teal.yml as it is when it starts', () => {
  it('an edited stage runs in the next run without a reload; a broken file fails the run before checkout; under load with 0 failed requests', async () => {
    repo = makeRepo();
    const first = repo.commit('first');
    daemon = await startTestDaemon({
      services: pipelineServices(),
      extraConfig: pipelineConfig(repo.bare),
      env: { TEAL_GITHUB_SECRET: 'it-is-a-secret-0123' },
    });
    const d = daemon;
    const run = async (commit: string) => {
      const started = await d.client.request<{ n: number }>('POST', '/v1/pipelines/web/runs', { commit });
      return waitRun(d, started.n, endedRun);
    };
    const run1 = await run(first);
    expect(run1.state, JSON.stringify(run1.error)).toBe('done');
    const load = backgroundLoad(`${d.info.proxy}/`, 8);

    // The test stage changes in the file; teal up is not told.
    const original = readFileSync(d.configFile, 'utf8');
    writeFileSync(
      d.configFile,
      original.replace(
        '{ name: test, run: "sh test.sh" }',
        '{ name: test, run: "sh test.sh && echo edited-stage" }',
      ),
    );
    const second = repo.commit('second');
    const run2 = await run(second);
    expect(run2.state, JSON.stringify(run2.error)).toBe('done');
    expect(run2.steps.find((s) => s.name === 'test')?.tail).toContain('edited-stage');
    expect((await d.client.request<ConfigState>('GET', '/v1/config')).differs).toBe(false);

    // A file that does not validate: the run fails with its problems, nothing is checked out or deployed.
    writeFileSync(d.configFile, original.replace('source: { repo:', 'source: { branch: main, repo:'));
    const third = repo.commit('third');
    const run3 = await run(third);
    expect(run3.state).toBe('failed');
    expect(run3.error?.code).toBe('TEAL_CONFIG_INVALID');
    expect(run3.error?.message).toContain('pipelines.web.source.branch');
    expect(run3.steps).toEqual([]);
    expect(await body(`${d.info.proxy}/`)).toBe(`hello ${run2.version}`);

    await new Promise((r) => setTimeout(r, 200));
    const { report } = await load.stop();
    expect(report.failures).toEqual([]);
    expect(report.sent).toBeGreaterThan(200);
  }, 180_000);
});
