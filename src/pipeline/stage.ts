import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import type { RunUser } from '../users.js';

/**
 * Runs one stage: the user's command under `sh -c` exactly as written in teal.yml, in the
 * workspace, with the run's values in environment variables only (a commit message or branch name
 * can never become shell code). Its output goes to a file; its own process group is killed at the
 * timeout or on cancel, background children included.
 */
export interface StageResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  ms: number;
  tail: string;
}

const TAIL_BYTES = 4096;
const KILL_GRACE_MS = 3_000;

export async function runStage(options: {
  run: string;
  cwd: string;
  env: Record<string, string>;
  logFile: string;
  timeoutMs: number;
  signal: AbortSignal;
  /** Who it runs as (users.ts resolveRunUser). */
  user?: RunUser;
}): Promise<StageResult> {
  mkdirSync(path.dirname(options.logFile), { recursive: true, mode: 0o700 });
  const out = openSync(options.logFile, 'a', 0o600);
  const t0 = performance.now();
  let timedOut = false;
  const child = spawn('sh', ['-c', options.run], {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', out, out],
    detached: true,
    // With uid/gid, libuv also drops every supplementary group (setgroups(0)) before exec.
    ...(options.user?.switchTo ?? {}),
  });
  closeSync(out);
  const killGroup = (sig: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, sig);
    } catch {
      // The group is already gone.
    }
  };
  let hard: NodeJS.Timeout | undefined;
  const stop = () => {
    killGroup('SIGTERM');
    hard ??= setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    stop();
  }, options.timeoutMs);
  options.signal.addEventListener('abort', stop, { once: true });
  const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('error', () => resolve([127, null]));
    child.once('exit', (code, sig) => resolve([code, sig]));
  });
  clearTimeout(timer);
  clearTimeout(hard);
  options.signal.removeEventListener('abort', stop);
  // Whatever the stage left running in the background goes with it.
  killGroup('SIGKILL');
  return { exitCode, signal, timedOut, ms: performance.now() - t0, tail: tailOf(options.logFile) };
}

export function tailOf(file: string, bytes = TAIL_BYTES): string {
  let fd: number | undefined;
  try {
    const size = statSync(file).size;
    const length = Math.min(size, bytes);
    const buf = Buffer.alloc(length);
    fd = openSync(file, 'r');
    readSync(fd, buf, 0, length, size - length);
    const text = buf.toString('utf8');
    return size > bytes ? text.slice(text.indexOf('\n') + 1) : text;
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
