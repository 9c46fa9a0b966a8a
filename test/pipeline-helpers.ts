import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PipelineRun } from '../src/pipeline/records.js';
import { HELLO, helloService, type TestDaemon } from '../src/testing/daemon.js';

/** Shared by the pipeline tests and the dashboard's pipeline pages test. */

export interface TestRepo {
  /** The temporary folder holding both repositories (removed by `remove`). */
  dir: string;
  bare: string;
  work: string;
  /**
   * Commits the app with a test script exiting `testExit` (or the given script's text); pushes;
   * returns the full sha.
   */
  commit(message: string, testExit?: number, testScript?: string): string;
  remove(): void;
}

/** A bare repository and a working copy of the example app, with real git. */
export function makeRepo(): TestRepo {
  const dir = mkdtempSync(path.join(tmpdir(), 'teal-git-'));
  // Stages run as nobody under root (users.ts): a file a test stage waits for must be reachable.
  chmodSync(dir, 0o755);
  const bare = path.join(dir, 'app.git');
  const work = path.join(dir, 'work');
  const git = (args: string[], cwd = work) =>
    execFileSync('git', ['-c', 'user.name=Teal Test', '-c', 'user.email=test@teal.invalid', ...args], {
      cwd,
      encoding: 'utf8',
    }).trim();
  execFileSync('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
  execFileSync('git', ['clone', '--quiet', bare, work], { stdio: 'ignore' });
  git(['checkout', '--quiet', '-B', 'main']);
  copyFileSync(HELLO, path.join(work, 'server.js'));
  const commit = (message: string, testExit = 0, testScript?: string): string => {
    writeFileSync(
      path.join(work, 'test.sh'),
      testScript ?? `echo "testing $TEAL_VERSION"\nexit ${testExit}\n`,
    );
    writeFileSync(path.join(work, 'CHANGE'), `${message} ${Date.now()} ${Math.random()}\n`);
    git(['add', '.']);
    git(['commit', '--quiet', '-m', message]);
    git(['push', '--quiet', 'origin', 'main']);
    return git(['rev-parse', 'HEAD']);
  };
  return { dir, bare, work, commit, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Pipeline `web`: check, test and build stages, the build's dist/ kept, staging then production. */
export const pipelineConfig = (bare: string, extra = '') => `webhooks:
  github: { secretEnv: TEAL_GITHUB_SECRET }
pipelines:
  web:
    source: { repo: ${bare}, branches: [main] }
    stages:
      - { name: check, run: "node --check server.js" }
      - { name: test, run: "sh test.sh" }
      - { name: build, run: "mkdir -p dist && cp server.js dist/ && echo \\"$TEAL_VERSION\\" > dist/VERSION" }
    artifact: { path: dist }
    environments: [{ service: web-staging }, { service: web }]
${extra}`;

/** The services the pipeline deploys: web-staging (under /staging) and web, both run from the artifact. */
export const pipelineServices = (production: Record<string, string> = {}) => `  web-staging:
${helloService({ command: JSON.stringify([process.execPath, 'server.js']), routes: '[{ path: /staging }]' })}
  web:
${helloService({ command: JSON.stringify([process.execPath, 'server.js']), ...production })}`;

export const endedRun = (r: PipelineRun) =>
  ['done', 'failed', 'cancelled', 'superseded', 'interrupted'].includes(r.state);

/** Polls run `n` of `pipeline` until `until` holds. */
export async function waitRun(
  d: TestDaemon,
  n: number,
  until: (r: PipelineRun) => boolean,
  timeoutMs = 60_000,
  pipeline = 'web',
): Promise<PipelineRun> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await d.client.request<PipelineRun>('GET', `/v1/pipelines/${pipeline}/runs/${n}`);
    if (until(run)) return run;
    if (Date.now() > deadline) throw new Error(`run #${n} is ${run.state}: ${JSON.stringify(run, null, 1)}`);
    await sleep(50);
  }
}
