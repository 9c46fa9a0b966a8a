import { execFile } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
} from 'node:fs';
import path from 'node:path';
import { TealError } from '../core/errors.js';
import type { RunUser } from '../users.js';

/**
 * A run's clean checkout, and what it leaves behind (the artifact). git runs with argument lists
 * only (never a shell line), with `--` before anything that came from config or a webhook, and a
 * commit is only ever a validated hex sha, so neither can become an option or a command.
 */

const SHA = /^[0-9a-f]{7,40}$/;

export function isSha(value: string): boolean {
  return SHA.test(value);
}

/** A URL or scp-like address (`git@host:repo`) stays as written; anything else is a path from teal.yml's folder. */
export function resolveRepo(repo: string, configDir: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(repo) || /^[^/]+@[^/:]+:/.test(repo)) return repo;
  return path.resolve(configDir, repo);
}

export function git(
  args: string[],
  options: { cwd?: string; signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      args,
      {
        cwd: options.cwd,
        // Never wait on a password prompt: a repo needing credentials fails at once with git's message.
        env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true' },
        timeout: options.timeoutMs ?? 10 * 60_000,
        maxBuffer: 16 * 1024 * 1024,
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        if (options.signal?.aborted) return reject(options.signal.reason);
        const tail = String(stderr).trim().split('\n').slice(-5).join('\n');
        reject(
          new TealError('TEAL_GIT_FAILED', `git ${args[0]} failed: ${tail || err.message}`, {
            args,
            exitCode: (err as { code?: unknown }).code ?? null,
          }),
        );
      },
    );
  });
}

/** The commit a branch points at in the repo now (for `teal pipeline run` without --commit). */
export async function branchHead(repo: string, branch: string, signal?: AbortSignal): Promise<string> {
  const out = await git(
    ['ls-remote', '--heads', '--', repo, `refs/heads/${branch}`],
    signal ? { signal } : {},
  );
  const sha = out.split(/\s/)[0] ?? '';
  if (!/^[0-9a-f]{40}$/.test(sha)) {
    throw new TealError('TEAL_NOT_FOUND', `${repo} has no branch ${JSON.stringify(branch)}`);
  }
  return sha;
}

/** Clones `repo` into `dir` (which must not exist) and checks out `commit`, detached; returns the full sha. */
export async function checkout(
  repo: string,
  commit: string,
  dir: string,
  signal: AbortSignal,
): Promise<string> {
  if (!isSha(commit))
    throw new TealError('TEAL_BAD_REQUEST', `commit ${JSON.stringify(commit)} is not a hex sha`);
  mkdirSync(path.dirname(dir), { recursive: true });
  await git(['clone', '--quiet', '--no-checkout', '--', repo, dir], { signal });
  await git(['-c', 'advice.detachedHead=false', 'checkout', '--quiet', '--detach', commit, '--'], {
    cwd: dir,
    signal,
  });
  return (await git(['rev-parse', 'HEAD'], { cwd: dir, signal })).trim();
}

/** The checked-out commit's message and author, for runs started without them (`teal pipeline run`, the dashboard). */
export async function commitInfo(
  dir: string,
  signal: AbortSignal,
): Promise<{ message: string; author: string }> {
  const out = await git(['log', '-1', '--format=%an%x00%B', 'HEAD', '--'], { cwd: dir, signal });
  const [author = '', message = ''] = out.split('\0');
  return { author: author.trim(), message: message.trim() };
}

/**
 * Copies the artifact folder out of the workspace to `dest`. The folder is resolved through
 * symlinks first: a build that points it outside its workspace is refused, not copied.
 */
export function keepArtifact(workspace: string, folder: string, dest: string): void {
  const root = realpathSync(workspace);
  let source: string;
  try {
    source = realpathSync(path.join(workspace, folder));
  } catch {
    throw new TealError(
      'TEAL_PIPELINE_FAILED',
      `the stages left no artifact folder ${folder} in the checkout`,
    );
  }
  if (!source.startsWith(`${root}${path.sep}`) || !statSync(source).isDirectory()) {
    throw new TealError('TEAL_PIPELINE_FAILED', `the artifact ${folder} is not a folder inside the checkout`);
  }
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(path.dirname(dest), { recursive: true });
  // Symlinks inside are copied as links, never followed, so nothing outside the checkout is read.
  cpSync(source, dest, { recursive: true, verbatimSymlinks: true });
}

/**
 * Makes `dir` and everything in it belong to `user` (symlinks themselves, never what they point
 * to), so the stage or app that runs as them can use it. Nothing to do when no switch is made.
 */
export function handOver(dir: string, user: RunUser): void {
  if (!user.switchTo) return;
  const { uid, gid } = user.switchTo;
  const walk = (at: string) => {
    lchownSync(at, uid, gid);
    const st = lstatSync(at);
    if (st.isDirectory()) for (const name of readdirSync(at)) walk(path.join(at, name));
  };
  walk(dir);
}

/**
 * The work dir's own folders (the work dir, workspaces/, artifacts/<pipeline>/): teal's, searchable
 * by the users stages and apps run as (0755 whatever the umask), writable by teal alone, so one run
 * can neither read another's workspace (0700, its user's) nor plant anything beside it.
 */
export function workFolder(workDir: string, ...parts: string[]): string {
  let at = workDir;
  for (const part of ['', ...parts]) {
    at = part ? path.join(at, part) : at;
    mkdirSync(at, { recursive: true, mode: 0o755 });
    chmodSync(at, 0o755);
  }
  return at;
}

export function removeWorkspace(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
