import { toTealError } from '../../core/errors.js';
import { jsonLines } from './log.js';
import type { DataPlaneSettings } from './settings.js';

/** How long a stopping data plane lets requests in flight finish before it cuts them. */
const STOP_GRACE_MS = 10_000;

export interface DataPlaneProcessOptions {
  /** "host:port" users connect to. */
  listen: string;
  /** "host:port" of the preview listener (the slot header is honoured there); none when absent. */
  previewListen?: string;
  /** Unix socket path of the admin API. */
  admin: string;
  /** File where the applied table is saved, and read back on start. */
  state: string;
  settings?: Partial<DataPlaneSettings>;
  /** Started by a running data plane to take over its sockets (handoff.ts), not to bind them. */
  handoff?: boolean;
}

/** After handing off, how long the old process lets its connections and streams finish. */
const RETIRE_GRACE_MS = 30_000;

/**
 * `teal proxy`: runs the builtin data plane until SIGTERM or SIGINT, then stops it gracefully and
 * exits 0. Events go to stdout as JSON lines; a failure to start is logged there too (the launcher
 * reads it from the log file) and thrown for the CLI to report.
 */
export async function runDataPlaneProcess(options: DataPlaneProcessOptions): Promise<void> {
  const log = jsonLines((line) => process.stdout.write(line));
  // Loaded here, not at the top, so other verbs do not pay for the data plane's modules.
  const { DataPlane } = await import('./dataplane.js');
  const { handOff, takeOver } = await import('./handoff.js');
  let plane: Awaited<ReturnType<typeof DataPlane.start>>;
  const handoff = async (settings?: Partial<DataPlaneSettings>) => {
    const result = await handOff(plane, {
      listen: options.listen,
      ...(options.previewListen === undefined ? {} : { previewListen: options.previewListen }),
      admin: options.admin,
      state: options.state,
      settings: { ...plane.settings, ...settings },
      log,
    });
    // Answer the admin request first, then retire and exit. The successor watches the control
    // plane from here on (teal up follows the handoff and registers there).
    keeper.close();
    setImmediate(async () => {
      log('retiring', { successor: result.to, graceMs: RETIRE_GRACE_MS });
      await plane.retire(RETIRE_GRACE_MS);
      log('stop', { reason: 'handed off' });
      process.exit(0);
    });
    return result;
  };
  const { ControlPlaneKeeper } = await import('./respawn.js');
  const keeper = new ControlPlaneKeeper(log);
  const opts = { ...options, log, handoff, keeper };
  try {
    plane = options.handoff
      ? await takeOver((listeners, table) => DataPlane.adopt(opts, listeners, table))
      : await DataPlane.start(opts);
  } catch (err) {
    const e = toTealError(err);
    log('error', { where: 'start', code: e.code, message: e.message });
    throw e;
  }
  const info = plane.info();
  log('start', {
    pid: info.pid,
    listen: info.listen,
    preview: info.preview ?? null,
    admin: options.admin,
    state: options.state,
    revision: info.revision,
    version: info.version,
  });

  // A bug hit by one request must not take every other connection down with the process.
  process.on('uncaughtException', (err) =>
    log('error', { where: 'uncaught', message: err.message, stack: err.stack }),
  );

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log('stopping', { signal, graceMs: STOP_GRACE_MS });
  // Stopped on purpose (teal down, a supervisor): nothing to respawn past this point.
  keeper.close();
  await plane.close(STOP_GRACE_MS);
  log('stop', { signal });
  // Anything left (a socket mid-close) must not keep a stopped data plane alive.
  process.exit(0);
}
