import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTealError, TealError } from '../../core/errors.js';
import { ensurePrivateDir } from '../../files.js';
import { cliEntry } from '../../paths.js';
import { pidAlive } from '../../proc.js';
import type { DataPlaneInfo } from './admin.js';
import { adminCall } from './admin-client.js';
import { assertOurDataPlane } from './identity.js';
import { type DataPlaneSettings, settingsArgs } from './settings.js';

export interface EnsureDataPlaneOptions {
  listen: string;
  /** The preview listener (X-Teal-Slot honoured); none when absent. */
  previewListen?: string;
  adminSocket: string;
  stateFile: string;
  /** The data plane's stdout and stderr are appended here. */
  logFile: string;
  /** How long a new data plane may take to answer (default 10s). */
  timeoutMs?: number;
  /** Limits and deadlines for a data plane this starts (a running one keeps its own). */
  settings?: Partial<DataPlaneSettings>;
}

export interface DataPlaneHandle {
  pid: number;
  /** The address it actually listens on. */
  listen: string;
  /** Where its preview listener is bound; null when it has none. */
  preview: string | null;
  /** False when a running data plane was re-attached to. */
  started: boolean;
}

const POLL_MS = 50;

/** The data plane answering on `socket`, or null when nothing does. */
export async function dataPlaneInfo(socket: string, timeoutMs = 2_000): Promise<DataPlaneInfo | null> {
  try {
    return await adminCall<DataPlaneInfo>(socket, 'GET', '/v1/info', { timeoutMs });
  } catch (err) {
    if (isTealError(err, 'TEAL_PROXY_UNREACHABLE')) return null;
    throw err;
  }
}

function portOf(address: string): string {
  return address.slice(address.lastIndexOf(':') + 1);
}

/** A running data plane serves the requested address when asked for exactly it (port 0: any port). */
function serves(bound: string | null, requested: string | null, wanted: string | undefined): boolean {
  if (wanted === undefined) return bound === null;
  if (bound === null || requested === null) return false;
  if (requested === wanted || bound === wanted) return true;
  const host = (a: string) => a.slice(0, a.lastIndexOf(':'));
  return portOf(wanted) === '0' && host(wanted) === host(requested);
}

function reattach(info: DataPlaneInfo, opts: EnsureDataPlaneOptions): DataPlaneHandle {
  assertOurDataPlane(info.pid, opts.adminSocket);
  const preview = info.preview ?? null;
  const mismatch = !serves(info.listen, info.requestedListen, opts.listen)
    ? `listens on ${info.listen}, not ${opts.listen}`
    : !serves(preview, info.requestedPreview ?? null, opts.previewListen)
      ? `has its preview listener on ${preview ?? 'no address'}, not ${opts.previewListen ?? 'none'}`
      : undefined;
  if (mismatch !== undefined) {
    throw new TealError(
      'TEAL_PROXY_FAILED',
      `the data plane on ${opts.adminSocket} (pid ${info.pid}) ${mismatch}; ` +
        `stop it (kill ${info.pid}) so a new one starts as teal.yml says`,
      {
        pid: info.pid,
        listen: info.listen,
        wanted: opts.listen,
        preview,
        wantedPreview: opts.previewListen ?? null,
      },
    );
  }
  return { pid: info.pid, listen: info.listen, preview, started: false };
}

async function logSince(file: string, offset: number, lines = 20): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const start = Math.max(offset, size - 64 * 1024);
    const buffer = Buffer.alloc(size - start);
    await handle.read(buffer, 0, buffer.length, start);
    return buffer.toString().trimEnd().split('\n').slice(-lines).join('\n');
  } finally {
    await handle.close();
  }
}

/** `node <args>` runs `teal proxy` as teal starts it: for a first start and for a successor alike. */
export function dataPlaneArgs(o: {
  listen: string;
  previewListen?: string;
  admin: string;
  state: string;
  settings: Partial<DataPlaneSettings>;
  handoff?: boolean;
}): string[] {
  return [
    // A 1 MB young generation keeps the data plane's RSS low at no measured cost in throughput
    // (npm run bench; the default 16 MB adds ~20 MB of RSS under load).
    '--max-semi-space-size=1',
    cliEntry(),
    'proxy',
    '--listen',
    o.listen,
    ...(o.previewListen === undefined ? [] : ['--preview-listen', o.previewListen]),
    '--admin',
    o.admin,
    '--state',
    o.state,
    ...settingsArgs(o.settings),
    ...(o.handoff ? ['--handoff'] : []),
  ];
}

/**
 * Makes sure a data plane serves: re-attaches to the one answering on the admin socket, or starts
 * `teal proxy` detached (its own session, outliving this process) and waits until it answers.
 * Throws TEAL_PORT_IN_USE when the listen address is taken, TEAL_PROXY_FAILED with the end of its
 * log when it exits or does not answer in time.
 */
export async function ensureDataPlane(opts: EnsureDataPlaneOptions): Promise<DataPlaneHandle> {
  ensurePrivateDir(path.dirname(opts.adminSocket));
  const running = await dataPlaneInfo(opts.adminSocket);
  if (running) return reattach(running, opts);

  for (const file of [opts.logFile, opts.stateFile])
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const offset = await stat(opts.logFile).then(
    (s) => s.size,
    () => 0,
  );
  const fd = openSync(opts.logFile, 'a', 0o600);
  const args = dataPlaneArgs({
    listen: opts.listen,
    ...(opts.previewListen === undefined ? {} : { previewListen: opts.previewListen }),
    admin: opts.adminSocket,
    state: opts.stateFile,
    settings: opts.settings ?? {},
  });
  let exited: string | undefined;
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  child.once('exit', (code, signal) => {
    exited = signal ? `was killed by ${signal}` : `exited with code ${code}`;
  });
  child.once('error', (err) => {
    exited = `could not be started (${err.message})`;
  });
  child.unref();

  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  for (;;) {
    if (exited === undefined) {
      const info = await dataPlaneInfo(opts.adminSocket, 1_000).catch(() => null);
      // Another launcher may have won a race to start one: re-attach to that one instead.
      if (info)
        return info.pid === child.pid
          ? { pid: info.pid, listen: info.listen, preview: info.preview ?? null, started: true }
          : reattach(info, opts);
    }
    if (exited !== undefined || Date.now() > deadline) {
      if (exited === undefined && child.pid !== undefined) child.kill('SIGKILL');
      const tail = await logSince(opts.logFile, offset).catch(() => '');
      const details = {
        listen: opts.listen,
        adminSocket: opts.adminSocket,
        logFile: opts.logFile,
        log: tail,
      };
      if (tail.includes('EADDRINUSE')) {
        throw new TealError(
          'TEAL_PORT_IN_USE',
          `the data plane cannot listen on ${opts.listen}${opts.previewListen ? ` or ${opts.previewListen} (preview)` : ''}: the address is already in use`,
          details,
        );
      }
      const what = exited ?? `did not answer on ${opts.adminSocket} within ${opts.timeoutMs ?? 10_000}ms`;
      throw new TealError(
        'TEAL_PROXY_FAILED',
        `the data plane (${process.execPath} ${args.join(' ')}) ${what}; its log ends:\n${tail}`,
        details,
      );
    }
    await sleep(POLL_MS);
  }
}

/**
 * Stops the data plane answering on `adminSocket`: SIGTERM, then waits for it to exit (it lets
 * requests in flight finish for up to 10s). At the timeout it is killed. Resolves with pid null
 * when no data plane answered; throws TEAL_PROXY_UNTRUSTED, signalling nothing, when what answers
 * is not our data plane.
 */
export async function stopDataPlane(
  adminSocket: string,
  options: { timeoutMs?: number } = {},
): Promise<{ pid: number | null; forced: boolean }> {
  if (!existsSync(path.dirname(adminSocket))) return { pid: null, forced: false };
  ensurePrivateDir(path.dirname(adminSocket));
  const info = await dataPlaneInfo(adminSocket);
  if (!info) return { pid: null, forced: false };
  assertOurDataPlane(info.pid, adminSocket);
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  process.kill(info.pid, 'SIGTERM');
  while (pidAlive(info.pid)) {
    if (Date.now() > deadline) {
      process.kill(info.pid, 'SIGKILL');
      const killDeadline = Date.now() + 5_000;
      while (pidAlive(info.pid) && Date.now() < killDeadline) await sleep(POLL_MS);
      return { pid: info.pid, forced: true };
    }
    await sleep(POLL_MS);
  }
  return { pid: info.pid, forced: false };
}

/**
 * Replaces the running data plane with a fresh `teal proxy` process (the teal installed now) without
 * refusing or failing a request: see handoff.ts. Resolves once the successor answers the admin API.
 */
export async function restartDataPlane(
  adminSocket: string,
  settings?: DataPlaneSettings,
): Promise<{ from: number; to: number }> {
  ensurePrivateDir(path.dirname(adminSocket));
  const info = await dataPlaneInfo(adminSocket);
  if (info) assertOurDataPlane(info.pid, adminSocket);
  return adminCall<{ from: number; to: number }>(adminSocket, 'POST', '/v1/handoff', {
    timeoutMs: 45_000,
    ...(settings ? { body: { settings } } : {}),
  });
}

/**
 * Tells the data plane on `adminSocket` that the control plane is stopped on purpose: it respawns
 * nothing from now on, and stops a control plane it had just started. Nothing to do when no data
 * plane answers; an older one without the endpoint never respawns anyway.
 */
export async function forgetControlPlane(adminSocket: string): Promise<void> {
  if (!existsSync(path.dirname(adminSocket))) return;
  ensurePrivateDir(path.dirname(adminSocket));
  const info = await dataPlaneInfo(adminSocket);
  if (!info) return;
  assertOurDataPlane(info.pid, adminSocket);
  try {
    await adminCall(adminSocket, 'DELETE', '/v1/control-plane', { timeoutMs: 15_000 });
  } catch (err) {
    if (!isTealError(err, 'TEAL_PROXY_FAILED')) throw err;
  }
}
