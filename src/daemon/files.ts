import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TealError } from '../core/errors.js';
import { ensurePrivateDir, tightenTree, writeJsonAtomic } from '../files.js';
import { pidAlive } from '../proc.js';

/**
 * The files a daemon keeps in its state dir. The CLI reads the same ones (token, daemon.json) to
 * find and authenticate to the daemon, so both sides name them here.
 */
export interface StatePaths {
  dir: string;
  token: string;
  daemonInfo: string;
  daemonLog: string;
  proxySocket: string;
  proxyState: string;
  proxyLog: string;
}

/** Unix socket paths over ~104 bytes fail to bind; deep state dirs keep theirs in a private dir instead. */
const MAX_SOCKET_PATH = 100;

/**
 * Where a state dir too deep for a unix socket path keeps its data plane's admin socket: a folder
 * of this user's only (tmux's /tmp/tmux-<uid> habit), made 0700 and checked before every use
 * (`ensurePrivateDir`): a name anyone could predict in /tmp itself would let another local user
 * answer in the data plane's place. Fixed, not $TMPDIR or $XDG_RUNTIME_DIR: `teal up`, the CLI and
 * the data plane must find the same path whatever their environment.
 */
export function privateSocketDir(uid = process.getuid?.() ?? 0): string {
  return `/tmp/teal-${uid}`;
}

export function statePaths(stateDir: string): StatePaths {
  const dir = path.resolve(stateDir);
  let proxySocket = path.join(dir, 'proxy.sock');
  if (Buffer.byteLength(proxySocket) > MAX_SOCKET_PATH) {
    proxySocket = path.join(
      privateSocketDir(),
      `${createHash('sha256').update(dir).digest('hex').slice(0, 16)}.sock`,
    );
  }
  return {
    dir,
    token: path.join(dir, 'token'),
    daemonInfo: path.join(dir, 'daemon.json'),
    daemonLog: path.join(dir, 'daemon.log'),
    proxySocket,
    proxyState: path.join(dir, 'proxy-table.json'),
    proxyLog: path.join(dir, 'proxy.log'),
  };
}

/**
 * Creates the state dir, or takes one that existed back to this user alone: every folder in it
 * 0700 and every file 0600 (the owner's execute bit kept), since it holds the token, the store and
 * the logs. A state dir owned by another user is refused (TEAL_UNSAFE_PATH).
 */
export function ensureStateDir(paths: StatePaths): void {
  ensurePrivateDir(paths.dir, { tighten: true });
  tightenTree(paths.dir);
}

/** The API token: TEAL_TOKEN if set, else the state dir's token file, created (0600) on first start. */
export function ensureToken(paths: StatePaths, env = process.env): string {
  if (env.TEAL_TOKEN) return strongEnough(env.TEAL_TOKEN, 'TEAL_TOKEN');
  if (existsSync(paths.token)) return strongEnough(readFileSync(paths.token, 'utf8').trim(), paths.token);
  const token = randomBytes(32).toString('base64url');
  writeFileSync(paths.token, `${token}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(paths.token, 0o600);
  return token;
}

/** The API token's minimum length: 32 characters are out of reach of guessing, even unthrottled. */
export const MIN_TOKEN_LENGTH = 32;

function strongEnough(token: string, from: string): string {
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new TealError(
      'TEAL_USAGE',
      `the API token in ${from} is ${token.length} characters; it must be at least ${MIN_TOKEN_LENGTH} (make one with: openssl rand -base64 32)`,
    );
  }
  return token;
}

/** The token the CLI sends: TEAL_TOKEN, else the state dir's file; undefined if neither exists. */
export function readToken(paths: StatePaths, env = process.env): string | undefined {
  if (env.TEAL_TOKEN) return env.TEAL_TOKEN;
  try {
    return readFileSync(paths.token, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** What a running daemon tells the CLI about itself (ports may have been chosen at start). */
export interface DaemonInfo {
  pid: number;
  api: string;
  proxy: string;
  /** The preview listener (X-Teal-Slot honoured), loopback by default; absent from older daemons. */
  preview?: string;
  startedAt: string;
  config: string;
}

export function writeDaemonInfo(paths: StatePaths, info: DaemonInfo): Promise<void> {
  return writeJsonAtomic(paths.daemonInfo, info);
}

export function readDaemonInfo(paths: StatePaths): DaemonInfo | undefined {
  try {
    return JSON.parse(readFileSync(paths.daemonInfo, 'utf8')) as DaemonInfo;
  } catch {
    return undefined;
  }
}

export function removeDaemonInfo(paths: StatePaths): void {
  rmSync(paths.daemonInfo, { force: true });
}

/** Refuses to start a second daemon on the same state dir: two control planes would fight over it. */
export function assertNotRunning(paths: StatePaths): void {
  const info = readDaemonInfo(paths);
  if (info && info.pid !== process.pid && pidAlive(info.pid)) {
    throw new TealError(
      'TEAL_DAEMON_RUNNING',
      `teal is already running for ${info.config} (pid ${info.pid}, API ${info.api}); stop it first (kill ${info.pid})`,
      { pid: info.pid, api: info.api },
    );
  }
}
