import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { TealError } from '../../core/errors.js';
import { childrenOf, isErrno, parentOf } from '../../proc.js';

/**
 * nginx's processes, read from /proc. A reload makes the master start new workers with the new
 * config, wait 100 ms, then tell the old ones to quit; an old worker renames itself "worker process
 * is shutting down", stops accepting, closes its idle keep-alive connections, and exits once its
 * last request or stream has ended. That title is the one outside sign of which config a worker
 * serves, and what apply and drain go by.
 */
export interface Worker {
  pid: number;
  /** Told to quit: serves only what it already had. */
  retiring: boolean;
}

const WORKER_TITLE = 'nginx: worker process';
const RETIRING_TITLE = 'nginx: worker process is shutting down';

function cmdline(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ESRCH')) return undefined;
    throw err;
  }
}

/** What a pid is now: one of `master`'s workers (serving or retiring), or nothing of nginx's. */
export function workerState(pid: number, master: number): Worker | undefined {
  if (parentOf(pid) !== master) return undefined;
  const title = cmdline(pid);
  if (title === undefined || !title.startsWith(WORKER_TITLE)) return undefined;
  return { pid, retiring: title.startsWith(RETIRING_TITLE) };
}

/** The master's worker processes (cache manager and loader left out). */
export function workersOf(master: number): Worker[] {
  const out: Worker[] = [];
  for (const pid of childrenOf(master)) {
    const w = workerState(pid, master);
    if (w) out.push(w);
  }
  return out;
}

/** The nginx master's pid, from its pid file, checked against /proc. */
export async function readMasterPid(pidFile: string): Promise<number> {
  let text: string;
  try {
    text = await readFile(pidFile, 'utf8');
  } catch (err) {
    throw new TealError(
      'TEAL_PROXY_FAILED',
      `nginx is not running: cannot read its pid file ${pidFile} (${(err as Error).message})`,
      { pidFile },
    );
  }
  const pid = Number(text.trim());
  const title = Number.isInteger(pid) && pid > 0 ? cmdline(pid) : undefined;
  if (title === undefined || !title.startsWith('nginx: master process')) {
    throw new TealError(
      'TEAL_PROXY_FAILED',
      `nginx is not running: ${pidFile} names pid ${text.trim()}, which is not an nginx master process`,
      { pidFile },
    );
  }
  return pid;
}

/** Inodes of the sockets a process has open, from its fd table. */
function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch {}
  }
  return out;
}

/**
 * How many established client connections these workers hold on the port users reach nginx on:
 * what a drain still waits for (a slow request, a websocket). Read from /proc/net/tcp{,6}, whose
 * sockets are matched to the workers by inode.
 */
export function clientConnections(pids: number[], port: number): number {
  const inodes = new Set<string>();
  for (const pid of pids) for (const inode of socketInodes(pid)) inodes.add(inode);
  if (inodes.size === 0) return 0;
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode (field 9)
      if (f.length < 10 || f[3] !== '01' || !inodes.has(f[9]!)) continue;
      const localPort = Number.parseInt(f[1]!.slice(f[1]!.lastIndexOf(':') + 1), 16);
      if (localPort === port) count++;
    }
  }
  return count;
}
