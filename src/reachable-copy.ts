import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assertReachable, type RunUser, resolveRunUser } from './users.js';

/**
 * Run as root, teal runs apps as `nobody` (users.ts), who cannot enter a folder under /root (0700):
 * a clone of teal there holds an example app nobody can start. The demo and the test suite run the
 * example from a copy nobody can read instead of failing on the clone's location. The copy is a
 * fresh mkdtemp folder (a random name: no other user can have made it first), made 0755 with its
 * files 0644 and owned by teal's user, so the app can read but not change it.
 */

/** Whether the code teal runs by default (no `user:`) can enter `dir`. */
export function reachableByDefaultUser(dir: string, user: RunUser = resolveRunUser({}, 'teal')): boolean {
  try {
    assertReachable(dir, user, 'teal');
    return true;
  } catch {
    return false;
  }
}

/**
 * `dir` itself when the default run user can reach it, else a copy of its plain files in a new
 * folder under the system's temp dir; sub-folders only with `recursive` (an example's state dir
 * must not be copied). `copied` says which; the caller removes a copy.
 */
export function reachableExample(
  dir: string,
  prefix: string,
  options: { recursive?: boolean } = {},
): { dir: string; copied: boolean } {
  if (reachableByDefaultUser(dir)) return { dir, copied: false };
  const copy = mkdtempSync(path.join(tmpdir(), prefix));
  try {
    copyInto(dir, copy, options.recursive ?? false);
  } catch (err) {
    rmSync(copy, { recursive: true, force: true });
    throw err;
  }
  return { dir: copy, copied: true };
}

/** Plain files (and with `recursive`, folders) of `from` into `to`: folders 0755, files 0644. */
function copyInto(from: string, to: string, recursive: boolean): void {
  chmodSync(to, 0o755);
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    if (entry.isFile()) {
      copyFileSync(source, target);
      chmodSync(target, 0o644);
    } else if (recursive && entry.isDirectory()) {
      mkdirSync(target);
      copyInto(source, target, true);
    }
  }
}
