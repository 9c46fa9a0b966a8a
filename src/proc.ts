/**
 * Facts about processes on this machine, read from /proc (Linux, where teal runs). Shared by the
 * process runtime (is an instance alive?), the local stores (is a lease holder alive?) and the
 * daemon (is another control plane running?). A zombie counts as dead everywhere: where pid 1 does
 * not reap (some containers), an exited process would otherwise look alive forever.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  /** R, S, D, Z (zombie: exited, not yet reaped), ... */
  state: string;
  /** The parent's pid. */
  ppid: number;
  pgrp: number;
  session: number;
  /** Clock ticks after boot. */
  startTime: number;
}

export const hasProc = existsSync('/proc/self/stat');

/** /proc/<pid>/stat, or undefined when there is no such process. */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ESRCH')) return undefined;
    throw err;
  }
  // The command name (field 2) is in parentheses and may itself hold spaces or parentheses, so
  // the numbered fields are counted from after the last ')': field 3 is the first one there.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return {
    state: fields[0] ?? '?',
    ppid: Number(fields[1]),
    pgrp: Number(fields[2]),
    session: Number(fields[3]),
    startTime: Number(fields[19]),
  };
}

export function isDead(stat: ProcStat): boolean {
  return stat.state === 'Z' || stat.state === 'X';
}

export function signalZero(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if (isErrno(err, 'EPERM')) return true;
    if (isErrno(err, 'ESRCH')) return false;
    throw err;
  }
}

export function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === code;
}

/** True while the process exists and has not exited (zombies are dead). */
export function pidAlive(pid: number): boolean {
  if (!hasProc) return signalZero(pid);
  const stat = procStat(pid);
  return stat !== undefined && !isDead(stat);
}

/** The parent of a live process (undefined when it is gone or a zombie). */
export function parentOf(pid: number): number | undefined {
  const stat = procStat(pid);
  return stat === undefined || isDead(stat) ? undefined : stat.ppid;
}

/** The pids of a process's children, from /proc (the slow scan on kernels without CONFIG_PROC_CHILDREN). */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .split(' ')
      .filter((s) => s.trim() !== '')
      .map(Number);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((child) => parentOf(child) === pid);
}
