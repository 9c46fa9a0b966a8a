import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PushCheck } from './replay.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'teal-replay-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const bare = path.join(tmp, 'src.git');
const work = path.join(tmp, 'work');
const git = (args: string[], cwd = work) =>
  execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@teal.invalid', ...args], {
    cwd,
    encoding: 'utf8',
  }).trim();
execFileSync('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
execFileSync('git', ['init', '--quiet', '--initial-branch=main', work]);
const commit = (message: string, branch = 'main') => {
  git(['commit', '--quiet', '--allow-empty', '-m', message]);
  git(['push', '--quiet', '--force', bare, `HEAD:refs/heads/${branch}`]);
  return git(['rev-parse', 'HEAD']);
};

describe('PushCheck', () => {
  const check = new PushCheck(path.join(tmp, 'mirrors'));
  const ask = (c: { commit: string; branch?: string; production?: string; repo?: string }) =>
    check.skipReason({ pipeline: 'web', repo: c.repo ?? bare, branch: c.branch ?? 'main', ...c });

  it("runs the branch's head when production is older or absent", async () => {
    const a = commit('a');
    expect(await ask({ commit: a })).toBeUndefined();
    const b = commit('b');
    expect(await ask({ commit: b, production: a.slice(0, 7) })).toBeUndefined();
  });

  it('skips a commit that is not the head any more, naming the head', async () => {
    const old = commit('old');
    const head = commit('head');
    expect(await ask({ commit: old })).toMatch(
      new RegExp(`^commit ${old.slice(0, 7)} is not the head of main \\(${head.slice(0, 7)} is\\)`),
    );
  });

  it('skips a head that production already contains, or runs', async () => {
    const old = commit('old');
    const newer = commit('newer');
    // Its push was checked (and ran): the mirror has seen it.
    expect(await ask({ commit: newer, production: old.slice(0, 7) })).toBeUndefined();
    git(['reset', '--quiet', '--hard', old]);
    git(['push', '--quiet', '--force', bare, 'HEAD:refs/heads/main']);
    expect(await ask({ commit: old, production: newer.slice(0, 7) })).toMatch(/is already in production/);
    expect(await ask({ commit: old, production: old.slice(0, 7) })).toMatch(/is already in production/);
  });

  it('is not fooled by a production version that is not on the branch, or not a sha', async () => {
    git(['checkout', '--quiet', '-b', 'side']);
    const side = commit('side', 'side');
    git(['checkout', '--quiet', 'main']);
    const head = commit('main head');
    expect(await ask({ commit: head, production: side.slice(0, 7) })).toBeUndefined();
    expect(await ask({ commit: head, production: 'v1.2.3' })).toBeUndefined();
  });

  it('refuses what could reach git as an option, and fails when the repository cannot be read', async () => {
    const head = commit('x');
    await expect(ask({ commit: '--upload-pack=touch /tmp/x' })).rejects.toMatchObject({
      code: 'TEAL_BAD_REQUEST',
    });
    await expect(ask({ commit: head, branch: '--upload-pack=x' })).rejects.toMatchObject({
      code: 'TEAL_BAD_REQUEST',
    });
    await expect(ask({ commit: head, repo: path.join(tmp, 'nowhere.git') })).rejects.toMatchObject({
      code: 'TEAL_GIT_FAILED',
    });
    // The queue of checks survives a failed one.
    expect(await ask({ commit: head })).toBeUndefined();
  });
});
