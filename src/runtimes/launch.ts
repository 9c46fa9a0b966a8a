/**
 * Starting an app's process so that it outlives the control plane: in its own session and process
 * group (detached), not holding our event loop open (unref), and writing straight into its log
 * file rather than into a pipe to us, which would break (SIGPIPE) the moment we die.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { TealError } from '../core/errors.js';
import { assertReachable, type RunUser } from '../users.js';
import { isErrno, procStat } from './liveness.js';
import type { ExitInfo } from './runtime.js';

export interface LaunchOptions {
  service: string;
  command: string[];
  cwd: string;
  env: Record<string, string | undefined>;
  logFile: string;
  /** Who it runs as (users.ts); its cwd must be reachable for them. */
  user?: RunUser;
}

export interface Launched {
  child: ChildProcess;
  pid: number;
  /** See liveness.ts; null if /proc could not tell. */
  procStartTime: number | null;
  /** Resolves when the process exits and has been reaped. */
  exit: Promise<ExitInfo>;
}

/** Throws TEAL_START_FAILED naming the program, the command and the cwd when it cannot be started. */
export async function launch(options: LaunchOptions): Promise<Launched> {
  const { service, command, cwd, logFile } = options;
  const details = { command, cwd };
  const fail = (why: string, cause?: unknown) =>
    new TealError(
      'TEAL_START_FAILED',
      `cannot start services.${service}: ${why} (command: ${JSON.stringify(command)}, cwd: ${cwd})`,
      details,
      cause === undefined ? undefined : { cause },
    );
  const program = command[0];
  if (program === undefined || program === '') throw fail('the command is empty');
  await assertDirectory(cwd, fail);
  if (options.user) assertReachable(cwd, options.user, `services.${service}`);

  await mkdir(path.dirname(logFile), { recursive: true, mode: 0o700 });
  // Opened by teal, in the state dir the app cannot reach: the app only ever holds the descriptor.
  const log = await open(logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(program, command.slice(1), {
      cwd,
      env: options.env,
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
      // With uid/gid, libuv also drops every supplementary group (setgroups(0)) before exec.
      ...(options.user?.switchTo ?? {}),
    });
  } catch (err) {
    await log.close();
    throw fail((err as Error).message, err);
  }
  // Everything that listens to the child is set up before the first await: 'spawn', 'error' and
  // 'exit' may fire as soon as the event loop runs, and an app that exits at once is reaped then,
  // taking its /proc entry (and start time) with it.
  const started = spawned(child);
  const exit = new Promise<ExitInfo>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const procStartTime = child.pid === undefined ? null : (procStat(child.pid)?.startTime ?? null);
  // The child holds its own copy of the descriptor.
  await log.close();

  const err = await started;
  if (err) {
    await removeIfEmpty(logFile);
    const code = err.code;
    if (code === 'ENOENT') throw fail(`program "${program}" not found`, err);
    // execvp reports EACCES when some PATH folder could not be searched (the run user may not
    // enter /root/bin) and the program was not found in the others.
    if (code === 'EACCES' && !onPath(program, options.env.PATH)) {
      throw fail(`program "${program}" not found`, err);
    }
    if (code === 'EACCES') throw fail(`program "${program}" is not executable`, err);
    throw fail(err.message, err);
  }
  child.unref();
  return { child, pid: child.pid!, procStartTime, exit };
}

/**
 * spawn reports a missing or non-executable program with an 'error' event instead of 'spawn'.
 * Resolves with that error rather than rejecting: nobody awaits it until the log is closed, and a
 * rejection with no handler yet would be reported as unhandled.
 */
function spawned(child: ChildProcess): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const onError = (err: Error) => {
      child.off('spawn', onSpawn);
      resolve(err);
    };
    const onSpawn = () => {
      child.off('error', onError);
      resolve(undefined);
    };
    child.once('error', onError);
    child.once('spawn', onSpawn);
  });
}

/** Checked up front: spawn's own ENOENT does not say whether the program or the cwd is missing. */
async function assertDirectory(
  cwd: string,
  fail: (why: string, cause?: unknown) => TealError,
): Promise<void> {
  try {
    const st = await stat(cwd);
    if (!st.isDirectory()) throw fail(`working directory "${cwd}" is not a directory`);
  } catch (err) {
    if (err instanceof TealError) throw err;
    if (isErrno(err, 'ENOENT')) throw fail(`working directory "${cwd}" does not exist`, err);
    throw fail(`working directory "${cwd}" cannot be used: ${(err as Error).message}`, err);
  }
}

async function removeIfEmpty(file: string): Promise<void> {
  const st = await stat(file).catch((err: unknown) => {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  });
  if (st?.size === 0) await rm(file, { force: true });
}

/** Whether `program` names a file: as a path, or in one of PATH's folders. */
function onPath(program: string, PATH: string | undefined): boolean {
  if (program.includes('/')) return existsSync(program);
  return (PATH ?? '').split(':').some((dir) => dir !== '' && existsSync(path.join(dir, program)));
}
