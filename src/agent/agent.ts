import { hostname } from 'node:os';
import type { Logger } from '../core/deps.js';
import { TealError, toTealError } from '../core/errors.js';
import { type Assignment, fleetKeys, type HostRecord, type InstanceReport } from '../core/fleet.js';
import {
  DEFAULT_POLICY,
  freshHistory,
  isSettled,
  onFailure,
  onRunning,
  type RestartHistory,
  type RestartPolicy,
} from '../core/supervisor.js';
import { pause } from '../pause.js';
import type { Instance, InstanceLabels, InstanceSpec, ListedInstance, Runtime } from '../runtimes/runtime.js';
import type { Lease, Store } from '../stores/store.js';

export interface AgentOptions {
  store: Store;
  /**
   * The local runtime that runs the instances, on this host's state dir: a RuntimeByKind, so a
   * spec with `container` runs on the host's Docker engine and any other as a process.
   */
  runtime: Runtime;
  /** What the registration says this host runs instances with (default runtime.kind). */
  runtimeName?: string;
  id: string;
  /** This host's address: instances bind on it and data planes reach them at it. */
  address: string;
  labels: Record<string, string>;
  /** Most instances this host takes (0: no limit); more are reported failed. */
  capacity: number;
  log: Logger;
  signal: AbortSignal;
  leaseTtlMs?: number;
  /** How often the tail of a running instance's log is published again when it changed (default 5 s). */
  logRefreshMs?: number;
  /** How an exited instance is restarted (default: a service's default `restart:` settings). */
  restart?: RestartPolicy;
}

interface Entry {
  assignment: Assignment;
  report: InstanceReport;
  local?: Instance;
  /** Aborts the start in progress or the wait for its exit. */
  ac: AbortController;
  /** Operations on one instance run in order: a stop never overtakes its start. */
  chain: Promise<void>;
  stopping: boolean;
  /** What the restart policy remembers of this instance's failures. */
  history: RestartHistory;
}

const LOG_LINES = 20;

/**
 * `teal agent`: one host of the fleet. Registers at /hosts/<id> under a lease, runs what the store
 * assigns it at /assignments/<id>/ with its local runtime, reports each instance at
 * /reports/<id>/<instance> under the same lease, and stops what is asked to stop. On start (and
 * after losing the store) it compares the assignments with what its runtime runs: it adopts
 * assigned instances still running, starts assigned ones it never started, and stops the rest,
 * which is how a restarted host sheds what was unassigned while it was away.
 */
export async function runAgent(o: AgentOptions): Promise<void> {
  const { store, runtime, id, log, signal } = o;
  const ttl = o.leaseTtlMs ?? 10_000;
  const known = new Map<string, Entry>();
  let lease: Lease | undefined;

  const record: HostRecord = {
    id,
    address: o.address,
    labels: o.labels,
    capacity: o.capacity,
    runtime: o.runtimeName ?? runtime.kind,
    pid: process.pid,
    hostname: hostname(),
    startedAt: new Date().toISOString(),
  };

  /** Takes a lease (again, after losing one) and puts the registration and every report under it. */
  const register = async (): Promise<Lease> => {
    if (lease && !lease.lost.aborted) return lease;
    const fresh = await store.grant(ttl);
    lease = fresh;
    await store.put(fleetKeys.host(id), record as never, { lease: fresh.id });
    for (const entry of known.values()) await putReport(entry, fresh);
    log.info('registered in the store', { host: id, address: o.address, lease: fresh.id });
    return fresh;
  };

  const putReport = async (entry: Entry, held?: Lease) => {
    const l = held ?? (await register());
    await store.put(fleetKeys.report(id, entry.report.id), entry.report as never, { lease: l.id });
  };

  const publish = async (entry: Entry, patch: Partial<InstanceReport>) => {
    entry.report = { ...entry.report, ...patch, at: new Date().toISOString() };
    if (entry.stopping) return;
    await putReport(entry).catch((err: unknown) =>
      log.warn('could not report to the store', {
        instance: entry.report.id,
        error: toTealError(err).message,
      }),
    );
  };

  const tail = async (instance: Instance) => runtime.logTail(instance, LOG_LINES).catch(() => []);

  const policy = o.restart ?? DEFAULT_POLICY;

  /**
   * An assigned instance exited (or was found exited): it is started again after the policy's
   * backoff, on the same port, so the endpoint in the control plane's slot record stays right
   * (the data plane's passive health takes it out meanwhile). Only `stop` (the control plane's
   * ask, or the assignment gone) ends that.
   */
  const restartLater = (entry: Entry, dead: Instance) => {
    const decision = onFailure(policy, entry.history, Date.now());
    entry.history = decision.history;
    const restarts = (entry.report.restarts ?? 0) + 1;
    if (decision.degraded && !entry.report.degraded)
      log.error('crash loop: restarting at the longest backoff', { instance: entry.report.id, restarts });
    void publish(entry, { restarts, degraded: decision.degraded || (entry.report.degraded ?? false) });
    void pause(decision.delayMs, entry.ac.signal).then(() =>
      enqueue(entry, async () => {
        if (entry.stopping || entry.ac.signal.aborted) return;
        // Whatever is left of its process group (or container) goes first: the port must be free.
        await runtime.stop(dead, { timeoutMs: 2_000 });
        const { hostId: _h, ...rest } = entry.assignment.spec;
        const spec: InstanceSpec = { ...rest, host: o.address, port: dead.port };
        try {
          const local = await runtime.start(spec, { signal: entry.ac.signal });
          entry.history = onRunning(entry.history, Date.now());
          log.info('restarted an assigned instance', {
            instance: entry.report.id,
            endpoint: `${local.host}:${local.port}`,
            restarts,
          });
          await running(entry, local);
        } catch (err) {
          if (entry.stopping || entry.ac.signal.aborted) return;
          const error = toTealError(err).message;
          log.warn('could not restart an assigned instance', { instance: entry.report.id, error });
          await publish(entry, { state: 'exited', error });
          restartLater(entry, dead);
        }
      }),
    );
  };

  const running = (entry: Entry, local: Instance) => {
    entry.local = local;
    void runtime.exited(local, { signal: entry.ac.signal }).then(
      async (exit) => {
        if (entry.stopping) return;
        log.warn('instance exited', { instance: entry.report.id, code: exit.code, signal: exit.signal });
        await publish(entry, { state: 'exited', exit, log: await tail(local) });
        restartLater(entry, local);
      },
      () => undefined,
    );
    return publish(entry, {
      state: 'running',
      address: local.host,
      port: local.port,
      localId: local.id,
      startedAt: local.startedAt,
      ...(local.pid === undefined ? {} : { pid: local.pid }),
      ...(local.image === undefined ? {} : { image: local.image }),
    });
  };

  const enqueue = (entry: Entry, op: () => Promise<void>) => {
    entry.chain = entry.chain.then(op).catch((err: unknown) =>
      log.error('instance operation failed', {
        instance: entry.report.id,
        error: toTealError(err).message,
      }),
    );
    return entry.chain;
  };

  const newEntry = (a: Assignment): Entry => {
    const entry: Entry = {
      assignment: a,
      report: {
        id: a.id,
        host: id,
        state: 'starting',
        labels: a.spec.labels,
        index: a.spec.index,
        log: [],
        at: new Date().toISOString(),
      },
      ac: new AbortController(),
      chain: Promise.resolve(),
      stopping: false,
      history: freshHistory(),
    };
    known.set(a.id, entry);
    return entry;
  };

  const start = (entry: Entry) =>
    enqueue(entry, async () => {
      const a = entry.assignment;
      const busy = [...known.values()].filter((e) => e.local && !e.stopping).length;
      if (o.capacity > 0 && busy >= o.capacity) {
        await publish(entry, {
          state: 'failed',
          error: `host ${id} is at its capacity of ${o.capacity} instance(s)`,
        });
        return;
      }
      await publish(entry, { state: 'starting' });
      // Instances bind on this host's address, whatever the control plane's bindAddress says (a
      // container is published on it); `container`, if any, goes to the host's Docker engine.
      const { hostId: _h, ...rest } = a.spec;
      const spec: InstanceSpec = { ...rest, host: o.address };
      try {
        const local = await runtime.start(spec, { signal: entry.ac.signal });
        log.info('started an assigned instance', { instance: a.id, endpoint: `${local.host}:${local.port}` });
        await running(entry, local);
      } catch (err) {
        if (entry.stopping) return;
        const error = toTealError(err).message;
        log.error('could not start an assigned instance', { instance: a.id, error });
        await publish(entry, { state: 'failed', error });
      }
    });

  const stop = (entry: Entry, timeoutMs: number) => {
    if (entry.stopping) return entry.chain;
    entry.stopping = true;
    entry.ac.abort();
    return enqueue(entry, async () => {
      if (entry.local) await runtime.stop(entry.local, { timeoutMs });
      await store.delete(fleetKeys.report(id, entry.report.id));
      known.delete(entry.report.id);
      log.info('stopped an instance', { instance: entry.report.id });
    });
  };

  const onAssignment = (a: Assignment) => {
    const entry = known.get(a.id);
    if (a.stop) {
      if (entry) void stop(entry, a.stop.timeoutMs);
      // Not ours (anymore): still confirm, so the control plane is not left waiting.
      else void store.delete(fleetKeys.report(id, a.id)).catch(() => undefined);
      return;
    }
    if (!entry) void start(newEntry(a));
  };

  /** Compares the store's assignments with the local runtime's instances; returns the revision read. */
  const sync = async (): Promise<number> => {
    const revision = await store.revision();
    const assignments = (await store.list<Assignment>(fleetKeys.assignments(id))).map((e) => e.value);
    const wanted = new Map(assignments.filter((a) => !a.stop).map((a) => [a.id, a]));
    const locals = await runtime.list().catch((err: unknown) => {
      // A Docker engine out of reach: running nothing beats running doubles of what it holds.
      throw new TealError(
        'TEAL_RUNTIME_FAILED',
        `cannot list this host's instances: ${toTealError(err).message}`,
        {},
        { cause: err },
      );
    });
    const byLabels = new Map(locals.map((l) => [labelKey(l.labels, l.index), l]));
    // What the store no longer assigns (unassigned while the agent was away, or asked to stop).
    for (const entry of [...known.values()]) {
      if (!wanted.has(entry.report.id)) await stop(entry, entry.assignment.stop?.timeoutMs ?? 10_000);
    }
    const adopted = new Set<string>();
    for (const a of wanted.values()) {
      const local = byLabels.get(labelKey(a.spec.labels, a.spec.index));
      if (local) adopted.add(local.id);
      if (known.has(a.id)) continue;
      const entry = newEntry(a);
      if (local) await adopt(entry, local);
      else void start(entry);
    }
    for (const local of locals) {
      if (adopted.has(local.id) || known.has(local.id)) continue;
      log.info('stopping an instance that is no longer assigned', { instance: local.id });
      await runtime.stop(local, { timeoutMs: 10_000 });
    }
    for (const a of assignments) if (a.stop) onAssignment(a);
    return revision;
  };

  const adopt = async (entry: Entry, local: ListedInstance) => {
    if (local.status.state === 'running') {
      log.info('adopted a running instance', {
        instance: entry.report.id,
        endpoint: `${local.host}:${local.port}`,
      });
      await running(entry, local);
      return;
    }
    // It ran and stopped while nobody watched (the host rebooted): say so, and start it again.
    entry.local = local;
    const exit =
      local.status.state === 'exited'
        ? { code: local.status.code, signal: local.status.signal }
        : { code: null, signal: null };
    await publish(entry, {
      state: 'exited',
      exit,
      address: local.host,
      port: local.port,
      localId: local.id,
      ...(local.image === undefined ? {} : { image: local.image }),
      log: await tail(local),
    });
    restartLater(entry, local);
  };

  // A lease lost while the store was away is taken again, with every report.
  const reRegister = setInterval(() => {
    if (lease?.lost.aborted) register().catch(() => undefined);
  }, 1_000);
  const refresh = setInterval(() => {
    for (const entry of known.values()) {
      const { local } = entry;
      if (!local || entry.report.state !== 'running') continue;
      // Out of its crash loop once it ran long enough since the last restart.
      if (entry.report.degraded && isSettled(policy, entry.history, Date.now()))
        void publish(entry, { degraded: false });
      void tail(local).then((lines) => {
        if (lines.join('\n') !== entry.report.log.join('\n')) return publish(entry, { log: lines });
      });
    }
  }, o.logRefreshMs ?? 5_000);

  let after: number | undefined;
  while (!signal.aborted) {
    try {
      if (after === undefined) {
        await register();
        after = await sync();
      }
      for await (const change of store.watch<Assignment>(fleetKeys.assignments(id), {
        signal,
        afterRevision: after,
      })) {
        after = change.revision;
        if (change.type === 'put' && change.value) onAssignment(change.value);
        else if (change.type === 'delete') {
          const entry = known.get(change.key.slice(fleetKeys.assignments(id).length));
          if (entry) void stop(entry, 10_000);
        }
      }
    } catch (err) {
      if (signal.aborted) break;
      // The store (or the Docker engine) is away, or the store compacted past us: instances keep
      // running; start over from a fresh read.
      log.warn('lost the store or the local runtime; instances keep running', {
        error: toTealError(err).message,
      });
      after = undefined;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
  clearInterval(reRegister);
  clearInterval(refresh);
  // Instances outlive the agent (as they outlive `teal up`); a restarted agent adopts them.
  for (const entry of known.values()) entry.ac.abort();
  await Promise.all([...known.values()].map((e) => e.chain));
  await lease?.revoke().catch(() => undefined);
}

/** An instance is one (service, slot, release, deployment, index): how a restarted agent matches its own. */
function labelKey(labels: InstanceLabels, index: number): string {
  return `${labels.service}/${labels.slot}/${labels.release}/${labels.deployment}/${index}`;
}
