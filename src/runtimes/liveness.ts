/**
 * Is an instance's process still ours and still running? Read from /proc (Linux, where teal runs):
 * a pid alone is not enough after a control-plane restart, because the kernel recycles pids. A
 * process is ours when its pid exists with the start time recorded when we spawned it (field 22 of
 * /proc/<pid>/stat, in clock ticks since boot), which a recycled pid cannot have.
 */
import { readdirSync } from 'node:fs';
import { TealError } from '../core/errors.js';
import { hasProc, isDead, isErrno, procStat, signalZero } from '../proc.js';

export { isErrno, type ProcStat, procStat } from '../proc.js';

/** What happened to the process an instance record points at. */
export type LeaderState = 'running' | 'gone' | 'recycled';

/**
 * A zombie counts as gone: it has exited, and where pid 1 does not reap (some containers) it would
 * otherwise look alive forever.
 */
export function leaderState(pid: number, startTime: number | null): LeaderState {
  if (!hasProc) return signalZero(pid) ? 'running' : 'gone';
  const stat = procStat(pid);
  if (stat === undefined) return 'gone';
  if (startTime !== null && stat.startTime !== startTime) return 'recycled';
  return isDead(stat) ? 'gone' : 'running';
}

/** Sends `signal` to every process of the group; false when the group has no process left. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if (isErrno(err, 'ESRCH')) return false;
    throw new TealError(
      'TEAL_RUNTIME_FAILED',
      `cannot send ${signal} to process group ${pgid}: ${(err as Error).message}`,
      { pgid, signal },
      { cause: err },
    );
  }
}

/** True when no process of the group is left running (zombies do not count). */
export function groupGone(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    if (isErrno(err, 'ESRCH')) return true;
    if (isErrno(err, 'EPERM')) return false;
    throw err;
  }
  if (!hasProc) return false;
  // kill(0) succeeds for a group of zombies too; look at the members themselves.
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(Number(entry));
    if (stat && stat.pgrp === pgid && !isDead(stat)) return false;
  }
  return true;
}
