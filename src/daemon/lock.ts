import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { TealError } from '../core/errors.js';
import { readDaemonInfo, type StatePaths } from './files.js';

/**
 * The one-control-plane-per-state-dir lock: a unix socket bound in Linux's abstract namespace.
 * The kernel makes the bind atomic (two `teal up`s racing, or one racing the data plane's respawn:
 * exactly one binds) and releases it when the process dies, however it dies: no stale lock file to
 * judge by pid, which daemon.json alone did (a check then a write, racy, and written only once the
 * API listened). Abstract names have no permissions, so the name is a hash of a random secret kept
 * in the 0700 state dir: another local user cannot bind it first to keep teal from starting.
 */
export interface StateDirLock {
  /** The abstract socket's name, with its leading NUL: the data plane probes it before a respawn. */
  readonly name: string;
  release(): Promise<void>;
}

/** The lock's name for a state dir (creating the secret beside the token on first use). */
export function stateDirLockName(paths: Pick<StatePaths, 'dir'>): string {
  const file = path.join(paths.dir, 'lock-id');
  let secret: string;
  try {
    secret = readFileSync(file, 'utf8').trim();
  } catch {
    secret = randomBytes(16).toString('hex');
    try {
      writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    } catch {
      // Another teal up made it at the same moment: both must use the one on disk.
      secret = readFileSync(file, 'utf8').trim();
    }
  }
  const digest = createHash('sha256').update(`${paths.dir}\0${secret}`).digest('hex').slice(0, 32);
  return `\0teal-up-${digest}`;
}

/** Takes the lock or throws TEAL_DAEMON_RUNNING naming who holds it (from daemon.json, when written). */
export async function holdStateDirLock(paths: StatePaths): Promise<StateDirLock> {
  const name = stateDirLockName(paths);
  // Connections are only the data plane asking "is a control plane alive here?": answered by closing.
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EADDRINUSE') {
        reject(err);
        return;
      }
      const info = readDaemonInfo(paths);
      const who = info
        ? ` (pid ${info.pid}, API ${info.api}); stop it first (kill ${info.pid})`
        : ' (it is starting)';
      reject(
        new TealError(
          'TEAL_DAEMON_RUNNING',
          `another teal up holds the state dir ${paths.dir}${who}`,
          info ? { pid: info.pid, api: info.api } : { stateDir: paths.dir },
        ),
      );
    });
    server.listen(name, () => resolve());
  });
  server.unref();
  return {
    name,
    release: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Whether a live process holds the lock `name` (it accepts a connection there). */
export function lockHeld(name: string, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(name);
    const done = (held: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(held);
    };
    const timer = setTimeout(() => done(true), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
