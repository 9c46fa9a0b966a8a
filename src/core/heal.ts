import { pause as sleep } from '../pause.js';
import type { Instance, InstanceSpec } from '../runtimes/runtime.js';
import type { TxnOp } from '../stores/store.js';
import { recordAudit } from './audit.js';
import { formatDuration } from './config/duration.js';
import type { ServiceConfig } from './config/schema.js';
import type { EngineDeps } from './deps.js';
import { isTealError, TealError, toTealError } from './errors.js';
import { waitHealthy } from './healthy.js';
import { endpointText, SLOTS, type Slot } from './model.js';
import {
  type InstanceRef,
  keys,
  type ReleaseRecord,
  readRelease,
  readServiceState,
  type SlotRecord,
  type SlotSupervision,
} from './records.js';
import { forInstance } from './release.js';
import { instanceOf, refOf } from './slots.js';
import {
  freshHistory,
  isSettled,
  onFailure,
  onRunning,
  policyOf,
  type RestartDecision,
  type RestartHistory,
} from './supervisor.js';
import { urlOf } from './switchover.js';
import type { TableSync } from './table.js';

/** The slot states whose instances should be running: what teal supervises. */
const SUPERVISED = new Set<SlotRecord['state']>(['live', 'warm']);
const LOG_LINES = 20;
const ACTOR = 'teal (supervision)';

interface Failure {
  reason: 'exited' | 'liveness' | 'restart-failed';
  code: number | null;
  signal: string | null;
  detail: string;
}

/** One instance of a supervised slot being watched: its exit, and its liveness probe. */
interface Watch {
  service: string;
  slot: Slot;
  ref: InstanceRef;
  ac: AbortController;
  /** Set once a failure was handed to the healer: the exit and the probe report one, not two. */
  fired: boolean;
}

export interface RestoreResult {
  service: string;
  /** Instances that were not running and were started again (health-checked, in the table). */
  restored: number;
  /** Live or warm instances that could not be restored, with the reason. Supervision keeps trying. */
  failed: { slot: Slot; instance: string; error: string }[];
  ms: number;
}

/**
 * teal's supervision of running instances, in the control plane (the policy is supervisor.ts): an
 * instance of a live or warm slot that exits, or fails its liveness probe `failureThreshold` times
 * while its process runs, is replaced: a new instance of the same release on the same port (a free
 * one if that port is taken and the slot's ports are not fixed), health-checked with the service's
 * readiness probe, then swapped into the slot record with a compare-and-swap and the table synced.
 *
 * It never takes the service's deploy lock (a deploy may hold it for minutes, and a live instance
 * that crashes meanwhile must still be healed). It relies on the rule every writer follows: an
 * instance is stopped deliberately only after it left its slot record (or the slot left live and
 * warm). So it restarts only instances still listed in a live or warm slot, and if the record
 * changed meanwhile (a deploy cleared the slot) it stops what it started. The one instance it stops
 * while still listed is one that failed its liveness probe: nobody else would, and its replacement
 * takes its place in the same compare-and-swap.
 *
 * Fleet instances (with a host id) are their agent's: the agent restarts them on their host with
 * the same policy (agent.ts), on the same port, so the slot record does not change.
 */
export class Supervisor {
  readonly #deps: EngineDeps;
  readonly #tables: TableSync;
  readonly #watches = new Map<string, Watch>();
  /** Per `${service}/${slot}/${deployment}/${index}`: what the policy remembers. */
  readonly #histories = new Map<string, RestartHistory>();
  /** `${service}/${slot}/${index}` being restarted now: one restart per instance at a time. */
  readonly #healing = new Set<string>();
  readonly #pending = new Set<Promise<void>>();
  readonly #closing = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #scanning: Promise<void> = Promise.resolve();

  constructor(deps: EngineDeps, tables: TableSync) {
    this.#deps = deps;
    this.#tables = tables;
  }

  /** Watches the store's live and warm slots from now on, rescanning every `everyMs`. */
  start(everyMs = 500): void {
    const tick = () => {
      this.#scanning = this.#scanning
        .then(() => this.scan())
        .catch((err: unknown) =>
          this.#deps.log.error('supervising instances failed', { error: toTealError(err).message }),
        );
    };
    tick();
    this.#timer = setInterval(tick, everyMs);
    this.#timer.unref();
  }

  /** Stops watching; a restart in progress is abandoned (what it started is stopped). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#closing.abort(new TealError('TEAL_ABORTED', 'the control plane is stopping'));
    for (const w of this.#watches.values()) w.ac.abort();
    await this.#scanning;
    await Promise.all([...this.#pending]);
  }

  /**
   * Start-up restore (`teal up` after a reboot): every instance of a live slot, and of a warm slot
   * whose window has not passed, that is not running is started again, health-checked and switched
   * in, all at once, before the caller says the control plane is up. What cannot be restored is
   * reported and left to supervision, which keeps trying with backoff.
   */
  async restore(onService?: (message: string) => void): Promise<RestoreResult[]> {
    const { store, runtime } = this.#deps;
    const services = Object.entries(this.#deps.config().config.services);
    return Promise.all(
      services.map(async ([svc, config]) => {
        const started = Date.now();
        const result: RestoreResult = { service: svc, restored: 0, failed: [], ms: 0 };
        const state = await readServiceState(store, svc);
        const dead: { slot: SlotRecord; ref: InstanceRef }[] = [];
        for (const s of SLOTS) {
          const slot = state.slots[s];
          if (!SUPERVISED.has(slot.state)) continue;
          if (slot.state === 'warm' && Date.parse(slot.warmUntil ?? '') <= Date.now()) continue;
          for (const ref of slot.instances) {
            if (ref.hostId !== undefined) continue;
            const status = await runtime
              .status(instanceOf(svc, slot, ref))
              .catch(() => ({ state: 'unknown' }));
            if (status.state !== 'running') dead.push({ slot, ref });
          }
        }
        if (dead.length === 0) return result;
        const slots = [...new Set(dead.map((d) => `${d.slot.slot} (${d.slot.state}, ${d.slot.version})`))];
        onService?.(`restoring ${svc}: starting ${dead.length} instance(s) in ${slots.join(' and ')}`);
        await Promise.all(
          dead.map(async ({ slot, ref }) => {
            const key = `${svc}/${slot.slot}/${ref.index}`;
            if (this.#healing.has(key)) return;
            this.#healing.add(key);
            try {
              if ((await this.#replace(svc, slot.slot, ref, config)) === 'replaced') result.restored++;
            } catch (err) {
              const error = toTealError(err).message;
              result.failed.push({ slot: slot.slot, instance: ref.id, error });
              await this.#note(svc, slot.slot, {
                instance: ref.id,
                index: ref.index,
                at: new Date().toISOString(),
                reason: 'restart-failed',
                code: codeOf(err),
                signal: null,
                detail: error,
                log: logOf(err),
              }).catch(() => undefined);
            } finally {
              this.#healing.delete(key);
            }
          }),
        );
        result.ms = Date.now() - started;
        return result;
      }),
    );
  }

  /**
   * One look at the store: watches every instance of a live or warm slot not watched yet, forgets
   * those no slot lists any more, and clears `degraded` on a slot whose instances have all run long
   * enough since their last failure.
   */
  async scan(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    const { store } = this.#deps;
    const listed = new Set<string>();
    for (const [svc, config] of Object.entries(this.#deps.config().config.services)) {
      const state = await readServiceState(store, svc);
      for (const s of SLOTS) {
        const slot = state.slots[s];
        if (!SUPERVISED.has(slot.state)) continue;
        for (const ref of slot.instances) {
          if (ref.hostId !== undefined) continue;
          listed.add(ref.id);
          if (!this.#watches.has(ref.id)) this.#watch(svc, slot, ref, config);
        }
        if (slot.supervision?.degraded) await this.#maybeRecovered(svc, slot, config);
      }
    }
    for (const [id, w] of this.#watches) {
      if (listed.has(id)) continue;
      w.ac.abort();
      this.#watches.delete(id);
    }
  }

  #watch(svc: string, slot: SlotRecord, ref: InstanceRef, config: ServiceConfig): void {
    const { runtime } = this.#deps;
    const w: Watch = { service: svc, slot: slot.slot, ref, ac: new AbortController(), fired: false };
    this.#watches.set(ref.id, w);
    const instance = instanceOf(svc, slot, ref);
    void runtime.exited(instance, { signal: w.ac.signal }).then(
      async (exit) => {
        if (w.fired || w.ac.signal.aborted) return;
        w.fired = true;
        // An adopted process (not our child) exits without a code; the runtime may still know it.
        const status = await runtime.status(instance).catch(() => ({ state: 'unknown' as const }));
        const code = exit.code ?? (status.state === 'exited' ? status.code : null);
        const signal = exit.signal ?? (status.state === 'exited' ? status.signal : null);
        this.#fail(w, {
          reason: 'exited',
          code,
          signal,
          detail: signal ? `was killed by ${signal}` : code === null ? 'exited' : `exited with code ${code}`,
        });
      },
      () => {
        if (w.ac.signal.aborted) return;
        // The runtime could not say (a Docker engine out of reach): watch it afresh a moment later,
        // rather than never learn that it exited.
        w.ac.abort();
        setTimeout(() => {
          if (this.#watches.get(ref.id) === w) this.#watches.delete(ref.id);
        }, 1_000).unref();
      },
    );
    if (config.health.liveness.enabled) void this.#probe(w, instance, config);
  }

  /** The liveness probe of one running instance: `failureThreshold` failures in a row restart it. */
  async #probe(w: Watch, instance: Instance, config: ServiceConfig): Promise<void> {
    const { liveness } = config.health;
    const probe = this.#deps.probe({ ...config.health, timeout: liveness.timeout });
    let failures = 0;
    let last = '';
    while (!w.ac.signal.aborted && !w.fired) {
      await sleep(liveness.interval, w.ac.signal);
      if (w.ac.signal.aborted || w.fired) return;
      const result = await probe.check(instance, { signal: w.ac.signal }).catch((err: unknown) => ({
        ok: false,
        detail: toTealError(err).message,
      }));
      failures = result.ok ? 0 : failures + 1;
      last = result.detail;
      if (failures < liveness.failureThreshold) continue;
      // A process that is gone is the exit watcher's to report, with its code.
      const status = await this.#deps.runtime.status(instance).catch(() => ({ state: 'unknown' }));
      if (status.state !== 'running' || w.fired) return;
      w.fired = true;
      this.#fail(w, {
        reason: 'liveness',
        code: null,
        signal: null,
        detail: `failed ${failures} liveness probe(s) in a row (every ${formatDuration(liveness.interval)}); last: ${last}`,
      });
      return;
    }
  }

  #fail(w: Watch, failure: Failure): void {
    const key = `${w.service}/${w.slot}/${w.ref.index}`;
    if (this.#healing.has(key) || this.#closing.signal.aborted) return;
    this.#healing.add(key);
    const run = this.#heal(w.service, w.slot, w.ref, failure)
      .catch((err: unknown) =>
        this.#deps.log.error('restarting an instance failed', {
          service: w.service,
          instance: w.ref.id,
          error: toTealError(err).message,
        }),
      )
      .finally(() => {
        this.#healing.delete(key);
        this.#pending.delete(run);
        // Watched afresh at the next scan if the slot still lists it (the restart failed on the
        // store, say): a dead instance's exit is then reported at once and the restart retried.
        this.#watches.delete(w.ref.id);
        w.ac.abort();
      });
    this.#pending.add(run);
  }

  /** Restarts one failed instance with backoff until a replacement is in its slot, or it is no longer wanted. */
  async #heal(svc: string, slotName: Slot, ref: InstanceRef, first: Failure): Promise<void> {
    const { log, runtime } = this.#deps;
    let failure = first;
    const signal = this.#closing.signal;
    for (;;) {
      const config = this.#deps.config().config.services[svc];
      const state = await readServiceState(this.#deps.store, svc);
      const slot = state.slots[slotName];
      if (!config || !SUPERVISED.has(slot.state) || !slot.instances.some((i) => i.id === ref.id)) return;
      const historyKey = `${svc}/${slotName}/${slot.deployment}/${ref.index}`;
      const policy = policyOf(config.restart);
      const decision: RestartDecision = onFailure(
        policy,
        this.#histories.get(historyKey) ?? freshHistory(),
        Date.now(),
      );
      this.#histories.set(historyKey, decision.history);
      const tail =
        failure.reason === 'restart-failed'
          ? []
          : await runtime.logTail(instanceOf(svc, slot, ref), LOG_LINES).catch(() => []);
      const wasDegraded = slot.supervision?.degraded ?? false;
      const note = {
        instance: ref.id,
        index: ref.index,
        at: new Date().toISOString(),
        ...failure,
        log: failure.reason === 'restart-failed' ? (slot.supervision?.last?.log ?? []) : tail,
      };
      await this.#note(svc, slotName, note, { restart: config.restart.enabled, degraded: decision.degraded });
      const fields = {
        service: svc,
        slot: slotName,
        instance: ref.id,
        reason: failure.reason,
        detail: failure.detail,
        ...(failure.code === null ? {} : { code: failure.code }),
      };
      if (!config.restart.enabled) {
        log.warn('an instance failed; restart is off for this service', fields);
        return;
      }
      if (decision.degraded && !wasDegraded) {
        log.error('crash loop: the slot is degraded; teal keeps retrying at the longest backoff', {
          ...fields,
          restarts: decision.inWindow,
          window: formatDuration(policy.crashLoop.windowMs),
        });
        await this.#audit(
          svc,
          'slot.degraded',
          `${slotName} (${slot.version}): ${decision.inWindow} failures within ${formatDuration(policy.crashLoop.windowMs)}; last: ${ref.id} ${failure.detail}`,
        );
      } else if (!decision.degraded) {
        log.warn(`an instance failed; restarting it in ${formatDuration(decision.delayMs)}`, fields);
        await this.#audit(svc, 'instance.restart', `${slotName} #${ref.index} (${ref.id}) ${failure.detail}`);
      }
      await sleep(decision.delayMs, signal);
      if (signal.aborted) return;
      try {
        const outcome = await this.#replace(svc, slotName, ref, config);
        if (outcome === 'replaced') {
          this.#histories.set(historyKey, onRunning(decision.history, Date.now()));
          return;
        }
        return;
      } catch (err) {
        if (signal.aborted) return;
        const e = toTealError(err);
        log.warn('a replacement instance did not come up', {
          service: svc,
          slot: slotName,
          error: e.message,
        });
        failure = { reason: 'restart-failed', code: codeOf(err), signal: null, detail: e.message };
        // The replacement's own output is what says why it failed.
        const lines = logOf(err);
        if (lines.length > 0) await this.#note(svc, slotName, { ...note, ...failure, log: lines });
      }
    }
  }

  /**
   * Starts a replacement of `old` (same release, index and port), waits for it to pass the
   * readiness check, and swaps it into the slot record. 'gone' when the slot no longer wants the
   * old instance (a deploy took it out meanwhile): what was started is stopped.
   */
  async #replace(
    svc: string,
    slotName: Slot,
    old: InstanceRef,
    config: ServiceConfig,
  ): Promise<'replaced' | 'gone'> {
    const { store, runtime, log } = this.#deps;
    const signal = this.#closing.signal;
    const slot = (await readServiceState(store, svc)).slots[slotName];
    if (!SUPERVISED.has(slot.state) || !slot.instances.some((i) => i.id === old.id) || slot.release === null)
      return 'gone';
    const release = await readRelease(store, svc, slot.release);
    if (!release)
      throw new TealError('TEAL_INTERNAL', `release ${slot.release} of ${svc} is not in the store`, {
        service: svc,
      });
    // Dead, or running without answering its liveness probe: either way it serves nothing. Its
    // process group (or container) is ended first so its port is free for the replacement.
    await runtime.stop(instanceOf(svc, slot, old), { timeoutMs: config.stopTimeout });
    const spec = specFor(svc, slot, release, old, config);
    let instance: Instance;
    try {
      instance = await runtime.start(spec, { signal });
    } catch (err) {
      // Someone took the port meanwhile: any port does when the slot's ports are not fixed.
      if (config.ports || !isTealError(err, 'TEAL_PORT_IN_USE')) throw err;
      const { port: _p, ...anyPort } = spec;
      instance = await runtime.start(anyPort, { signal });
    }
    try {
      await waitHealthy([instance], {
        runtime,
        probe: this.#deps.probe(config.health),
        health: config.health,
        signal,
      });
      if (!(await this.#swap(svc, slotName, old.id, refOf(instance)))) {
        await runtime.stop(instance, { timeoutMs: config.stopTimeout });
        return 'gone';
      }
    } catch (err) {
      await runtime.stop(instance, { timeoutMs: config.stopTimeout }).catch(() => undefined);
      throw err;
    }
    await this.#tables.sync();
    log.info('restarted an instance', {
      service: svc,
      slot: slotName,
      version: release.version,
      replaced: old.id,
      instance: instance.id,
      endpoint: endpointText(instance),
    });
    return 'replaced';
  }

  /** Compare-and-swap of the slot record: `old` becomes `next`, only while the slot still lists `old`. */
  async #swap(svc: string, slotName: Slot, oldId: string, next: InstanceRef): Promise<boolean> {
    return this.#update(svc, slotName, (slot) => {
      if (!slot.instances.some((i) => i.id === oldId)) return undefined;
      return { ...slot, instances: slot.instances.map((i) => (i.id === oldId ? next : i)) };
    });
  }

  /** Records a failure on the slot (restarts, degraded, the last exit and log lines). */
  async #note(
    svc: string,
    slotName: Slot,
    last: NonNullable<SlotSupervision['last']>,
    counts: { restart?: boolean; degraded?: boolean } = {},
  ): Promise<void> {
    await this.#update(svc, slotName, (slot) => {
      const before = slot.supervision ?? { restarts: 0, degraded: false };
      const degraded = before.degraded || (counts.degraded ?? false);
      const supervision: SlotSupervision = {
        ...before,
        restarts: before.restarts + (counts.restart ? 1 : 0),
        degraded,
        last,
      };
      if (degraded && !before.degraded) supervision.degradedSince = last.at;
      return { ...slot, supervision };
    });
  }

  /** A degraded slot whose every instance has run `resetAfter` since the last failure is healthy again. */
  async #maybeRecovered(svc: string, slot: SlotRecord, config: ServiceConfig): Promise<void> {
    const now = Date.now();
    const policy = policyOf(config.restart);
    const lastAt = Date.parse(slot.supervision?.last?.at ?? '') || 0;
    for (const ref of slot.instances) {
      const history = this.#histories.get(`${svc}/${slot.slot}/${slot.deployment}/${ref.index}`);
      // After a control-plane restart nothing is remembered: the record's last failure stands in.
      const settled = history ? isSettled(policy, history, now) : now - lastAt >= policy.resetAfterMs;
      if (!settled) return;
      const status = await this.#deps.runtime
        .status(instanceOf(svc, slot, ref))
        .catch(() => ({ state: 'unknown' }));
      if (status.state !== 'running') return;
    }
    const cleared = await this.#update(svc, slot.slot, (s) =>
      s.supervision?.degraded
        ? {
            ...s,
            supervision: { ...s.supervision, degraded: false, degradedSince: new Date(now).toISOString() },
          }
        : undefined,
    );
    if (!cleared) return;
    this.#deps.log.info('the slot is out of its crash loop', { service: svc, slot: slot.slot });
    await this.#audit(
      svc,
      'slot.recovered',
      `${slot.slot} (${slot.version}): every instance ran ${formatDuration(policy.resetAfterMs)} without failing`,
    );
  }

  /**
   * Read-modify-write of a supervised slot's record with compare-and-swap, retried on a conflict;
   * `change` returns undefined to leave it. False when the slot left live/warm or `change` declined.
   */
  async #update(
    svc: string,
    slotName: Slot,
    change: (slot: SlotRecord) => SlotRecord | undefined,
  ): Promise<boolean> {
    const { store } = this.#deps;
    for (let attempt = 0; attempt < 20; attempt++) {
      const entry = await store.get<SlotRecord>(keys.slot(svc, slotName));
      if (!entry || !SUPERVISED.has(entry.value.state)) return false;
      const next = change(entry.value);
      if (!next) return false;
      const ops: TxnOp[] = [
        { op: 'put', key: keys.slot(svc, slotName), value: next as never, ifRevision: entry.revision },
      ];
      if (next.state === 'live') ops.push({ op: 'put', key: keys.url(svc), value: urlOf(next) });
      try {
        await store.txn(ops);
        return true;
      } catch (err) {
        if (!isTealError(err, 'TEAL_STORE_CONFLICT')) throw err;
      }
    }
    throw new TealError(
      'TEAL_STORE_CONFLICT',
      `${svc} ${slotName} kept changing; its record was not updated`,
    );
  }

  async #audit(svc: string, action: 'instance.restart' | 'slot.degraded' | 'slot.recovered', detail: string) {
    await recordAudit(this.#deps.store, {
      service: svc,
      action,
      actor: ACTOR,
      outcome: 'accepted',
      detail,
    }).catch((err: unknown) =>
      this.#deps.log.warn('could not record an audit entry', { error: toTealError(err).message }),
    );
  }
}

/** The spec that starts `ref` again: its release, slot, index, address and port. */
function specFor(
  svc: string,
  slot: SlotRecord,
  release: ReleaseRecord,
  ref: InstanceRef,
  config: ServiceConfig,
): InstanceSpec {
  const { command, env } = forInstance(release, slot.slot);
  // A container comes back from exactly the image it ran, whatever its tag points at now.
  const container = release.container && {
    ...release.container,
    ...(ref.image ? { imageId: ref.image.id, pull: 'never' as const } : {}),
  };
  return {
    labels: {
      service: svc,
      slot: slot.slot,
      release: release.n,
      deployment: slot.deployment ?? 0,
      version: release.version,
    },
    index: ref.index,
    command,
    cwd: release.cwd,
    env,
    ...(release.envFrom ? { envFrom: release.envFrom } : {}),
    ...(release.inheritEnv ? { inheritEnv: release.inheritEnv } : {}),
    ...(release.user === undefined ? {} : { user: release.user }),
    ...(release.group === undefined ? {} : { group: release.group }),
    host: ref.host,
    port: ref.port,
    ...(config.ports ? { portSource: `services.${svc}.ports.${slot.slot}` } : {}),
    ...(container ? { container } : {}),
  };
}

function codeOf(err: unknown): number | null {
  const code = (toTealError(err).details as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : null;
}

function logOf(err: unknown): string[] {
  const lines = (toTealError(err).details as { log?: unknown } | undefined)?.log;
  return Array.isArray(lines) ? lines.filter((l): l is string => typeof l === 'string') : [];
}
