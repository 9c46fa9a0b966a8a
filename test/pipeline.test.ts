import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeploymentRecord } from '../src/core/records.js';
import { cliEntry, packageRoot } from '../src/paths.js';
import type { PipelineRun } from '../src/pipeline/records.js';
import { signBody } from '../src/pipeline/signature.js';
import { request } from '../src/proxy/switch.contract.js';
import { runCli, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad } from './helpers.js';
import {
  endedRun,
  makeRepo as makeTestRepo,
  pipelineConfig,
  pipelineServices,
  type TestRepo,
  waitRun,
} from './pipeline-helpers.js';

const SECRET = 'it-is-a-secret-0123';
let daemon: TestDaemon | undefined;
let repo: TestRepo | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
  repo?.remove();
  repo = undefined;
});

/** A bare repository and a working copy of the example app, removed after the test. */
function makeRepo(): TestRepo {
  repo = makeTestRepo();
  return repo;
}

async function start(bare: string, production: Record<string, string> = {}) {
  daemon = await startTestDaemon({
    services: pipelineServices(production),
    extraConfig: pipelineConfig(bare),
    env: { TEAL_GITHUB_SECRET: SECRET },
  });
  return daemon;
}

let deliveries = 0;
/** Posts a GitHub push delivery for `commit`, signed with `secret`. */
async function push(
  d: TestDaemon,
  commit: string,
  options: { secret?: string; message?: string; branch?: string; delivery?: string; signature?: string } = {},
) {
  const body = JSON.stringify({
    ref: `refs/heads/${options.branch ?? 'main'}`,
    before: '0'.repeat(40),
    after: commit,
    deleted: false,
    head_commit: { id: commit, message: options.message ?? 'a change', author: { name: 'Teal Test' } },
    repository: { full_name: 'teal/app' },
  });
  const res = await fetch(`${d.info.api}/v1/hooks/github/web`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-github-delivery': options.delivery ?? `delivery-${++deliveries}-${Date.now()}`,
      ...(options.signature === ''
        ? {}
        : { 'x-hub-signature-256': options.signature ?? signBody(options.secret ?? SECRET, body) }),
    },
    body,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const ended = endedRun;

describe('pipelines: a git push deploys', () => {
  it('a signed push runs check, test and build, deploys staging then production under load with no failed request', async () => {
    const repo = makeRepo();
    const first = repo.commit('first');
    const d = await start(repo.bare);
    const t0 = Date.now();
    const accepted = await push(d, first);
    expect(accepted.status).toBe(202);
    const run1 = await waitRun(d, accepted.body.run as number, ended);
    expect(run1.state, JSON.stringify(run1.error)).toBe('done');
    const firstMs = Date.now() - t0;

    // The second commit goes out while keep-alive load runs through both environments.
    const production = backgroundLoad(`${d.info.proxy}/`, 16);
    const staging = backgroundLoad(`${d.info.proxy}/staging`, 16);
    const second = repo.commit('second');
    const t1 = Date.now();
    const again = await push(d, second);
    expect(again.status).toBe(202);
    const run2 = await waitRun(d, again.body.run as number, ended);
    const pushToLive = Date.now() - t1;
    await sleep(200);
    const [p, s] = await Promise.all([production.stop(), staging.stop()]);

    expect(run2.state, JSON.stringify(run2.error)).toBe('done');
    expect(run2.steps.map((x) => `${x.kind}:${x.name}:${x.state}`)).toEqual([
      'checkout:checkout:done',
      'stage:check:done',
      'stage:test:done',
      'stage:build:done',
      'artifact:dist:done',
      'deploy:web-staging:done',
      'deploy:web:done',
    ]);
    expect(run2.steps[2]).toMatchObject({ exitCode: 0, tail: `testing ${second.slice(0, 7)}\n` });
    expect(run2).toMatchObject({
      commit: second,
      version: second.slice(0, 7),
      branch: 'main',
      author: 'Teal Test',
    });
    expect(p.report.failed, JSON.stringify(p.report.failures.slice(0, 3))).toBe(0);
    expect(s.report.failed, JSON.stringify(s.report.failures.slice(0, 3))).toBe(0);
    expect(p.samples.some((x) => x.version === second.slice(0, 7))).toBe(true);
    expect(s.samples.some((x) => x.version === second.slice(0, 7))).toBe(true);
    expect((await request(`${d.info.proxy}/`)).body).toBe(`hello ${second.slice(0, 7)}\n`);
    // The release ran from the kept artifact, not from a checkout (which is gone).
    const web = await d.client.request<DeploymentRecord>('GET', `/v1/services/web/deployments/2`);
    expect(web.actor).toBe(`pipeline web run #${run2.n}`);
    const status = JSON.parse((await d.cli(['status', 'web', '--json'])).stdout);
    expect(status.live).toBe('green');
    const history = JSON.parse(
      (await d.cli(['pipeline', 'history', 'web', '--json'])).stdout,
    ) as PipelineRun[];
    expect(history.map((r) => r.state)).toEqual(['done', 'done']);
    console.log(
      `push to live in production: first ${firstMs} ms, under load ${pushToLive} ms; requests: ${p.report.sent + s.report.sent}, failed 0`,
    );
  }, 180_000);

  it('a commit whose test stage fails deploys nothing; the live release keeps serving', async () => {
    const repo = makeRepo();
    const good = repo.commit('good');
    const d = await start(repo.bare);
    const ok = await push(d, good);
    expect((await waitRun(d, ok.body.run as number, ended)).state).toBe('done');
    const bad = repo.commit('broken', 3);
    const res = await push(d, bad);
    const run = await waitRun(d, res.body.run as number, ended);
    expect(run.state).toBe('failed');
    expect(run.error).toMatchObject({ code: 'TEAL_STAGE_FAILED' });
    expect(run.steps.map((x) => `${x.name}:${x.state}:${x.exitCode ?? ''}`)).toEqual([
      'checkout:done:',
      'check:done:0',
      'test:failed:3',
    ]);
    const logs = await d.cli(['pipeline', 'logs', 'web', String(run.n), '--stage', 'test']);
    expect(logs.stdout).toContain(`testing ${bad.slice(0, 7)}`);
    expect((await request(`${d.info.proxy}/`)).body).toBe(`hello ${good.slice(0, 7)}\n`);
    const history = await d.client.request<unknown[]>('GET', '/v1/services/web/deployments');
    expect(history).toHaveLength(1);
  }, 120_000);

  it('a bad or missing signature gets 401 and runs nothing; unknown branches, [skip ci] and pings are acknowledged', async () => {
    const repo = makeRepo();
    const sha = repo.commit('one');
    const d = await start(repo.bare);
    expect((await push(d, sha, { secret: 'wrong-secret' })).status).toBe(401);
    expect((await push(d, sha, { signature: '' })).status).toBe(401);
    expect((await push(d, sha, { signature: 'sha256=zz' })).status).toBe(401);
    const other = await push(d, sha, { branch: 'feature/x' });
    expect(other).toMatchObject({ status: 202, body: { skipped: expect.stringContaining('not followed') } });
    const skip = await push(d, sha, { message: 'docs only [skip ci]' });
    expect(skip).toMatchObject({ status: 202, body: { skipped: expect.stringContaining('skip ci') } });
    const pingBody = JSON.stringify({ zen: 'Keep it logically awesome.', hook_id: 1 });
    const ping = await fetch(`${d.info.api}/v1/hooks/github/web`, {
      method: 'POST',
      headers: { 'x-github-event': 'ping', 'x-hub-signature-256': signBody(SECRET, pingBody) },
      body: pingBody,
    });
    expect(ping.status).toBe(200);
    expect(await d.client.request<unknown[]>('GET', '/v1/pipelines/web/runs')).toEqual([]);

    // A redelivery of the same delivery id starts no second run.
    const once = await push(d, sha, { delivery: 'same-id' });
    const twice = await push(d, sha, { delivery: 'same-id' });
    expect(twice.body).toMatchObject({ run: once.body.run, duplicate: true });
    await waitRun(d, once.body.run as number, ended);
    expect(await d.client.request<unknown[]>('GET', '/v1/pipelines/web/runs')).toHaveLength(1);
  }, 120_000);

  it('a commit message or branch crafted as shell code stays data', async () => {
    const repo = makeRepo();
    const sha = repo.commit('plain');
    const d = await start(repo.bare);
    const marker = path.join(repo.dir, 'pwned');
    const message = `fix"; touch ${marker}; echo "$(touch ${marker})\`touch ${marker}\``;
    const res = await push(d, sha, { message });
    const run = await waitRun(d, res.body.run as number, ended);
    expect(run.state, JSON.stringify(run.error)).toBe('done');
    expect(run.message).toBe(message);
    const crafted = await push(d, sha, { branch: `main$(touch ${marker})` });
    expect(crafted.body.skipped).toMatch(/not followed/);
    expect(existsSync(marker)).toBe(false);
  }, 120_000);

  it('three pushes in quick succession: only the newest is deployed', async () => {
    const repo = makeRepo();
    const d = await start(repo.bare);
    // Each push is delivered as it happens (a push delivered after a newer one is skipped, below);
    // a slow test stage keeps each run in its stages when the next push arrives.
    const shas: string[] = [];
    const runs: number[] = [];
    for (const name of ['a', 'b', 'c']) {
      shas.push(repo.commit(name, 0, 'sleep 3\nexit 0\n'));
      runs.push((await push(d, shas.at(-1)!)).body.run as number);
    }
    const last = await waitRun(d, runs[2]!, ended);
    expect(last.state, JSON.stringify(last.error)).toBe('done');
    const all = await d.client.request<PipelineRun[]>('GET', '/v1/pipelines/web/runs');
    expect(all.map((r) => `${r.n}:${r.state}`)).toEqual([
      `${runs[2]}:done`,
      `${runs[1]}:superseded`,
      `${runs[0]}:superseded`,
    ]);
    const deployed = await d.client.request<DeploymentRecord[]>('GET', '/v1/services/web/deployments');
    expect(deployed.map((x) => x.version)).toEqual([shas[2]!.slice(0, 7)]);
  }, 120_000);

  it('continuous delivery: production waits at its manual gate until teal promote', async () => {
    const repo = makeRepo();
    const sha = repo.commit('gated');
    const d = await start(repo.bare, { promote: 'manual' });
    const res = await push(d, sha);
    const waiting = await waitRun(d, res.body.run as number, (r) => r.state === 'waiting' || ended(r));
    expect(waiting.state).toBe('waiting');
    const status = await d.cli(['pipeline', 'status', 'web']);
    expect(status.stdout).toContain('waiting for promote');
    const promoted = await d.cli(['promote', 'web']);
    expect(promoted.code, promoted.stderr).toBe(0);
    expect((await waitRun(d, res.body.run as number, ended)).state).toBe('done');
    expect((await request(`${d.info.proxy}/`)).body).toBe(`hello ${sha.slice(0, 7)}\n`);
  }, 120_000);
});

describe('pipelines: a signed push runs once, and only while it is news', () => {
  const git = (repo: TestRepo, args: string[]) =>
    execFileSync('git', ['-C', repo.work, ...args], { encoding: 'utf8' }).trim();

  it('a captured delivery sent again with a new delivery id starts nothing and supersedes nothing', async () => {
    const repo = makeRepo();
    const first = repo.commit('first');
    const d = await start(repo.bare);
    const run1 = (await push(d, first)).body.run as number;
    expect((await waitRun(d, run1, ended)).state).toBe('done');
    const load = backgroundLoad(`${d.info.proxy}/`, 8);

    // The second commit's stages take a while, so the replays land while it is in its stages,
    // the phase in which a newer run would supersede it.
    const second = repo.commit('second', 0, 'sleep 3\nexit 0\n');
    const run2 = (await push(d, second)).body.run as number;
    await waitRun(d, run2, (r) => r.steps.some((x) => x.name === 'test' && x.state === 'running'));
    // The same signed body (so the same signature) under new delivery ids, as an attacker replays it.
    const replays = await Promise.all([
      push(d, first, { delivery: 'replay-1' }),
      push(d, first, { delivery: 'replay-2' }),
      push(d, second, { delivery: 'replay-3' }),
    ]);
    expect(replays.map((r) => r.status)).toEqual([202, 202, 202]);
    expect(replays[0]!.body).toEqual({
      skipped: `commit ${first.slice(0, 7)} already ran for pipeline web as run #${run1}: a push runs once; to run it again, teal pipeline run web --commit ${first}`,
      previousRun: run1,
    });
    expect(replays[1]!.body).toMatchObject({ previousRun: run1 });
    expect(replays[2]!.body).toMatchObject({
      skipped: expect.stringContaining('already ran'),
      previousRun: run2,
    });

    const done = await waitRun(d, run2, ended);
    expect(done.state, JSON.stringify(done.error)).toBe('done');
    const runs = await d.client.request<PipelineRun[]>('GET', '/v1/pipelines/web/runs');
    expect(runs.map((r) => `${r.n}:${r.state}`)).toEqual([`${run2}:done`, `${run1}:done`]);
    const deployed = await d.client.request<DeploymentRecord[]>('GET', '/v1/services/web/deployments');
    expect(deployed.map((x) => x.version)).toEqual([second.slice(0, 7), first.slice(0, 7)]);
    const { report } = await load.stop();
    expect(report.failed, JSON.stringify(report.failures.slice(0, 3))).toBe(0);
    expect((await request(`${d.info.proxy}/`)).body).toBe(`hello ${second.slice(0, 7)}\n`);
  }, 180_000);

  it('a push of a commit that is not the head, or is already in production, is skipped with a reason; teal pipeline run --commit still deploys it', async () => {
    const repo = makeRepo();
    const old = repo.commit('old');
    const newer = repo.commit('newer');
    const d = await start(repo.bare);
    const run1 = (await push(d, newer)).body.run as number;
    expect((await waitRun(d, run1, ended)).state).toBe('done');
    const load = backgroundLoad(`${d.info.proxy}/`, 8);

    // The push of `old`, delivered late (or replayed): main's head is `newer` now.
    const late = await push(d, old);
    expect(late).toEqual({
      status: 202,
      body: {
        skipped: `commit ${old.slice(0, 7)} is not the head of main (${newer.slice(0, 7)} is): an older push, delivered late or sent again; the head's own push runs it`,
      },
    });
    // main force-pushed back to `old`: it is the head, but production already contains it.
    git(repo, ['push', '--quiet', '--force', 'origin', `${old}:main`]);
    const back = await push(d, old);
    expect(back).toEqual({
      status: 202,
      body: {
        skipped: `commit ${old.slice(0, 7)} is already in production (it runs ${newer.slice(0, 7)}, which contains it): an old commit pushed again; to deploy it on purpose, teal pipeline run web --commit ${old}`,
      },
    });
    expect(await d.client.request<PipelineRun[]>('GET', '/v1/pipelines/web/runs')).toHaveLength(1);

    // On purpose, with the API token: the old commit runs and goes live.
    const cli = await d.cli(['pipeline', 'run', 'web', '--commit', old, '--detach', '--json']);
    expect(cli.code, cli.stderr).toBe(0);
    const run2 = await waitRun(d, (JSON.parse(cli.stdout) as PipelineRun).n, ended);
    expect(run2, JSON.stringify(run2.error)).toMatchObject({ state: 'done', commit: old });
    const { report } = await load.stop();
    expect(report.failed, JSON.stringify(report.failures.slice(0, 3))).toBe(0);
    expect((await request(`${d.info.proxy}/`)).body).toBe(`hello ${old.slice(0, 7)}\n`);
  }, 180_000);
});

describe('teal pipeline', () => {
  it('--help of each verb shows examples', async () => {
    for (const verb of [[], ['run'], ['status'], ['history'], ['logs'], ['cancel']]) {
      const r = await runCli(['pipeline', ...verb, '--help']);
      expect(r.code, verb.join(' ')).toBe(0);
      expect(r.stdout, verb.join(' ')).toMatch(/Examples:\n {2}teal pipeline/);
    }
  });
});

describe('the post-receive hook', () => {
  it('scripts/git-post-receive in a bare repository starts a run on every push, which deploys it', async () => {
    const repo = makeRepo();
    const d = await start(repo.bare);
    const hook = path.join(repo.bare, 'hooks', 'post-receive');
    copyFileSync(path.join(packageRoot(), 'scripts', 'git-post-receive'), hook);
    chmodSync(hook, 0o755);
    const git = (args: string[]) => execFileSync('git', ['-C', repo.bare, ...args]);
    git(['config', 'teal.pipeline', 'web']);
    git(['config', 'teal.config', d.configFile]);
    git(['config', 'teal.bin', `${process.execPath} ${cliEntry()}`]);

    // The pusher's environment reaches the hook: the CLI's token comes from there.
    process.env.TEAL_TOKEN = d.token;
    let commit: string;
    try {
      commit = repo.commit('through the hook');
    } finally {
      delete process.env.TEAL_TOKEN;
    }
    const run = await waitRun(d, 1, ended);
    expect(run).toMatchObject({ state: 'done', commit, branch: 'main' });
    expect((await request(`${d.info.proxy}/`)).body).toBe(`hello ${commit.slice(0, 7)}\n`);
  }, 90_000);
});
