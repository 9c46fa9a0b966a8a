import { realpathSync } from 'node:fs';
import { TealError } from '../../core/errors.js';
import { cliEntry } from '../../paths.js';
import {
  hasProc,
  holdsSocket,
  listeningUnixSocket,
  pidAlive,
  procArgv,
  procExe,
  procUids,
} from '../../proc.js';

/**
 * Whatever answers on the admin socket says which pid it is; before teal trusts that answer (re-
 * attaches to it, hands it the table, signals that pid) it checks, from /proc, that the pid is a
 * data plane this teal started for this very socket: it holds the socket listening at that path
 * (what SO_PEERCRED would say), runs as our user, runs our node and `teal proxy --admin <socket>`.
 * A process that merely answers there, or reports the pid of an innocent one, is refused.
 */
export function untrustedDataPlane(pid: number, adminSocket: string): string | undefined {
  if (!hasProc) return undefined;
  if (!Number.isSafeInteger(pid) || pid <= 0) return `it reports pid ${String(pid)}, which is no pid`;
  if (!pidAlive(pid)) return `it reports pid ${pid}, which is not running`;
  const uid = process.getuid?.();
  const uids = procUids(pid);
  if (uid !== undefined && (uids?.real !== uid || uids.effective !== uid))
    return `pid ${pid} runs as uid ${uids?.real ?? '?'}, not as this user (uid ${uid})`;
  // " (deleted)": node was upgraded in place since that process started; it is still the same path.
  const exe = procExe(pid)?.replace(/ \(deleted\)$/, '');
  if (exe === undefined || !samePath(exe, process.execPath))
    return `pid ${pid} runs ${exe ?? 'a program it does not show'}, not ${process.execPath}`;
  const argv = procArgv(pid) ?? [];
  const entry = argv.indexOf(cliEntry());
  const admin = argv.indexOf('--admin');
  if (entry < 0 || argv[entry + 1] !== 'proxy' || admin < 0 || argv[admin + 1] !== adminSocket)
    return `pid ${pid} is not \`teal proxy --admin ${adminSocket}\` (it runs: ${argv.join(' ').slice(0, 200)})`;
  const inode = listeningUnixSocket(adminSocket);
  if (inode === undefined || !holdsSocket(pid, inode))
    return `pid ${pid} does not hold the socket listening at ${adminSocket}`;
  return undefined;
}

/** Throws TEAL_PROXY_UNTRUSTED unless `pid` is the data plane listening on `adminSocket`. */
export function assertOurDataPlane(pid: number, adminSocket: string): void {
  const why = untrustedDataPlane(pid, adminSocket);
  if (why === undefined) return;
  throw new TealError(
    'TEAL_PROXY_UNTRUSTED',
    `what answers on ${adminSocket} is not a data plane this teal started: ${why}; ` +
      'teal neither attaches to it nor signals that pid. Find who made that socket (ls -l, ss -xlp) and remove it',
    { socket: adminSocket, pid, why },
  );
}

function samePath(a: string, b: string): boolean {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  return a === b || real(a) === real(b);
}
