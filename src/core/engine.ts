import { hostname } from 'node:os';
import { pidAlive } from '../proc.js';
import { lockKey } from '../stores/lock.js';
import type { Json, Lock } from '../stores/store.js';
import type { ConfigStamp } from './config/reload.js';
import type { ServiceConfig } from './config/schema.js';
import type { EngineDeps } from './deps.js';
import { TealError, toTealError } from './errors.js';
import { listHosts } from './fleet.js';
import { Gates } from './gate.js';
import type { Slot } from './model.js';
import { type DeployPlan, planDeploy, planRollback } from './plan.js';
import { checkTtl, listGrants, newGrantId, type PreviewGrantRecord, previewKeys } from './previews.js';
import { Recorder } from './recorder.js';
import {
  createNumbered,
  type DeploymentRecord,
  keys,
  listDeployments,
  listReleases,
  lockName,
  readServiceState,
} from './records.js';
import { assertRollbackTarget, type ReleaseView, releaseViews } from './rollback-targets.js';
import { applyPlan } from './run.js';
import { slotInstances } from './slots.js';
import { isTerminal } from './state.js';
import { TableSync } from './table.js';

export interface DeployOptions {
  version: string;
  /** Who asked, for the record: "alice@laptop (cli)". */
  actor: string;
  /** Queue behind a running deployment for up to this long instead of failing at once. */
  waitMs?: number;
  /** Run the release in this folder instead of the service's cwd (a pipeline's artifact). */
  cwd?: string;
}

export interface RollbackOptions {
  /** Release number; default the one live before the current. */
  to?: number;
  actor: string;
  waitMs?: number;
}

/**
 * The deploy engine's front door: creates deployment records, takes the service's lock, plans under
 * it and runs the plan in the background. Callers (the API) get the record at once and follow its
 * events in the store.
 */
export class Engine {
  readonly tables: TableSync;
  readonly #deps: EngineDeps;
  readonly #lockTtlMs: number;
  readonly #closing = new AbortController();
  readonly #runs = new Map<string, Promise<void>>();
  /** The deployment running per service and what aborts it (`teal abort`). */
  readonly #active = new Map<string, { rec: Recorder; abort: AbortController }>();
  readonly #gates = new Gates();

  constructor(deps: EngineDeps, options: { lockTtlMs?: number } = {}) {
    this.#deps = deps;
    this.#lockTtlMs = options.lockTtlMs ?? 15_000;
    this.tables = new TableSync(deps.store, deps.traffic, () => deps.config().config);
  }

  serviceConfigs(): Record<string, ServiceConfig> {
    return this.#deps.config().config.services;
  }

  serviceConfig(svc: string): ServiceConfig {
    const services = this.#deps.config().config.services;
    const config = services[svc];
    if (!config) {
      throw new TealError(
        'TEAL_UNKNOWN_SERVICE',
        `no service named ${JSON.stringify(svc)} in ${this.#deps.config().file} (services: ${Object.keys(services).join(', ')})`,
      );
    }
    return config;
  }

  /** What `deploy` would do now, without doing it (--dry-run); `config`: the service's config to plan with. */
  async planDeploy(
    svc: string,
    version: string,
    options: { cwd?: string; config?: ServiceConfig } = {},
  ): Promise<DeployPlan> {
    const config = options.config ?? this.serviceConfig(svc);
    const { store } = this.#deps;
    const [state, releases, hosts] = await Promise.all([
      readServiceState(store, svc),
      listReleases(store, svc),
      config.hostLabels ? listHosts(store) : [],
    ]);
    return planDeploy({
      hosts,
      service: svc,
      config,
      configDir: this.#deps.config().dir,
      version,
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      state,
      releases,
    });
  }

  async deploy(svc: string, options: DeployOptions): Promise<DeploymentRecord> {
    const stamp = await this.#refreshConfig(`deploy of ${svc}`);
    // The service's config as the file had it when asked for, even if the deploy waits for the lock.
    const overrides = {
      config: this.serviceConfig(svc),
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    };
    // Refuse a bad version before anything is recorded.
    await this.planDeploy(svc, options.version, overrides);
    return this.#begin(svc, 'deploy', options.version, { ...options, config: stamp }, () =>
      this.planDeploy(svc, options.version, overrides),
    );
  }

  /** The service's releases, newest first, with whether a rollback may go to each (and why not). */
  async releases(svc: string): Promise<ReleaseView[]> {
    this.serviceConfig(svc);
    const { store } = this.#deps;
    const [state, releases, deployments] = await Promise.all([
      readServiceState(store, svc),
      listReleases(store, svc),
      listDeployments(store, svc),
    ]);
    return releaseViews(state, releases, deployments);
  }

  async rollback(svc: string, options: RollbackOptions): Promise<DeploymentRecord> {
    const stamp = await this.#refreshConfig(`rollback of ${svc}`);
    const config = this.serviceConfig(svc);
    // Refuse a release that never served before anything is recorded (the plan checks it again
    // under the lock).
    if (options.to !== undefined) assertRollbackTarget(svc, options.to, await this.releases(svc));
    return this.#begin(svc, 'rollback', null, { ...options, config: stamp }, async (rec) => {
      const { store } = this.#deps;
      const [state, releases, deployments, hosts] = await Promise.all([
        readServiceState(store, svc),
        listReleases(store, svc),
        listDeployments(store, svc),
        config.hostLabels ? listHosts(store) : [],
      ]);
      const request = {
        hosts,
        service: svc,
        config,
        state,
        releases,
        deployments,
        ...(options.to === undefined ? {} : { to: options.to }),
      };
      const plan = planRollback(request);
      if (plan.mode === 'flip' && !(await this.#warmAnswers(plan))) {
        await rec.event(
          'plan',
          'info',
          `the warm ${plan.targetSlot} slot no longer answers; starting release ${plan.releaseN} cold`,
        );
        return planRollback({ ...request, cold: true });
      }
      return plan;
    });
  }

  /** Lets the deployment waiting at the manual gate switch; returns its number. */
  promote(svc: string, actor: string): number {
    this.serviceConfig(svc);
    return this.#gates.decide(svc, { action: 'promote', actor });
  }

  /**
   * Stops the deployment in progress before it switches: at the manual gate, or while it starts or
   * verifies (its new instances are stopped, the live slot was never touched). After the switch
   * there is nothing to abort: that is a rollback.
   */
  abort(svc: string, actor: string): number {
    this.serviceConfig(svc);
    if (this.#gates.waiting(svc) !== undefined) return this.#gates.decide(svc, { action: 'abort', actor });
    const active = this.#active.get(svc);
    if (!active) {
      throw new TealError('TEAL_NOT_WAITING', `no deployment of ${svc} is in progress`, { service: svc });
    }
    const { state, n } = active.rec.record;
    if (['switching', 'analyzing', 'draining'].includes(state)) {
      throw new TealError(
        'TEAL_NOT_WAITING',
        `deployment #${n} of ${svc} has already switched traffic (${state}); use \`teal rollback ${svc}\``,
        { service: svc, deployment: n },
      );
    }
    active.abort.abort(new TealError('TEAL_ABORTED', `aborted by ${actor}`, { actor }));
    return n;
  }

  /** Who holds the service's deploy lock, if anyone. */
  async lockStatus(svc: string): Promise<{ service: string; held: boolean; holder?: Json; since?: string }> {
    this.serviceConfig(svc);
    const held = await this.#deps.store.get<{ holder: Json; since?: string }>(lockKey(lockName(svc)));
    if (!held) return { service: svc, held: false };
    return {
      service: svc,
      held: true,
      holder: held.value.holder,
      ...(held.value.since ? { since: held.value.since } : {}),
    };
  }

  /**
   * Frees a deploy lock whose holder is provably gone: a process of this host that no longer runs.
   * A live holder keeps it (abort its deployment instead), and one on another host cannot be
   * checked from here: its lease frees the lock within its TTL if it is gone. The lock is never
   * taken from under a running deployment, which would let two run at once.
   */
  async releaseLock(svc: string): Promise<{ released: boolean; holder: Json }> {
    this.serviceConfig(svc);
    const key = lockKey(lockName(svc));
    const held = await this.#deps.store.get<{
      holder: { host?: string; pid?: number; deployment?: number; description?: string };
    }>(key);
    if (!held) throw new TealError('TEAL_NOT_FOUND', `${svc} is not locked`, { service: svc });
    const h = held.value.holder ?? {};
    const who = h.description ?? JSON.stringify(h);
    if (h.host !== hostname() || typeof h.pid !== 'number') {
      throw new TealError(
        'TEAL_LOCKED',
        `${svc} is locked by ${who} on ${h.host ?? 'another host'}, which cannot be checked from here; if it is gone, its lease frees the lock within ${Math.round(this.#lockTtlMs / 1000)} s`,
        { holder: held.value.holder as Json },
      );
    }
    if (h.pid === process.pid || pidAlive(h.pid)) {
      throw new TealError(
        'TEAL_LOCKED',
        `${svc} is locked by ${who}, which is running (pid ${h.pid}); \`teal abort ${svc}\` stops a deployment before its switch`,
        { holder: held.value.holder as Json },
      );
    }
    await this.#deps.store.delete(key, { ifRevision: held.revision });
    return { released: true, holder: held.value.holder as Json };
  }

  /** Resolves when the deployment running for the service (if any) has ended. */
  async settled(svc: string): Promise<void> {
    await this.#runs.get(svc);
  }

  /** Aborts running deployments (they clean up and end "interrupted") and waits for them. */
  async close(): Promise<void> {
    this.#closing.abort(new TealError('TEAL_ABORTED', 'the control plane is stopping'));
    await Promise.all([...this.#runs.values()]);
    this.tables.close();
  }

  /**
   * A preview link's grant for a slot of `svc` (default: the idle slot the preview route serves),
   * valid for `ttlMs`; applied to every data plane before it is returned, so the link works at once.
   */
  async grantPreview(
    svc: string,
    options: { slot?: Slot; ttlMs?: number; actor: string },
  ): Promise<PreviewGrantRecord> {
    this.serviceConfig(svc);
    const ttlMs = checkTtl(options.ttlMs);
    const table = await this.tables.current();
    const routes = table.services.find((s) => s.service === svc);
    const pools = [routes?.preview, routes?.live].filter((p) => p !== null && p !== undefined);
    const pool = options.slot === undefined ? routes?.preview : pools.find((p) => p.slot === options.slot);
    if (!pool) {
      throw new TealError(
        'TEAL_NOTHING_TO_PREVIEW',
        options.slot === undefined
          ? `${svc} has no idle slot to preview (nothing verifying, waiting at the gate or kept warm)`
          : `${svc} has nothing running in slot ${options.slot}`,
        { service: svc, ...(options.slot ? { slot: options.slot } : {}) },
      );
    }
    const now = Date.now();
    const grant: PreviewGrantRecord = {
      id: newGrantId(),
      service: svc,
      slot: pool.slot,
      release: pool.release,
      version: pool.version,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + ttlMs).toISOString(),
      actor: options.actor,
    };
    await this.#deps.store.put(previewKeys.grant(svc, grant.id), grant as never);
    await this.tables.sync();
    return grant;
  }

  /** The grants of `svc` still in force. */
  async previews(svc: string): Promise<PreviewGrantRecord[]> {
    this.serviceConfig(svc);
    const now = Date.now();
    return (await listGrants(this.#deps.store, svc)).filter((g) => Date.parse(g.expiresAt) > now);
  }

  /** Ends grants of `svc` (one by id, else all); every data plane stops honouring them before this resolves. */
  async revokePreviews(svc: string, id?: string): Promise<number> {
    this.serviceConfig(svc);
    const grants = (await listGrants(this.#deps.store, svc)).filter((g) => id === undefined || g.id === id);
    if (id !== undefined && grants.length === 0)
      throw new TealError('TEAL_NOT_FOUND', `${svc} has no preview grant ${id.slice(0, 8)}…`);
    for (const g of grants) await this.#deps.store.delete(previewKeys.grant(svc, g.id));
    await this.tables.sync();
    return grants.length;
  }

  /** The file as it is now, applied (TEAL_CONFIG_INVALID refuses the deployment before it is recorded). */
  async #refreshConfig(reason: string): Promise<ConfigStamp | undefined> {
    return this.#deps.refreshConfig?.(reason);
  }

  async #warmAnswers(plan: DeployPlan): Promise<boolean> {
    const { runtime, store } = this.#deps;
    const slot = (await readServiceState(store, plan.service)).slots[plan.targetSlot];
    const probe = this.#deps.probe(plan.health);
    for (const instance of slotInstances(plan.service, slot)) {
      if ((await runtime.status(instance)).state !== 'running') return false;
      const result = await probe.check(instance, { signal: AbortSignal.timeout(plan.health.timeout + 500) });
      if (!result.ok) return false;
    }
    return slot.instances.length > 0;
  }

  async #begin(
    svc: string,
    kind: 'deploy' | 'rollback',
    version: string | null,
    options: { actor: string; waitMs?: number; config?: ConfigStamp | undefined },
    makePlan: (rec: Recorder) => Promise<DeployPlan>,
  ): Promise<DeploymentRecord> {
    if (this.#closing.signal.aborted) throw new TealError('TEAL_ABORTED', 'the control plane is stopping');
    const { store } = this.#deps;
    const record = await createNumbered<DeploymentRecord>(store, keys.deployments(svc), (n) => ({
      n,
      service: svc,
      kind,
      state: 'queued',
      version,
      release: null,
      targetSlot: null,
      fromSlot: null,
      fromRelease: null,
      fromVersion: null,
      mode: null,
      actor: options.actor,
      createdAt: new Date().toISOString(),
      ...(options.config ? { config: options.config } : {}),
      events: [],
    }));
    const rec = new Recorder(store, record);
    const holder = {
      description: `deployment #${record.n} (${kind} ${svc}${version ? ` ${version}` : ''} by ${options.actor})`,
      deployment: record.n,
      service: svc,
      host: hostname(),
      pid: process.pid,
    };

    const takeLock = async (wait?: AbortSignal): Promise<Lock> => {
      try {
        const lock = await store.lock(lockName(svc), {
          ttlMs: this.#lockTtlMs,
          holder,
          ...(wait ? { wait } : {}),
        });
        await rec.event('lock', 'done', `locked ${svc}`);
        return lock;
      } catch (err) {
        const error = toTealError(err);
        await rec.event('lock', 'failed', error.message);
        await rec.finish('failed', error);
        throw error;
      }
    };

    let run: Promise<void>;
    if (options.waitMs === undefined) {
      const lock = await takeLock();
      run = this.#run(rec, lock, makePlan);
    } else {
      const holderNow = await store.lockHolder(lockName(svc));
      await rec.event(
        'lock',
        'started',
        holderNow
          ? `waiting for the lock, held by ${(holderNow as { description?: string }).description ?? 'another deployment'}`
          : `taking the lock`,
      );
      const wait = AbortSignal.any([AbortSignal.timeout(options.waitMs), this.#closing.signal]);
      run = takeLock(wait).then(
        (lock) => this.#run(rec, lock, makePlan),
        () => undefined,
      );
    }
    const previous = this.#runs.get(svc) ?? Promise.resolve();
    const tracked = Promise.all([previous, run]).then(() => undefined);
    this.#runs.set(svc, tracked);
    void tracked.finally(() => {
      if (this.#runs.get(svc) === tracked) this.#runs.delete(svc);
    });
    await rec.flushed();
    return structuredClone(rec.record) as DeploymentRecord;
  }

  async #run(rec: Recorder, lock: Lock, makePlan: (rec: Recorder) => Promise<DeployPlan>): Promise<void> {
    const byUser = new AbortController();
    const svc = rec.record.service;
    this.#active.set(svc, { rec, abort: byUser });
    const signal = AbortSignal.any([this.#closing.signal, lock.lease.lost, byUser.signal]);
    try {
      let plan: DeployPlan;
      try {
        plan = await makePlan(rec);
      } catch (err) {
        const error = toTealError(err);
        await rec.event('plan', 'failed', error.message);
        await rec.finish(signal.aborted ? 'interrupted' : 'failed', error);
        return;
      }
      await rec.update({
        mode: plan.mode,
        version: plan.release.version,
        release: plan.releaseN,
        targetSlot: plan.targetSlot,
        fromSlot: plan.fromSlot,
        fromRelease: plan.fromRelease,
        fromVersion: plan.fromVersion,
      });
      await rec.event('plan', 'info', plan.steps.join('\n'), { data: { steps: plan.steps } });
      this.#deps.log.info('deployment started', {
        deployment: rec.n,
        service: svc,
        kind: rec.record.kind,
        version: plan.release.version,
        mode: plan.mode,
        slot: plan.targetSlot,
        actor: rec.record.actor,
      });
      await applyPlan({ deps: this.#deps, tables: this.tables, plan, rec, signal, gates: this.#gates });
    } catch (err) {
      // applyPlan records its own failures; this is a failure to record them (the store is gone).
      this.#deps.log.error('deployment could not be recorded', {
        deployment: rec.n,
        error: toTealError(err).message,
      });
    } finally {
      if (this.#active.get(svc)?.rec === rec) this.#active.delete(svc);
      if (!isTerminal(rec.record.state)) {
        await rec
          .finish('interrupted', new TealError('TEAL_INTERNAL', 'the deployment ended without an outcome'))
          .catch(() => undefined);
      }
      const { state, error } = rec.record;
      this.#deps.log[state === 'done' ? 'info' : 'warn']('deployment ended', {
        deployment: rec.n,
        service: svc,
        state,
        ms: Date.now() - Date.parse(rec.record.createdAt),
        ...(error ? { code: error.code, error: error.message.split('\n')[0] } : {}),
      });
      await lock.release().catch((err: unknown) =>
        this.#deps.log.warn('releasing the deploy lock failed; its lease will free it', {
          error: toTealError(err).message,
        }),
      );
    }
  }
}
