import { type ChildProcess, spawn } from 'node:child_process';
import type net from 'node:net';
import { TealError } from '../../core/errors.js';
import type { RoutingTable } from '../switch.js';
import type { DataPlane, HandoffResult } from './dataplane.js';
import { dataPlaneArgs } from './launcher.js';
import type { EventLog } from './log.js';
import type { DataPlaneSettings } from './settings.js';

/**
 * Restarting the data plane without a gap (kamal: "rebooting the proxy means there's a gap").
 * The running data plane starts its successor (the `teal` installed now, so this is also how a new
 * version takes over) and, over an IPC channel:
 *
 *   old -> new   the listening socket and the routing table ("listener"), then the preview
 *                listener's socket when it has one ("preview-listener": one handle per message)
 *   new -> old   "serving": both now accept connections on the same socket
 *   old          stops accepting, lets go of the admin socket path
 *   old -> new   "admin-free"
 *   new -> old   "ready": the successor answers the admin API
 *   old          retires: each connection closes after its next response, then it exits
 *
 * The listening socket never closes, so no connection is refused; requests already running on the
 * old process finish there. The admin socket is unbound for a few milliseconds; BuiltinSwitch
 * retries through that.
 */

const STEP_TIMEOUT_MS = 10_000;

export interface HandoffOptions {
  listen: string;
  previewListen?: string;
  admin: string;
  state: string;
  settings: DataPlaneSettings;
  log: EventLog;
}

interface Message {
  type: 'started' | 'serving' | 'ready' | 'failed';
  pid?: number;
  message?: string;
}

function next(child: ChildProcess, type: Message['type']): Promise<Message> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () =>
        done(
          new TealError(
            'TEAL_PROXY_FAILED',
            `the new data plane did not say "${type}" within ${STEP_TIMEOUT_MS / 1000}s`,
          ),
        ),
      STEP_TIMEOUT_MS,
    );
    const onMessage = (m: Message) => {
      if (m.type === type) done(undefined, m);
      else if (m.type === 'failed')
        done(new TealError('TEAL_PROXY_FAILED', `the new data plane failed: ${m.message}`));
    };
    const onExit = (code: number | null) =>
      done(new TealError('TEAL_PROXY_FAILED', `the new data plane exited (${code}) before saying "${type}"`));
    function done(err?: Error, m?: Message) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(m!);
    }
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Runs in the old data plane: starts the successor and hands it the sockets. */
export async function handOff(plane: DataPlane, opts: HandoffOptions): Promise<HandoffResult> {
  const child = spawn(
    process.execPath,
    dataPlaneArgs({
      listen: opts.listen,
      ...(opts.previewListen === undefined ? {} : { previewListen: opts.previewListen }),
      admin: opts.admin,
      state: opts.state,
      settings: opts.settings,
      handoff: true,
    }),
    // Its output goes where ours goes (the data plane's log file); it outlives us in its own session.
    { detached: true, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  opts.log('handoff', { step: 'spawned', pid: child.pid ?? null });
  let released = false;
  try {
    await next(child, 'started');
    const { public: listener, preview } = plane.listeners;
    child.send({ type: 'listener', table: plane.currentTable(), preview: preview !== null }, listener);
    if (preview) child.send({ type: 'preview-listener' }, preview);
    await next(child, 'serving');
    plane.stopAccepting();
    plane.releaseAdmin();
    released = true;
    child.send({ type: 'admin-free' });
    const ready = await next(child, 'ready');
    child.disconnect();
    child.unref();
    opts.log('handoff', { step: 'done', from: process.pid, to: ready.pid ?? null });
    return { from: process.pid, to: ready.pid ?? child.pid ?? 0 };
  } catch (err) {
    child.kill('SIGKILL');
    // Take the admin socket back if we had let go of it: this process keeps serving.
    if (released) await plane.bindAdmin().catch(() => undefined);
    opts.log('error', { where: 'handoff', message: (err as Error).message });
    throw err;
  }
}

/** Runs in the new data plane (`teal proxy --handoff`): adopts the sockets its predecessor sends. */
export async function takeOver(
  start: (
    listeners: { public: net.Server; preview: net.Server | null },
    table: RoutingTable | null,
  ) => Promise<DataPlane>,
): Promise<DataPlane> {
  if (!process.send)
    throw new TealError(
      'TEAL_USAGE',
      '--handoff is for a data plane started by another one (it needs an IPC channel)',
    );
  const send = (m: Message) => process.send!(m);
  const received = new Promise<{
    listeners: { public: net.Server; preview: net.Server | null };
    table: RoutingTable | null;
  }>((resolve) => {
    let first: { listener: net.Server; table: RoutingTable | null } | undefined;
    const onMessage = (
      m: { type: string; table: RoutingTable | null; preview?: boolean },
      handle: net.Server,
    ) => {
      if (m.type === 'listener') {
        first = { listener: handle, table: m.table };
        if (m.preview) return;
      } else if (m.type !== 'preview-listener' || !first) return;
      process.off('message', onMessage);
      const preview = m.type === 'preview-listener' ? handle : null;
      resolve({ listeners: { public: first!.listener, preview }, table: first!.table });
    };
    process.on('message', onMessage);
  });
  send({ type: 'started' });
  const { listeners, table } = await received;
  let plane: DataPlane;
  try {
    plane = await start(listeners, table);
  } catch (err) {
    send({ type: 'failed', message: (err as Error).message });
    throw err;
  }
  const adminFree = new Promise<void>((resolve) => {
    const onMessage = (m: { type: string }) => {
      if (m.type === 'admin-free') {
        process.off('message', onMessage);
        resolve();
      }
    };
    process.on('message', onMessage);
  });
  send({ type: 'serving' });
  await adminFree;
  try {
    await plane.bindAdmin();
  } catch (err) {
    send({ type: 'failed', message: (err as Error).message });
    throw err;
  }
  send({ type: 'ready', pid: process.pid });
  // The predecessor disconnects once it has our answer; the channel must not keep us tied to it.
  process.channel?.unref();
  return plane;
}
