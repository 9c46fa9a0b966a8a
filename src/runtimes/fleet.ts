/**
 * The fleet runtime: the control plane's Runtime for instances on other hosts. It runs nothing
 * itself: `start` writes an assignment to the store and waits for that host's `teal agent` to
 * report the instance running (with its address and port); `stop` removes the assignment and waits
 * for the report to go. What it lists and the statuses it gives are the agents' reports, which live
 * under each agent's lease: a host that dies drops out by itself, and anything waiting on it hears
 * so at once instead of at a timeout. See core/fleet.ts for the keys.
 *
 * @example
 *   const fleet = new FleetRuntime({ store });
 *   const instance = await fleet.start({ ...spec, hostId: 'web-1' }, { signal });
 *   // instance.host is web-1's address, instance.port the port its agent picked
 */
import { randomBytes } from 'node:crypto';
import { TealError, toTealError } from '../core/errors.js';
import {
  ASSIGNMENTS_PREFIX,
  type Assignment,
  fleetKeys,
  type HostRecord,
  type InstanceReport,
  REPORTS_PREFIX,
} from '../core/fleet.js';
import type { Store } from '../stores/store.js';
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

export interface FleetRuntimeOptions {
  store: Store;
  /** How long an agent may take to report a started instance running (default 30 s). */
  startTimeoutMs?: number;
  /** Extra time an agent gets beyond the stop timeout to confirm a stop (default 5 s). */
  stopSlackMs?: number;
}

/** How often a wait looks again without a change under the prefix it watches (a host's lease ending). */
const RECHECK_MS = 250;

export class FleetRuntime implements Runtime {
  readonly kind = 'fleet';
  readonly #store: Store;
  readonly #startTimeoutMs: number;
  readonly #stopSlackMs: number;

  constructor(options: FleetRuntimeOptions) {
    this.#store = options.store;
    this.#startTimeoutMs = options.startTimeoutMs ?? 30_000;
    this.#stopSlackMs = options.stopSlackMs ?? 5_000;
  }

  async start(spec: InstanceSpec, options: { signal: AbortSignal }): Promise<Instance> {
    const { signal } = options;
    const hostId = spec.hostId;
    if (!hostId) throw new TealError('TEAL_INTERNAL', 'the fleet runtime was given a spec without a host');
    const { labels } = spec;
    const name = `${labels.service} ${labels.slot} #${spec.index} on host ${hostId}`;
    if (!(await this.#host(hostId))) {
      throw new TealError(
        'TEAL_HOST_UNAVAILABLE',
        `cannot start ${name}: host ${hostId} is not registered (no \`teal agent --id ${hostId}\` is connected to the store)`,
        { host: hostId },
      );
    }
    const id = `${labels.service}-${labels.slot}-r${labels.release}-${spec.index}-${hostId}-${randomBytes(3).toString('hex')}`;
    const assignment: Assignment = { id, host: hostId, spec, assignedAt: new Date().toISOString() };
    await this.#store.put(fleetKeys.assignment(hostId, id), assignment as never);
    try {
      const report = await this.#until(
        fleetKeys.reports(hostId),
        async () => {
          const r = await this.#report(hostId, id);
          if (r?.state === 'running') return r;
          if (r?.state === 'failed' || r?.state === 'exited') {
            throw new TealError(
              'TEAL_START_FAILED',
              `host ${hostId} could not start ${name}: ${r.error ?? exitText(r.exit)}${logText(r.log)}`,
              { host: hostId, instance: id, log: r.log },
            );
          }
          if (!(await this.#host(hostId))) {
            throw new TealError('TEAL_HOST_UNAVAILABLE', `host ${hostId} went away while starting ${name}`, {
              host: hostId,
              instance: id,
            });
          }
          return undefined;
        },
        this.#startTimeoutMs,
        signal,
      );
      if (!report) {
        throw new TealError(
          'TEAL_HOST_UNAVAILABLE',
          `host ${hostId} did not report ${name} running within ${this.#startTimeoutMs} ms`,
          { host: hostId, instance: id },
        );
      }
      return instanceOfReport(report);
    } catch (err) {
      // Nobody else knows this instance yet (the engine records it only once start returns), so
      // take the wish back: an agent that comes back later must not start it.
      await this.#store.delete(fleetKeys.assignment(hostId, id)).catch(() => undefined);
      throw signal.aborted ? (signal.reason ?? err) : err;
    }
  }

  async stop(instance: Instance, options: { timeoutMs: number }): Promise<void> {
    const hostId = instance.hostId ?? (await this.#hostOf(instance.id));
    if (!hostId) return;
    const key = fleetKeys.assignment(hostId, instance.id);
    const assigned = await this.#store.get<Assignment>(key);
    // A host that is gone took its instances with it, or its agent removes them when it returns
    // (it stops whatever is no longer assigned): deleting the assignment is all there is to do.
    if (!assigned || !(await this.#host(hostId))) {
      await this.#store.delete(key);
      return;
    }
    await this.#store.put(key, { ...assigned.value, stop: { timeoutMs: options.timeoutMs } } as never);
    const waitMs = options.timeoutMs + this.#stopSlackMs;
    const gone = await this.#until(
      fleetKeys.reports(hostId),
      async () =>
        (await this.#report(hostId, instance.id)) === undefined || !(await this.#host(hostId))
          ? true
          : undefined,
      waitMs,
    );
    await this.#store.delete(key);
    if (!gone) {
      throw new TealError(
        'TEAL_HOST_UNAVAILABLE',
        `host ${hostId} did not confirm stopping ${instance.id} within ${waitMs} ms (its assignment is removed; the agent stops it when it catches up)`,
        { host: hostId, instance: instance.id },
      );
    }
  }

  async list(filter?: { service?: string }): Promise<ListedInstance[]> {
    const [assignments, reports] = await Promise.all([
      this.#store.list<Assignment>(ASSIGNMENTS_PREFIX),
      this.#store.list<InstanceReport>(REPORTS_PREFIX),
    ]);
    const byId = new Map(reports.map((e) => [e.value.id, e.value]));
    const listed: ListedInstance[] = [];
    for (const { value: a } of assignments) {
      if (a.stop) continue;
      if (filter?.service && a.spec.labels.service !== filter.service) continue;
      const report = byId.get(a.id);
      const instance: Instance = report
        ? instanceOfReport(report)
        : {
            id: a.id,
            hostId: a.host,
            host: '',
            port: 0,
            index: a.spec.index,
            labels: a.spec.labels,
            startedAt: Date.parse(a.assignedAt),
          };
      listed.push({ ...instance, status: statusOf(report) });
    }
    return listed;
  }

  async status(instance: Instance): Promise<InstanceStatus> {
    const hostId = instance.hostId ?? (await this.#hostOf(instance.id));
    return statusOf(hostId ? await this.#report(hostId, instance.id) : undefined);
  }

  /**
   * Resolves when the agent reports the instance exited, or when its report is gone: the host's
   * lease ended (the host or its agent died), so nothing there serves it any more that we know of.
   */
  async exited(instance: Instance, options: { signal: AbortSignal }): Promise<ExitInfo> {
    const hostId = instance.hostId ?? (await this.#hostOf(instance.id));
    if (!hostId) return { code: null, signal: null };
    const exit = await this.#until(
      fleetKeys.reports(hostId),
      async () => {
        const r = await this.#report(hostId, instance.id);
        if (!r) return { code: null, signal: `host ${hostId} lost` };
        if (r.state === 'exited' || r.state === 'failed') return r.exit ?? { code: null, signal: null };
        return undefined;
      },
      Number.POSITIVE_INFINITY,
      options.signal,
    );
    if (!exit) throw options.signal.reason ?? new TealError('TEAL_ABORTED', 'aborted');
    return exit;
  }

  /** The tail the agent last published (at each state change, and while running when it grew). */
  async logTail(instance: Instance, lines: number): Promise<string[]> {
    return (await this.#published(instance)).log.slice(-lines);
  }

  /**
   * The published tail only: agents do not stream logs through the store (it is the cluster's
   * brain, not a log pipe). Its lines carry no time of their own: each gets the moment the report
   * was written, marked approximate. With follow, a last line says so instead of hanging.
   */
  async *logs(instance: Instance, options: LogOptions): AsyncIterable<LogLine> {
    const { log, at } = await this.#published(instance);
    for (const line of log.slice(-(options.tail ?? 200))) {
      if (options.since === undefined || at >= options.since) yield { line, time: at, approx: true };
    }
    if (options.follow) {
      yield {
        line: `(teal: following is not available for instances on fleet hosts; this is the tail host ${instance.hostId ?? '?'} last published)`,
        time: Date.now(),
      };
    }
  }

  async #published(instance: Instance): Promise<{ log: string[]; at: number }> {
    const hostId = instance.hostId ?? (await this.#hostOf(instance.id));
    const report = hostId ? await this.#report(hostId, instance.id) : undefined;
    return { log: report?.log ?? [], at: report ? Date.parse(report.at) : Date.now() };
  }

  async close(): Promise<void> {}

  async #host(hostId: string): Promise<HostRecord | undefined> {
    return (await this.#store.get<HostRecord>(fleetKeys.host(hostId)))?.value;
  }

  async #report(hostId: string, id: string): Promise<InstanceReport | undefined> {
    return (await this.#store.get<InstanceReport>(fleetKeys.report(hostId, id)))?.value;
  }

  /** For an instance known only by id (a stray found by `list` carries its host; this is the fallback). */
  async #hostOf(id: string): Promise<string | undefined> {
    const found = (await this.#store.list<Assignment>(ASSIGNMENTS_PREFIX)).find((e) => e.value.id === id);
    if (found) return found.value.host;
    return (await this.#store.list<InstanceReport>(REPORTS_PREFIX)).find((e) => e.value.id === id)?.value
      .host;
  }

  /**
   * Evaluates `check` now and after each change under `prefix` (and every RECHECK_MS, for what a
   * prefix watch cannot see: another prefix's key, or a lease ending) until it gives a value or
   * throws; undefined at the timeout.
   */
  async #until<T>(
    prefix: string,
    check: () => Promise<T | undefined>,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const value = await check();
      if (value !== undefined) return value;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      const next = new AbortController();
      const stop = () => next.abort();
      signal?.addEventListener('abort', stop, { once: true });
      const wake = setTimeout(stop, Math.min(RECHECK_MS, left));
      try {
        for await (const _ of this.#store.watch(prefix, { signal: next.signal })) break;
      } catch (err) {
        // The watch ends with an abort when woken; anything else (the store away) is the caller's.
        if (!next.signal.aborted) throw toTealError(err, 'TEAL_STORE_FAILED');
      } finally {
        clearTimeout(wake);
        signal?.removeEventListener('abort', stop);
        next.abort();
      }
    }
  }
}

function instanceOfReport(r: InstanceReport): Instance {
  const instance: Instance = {
    id: r.id,
    hostId: r.host,
    host: r.address ?? '',
    port: r.port ?? 0,
    index: r.index,
    labels: r.labels,
    startedAt: r.startedAt ?? 0,
  };
  if (r.pid !== undefined) instance.pid = r.pid;
  if (r.image !== undefined) instance.image = r.image;
  return instance;
}

function statusOf(report: InstanceReport | undefined): InstanceStatus {
  if (!report) return { state: 'unknown' };
  if (report.state === 'running' || report.state === 'starting') return { state: 'running' };
  return { state: 'exited', code: report.exit?.code ?? null, signal: report.exit?.signal ?? null };
}

function exitText(exit: ExitInfo | undefined): string {
  if (!exit) return 'it exited';
  return exit.signal ? `it was killed by ${exit.signal}` : `it exited with code ${exit.code}`;
}

function logText(lines: string[]): string {
  return lines.length === 0 ? '' : `\n  last log lines:\n    ${lines.join('\n    ')}`;
}
