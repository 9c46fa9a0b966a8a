import { once } from 'node:events';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { configRoutes } from '../api/config-routes.js';
import { pipelineRoutes } from '../api/pipelines.js';
import { apiRoutes } from '../api/routes.js';
import { createApiServer } from '../api/server.js';
import type { LoadedConfig } from '../core/config/load.js';
import type { Logger } from '../core/deps.js';
import { Engine } from '../core/engine.js';
import { TealError, toTealError } from '../core/errors.js';
import { Supervisor } from '../core/heal.js';
import { endpointText } from '../core/model.js';
import { reconcile } from '../core/reconcile.js';
import { CoordinatorWatch } from '../core/takeover.js';
import { WarmReaper } from '../core/warm.js';
import { HttpProbe } from '../health/http.js';
import { PipelineRunner } from '../pipeline/runner.js';
import { DataPlaneWatchdog } from '../proxy/builtin/watchdog.js';
import { openTrafficSwitch } from '../proxy/open.js';
import { openStore } from '../stores/open.js';
import type { Store } from '../stores/store.js';
import { resolveRunUser } from '../users.js';
import { StepVerifier } from '../verify/steps.js';
import { packageVersion } from '../version.js';
import { ConfigSource } from './config-source.js';
import {
  assertNotRunning,
  ensureStateDir,
  ensureToken,
  removeDaemonInfo,
  type StatePaths,
  statePaths,
  writeDaemonInfo,
} from './files.js';
import { holdStateDirLock } from './lock.js';
import { RespawnRegistration } from './respawn-registration.js';
import { openRuntime } from './runtime.js';

export interface Daemon {
  /** http://127.0.0.1:7070 */
  apiUrl: string;
  /** http://127.0.0.1:8080 (as bound: 0.0.0.0 shows as 127.0.0.1) */
  proxyUrl: string;
  /** http://127.0.0.1:8081: the preview listener, where X-Teal-Slot chooses the slot */
  previewUrl: string;
  token: string;
  paths: StatePaths;
  engine: Engine;
  store: Store;
  /** The applied teal.yml; `config.reload(reason)` re-reads and applies it (SIGHUP, `teal reload`). */
  config: ConfigSource;
  /** Stops the control plane: the API, running deployments (they end interrupted), timers, the store. The data plane and the app instances keep serving. */
  close(): Promise<void>;
}

/**
 * `teal up`: wires store, runtime, data plane, engine and API, reconciles what it finds with the
 * store, then serves. Everything it starts outside itself (the data plane, app instances) outlives it.
 */
export async function startDaemon(options: {
  configFile: string;
  log: Logger;
  /**
   * Whether the builtin data plane starts this control plane again if it dies (proxy/builtin/
   * respawn.ts): `teal up` says yes unless a supervisor runs it or --no-respawn; embedders, no.
   */
  respawn?: boolean;
}): Promise<Daemon> {
  const { log } = options;
  // The file as it is now; SIGHUP, `teal reload` and each deploy read it again (config-source.ts).
  const source = new ConfigSource(options.configFile, { log, check: assertRunUsers });
  const loaded: LoadedConfig = source.current();
  const { config } = loaded;
  const paths = statePaths(loaded.stateDir);
  ensureStateDir(paths);
  // Held until the process ends: never two control planes on one state dir (daemon/lock.ts).
  const lock = await holdStateDirLock(paths);
  assertNotRunning(paths);
  const token = ensureToken(paths);

  const store = openStore(config.store, paths.dir, loaded.dir);
  const runtime = openRuntime(config, paths.dir, store);
  const closers: (() => Promise<void>)[] = [() => lock.release(), () => store.close(), () => runtime.close()];
  const unwind = async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  };

  try {
    const {
      traffic,
      url: proxyUrl,
      previewUrl,
      reconfigure,
      builtin,
    } = await openTrafficSwitch(config.proxy, { ...paths, configDir: loaded.dir }, log);
    closers.push(() => traffic.close());

    const deps = {
      store,
      runtime,
      traffic,
      proxyUrl,
      previewUrl,
      probe: (h: { path: string; timeout: number }) => new HttpProbe({ path: h.path, timeoutMs: h.timeout }),
      verifier: new StepVerifier(),
      config: () => source.current(),
      refreshConfig: async (reason: string) => {
        await source.reload(reason);
        return source.stamp();
      },
      log,
    };
    const engine = new Engine(deps);
    closers.push(() => engine.close());
    source.wire({ store, tables: engine.tables, ...(reconfigure ? { reconfigureProxy: reconfigure } : {}) });

    // Another control plane on the same store that dies mid-deploy is taken over (core/takeover.ts).
    // Watching from before the start-up reconciliation: a lock that ends meanwhile is not missed.
    const coordinators = new CoordinatorWatch(deps, engine.tables);
    const watching = new AbortController();
    coordinators.start(watching.signal);
    closers.push(async () => {
      watching.abort();
      coordinators.open();
      await coordinators.stopped();
    });

    const report = await reconcile(deps, engine.tables);
    coordinators.open();
    if (report.unfinished.length + report.strays.length + report.busy.length > 0) {
      log.warn('reconciled state left by the previous control plane', {
        unfinished: report.unfinished.map((d) => `${d.service}#${d.deployment}: ${d.outcome}`),
        strays: report.strays,
        busy: report.busy,
      });
    }

    // Closed before the engine (closers run in reverse): its runs stop, then the deploys they started.
    const pipelines = new PipelineRunner({
      store,
      engine,
      config: () => source.current(),
      refreshConfig: (reason: string) => source.reload(reason),
      stateDir: paths.dir,
      log,
    });
    await pipelines.start();
    closers.push(() => pipelines.close());

    const reaper = new WarmReaper(deps, engine.tables);
    reaper.start();
    closers.push(() => reaper.stop());

    // The builtin data plane is watched from here on and started again if it dies; it, in turn,
    // watches this process once registered below (docs/ARCHITECTURE.md, "What restarts what").
    let up = false;
    const respawn = builtin
      ? new RespawnRegistration({
          adminSocket: paths.proxySocket,
          lock: lock.name,
          logFile: paths.daemonLog,
          respawn: options.respawn ?? false,
          log,
        })
      : undefined;
    const watchdog = builtin
      ? new DataPlaneWatchdog({
          launch: builtin.launch,
          pid: builtin.pid,
          log,
          attached: async (_plane, restarted) => {
            if (up) await respawn?.register();
            // The saved table is what the dead one last applied; the store may say more since.
            if (restarted) await engine.tables.sync();
          },
        })
      : undefined;
    watchdog?.start();
    closers.push(async () => watchdog?.stop());

    const closing = new AbortController();
    const version = packageVersion();
    const server = createApiServer({
      router: configRoutes(
        pipelineRoutes(
          apiRoutes({
            engine,
            store,
            runtime,
            traffic,
            version,
            proxyUrl,
            closing: closing.signal,
            previewConfig: () => source.preview(),
            ...(watchdog ? { dataPlane: () => watchdog.status() } : {}),
          }),
          {
            runner: pipelines,
            store,
            closing: closing.signal,
            maxDeliveryBytes: config.api.limits.webhookBody,
          },
        ),
        { config: source },
      ),
      token,
      log,
      settings: {
        headersTimeoutMs: config.api.timeouts.headers,
        requestTimeoutMs: config.api.timeouts.request,
        idleTimeoutMs: config.api.timeouts.idle,
        maxConnections: config.api.limits.maxConnections,
        authFailuresPerMinute: config.api.limits.authFailures,
      },
    });
    server.listen(config.api.listen.port, config.api.listen.host);
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]) => {
        throw apiListenError(err as NodeJS.ErrnoException, endpointText(config.api.listen));
      }),
    ]);
    closers.push(() => closeServer(server, closing));

    const bound = server.address() as AddressInfo;
    const apiUrl = `http://${endpointText({ host: bound.address, port: bound.port })}`;
    await writeDaemonInfo(paths, {
      pid: process.pid,
      api: apiUrl,
      proxy: proxyUrl,
      preview: previewUrl,
      startedAt: new Date().toISOString(),
      config: loaded.file,
    });
    closers.unshift(async () => removeDaemonInfo(paths));
    // Stopped on purpose (SIGTERM, close()): the data plane is told first, so it does not respawn this.
    if (respawn) closers.push(() => respawn.forget());
    // Registered once the API answers, before the restore (which waits for apps to start): a start
    // that fails earlier is the operator's to see, not a respawn loop's.
    up = true;
    await respawn?.register();

    // After a reboot nothing of the apps runs: the live slots (and warm ones within their window)
    // are started again before teal says it is up. The API answers meanwhile, so `teal status`
    // shows the restore truthfully (0/1 up, then 1/1).
    const supervisor = new Supervisor(deps, engine.tables);
    closers.push(() => supervisor.close());
    const restored = await supervisor.restore((message) => log.info(message));
    for (const r of restored) {
      if (r.restored > 0) log.info(`restored ${r.service}: ${r.restored} instance(s) serving in ${r.ms} ms`);
    }
    supervisor.start();
    const down = restored.flatMap((r) =>
      r.failed.map((f) => `${r.service} (${f.slot}, ${f.instance}): ${f.error.split('\n')[0]}`),
    );
    const fields = {
      api: apiUrl,
      proxy: proxyUrl,
      preview: previewUrl,
      services: Object.keys(config.services).join(', '),
      ...(process.env.TEAL_RESPAWNED_BY ? { respawnedBy: Number(process.env.TEAL_RESPAWNED_BY) } : {}),
    };
    // Still serving the rest: exiting would take the API and every other service down with it
    // (and a supervisor restarting teal would only loop). Supervision keeps retrying these.
    if (down.length > 0) log.error('teal is up, but these slots could not be restored', { ...fields, down });
    else log.info('teal is up', fields);

    let closed: Promise<void> | undefined;
    return {
      apiUrl,
      proxyUrl,
      previewUrl,
      token,
      paths,
      engine,
      store,
      config: source,
      close: () => {
        closed ??= unwind().then(() =>
          log.info('control plane stopped; the data plane and instances keep serving'),
        );
        return closed;
      },
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}

function apiListenError(err: NodeJS.ErrnoException, address: string): TealError {
  if (err.code === 'EADDRINUSE') {
    return new TealError(
      'TEAL_PORT_IN_USE',
      `the API address ${address} is already in use; change api.listen in teal.yml`,
    );
  }
  return toTealError(err);
}

async function closeServer(server: http.Server, closing: AbortController): Promise<void> {
  closing.abort();
  const done = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  // Streams were told to end (closing); anything still open after a moment is cut.
  const timer = setTimeout(() => server.closeAllConnections(), 2_000);
  await done;
  clearTimeout(timer);
}

/**
 * Every user code will run as can be switched to (teal up is the process that must switch): found
 * now, with the key that names it, rather than at the first deploy or push.
 */
function assertRunUsers(loaded: LoadedConfig): void {
  for (const [name, svc] of Object.entries(loaded.config.services)) resolveRunUser(svc, `services.${name}`);
  for (const [name, p] of Object.entries(loaded.config.pipelines)) resolveRunUser(p, `pipelines.${name}`);
}
