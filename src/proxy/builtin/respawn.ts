import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { TealError } from '../../core/errors.js';
import { lockHeld } from '../../daemon/lock.js';
import { cliEntry } from '../../paths.js';
import { isDead, procStat } from '../../proc.js';
import type { EventLog } from './log.js';

/**
 * How a control plane (`teal up`) tells its data plane to start it again should it die: what it
 * runs (its own argv, cwd and environment: a respawned teal up must find the same config, token and
 * `fromEnv` secrets), where its output goes, and the name of its state dir lock. Given over the
 * admin socket (only our user reaches it), held in memory only, never written to the table or disk.
 */
export interface ControlPlaneRegistration {
  pid: number;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  /** The respawned control plane's stdout and stderr are appended here. */
  logFile: string;
  /** The state dir lock (daemon/lock.ts): held means a control plane is alive or starting. */
  lock: string;
  /** False under an outside supervisor (systemd) or `teal up --no-respawn`: watched, never started. */
  respawn: boolean;
}

export interface ControlPlaneStatus {
  /** The control plane watched now; null when none registered or it was forgotten. */
  pid: number | null;
  respawn: boolean;
  /** How many times this data plane started a control plane. */
  respawns: number;
  /** Respawned ones that died before they were up, in a row (the backoff's exponent). */
  failures: number;
  last: { at: string; pid: number; reason: string } | null;
}

/** The first respawn is at once; each one that dies again before it is up doubles the wait, to this. */
const MAX_BACKOFF_MS = 30_000;
const FIRST_BACKOFF_MS = 500;
/** A control plane up this long resets the backoff: its next crash is respawned at once again. */
const STABLE_MS = 30_000;
const POLL_MS = 250;

/**
 * The data plane's half of "a crash of either process is covered by the other": it watches the
 * registered control plane's pid (its /proc start time, so a recycled pid is not mistaken for it)
 * every 250 ms and, when it is gone without having said goodbye (a SIGTERM'd teal up forgets itself
 * first, `teal down` forgets it), starts it again as registered, unless the state dir lock is held:
 * then another control plane is alive or starting (a user's, a supervisor's) and it will register.
 */
export class ControlPlaneKeeper {
  readonly #log: EventLog;
  #reg: ControlPlaneRegistration | null = null;
  #startTime = 0;
  /** Set once the process at `#reg.pid` registered itself: a respawned one that has not is still starting. */
  #confirmedAt = 0;
  #child: ChildProcess | null = null;
  #respawns = 0;
  #failures = 0;
  /** When the watched control plane was found dead: when to start it again (null while it lives). */
  #dueAt: number | null = null;
  #last: ControlPlaneStatus['last'] = null;
  #busy = false;
  readonly #timer: NodeJS.Timeout;

  constructor(log: EventLog) {
    this.#log = log;
    this.#timer = setInterval(() => void this.#tick(), POLL_MS).unref();
  }

  register(body: unknown): ControlPlaneStatus {
    const reg = parseRegistration(body);
    const stat = procStat(reg.pid);
    if (stat === undefined || isDead(stat))
      throw new TealError('TEAL_BAD_REQUEST', `control plane pid ${reg.pid} is not running`);
    if (this.#child?.pid !== reg.pid) this.#failures = 0;
    this.#reg = reg;
    this.#dueAt = null;
    this.#startTime = stat.startTime;
    this.#confirmedAt = Date.now();
    this.#log('control_plane', {
      pid: reg.pid,
      respawn: reg.respawn,
      respawned: this.#child?.pid === reg.pid,
    });
    return this.status();
  }

  /**
   * Stops watching (the control plane stopped on purpose). With `pid`, only when that is the one
   * watched; a control plane this data plane started and that is still starting is stopped too.
   */
  async forget(pid: number | undefined): Promise<{ forgot: boolean; stopped: number | null }> {
    if (pid !== undefined && this.#reg?.pid !== pid) return { forgot: false, stopped: null };
    const was = this.#reg?.pid ?? null;
    this.#reg = null;
    this.#dueAt = null;
    this.#log('control_plane_forgotten', { pid: was });
    const child = this.#child;
    // Its own child: no identity to check. The one that asked to be forgotten is stopping by itself.
    if (!child || child.pid === pid || child.exitCode !== null || child.signalCode !== null)
      return { forgot: true, stopped: null };
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    return { forgot: true, stopped: child.pid ?? null };
  }

  status(): ControlPlaneStatus {
    return {
      pid: this.#reg?.pid ?? null,
      respawn: this.#reg?.respawn ?? false,
      respawns: this.#respawns,
      failures: this.#failures,
      last: this.#last,
    };
  }

  close(): void {
    clearInterval(this.#timer);
  }

  async #tick(): Promise<void> {
    const reg = this.#reg;
    if (!reg || this.#busy) return;
    if (this.#dueAt === null) {
      const stat = procStat(reg.pid);
      if (stat !== undefined && !isDead(stat) && stat.startTime === this.#startTime) return;
      if (!reg.respawn) {
        this.#log('control_plane_exited', { pid: reg.pid, respawn: false });
        this.#reg = null;
        return;
      }
      // One this data plane started that died before it was up, or soon after: a crash loop, backed off.
      const respawned = this.#child?.pid === reg.pid;
      const short = this.#confirmedAt === 0 || Date.now() - this.#confirmedAt < STABLE_MS;
      this.#failures = respawned && short ? this.#failures + 1 : 0;
      const wait =
        this.#failures === 0 ? 0 : Math.min(FIRST_BACKOFF_MS * 2 ** (this.#failures - 1), MAX_BACKOFF_MS);
      this.#dueAt = Date.now() + wait;
      this.#log('control_plane_died', { pid: reg.pid, failures: this.#failures, respawnInMs: wait });
    }
    if (Date.now() < this.#dueAt) return;
    this.#busy = true;
    try {
      if (await lockHeld(reg.lock)) {
        // Another teal up is alive or starting on this state dir (a user's, a supervisor's): it
        // registers once it is up; until then, look again in a second.
        this.#dueAt = Date.now() + 1_000;
        return;
      }
      if (this.#reg !== reg) return;
      this.#dueAt = null;
      this.#spawn(reg);
    } finally {
      this.#busy = false;
    }
  }

  #spawn(reg: ControlPlaneRegistration): void {
    const fd = openSync(reg.logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(reg.argv[0]!, reg.argv.slice(1), {
        cwd: reg.cwd,
        env: { ...reg.env, TEAL_RESPAWNED_BY: String(process.pid) },
        detached: true,
        stdio: ['ignore', fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    child.unref();
    child.once('error', (err) => this.#log('error', { where: 'respawn', message: err.message }));
    child.once('exit', (code, signal) => {
      if (this.#child === child) this.#log('control_plane_exit', { pid: child.pid ?? null, code, signal });
    });
    const pid = child.pid;
    const stat = pid === undefined ? undefined : procStat(pid);
    this.#child = child;
    this.#respawns++;
    this.#confirmedAt = 0;
    this.#last = { at: new Date().toISOString(), pid: pid ?? 0, reason: `control plane pid ${reg.pid} died` };
    this.#log('control_plane_respawn', {
      previous: reg.pid,
      pid: pid ?? null,
      respawns: this.#respawns,
      failures: this.#failures,
    });
    if (pid !== undefined && stat !== undefined) {
      this.#reg = { ...reg, pid };
      this.#startTime = stat.startTime;
    }
  }
}

/** The registration as sent; the command must be this teal's `teal up` (nothing else is ever started). */
function parseRegistration(body: unknown): ControlPlaneRegistration {
  const b = (body ?? {}) as Record<string, unknown>;
  const bad = (what: string) => new TealError('TEAL_BAD_REQUEST', `control plane registration: ${what}`);
  if (!Number.isSafeInteger(b.pid) || (b.pid as number) <= 0) throw bad('pid must be a positive integer');
  if (!Array.isArray(b.argv) || !b.argv.every((a) => typeof a === 'string'))
    throw bad('argv must be strings');
  const argv = b.argv as string[];
  const entry = argv.indexOf(cliEntry());
  if (argv[0] !== process.execPath || entry < 0 || argv[entry + 1] !== 'up')
    throw bad(`argv must run \`${process.execPath} ${cliEntry()} up\`, got ${argv.join(' ').slice(0, 200)}`);
  if (typeof b.cwd !== 'string' || typeof b.logFile !== 'string' || typeof b.lock !== 'string')
    throw bad('cwd, logFile and lock must be strings');
  if (
    typeof b.env !== 'object' ||
    b.env === null ||
    !Object.values(b.env).every((v) => typeof v === 'string')
  )
    throw bad('env must map names to strings');
  if (typeof b.respawn !== 'boolean') throw bad('respawn must be true or false');
  return {
    pid: b.pid as number,
    argv,
    cwd: b.cwd,
    env: b.env as Record<string, string>,
    logFile: b.logFile,
    lock: b.lock,
    respawn: b.respawn,
  };
}
