/**
 * Facts about processes on this machine, read from /proc (Linux, where teal runs). Shared by the
 * process runtime (is an instance alive?), the local stores (is a lease holder alive?) and the
 * daemon (is another control plane running?). A zombie counts as dead everywhere: where pid 1 does
 * not reap (some containers), an exited process would otherwise look alive forever.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';

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

/** The real and effective uid of a live process (/proc/<pid>/status), or undefined when it is gone. */
export function procUids(pid: number): { real: number; effective: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ESRCH')) return undefined;
    throw err;
  }
  const uids = /^Uid:\s+(\d+)\s+(\d+)/m.exec(text);
  return uids ? { real: Number(uids[1]), effective: Number(uids[2]) } : undefined;
}

/** The program a process runs (/proc/<pid>/exe); undefined when gone or not ours to read. */
export function procExe(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** A process's arguments, argv[0] first (/proc/<pid>/cmdline); undefined when it is gone. */
export function procArgv(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return text.split('\0').slice(0, text.endsWith('\0') ? -1 : undefined);
  } catch {
    return undefined;
  }
}

/**
 * The inode of the unix socket listening at `socketPath` in this network namespace
 * (/proc/net/unix), or undefined when none listens there. With `holdsSocket` it says which
 * process really answers on a path: what SO_PEERCRED would tell, which Node does not expose.
 */
export function listeningUnixSocket(socketPath: string): number | undefined {
  // Columns: Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is __SO_ACCEPTCON (listening).
  for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8) continue;
    if (fields.slice(7).join(' ') !== socketPath) continue;
    if ((Number.parseInt(fields[3] ?? '0', 16) & 0x10000) === 0) continue;
    return Number(fields[6]);
  }
  return undefined;
}

/** Whether the process holds the socket with this inode among its open descriptors. */
export function holdsSocket(pid: number, inode: number): boolean {
  const want = `socket:[${inode}]`;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`) === want;
    } catch {
      return false;
    }
  });
}
