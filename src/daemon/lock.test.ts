import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isTealError } from '../core/errors.js';
import { ensureStateDir, statePaths } from './files.js';
import { holdStateDirLock, lockHeld, stateDirLockName } from './lock.js';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function paths() {
  dir = mkdtempSync(path.join(tmpdir(), 'teal-lock-'));
  const p = statePaths(path.join(dir, '.teal'));
  ensureStateDir(p);
  return p;
}

describe('the state dir lock', () => {
  it('is held by one holder at a time, says it is held, and is free again once released', async () => {
    const p = paths();
    const first = await holdStateDirLock(p);
    expect(await lockHeld(first.name)).toBe(true);
    const second = await holdStateDirLock(p).catch((err: unknown) => err);
    expect(isTealError(second, 'TEAL_DAEMON_RUNNING')).toBe(true);
    expect((second as Error).message).toContain(`another teal up holds the state dir ${p.dir}`);
    await first.release();
    expect(await lockHeld(first.name)).toBe(false);
    const again = await holdStateDirLock(p);
    await again.release();
  });

  it('is named from a secret only this user can read, so another user cannot take it first', () => {
    const p = paths();
    const name = stateDirLockName(p);
    expect(name.startsWith('\0teal-up-')).toBe(true);
    expect(stateDirLockName(p)).toBe(name);
    expect(statSync(path.join(p.dir, 'lock-id')).mode & 0o777).toBe(0o600);
    // Another state dir, another name.
    const other = statePaths(path.join(dir!, 'other'));
    ensureStateDir(other);
    expect(stateDirLockName(other)).not.toBe(name);
  });
});
