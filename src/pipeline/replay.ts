import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { isTealError, TealError } from '../core/errors.js';
import { git, isSha } from './workspace.js';

/** A signed push to judge: which pipeline, where its repository is, and what production runs. */
export interface Push {
  pipeline: string;
  repo: string;
  branch: string;
  commit: string;
  /** What production runs now: the version (a sha for pipeline releases) of its live slot. */
  production?: string;
  signal?: AbortSignal;
}

/**
 * Whether a signed push is news. A signature proves the provider sent the body once, not that it is
 * sent now: whoever captured a delivery (a proxy log, a leaked request dump) can post it again with a
 * new delivery id, and the delivery id is outside the signature. So a push is only believed when it
 * agrees with the repository as it is now:
 *
 * - its commit is the head of its branch in the source repository (an older push, replayed or
 *   delivered late, names a commit that is not the head any more; the head's own push runs it);
 * - its commit is not already in production (an ancestor of, or equal to, the commit the pipeline's
 *   last environment runs): an old commit force-pushed back, or a replay after the branch was reset,
 *   is acknowledged and skipped. Putting an old commit back on purpose is `teal pipeline run --commit`
 *   (or `teal rollback`), which the API token authenticates.
 *
 * (Whether the commit already ran for the pipeline is the runner's check, from its own records.)
 * Both checks read a bare mirror of the branch, fetched for every push, so they hold for remote
 * repositories as well as local paths; fetches into one mirror are serialised. The mirror keeps
 * every head it has fetched. A production commit it has never seen (deployed by hand, from another
 * branch) cannot be compared with: the push then runs, as the other two checks allow.
 */
export class PushCheck {
  readonly #dir: string;
  readonly #chains = new Map<string, Promise<unknown>>();

  /** `dir` holds one bare mirror per pipeline. */
  constructor(dir: string) {
    this.#dir = dir;
  }

  /** Why this push must start nothing, or undefined when it is the branch's new head. */
  skipReason(check: Push): Promise<string | undefined> {
    const before = this.#chains.get(check.pipeline) ?? Promise.resolve();
    const result = before.catch(() => undefined).then(() => this.#check(check));
    const chain = result.catch(() => undefined);
    this.#chains.set(check.pipeline, chain);
    void chain.then(() => {
      if (this.#chains.get(check.pipeline) === chain) this.#chains.delete(check.pipeline);
    });
    return result;
  }

  async #check(c: Push): Promise<string | undefined> {
    // Both come from a signed payload; they reach git as arguments only after these checks.
    if (!/^[0-9a-f]{40}$/.test(c.commit))
      throw new TealError('TEAL_BAD_REQUEST', 'the push names no commit (expected 40 hex digits)');
    if (c.branch.startsWith('-') || c.branch.includes('..') || !/^[A-Za-z0-9._/-]+$/.test(c.branch))
      throw new TealError('TEAL_BAD_REQUEST', `not a branch name: ${JSON.stringify(c.branch)}`);
    const options = c.signal ? { signal: c.signal } : {};
    const mirror = path.join(this.#dir, `${c.pipeline}.git`);
    if (!existsSync(path.join(mirror, 'HEAD'))) {
      mkdirSync(mirror, { recursive: true, mode: 0o700 });
      await git(['init', '--quiet', '--bare', mirror], options);
    }
    const ref = `refs/heads/${c.branch}`;
    await git(['fetch', '--quiet', '--no-tags', '--', c.repo, `+${ref}:${ref}`], { ...options, cwd: mirror });
    const head = (
      await git(['rev-parse', '--verify', `${ref}^{commit}`], { ...options, cwd: mirror })
    ).trim();
    // Every head seen stays reachable in the mirror, so that after a force-push back to an older
    // commit the newer one production runs is still there to compare with (and never pruned).
    await git(['update-ref', `refs/teal/seen/${head}`, head], { ...options, cwd: mirror });
    const short = c.commit.slice(0, 7);
    if (head !== c.commit) {
      return `commit ${short} is not the head of ${c.branch} (${head.slice(0, 7)} is): an older push, delivered late or sent again; the head's own push runs it`;
    }
    if (c.production !== undefined && isSha(c.production)) {
      if (await this.#isAncestor(mirror, c.commit, c.production, options)) {
        return `commit ${short} is already in production (it runs ${c.production}, which contains it): an old commit pushed again; to deploy it on purpose, teal pipeline run ${c.pipeline} --commit ${c.commit}`;
      }
    }
    return undefined;
  }

  /** True when `commit` is `of` or one of its ancestors; false when not, or when `of` is not in the mirror. */
  async #isAncestor(
    mirror: string,
    commit: string,
    of: string,
    options: { signal?: AbortSignal },
  ): Promise<boolean> {
    try {
      await git(['merge-base', '--is-ancestor', commit, of], { ...options, cwd: mirror });
      return true;
    } catch (err) {
      // 1: not an ancestor. 128: production's commit is not on this branch (deployed from elsewhere).
      if (isTealError(err, 'TEAL_GIT_FAILED') && [1, 128].includes(err.details?.exitCode as number))
        return false;
      throw err;
    }
  }
}
