import type { Logger } from '../../core/deps.js';
import { toTealError } from '../../core/errors.js';
import { isDead, procStat } from '../../proc.js';
import { untrustedDataPlane } from './identity.js';
import {
  type DataPlaneHandle,
  dataPlaneInfo,
  type EnsureDataPlaneOptions,
  ensureDataPlane,
} from './launcher.js';

/** What `teal status` and `GET /v1/dataplane` say about the builtin data plane. */
export interface DataPlaneStatus {
  kind: 'builtin';
  /** The data plane watched now; null while none runs. */
  pid: number | null;
  state: 'up' | 'restarting' | 'down';
  /** Since when it has been in that state. */
  since: string;
  /** Data planes this control plane started because the one before had died. */
  restarts: number;
  lastRestart: { at: string; previous: number; pid: number; downMs: number } | null;
  /** Why the last attempt to start one failed (cleared once one serves). */
  lastError: { at: string; code: string; message: string } | null;
  /** When the next attempt is due while it is down. */
  nextAttemptAt: string | null;
}

const POLL_MS = 250;
/** Every this many polls the admin socket is asked who serves: a handoff (teal restart-proxy) changes the pid. */
const INFO_EVERY = 4;
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 10_000;

export interface WatchdogOptions {
  /** How to start it again: as `teal up` did, but on the addresses it actually bound (port 0 means the same port). */
  launch: EnsureDataPlaneOptions;
  pid: number;
  log: Logger;
  /** After a new data plane started or a successor was found: apply the store's table, register again. */
  attached(handle: DataPlaneHandle, restarted: boolean): Promise<void>;
}

/**
 * The control plane's half of "a crash of either process is covered by the other": it reads the
 * data plane's /proc start time every 250 ms (a recycled pid is not mistaken for it), and when it
 * is gone starts a new one on the same addresses with the saved table (the data plane restores
 * .teal/proxy-table.json before it listens), then applies the store's table over it. A data plane
 * that cannot start (the port was taken meanwhile) is retried with backoff, 250 ms doubling to
 * 10 s, and the reason is in the log and in `teal status`.
 */
export class DataPlaneWatchdog {
  readonly #opts: WatchdogOptions;
  #pid: number | null;
  #startTime: number | undefined;
  #state: DataPlaneStatus['state'] = 'up';
  #since = new Date().toISOString();
  #restarts = 0;
  #lastRestart: DataPlaneStatus['lastRestart'] = null;
  #lastError: DataPlaneStatus['lastError'] = null;
  #failures = 0;
  #diedAt = 0;
  #previous = 0;
  #nextAt = 0;
  #polls = 0;
  #busy: Promise<void> | null = null;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: WatchdogOptions) {
    this.#opts = opts;
    this.#pid = opts.pid;
    this.#startTime = procStat(opts.pid)?.startTime;
  }

  start(): void {
    this.#timer = setInterval(() => {
      if (this.#busy) return;
      this.#busy = this.#tick()
        .catch((err) => this.#opts.log.error('data plane watchdog', { message: toTealError(err).message }))
        .finally(() => {
          this.#busy = null;
        });
    }, POLL_MS);
    this.#timer.unref();
  }

  /** Stops watching; an attempt under way finishes first. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#busy;
  }

  status(): DataPlaneStatus {
    return {
      kind: 'builtin',
      pid: this.#state === 'up' ? this.#pid : null,
      state: this.#state,
      since: this.#since,
      restarts: this.#restarts,
      lastRestart: this.#lastRestart,
      lastError: this.#lastError,
      nextAttemptAt: this.#state === 'up' ? null : new Date(this.#nextAt).toISOString(),
    };
  }

  #setState(state: DataPlaneStatus['state']): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#since = new Date().toISOString();
  }

  async #tick(): Promise<void> {
    if (this.#state === 'up' && this.#pid !== null) {
      const stat = procStat(this.#pid);
      if (stat !== undefined && !isDead(stat) && stat.startTime === this.#startTime) {
        if (++this.#polls % INFO_EVERY === 0) await this.#followHandoff();
        return;
      }
      this.#previous = this.#pid;
      this.#diedAt = Date.now();
      this.#nextAt = this.#diedAt;
      this.#setState('restarting');
      this.#opts.log.warn('the data plane died; starting it again', { pid: this.#pid });
    }
    if (Date.now() < this.#nextAt) return;
    await this.#attempt();
  }

  /** A successor that took over (handoff) is followed, once it is ours by /proc, not by its word. */
  async #followHandoff(): Promise<void> {
    const info = await dataPlaneInfo(this.#opts.launch.adminSocket, 1_000).catch(() => null);
    if (!info || info.pid === this.#pid || untrustedDataPlane(info.pid, this.#opts.launch.adminSocket))
      return;
    this.#opts.log.info('following the data plane that took over', { from: this.#pid, pid: info.pid });
    this.#watch(info.pid);
    await this.#opts.attached(
      { pid: info.pid, listen: info.listen, preview: info.preview ?? null, started: false },
      false,
    );
  }

  #watch(pid: number): void {
    this.#pid = pid;
    this.#startTime = procStat(pid)?.startTime;
  }

  async #attempt(): Promise<void> {
    let handle: DataPlaneHandle;
    try {
      handle = await ensureDataPlane(this.#opts.launch);
    } catch (err) {
      const e = toTealError(err);
      this.#failures++;
      const wait = Math.min(FIRST_BACKOFF_MS * 2 ** (this.#failures - 1), MAX_BACKOFF_MS);
      this.#nextAt = Date.now() + wait;
      this.#lastError = { at: new Date().toISOString(), code: e.code, message: e.message };
      this.#setState('down');
      this.#opts.log.error('the data plane could not be started again', {
        code: e.code,
        error: e.message,
        attempt: this.#failures,
        retryInMs: wait,
      });
      return;
    }
    const downMs = Date.now() - this.#diedAt;
    this.#watch(handle.pid);
    this.#failures = 0;
    this.#lastError = null;
    if (handle.started) {
      this.#restarts++;
      this.#lastRestart = { at: new Date().toISOString(), previous: this.#previous, pid: handle.pid, downMs };
    }
    this.#setState('up');
    this.#opts.log.info(handle.started ? 'started the data plane again' : 're-attached to a data plane', {
      previous: this.#previous,
      pid: handle.pid,
      downMs,
      restarts: this.#restarts,
    });
    await this.#opts.attached(handle, handle.started);
  }
}
