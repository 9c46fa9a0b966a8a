/**
 * An instance's log file: where it lives and how it is kept from filling the disk.
 *
 * Rotation is copy-then-truncate (logrotate's `copytruncate`): the app writes straight into the
 * file through the O_APPEND descriptor it was started with, and nothing of ours sits between them,
 * so the file cannot be renamed away (the app would keep writing into the renamed file) and the
 * app cannot be asked to reopen it. Copying and then truncating in place keeps the app's descriptor
 * valid, and O_APPEND makes its next write land at the new end instead of leaving a hole. The price:
 * lines written between the copy and the truncate are lost. The alternative, a helper process per
 * instance that owns the pipe and rotates, would be one more process to keep alive across
 * control-plane restarts.
 */
import { copyFile, rename, rm, stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import { isErrno } from './liveness.js';
import { timesPath, timesSize } from './log-times.js';

/** <stateDir>/logs/<service>/<instance id>.log */
export function logPath(stateDir: string, service: string, id: string): string {
  return path.join(stateDir, 'logs', service, `${id}.log`);
}

/** The n-th rotated copy: `<file>.1` is the most recent. */
export function rotatedPath(file: string, n: number): string {
  return `${file}.${n}`;
}

/**
 * When `file` is larger than `maxBytes` (or its time index, log-times.ts, larger than
 * `maxTimesBytes`), shifts `.1`..`.keep-1` up by one (dropping the oldest), copies the file to `.1`
 * and truncates it; each copy's index moves with it. Returns whether it rotated; a missing file is
 * not an error.
 */
export async function rotateIfLarge(
  file: string,
  maxBytes: number,
  keep: number,
  maxTimesBytes = Number.POSITIVE_INFINITY,
): Promise<boolean> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
  if (size <= maxBytes && (await timesSize(file)) <= maxTimesBytes) return false;
  if (keep > 0) {
    await rm(rotatedPath(file, keep), { force: true });
    await rm(timesPath(rotatedPath(file, keep)), { force: true });
    for (let n = keep - 1; n >= 1; n--) {
      await renameIfThere(rotatedPath(file, n), rotatedPath(file, n + 1));
      await renameIfThere(timesPath(rotatedPath(file, n)), timesPath(rotatedPath(file, n + 1)));
    }
    await copyFile(file, rotatedPath(file, 1));
    await renameIfThere(timesPath(file), timesPath(rotatedPath(file, 1)));
  } else {
    await rm(timesPath(file), { force: true });
  }
  await truncate(file, 0);
  return true;
}

async function renameIfThere(from: string, to: string): Promise<void> {
  await rename(from, to).catch((err: unknown) => {
    if (!isErrno(err, 'ENOENT')) throw err;
  });
}
