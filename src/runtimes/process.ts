/**
 * The process runtime: each instance is an OS process started from the service's command, detached
 * from the control plane so it keeps serving while `teal up` stops, crashes or upgrades. What a
 * restarted control plane needs to find its instances again is on disk (records.ts); what only a
 * parent can know (the exit code) is kept in memory while we are that parent.
 *
 * @example
 *   const runtime = new ProcessRuntime({ stateDir: '.teal' });
 *   const instance = await runtime.start(spec, { signal });
 *   // ...after a restart, with a new ProcessRuntime on the same stateDir:
 *   for (const found of await runtime.list({ service: 'web' })) await runtime.stop(found, { timeoutMs: 30_000 });
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { childEnv } from '../child-env.js';
import { TealError } from '../core/errors.js';
import { homeOf, resolveRunUser } from '../users.js';
import { launch } from './launch.js';
import { groupGone, leaderState, signalGroup } from './liveness.js';
import { readLines, tailLines } from './log-reader.js';
import { LogClock } from './log-times.js';
import { logPath, rotateIfLarge } from './logfile.js';
import { assertPortFree, freePort } from './ports.js';
import { type InstanceRecord, isSafeName, RecordStore } from './records.js';
import type {
  ExitInfo,
  Instance,
  InstanceSpec,
  InstanceStatus,
  ListedInstance,
  LogLine,
  LogOptions,
  Runtime,
} from './runtime.js';

export interface ProcessRuntimeOptions {
  /** Records go to <stateDir>/instances, output to <stateDir>/logs/<service>/<id>.log. */
  stateDir: string;
  /** A log file larger than this is rotated (default 10 MiB). */
  logMaxBytes?: number;
  /** Rotated copies kept per log file (default 3). */
  logKeep?: number;
  /** How often log sizes are checked, and growth timed (log-times.ts; default 1 s). */
  rotateEveryMs?: number;
  /** A log whose time index is larger than this is rotated too (default a 16th of logMaxBytes, at least 64 KiB). */
  logTimesMaxBytes?: number;
}

interface Child {
  exit: Promise<ExitInfo>;
  info?: ExitInfo;
}

/** How often exited() looks at an adopted instance, which is not our child and sends no exit event. */
const EXIT_POLL_MS = 100;
const STOP_POLL_MS = 50;
/** How long stop waits for the kernel to remove a SIGKILLed group before reporting it stuck. */
const KILL_WAIT_MS = 5_000;

export class ProcessRuntime implements Runtime {
  readonly kind = 'process';
  private readonly stateDir: string;
  private readonly records: RecordStore;
  private readonly logMaxBytes: number;
  private readonly logKeep: number;
  private readonly rotateEveryMs: number;
  private readonly logTimesMaxBytes: number;
  /** Keeps each watched log's time index (log-times.ts). */
  private readonly clock = new LogClock();
  /** Instances we started and are still the parent of. */
  private readonly children = new Map<string, Child>();
  /** Log files kept rotated: of instances this object started or listed. */
  private readonly logFiles = new Map<string, string>();
  private rotation: NodeJS.Timeout | undefined;
  /** The rotation round in progress, if any. */
  private rotating: Promise<void> | undefined;

  constructor(options: ProcessRuntimeOptions) {
    this.stateDir = path.resolve(options.stateDir);
    this.records = new RecordStore(path.join(this.stateDir, 'instances'));
    this.logMaxBytes = options.logMaxBytes ?? 10 * 1024 * 1024;
    this.logKeep = options.logKeep ?? 3;
    this.rotateEveryMs = options.rotateEveryMs ?? 1_000;
    this.logTimesMaxBytes =
      options.logTimesMaxBytes ?? Math.max(64 * 1024, Math.floor(this.logMaxBytes / 16));
  }

  async start(spec: InstanceSpec, options: { signal: AbortSignal }): Promise<Instance> {
    const { signal } = options;
    const { labels } = spec;
    signal.throwIfAborted();
    if (!isSafeName(labels.service)) {
      // It names a folder of logs: refuse what could step out of the state dir.
      const details = { command: spec.command, cwd: spec.cwd };
      throw new TealError(
        'TEAL_START_FAILED',
        `cannot start services.${labels.service}: unusable name`,
        details,
      );
    }
    if (spec.port !== undefined) await assertPortFree(spec.host, spec.port, spec.portSource);
    const port = spec.port ?? (await freePort(spec.host));
    signal.throwIfAborted();

    const id = `${labels.service}-${labels.slot}-r${labels.release}-${spec.index}-${randomId()}`;
    const logFile = logPath(this.stateDir, labels.service, id);
    const where = `services.${labels.service}`;
    const user = resolveRunUser(spec, where);
    const launched = await launch({
      service: labels.service,
      command: spec.command,
      cwd: spec.cwd,
      env: {
        ...childEnv({
          where,
          env: spec.env,
          ...(spec.envFrom ? { envFrom: spec.envFrom } : {}),
          ...(spec.inheritEnv ? { inheritEnv: spec.inheritEnv } : {}),
          user: { name: user.name, home: homeOf(user, spec.cwd) },
        }),
        PORT: String(port),
        HOST: spec.host,
      },
      logFile,
      user,
    });
    const child: Child = { exit: launched.exit };
    void launched.exit.then((info) => {
      child.info = info;
    });
    this.children.set(id, child);
    const record: InstanceRecord = {
      id,
      labels,
      index: spec.index,
      host: spec.host,
      port,
      pid: launched.pid,
      pgid: launched.pid,
      startedAt: Date.now(),
      command: spec.command,
      cwd: spec.cwd,
      logFile,
      procStartTime: launched.procStartTime,
    };
    try {
      await this.records.write(record);
      signal.throwIfAborted();
    } catch (err) {
      await this.terminate(record, 0);
      await this.records.remove(id);
      this.children.delete(id);
      throw err;
    }
    this.watchLog(id, logFile, true);
    this.rotateLogs();
    return toInstance(record);
  }

  async stop(instance: Instance, options: { timeoutMs: number }): Promise<void> {
    const record = await this.records.read(instance.id);
    if (record) {
      await this.terminate(record, options.timeoutMs);
      await this.records.remove(record.id);
    }
    this.children.delete(instance.id);
    const file = this.logFiles.get(instance.id);
    if (file) this.clock.forget(file);
    this.logFiles.delete(instance.id);
  }

  async list(filter?: { service?: string }): Promise<ListedInstance[]> {
    const records = (await this.records.list()).filter(
      (r) => filter?.service === undefined || r.labels.service === filter.service,
    );
    const listed: ListedInstance[] = [];
    for (const record of records) {
      // Listing is how a restarted control plane adopts instances: keep their logs rotated too.
      this.watchLog(record.id, record.logFile, false);
      listed.push({ ...toInstance(record), status: await this.statusOf(record) });
    }
    // Time what the adopted logs gained while nobody watched them now, not a tick later.
    if (records.length > 0) this.rotateLogs();
    return listed.sort((a, b) => a.startedAt - b.startedAt);
  }

  async status(instance: Instance): Promise<InstanceStatus> {
    const record = await this.records.read(instance.id);
    return record ? this.statusOf(record) : { state: 'unknown' };
  }

  async exited(instance: Instance, options: { signal: AbortSignal }): Promise<ExitInfo> {
    const { signal } = options;
    const child = this.children.get(instance.id);
    if (child) return abortable(child.exit, signal);
    const record = await this.records.read(instance.id);
    while (record && leaderState(record.pid, record.procStartTime) === 'running') {
      await pause(EXIT_POLL_MS, signal);
    }
    return { code: null, signal: null };
  }

  async logTail(instance: Instance, lines: number): Promise<string[]> {
    const file = this.logFileOf(instance);
    return file ? tailLines(file, lines) : [];
  }

  logs(instance: Instance, options: LogOptions): AsyncIterable<LogLine> {
    const file = this.logFileOf(instance);
    return file ? readLines(file, options) : (async function* () {})();
  }

  /**
   * Stops the log rotation (waiting for one in progress) and forgets our children; the instances
   * themselves keep running.
   */
  async close(): Promise<void> {
    clearInterval(this.rotation);
    this.rotation = undefined;
    this.children.clear();
    this.logFiles.clear();
    await this.rotating;
  }

  private async statusOf(record: InstanceRecord): Promise<InstanceStatus> {
    if (leaderState(record.pid, record.procStartTime) === 'running') return { state: 'running' };
    const child = this.children.get(record.id);
    // /proc can show the exit a moment before our event loop reaps the child and learns its code.
    const info = child
      ? (child.info ?? (await Promise.race([child.exit, sleep(200, undefined)])))
      : undefined;
    return { state: 'exited', code: info?.code ?? null, signal: info?.signal ?? null };
  }

  /**
   * SIGTERM to the whole process group (an `npm start` leaves its real server as a child), then
   * SIGKILL to whatever of the group is left after timeoutMs.
   */
  private async terminate(record: InstanceRecord, timeoutMs: number): Promise<void> {
    // A recycled leader pid proves the group is empty: the kernel does not hand out a pid that
    // still names a process group. Signalling it would hit a stranger.
    if (leaderState(record.pid, record.procStartTime) === 'recycled') return;
    if (!signalGroup(record.pgid, 'SIGTERM')) return;
    if (await waitGroupGone(record.pgid, timeoutMs)) return;
    signalGroup(record.pgid, 'SIGKILL');
    if (await waitGroupGone(record.pgid, KILL_WAIT_MS)) return;
    throw new TealError(
      'TEAL_RUNTIME_FAILED',
      `instance ${record.id} (process group ${record.pgid}) is still running ${KILL_WAIT_MS} ms after SIGKILL`,
      { id: record.id, pid: record.pid, pgid: record.pgid },
    );
  }

  private logFileOf(instance: Instance): string | undefined {
    if (!isSafeName(instance.id) || !isSafeName(instance.labels.service)) return undefined;
    return logPath(this.stateDir, instance.labels.service, instance.id);
  }

  /** `fresh`: an instance we just started, so its log is timed from its first byte (log-times.ts). */
  private watchLog(id: string, file: string, fresh: boolean): void {
    this.logFiles.set(id, file);
    this.clock.watch(file, fresh);
    if (this.rotation) return;
    this.rotation = setInterval(() => this.rotateLogs(), this.rotateEveryMs);
    this.rotation.unref();
  }

  private rotateLogs(): void {
    if (this.rotating) return;
    this.rotating = (async () => {
      for (const file of [...this.logFiles.values()]) {
        try {
          // Time first, so the bytes a rotation copies away carry their time with them.
          await this.clock.tick(file);
          if (await rotateIfLarge(file, this.logMaxBytes, this.logKeep, this.logTimesMaxBytes))
            this.clock.rotated(file);
        } catch (err) {
          // Nobody awaits a timer: say it where operators look, and try again next round.
          process.emitWarning(`cannot rotate ${file}: ${(err as Error).message}`, 'TealLogRotation');
        }
      }
    })().finally(() => {
      this.rotating = undefined;
    });
  }
}

function toInstance(record: InstanceRecord): Instance {
  const { id, labels, index, host, port, startedAt, pid } = record;
  return { id, labels, index, host, port, startedAt, pid };
}

/** 6 base36 characters: enough to keep two instances of one release and index apart. */
function randomId(): string {
  let id = '';
  for (const byte of randomBytes(6)) id += (byte % 36).toString(36);
  return id;
}

async function waitGroupGone(pgid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (groupGone(pgid)) return true;
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await sleep(Math.min(STOP_POLL_MS, left));
  }
}

/** Waits `ms`; an abort rejects with the signal's reason, as the rest of teal expects. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await abortable(sleep(ms, undefined, { signal }), signal);
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(signal.aborted ? signal.reason : err);
      },
    );
  });
}
