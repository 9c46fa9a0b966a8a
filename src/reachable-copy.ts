import { chmodSync, copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
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
 * `dir` itself when the default run user can reach it, else a copy of its plain files (not its
 * sub-folders: the example has none that matter, and a state dir inside must not be copied) in a
 * new folder under the system's temp dir. `copied` says which; the caller removes a copy.
 */
export function reachableExample(dir: string, prefix: string): { dir: string; copied: boolean } {
  if (reachableByDefaultUser(dir)) return { dir, copied: false };
  const copy = mkdtempSync(path.join(tmpdir(), prefix));
  try {
    chmodSync(copy, 0o755);
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isFile()) continue;
      const to = path.join(copy, entry.name);
      copyFileSync(path.join(dir, entry.name), to);
      chmodSync(to, 0o644);
    }
  } catch (err) {
    rmSync(copy, { recursive: true, force: true });
    throw err;
  }
  return { dir: copy, copied: true };
}
