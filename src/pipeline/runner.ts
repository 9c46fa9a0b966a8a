import { chmodSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { childEnv } from '../child-env.js';
import { audited } from '../core/audit.js';
import type { LoadedConfig } from '../core/config/load.js';
import type { PipelineConfig } from '../core/config/schema.js';
import type { Logger } from '../core/deps.js';
import type { Engine } from '../core/engine.js';
import { isTealError, TealError, toTealError } from '../core/errors.js';
import { createNumbered, readDeployment, readServiceState } from '../core/records.js';
import { splitEnv } from '../core/release.js';
import { isTerminal } from '../core/state.js';
import type { Store } from '../stores/store.js';
import { assertReachable, homeOf, resolveRunUser } from '../users.js';
import { RunQueue } from './queue.js';
import { RunRecorder } from './recorder.js';
import { isTerminalRun, type PipelineRun, pipelineKeys, type RunTrigger } from './records.js';
import { PushCheck } from './replay.js';
import { runStage } from './stage.js';
import type { Provider } from './webhooks.js';
import {
  branchHead,
  checkout,
  commitInfo,
  handOver,
  isSha,
  keepArtifact,
  removeWorkspace,
  resolveRepo,
  workFolder,
} from './workspace.js';

export interface RunRequest {
  pipeline: string;
  commit: string;
  branch: string;
  message?: string;
  author?: string;
  trigger: RunTrigger;
}

export interface RunnerDeps {
  store: Store;
  engine: Engine;
  config: () => LoadedConfig;
  /**
   * Re-reads teal.yml and applies it when a run starts (daemon/config-source.ts), so the run's
   * stages are the file's as it is then; throws when the file cannot be applied. Absent: `config()`.
   */
  refreshConfig?: (reason: string) => Promise<unknown>;
  stateDir: string;
  log: Logger;
}

/** What a webhook's push led to: a run (or the one its delivery id started), or nothing, and why. */
export type PushOutcome =
  | { run: PipelineRun; duplicate: boolean }
  | { skipped: string; previousRun?: number };

/** How long an environment's deploy may wait for its service's lock (another deploy running). */
const LOCK_WAIT_MS = 30 * 60_000;

/**
 * Runs pipelines: a run per (pipeline, commit) checks the commit out in a clean workspace, runs the
 * stages, keeps the artifact, then deploys each environment through the Engine and waits for it
 * (at a manual gate too). Which run goes when is `RunQueue`'s call.
 */
export class PipelineRunner {
  readonly #deps: RunnerDeps;
  readonly #queue = new RunQueue<RunRequest>();
  readonly #active = new Map<string, { n: number; abort: AbortController }>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #closing = new AbortController();
  /** Deliveries being recorded right now, so two copies arriving together start one run. */
  readonly #arriving = new Map<string, Promise<PipelineRun>>();
  /** `pipeline@sha` -> the run of that commit (the newest): a webhook never runs a commit twice. */
  readonly #commits = new Map<string, number>();
  /** Pushes of one commit being checked right now, so copies arriving together start one run. */
  readonly #checking = new Map<string, Promise<PushOutcome>>();
  readonly #pushes: PushCheck;

  constructor(deps: RunnerDeps) {
    this.#deps = deps;
    this.#pushes = new PushCheck(path.join(deps.stateDir, 'mirrors'));
  }

  /** Records runs a stopped control plane left unfinished as interrupted; remembers recent deliveries. */
  async start(): Promise<void> {
    for (const name of this.names()) {
      // Oldest first, so the newest run of a commit is the one remembered.
      for (const run of (await this.list(name, Number.POSITIVE_INFINITY)).reverse()) {
        if (run.trigger.delivery) this.#queue.remember(`${name}/${run.trigger.delivery}`, run.n);
        this.#commits.set(`${name}@${run.commit}`, run.n);
        if (!isTerminalRun(run.state)) {
          await new RunRecorder(this.#deps.store, run).update({
            state: 'interrupted',
            endedAt: new Date().toISOString(),
            error: {
              code: 'TEAL_ABORTED',
              message: 'the control plane stopped while this run was in progress',
            },
          });
        }
      }
    }
  }

  names(): string[] {
    return Object.keys(this.#deps.config().config.pipelines);
  }

  pipeline(name: string): PipelineConfig {
    const pipelines = this.#deps.config().config.pipelines;
    const found = pipelines[name];
    if (!found) {
      const known = Object.keys(pipelines);
      throw new TealError(
        'TEAL_UNKNOWN_PIPELINE',
        `no pipeline named ${JSON.stringify(name)} in ${this.#deps.config().file} (${known.length ? `pipelines: ${known.join(', ')}` : 'it has no pipelines:'})`,
      );
    }
    return found;
  }

  /** The secret a provider's deliveries are checked with, from the env var teal.yml names. */
  secret(provider: Provider): string | undefined {
    const name = this.#deps.config().config.webhooks[provider]?.secretEnv;
    const value = name ? process.env[name] : undefined;
    return value && value.length > 0 ? value : undefined;
  }

  /** `teal pipeline run`: the given commit, or the branch's head now. */
  async runNow(
    name: string,
    options: { commit?: string; branch?: string; actor: string; kind?: RunTrigger['kind'] },
  ): Promise<PipelineRun> {
    const config = this.pipeline(name);
    const branch = options.branch ?? config.source.branches[0]!;
    let commit = options.commit;
    if (commit !== undefined && !isSha(commit)) {
      throw new TealError(
        'TEAL_BAD_REQUEST',
        `commit: expected a hex sha (7 to 40 digits), got ${JSON.stringify(commit)}`,
      );
    }
    commit ??= await branchHead(resolveRepo(config.source.repo, this.#deps.config().dir), branch);
    const { run } = await this.trigger({
      pipeline: name,
      commit,
      branch,
      trigger: { kind: options.kind ?? 'cli', actor: options.actor },
    });
    return run;
  }

  /** Queues a run (superseding older ones); a delivery id seen before returns the run it started. */
  async trigger(request: RunRequest): Promise<{ run: PipelineRun; duplicate: boolean }> {
    const { pipeline } = request;
    this.pipeline(pipeline);
    if (this.#closing.signal.aborted) throw new TealError('TEAL_ABORTED', 'the control plane is stopping');
    const delivery = request.trigger.delivery ? `${pipeline}/${request.trigger.delivery}` : undefined;
    if (delivery) {
      const seen = this.#queue.delivered(delivery);
      if (seen !== undefined) return { run: await this.get(pipeline, seen), duplicate: true };
      const arriving = this.#arriving.get(delivery);
      if (arriving) return { run: await arriving, duplicate: true };
    }
    const created = this.#create(request);
    if (delivery) this.#arriving.set(delivery, created);
    try {
      const run = await created;
      if (delivery) this.#queue.remember(delivery, run.n);
      return { run, duplicate: false };
    } finally {
      if (delivery) this.#arriving.delete(delivery);
    }
  }

  /**
   * A signed push from a webhook: runs only a commit that is new to the pipeline, is its branch's
   * head, and is not already in production (replay.ts says why); anything else is acknowledged with
   * the reason and starts nothing, so a captured delivery sent again can neither rerun an old commit
   * nor supersede newer work. A delivery id seen before still answers with the run it started.
   */
  async fromWebhook(request: RunRequest): Promise<PushOutcome> {
    const { pipeline, commit } = request;
    this.pipeline(pipeline);
    const delivery = request.trigger.delivery ? `${pipeline}/${request.trigger.delivery}` : undefined;
    if (delivery && (this.#queue.delivered(delivery) !== undefined || this.#arriving.has(delivery)))
      return this.trigger(request);
    const key = `${pipeline}@${commit}`;
    const checking = this.#checking.get(key);
    if (checking) {
      const first = await checking;
      return 'run' in first ? this.#alreadyRan(pipeline, commit, first.run.n) : first;
    }
    const outcome = this.#checkPush(request, key);
    this.#checking.set(key, outcome);
    try {
      return await outcome;
    } finally {
      this.#checking.delete(key);
    }
  }

  async #checkPush(request: RunRequest, key: string): Promise<PushOutcome> {
    const { pipeline, commit, branch } = request;
    const ran = this.#commits.get(key);
    if (ran !== undefined) return this.#alreadyRan(pipeline, commit, ran);
    const config = this.pipeline(pipeline);
    const last = config.environments.at(-1)?.service;
    const skipped = await this.#pushes.skipReason({
      pipeline,
      repo: resolveRepo(config.source.repo, this.#deps.config().dir),
      branch,
      commit,
      ...(last ? { production: await this.#liveVersion(last) } : {}),
      signal: this.#closing.signal,
    });
    if (skipped !== undefined) {
      this.#deps.log.info('a signed push starts no run', { pipeline, commit, reason: skipped });
      return { skipped };
    }
    // `teal pipeline run` may have queued the same commit while the mirror was fetched.
    const meanwhile = this.#commits.get(key);
    if (meanwhile !== undefined) return this.#alreadyRan(pipeline, commit, meanwhile);
    return this.trigger(request);
  }

  #alreadyRan(pipeline: string, commit: string, n: number): PushOutcome {
    const skipped = `commit ${commit.slice(0, 7)} already ran for pipeline ${pipeline} as run #${n}: a push runs once; to run it again, teal pipeline run ${pipeline} --commit ${commit}`;
    this.#deps.log.info('a signed push starts no run', { pipeline, commit, reason: skipped });
    return { skipped, previousRun: n };
  }

  /** The version the service's live slot runs, if it has one. */
  async #liveVersion(service: string): Promise<string | undefined> {
    const state = await readServiceState(this.#deps.store, service);
    return (state.live ? state.slots[state.live].version : null) ?? undefined;
  }

  async #create(request: RunRequest): Promise<PipelineRun> {
    const { store } = this.#deps;
    const record = await createNumbered<PipelineRun>(store, pipelineKeys.runs(request.pipeline), (n) => ({
      n,
      pipeline: request.pipeline,
      state: 'queued',
      commit: request.commit,
      version: request.commit.slice(0, 7),
      branch: request.branch,
      ...(request.message ? { message: request.message.slice(0, 2000) } : {}),
      ...(request.author ? { author: request.author.slice(0, 200) } : {}),
      trigger: request.trigger,
      steps: [],
      createdAt: new Date().toISOString(),
    }));
    this.#commits.set(`${request.pipeline}@${request.commit}`, record.n);
    const offer = this.#queue.offer(request.pipeline, record.n, request);
    for (const n of offer.superseded) await this.#supersede(request.pipeline, n, record.n);
    if (offer.cancel !== undefined) {
      this.#active.get(request.pipeline)?.abort.abort(
        new TealError('TEAL_ABORTED', `superseded by run #${record.n} (${record.version})`, {
          supersededBy: record.n,
        }),
      );
    }
    this.#pump(request.pipeline);
    return record;
  }

  async #supersede(pipeline: string, n: number, by: number): Promise<void> {
    const run = await this.get(pipeline, n);
    await new RunRecorder(this.#deps.store, run).update({
      state: 'superseded',
      supersededBy: by,
      endedAt: new Date().toISOString(),
    });
  }

  /** Stops a run: the queued one is dropped; the running one is stopped where it is. */
  async cancel(pipeline: string, n: number | undefined, actor: string): Promise<PipelineRun> {
    this.pipeline(pipeline);
    const target = n ?? this.#queue.running(pipeline) ?? this.#queue.waiting(pipeline);
    if (target === undefined) {
      throw new TealError('TEAL_NOT_FOUND', `pipeline ${pipeline} has no run in progress to cancel`);
    }
    const run = await this.get(pipeline, target);
    if (isTerminalRun(run.state)) {
      throw new TealError(
        'TEAL_NOT_WAITING',
        `run #${target} of ${pipeline} has already ended (${run.state})`,
      );
    }
    const reason = new TealError('TEAL_ABORTED', `cancelled by ${actor}`, { actor });
    if (this.#queue.drop(pipeline, target)) {
      const rec = new RunRecorder(this.#deps.store, run);
      await rec.update({ state: 'cancelled', endedAt: new Date().toISOString(), error: reason.toJSON() });
      return rec.record;
    }
    const active = this.#active.get(pipeline);
    if (active?.n === target) active.abort.abort(reason);
    return this.get(pipeline, target);
  }

  async get(pipeline: string, n: number): Promise<PipelineRun> {
    this.pipeline(pipeline);
    const entry = await this.#deps.store.get<PipelineRun>(pipelineKeys.run(pipeline, n));
    if (!entry) throw new TealError('TEAL_NOT_FOUND', `pipeline ${pipeline} has no run #${n}`);
    return entry.value;
  }

  /** Newest first. */
  async list(pipeline: string, limit = 50): Promise<PipelineRun[]> {
    this.pipeline(pipeline);
    const entries = await this.#deps.store.list<PipelineRun>(pipelineKeys.runs(pipeline));
    return entries
      .map((e) => e.value)
      .sort((a, b) => b.n - a.n)
      .slice(0, limit);
  }

  /** Resolves when every run in progress has ended. */
  async settled(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }

  /** Stops running runs (they end interrupted; a deploy in progress is aborted by the engine's own close). */
  async close(): Promise<void> {
    this.#closing.abort(new TealError('TEAL_ABORTED', 'the control plane is stopping'));
    for (const active of this.#active.values()) active.abort.abort(this.#closing.signal.reason);
    await Promise.all([...this.#tasks]);
  }

  #pump(pipeline: string): void {
    if (this.#closing.signal.aborted) return;
    const next = this.#queue.next(pipeline);
    if (!next) return;
    const abort = new AbortController();
    this.#active.set(pipeline, { n: next.n, abort });
    const task = this.get(pipeline, next.n)
      .then((run) => this.#execute(new RunRecorder(this.#deps.store, run), abort.signal))
      .catch((err: unknown) =>
        this.#deps.log.error('a pipeline run could not be recorded', {
          pipeline,
          run: next.n,
          error: toTealError(err).message,
        }),
      )
      .finally(() => {
        this.#tasks.delete(task);
        if (this.#active.get(pipeline)?.n === next.n) this.#active.delete(pipeline);
        this.#queue.finished(pipeline, next.n);
        this.#pump(pipeline);
      });
    this.#tasks.add(task);
  }

  async #execute(rec: RunRecorder, signal: AbortSignal): Promise<void> {
    const { pipeline, n } = rec.record;
    // The file as it is when the run starts, as each deploy reads it; a file that cannot be
    // applied (or no longer names the pipeline) fails the run before anything is checked out.
    let refused: TealError | undefined;
    try {
      await this.#deps.refreshConfig?.(`pipeline ${pipeline} run #${n}`);
      this.pipeline(pipeline);
    } catch (err) {
      refused = toTealError(err);
    }
    if (refused) {
      await rec.update({ state: 'failed', endedAt: new Date().toISOString(), error: refused.toJSON() });
      this.#deps.log.warn('pipeline run refused: teal.yml cannot be applied', {
        pipeline,
        run: n,
        error: refused.message,
      });
      return;
    }
    const config = this.pipeline(pipeline);
    const loaded = this.#deps.config();
    // Out of the state dir (LoadedConfig.workDir): a stage's `..` leads nowhere near the token.
    const workspace = path.join(workFolder(loaded.workDir, 'workspaces'), `${pipeline}-${n}`);
    const logs = path.join(this.#deps.stateDir, 'pipelines', pipeline, String(n));
    const t0 = Date.now();
    try {
      await rec.update({ state: 'running', startedAt: new Date().toISOString() });
      let artifact: string | undefined;
      try {
        const commit = await this.#timed(rec, { kind: 'checkout', name: 'checkout' }, async () =>
          checkout(resolveRepo(config.source.repo, loaded.dir), rec.record.commit, workspace, signal),
        );
        await rec.update({ commit, version: commit.slice(0, 7) });
        this.#commits.set(`${pipeline}@${commit}`, n);
        // A run not started by a push (CLI, dashboard) learns its message and author from git.
        if (rec.record.message === undefined || rec.record.author === undefined) {
          const info = await commitInfo(workspace, signal).catch(() => undefined);
          if (info) {
            await rec.update({
              ...(rec.record.message === undefined && info.message
                ? { message: info.message.slice(0, 2000) }
                : {}),
              ...(rec.record.author === undefined && info.author
                ? { author: info.author.slice(0, 200) }
                : {}),
            });
          }
        }
        const artifactPath = config.artifact ? path.join(workspace, config.artifact.path) : undefined;
        const user = resolveRunUser(config, `pipelines.${pipeline}`);
        // The checkout becomes the stage user's (0700): they build in it, nothing else of teal's.
        assertReachable(workspace, user, `pipelines.${pipeline}`);
        handOver(workspace, user);
        chmodSync(workspace, 0o700);
        const env = this.#stageEnv(rec.record, artifactPath, homeOf(user, workspace), user.name);
        for (const stage of config.stages) {
          const logFile = path.join(logs, `${stage.name}.log`);
          const i = await rec.add({
            kind: 'stage',
            name: stage.name,
            state: 'running',
            startedAt: new Date().toISOString(),
            log: logFile,
          });
          const result = await runStage({
            run: stage.run,
            cwd: workspace,
            env,
            logFile,
            timeoutMs: stage.timeout,
            signal,
            user,
          });
          const passed = result.exitCode === 0 && !signal.aborted;
          await rec.step(i, {
            state: passed ? 'done' : signal.aborted ? 'cancelled' : 'failed',
            exitCode: result.exitCode,
            ms: Math.round(result.ms),
            tail: result.tail,
            ...(result.timedOut ? { detail: `killed after its timeout of ${stage.timeout} ms` } : {}),
          });
          signal.throwIfAborted();
          if (!passed) {
            throw new TealError(
              'TEAL_STAGE_FAILED',
              result.timedOut
                ? `stage ${stage.name} did not finish within its timeout (${stage.timeout} ms)`
                : `stage ${stage.name} failed with exit code ${result.exitCode ?? result.signal}: ${result.tail.trim().split('\n').slice(-3).join(' / ')}`,
              { stage: stage.name, exitCode: result.exitCode },
            );
          }
        }
        if (config.artifact) {
          const dest = path.join(workFolder(loaded.workDir, 'artifacts', pipeline), commit);
          await this.#timed(rec, { kind: 'artifact', name: config.artifact.path }, async () =>
            keepArtifact(workspace, config.artifact!.path, dest),
          );
          artifact = dest;
          await rec.update({ artifact });
        }
      } finally {
        removeWorkspace(workspace);
      }
      signal.throwIfAborted();

      this.#queue.deploying(pipeline, n);
      await rec.update({ state: 'deploying' });
      for (const env of config.environments) await this.#deploy(rec, env.service, artifact, signal);
      await rec.update({ state: 'done', endedAt: new Date().toISOString() });
      this.#deps.log.info('pipeline run done', {
        pipeline,
        run: n,
        version: rec.record.version,
        ms: Date.now() - t0,
      });
    } catch (err) {
      const reason = signal.aborted ? toTealError(signal.reason) : toTealError(err);
      const supersededBy = reason.details?.supersededBy as number | undefined;
      const state = !signal.aborted
        ? 'failed'
        : supersededBy !== undefined
          ? 'superseded'
          : this.#closing.signal.aborted
            ? 'interrupted'
            : 'cancelled';
      await rec.update({
        state,
        endedAt: new Date().toISOString(),
        ...(supersededBy === undefined ? { error: reason.toJSON() } : { supersededBy }),
      });
      this.#deps.log.warn('pipeline run ended without deploying everything', {
        pipeline,
        run: n,
        state,
        error: reason.message,
      });
    }
  }

  async #timed<T>(
    rec: RunRecorder,
    step: { kind: 'checkout' | 'artifact'; name: string },
    fn: () => Promise<T>,
  ): Promise<T> {
    const t0 = performance.now();
    const i = await rec.add({ ...step, state: 'running', startedAt: new Date().toISOString() });
    try {
      const result = await fn();
      await rec.step(i, { state: 'done', ms: Math.round(performance.now() - t0) });
      return result;
    } catch (err) {
      await rec.step(i, {
        state: 'failed',
        ms: Math.round(performance.now() - t0),
        detail: toTealError(err).message,
      });
      throw err;
    }
  }

  /**
   * What a stage's command sees: the pipeline's declared environment (childEnv: PATH, HOME..., its
   * `inheritEnv` and `env:`), plus the run's values; nothing else of the control plane's, which
   * holds the API token, webhook secrets and the store's password. Values from a push (branch,
   * message, author) are only ever here, never in the command line.
   */
  #stageEnv(
    run: PipelineRun,
    artifactPath: string | undefined,
    home: string,
    user: string,
  ): Record<string, string> {
    const loaded = this.#deps.config();
    const config = this.pipeline(run.pipeline);
    const { env, envFrom } = splitEnv(config.env, (text) => text, loaded.dir);
    return {
      ...childEnv({
        where: `pipelines.${run.pipeline}`,
        env,
        envFrom,
        inheritEnv: config.inheritEnv,
        user: { name: user, home },
      }),
      TEAL_PIPELINE: run.pipeline,
      TEAL_RUN: String(run.n),
      TEAL_COMMIT: run.commit,
      TEAL_VERSION: run.version,
      TEAL_BRANCH: run.branch,
      TEAL_COMMIT_MESSAGE: run.message ?? '',
      TEAL_COMMIT_AUTHOR: run.author ?? '',
      ...(artifactPath ? { TEAL_ARTIFACT: artifactPath } : {}),
    };
  }

  /** Deploys one environment and waits for its outcome; anything but done stops the run. */
  async #deploy(
    rec: RunRecorder,
    service: string,
    artifact: string | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const { engine, store } = this.#deps;
    const { pipeline, n, version } = rec.record;
    const actor = `pipeline ${pipeline} run #${n}`;
    const serviceConfig = engine.serviceConfig(service);
    const isProcess = serviceConfig.runtime === 'process';
    // A process release runs from the artifact as the service's user: it must be theirs to read.
    if (isProcess && artifact) handOver(artifact, resolveRunUser(serviceConfig, `services.${service}`));
    const t0 = performance.now();
    const i = await rec.add({
      kind: 'deploy',
      name: service,
      service,
      state: 'running',
      startedAt: new Date().toISOString(),
    });
    const started = await audited(
      store,
      { service, action: 'deploy', actor, detail: `version ${version}` },
      () =>
        engine.deploy(service, {
          version,
          actor,
          waitMs: LOCK_WAIT_MS,
          ...(isProcess && artifact ? { cwd: artifact } : {}),
        }),
      (r) => r.n,
    );
    await rec.step(i, { deployment: started.n });
    let asked = false;
    let last = started.state;
    for (;;) {
      const d = await readDeployment(store, service, started.n);
      if (!d) throw new TealError('TEAL_NOT_FOUND', `deployment #${started.n} of ${service} disappeared`);
      if (d.state !== last || isTerminal(d.state)) {
        if (d.state === 'verified') {
          await rec.step(i, { state: 'waiting', detail: `waiting for promote: teal promote ${service}` });
          await rec.update({ state: 'waiting' });
        } else if (last === 'verified') {
          await rec.step(i, { state: 'running', detail: `${d.state}` });
          await rec.update({ state: 'deploying' });
        }
        last = d.state;
      }
      if (isTerminal(d.state)) {
        const ok = d.state === 'done';
        await rec.step(i, {
          state: ok ? 'done' : signal.aborted ? 'cancelled' : 'failed',
          ms: Math.round(performance.now() - t0),
          detail: ok ? `${service} ${version} is live` : `${d.state}: ${d.error?.message ?? ''}`,
        });
        signal.throwIfAborted();
        if (!ok) {
          throw new TealError(
            'TEAL_DEPLOY_FAILED',
            `deploying ${service} ${version} ended ${d.state}${d.error ? `: ${d.error.message}` : ''}`,
            { service, deployment: d.n },
          );
        }
        return;
      }
      // A stopping control plane leaves the deployment to the engine's own close (interrupted).
      if (this.#closing.signal.aborted) throw this.#closing.signal.reason;
      if (signal.aborted && !asked) {
        asked = true;
        try {
          engine.abort(service, actor);
        } catch (err) {
          // Already switched: the deployment finishes; the run stops after it.
          if (!isTealError(err, 'TEAL_NOT_WAITING')) throw err;
        }
      }
      await sleep(100);
    }
  }
}
