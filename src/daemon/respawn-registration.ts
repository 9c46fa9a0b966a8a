import type { Logger } from '../core/deps.js';
import { isTealError, toTealError } from '../core/errors.js';
import { cliEntry } from '../paths.js';
import { adminCall } from '../proxy/builtin/admin-client.js';
import type { ControlPlaneRegistration } from '../proxy/builtin/respawn.js';

/**
 * A supervisor runs teal up when it says so in the environment: systemd sets INVOCATION_ID for
 * every unit it starts (and NOTIFY_SOCKET for Type=notify). The supervisor restarts teal up then,
 * and a data plane that respawned it too would race it for the state dir.
 */
export function underSupervisor(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.INVOCATION_ID) return 'systemd (INVOCATION_ID is set)';
  if (env.NOTIFY_SOCKET) return 'a supervisor (NOTIFY_SOCKET is set)';
  return undefined;
}

/**
 * The control plane telling its builtin data plane how to start it again (respawn.ts): this
 * process's own command line, cwd and environment, so a respawned teal up reads the same teal.yml
 * with the same token and `fromEnv` secrets. Sent again each time a data plane is (re)attached.
 */
export class RespawnRegistration {
  readonly #opts: { adminSocket: string; lock: string; logFile: string; respawn: boolean; log: Logger };

  constructor(opts: { adminSocket: string; lock: string; logFile: string; respawn: boolean; log: Logger }) {
    this.#opts = opts;
  }

  async register(): Promise<void> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && k !== 'TEAL_RESPAWNED_BY') env[k] = v;
    const body: ControlPlaneRegistration = {
      pid: process.pid,
      // The entry by its real path, as the data plane checks it (a `teal` on PATH may be a symlink).
      argv: [process.execPath, ...process.execArgv, cliEntry(), ...process.argv.slice(2)],
      cwd: process.cwd(),
      env,
      logFile: this.#opts.logFile,
      lock: this.#opts.lock,
      respawn: this.#opts.respawn,
    };
    try {
      await adminCall(this.#opts.adminSocket, 'PUT', '/v1/control-plane', { body, timeoutMs: 5_000 });
    } catch (err) {
      // A data plane of an older teal has no such endpoint: it serves, it just does not respawn.
      this.#opts.log.warn('the data plane will not respawn the control plane', {
        error: toTealError(err).message,
      });
    }
  }

  /** Stopping on purpose: the data plane forgets this process (and respawns nothing). */
  async forget(): Promise<void> {
    try {
      await adminCall(this.#opts.adminSocket, 'DELETE', `/v1/control-plane?pid=${process.pid}`, {
        timeoutMs: 5_000,
      });
    } catch (err) {
      if (!isTealError(err, 'TEAL_PROXY_UNREACHABLE'))
        this.#opts.log.warn('could not tell the data plane this control plane stops', {
          error: toTealError(err).message,
        });
    }
  }
}
