import { chmod, lstat, unlink } from 'node:fs/promises';
import type http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseAddress } from '../../core/config/address.js';
import { isTealError, TealError, toTealError } from '../../core/errors.js';
import { endpointText } from '../../core/model.js';
import { ensurePrivateDir } from '../../files.js';
import { packageVersion } from '../../version.js';
import type { DrainResult, RoutingTable, TrafficStats } from '../switch.js';
import { type AdminTarget, createAdminServer, type DataPlaneInfo } from './admin.js';
import { adminCall } from './admin-client.js';
import { ClientConnection, type PlaneContext } from './client.js';
import { selfCheck } from './http1.js';
import { type EventLog, limited, UPSTREAM_ERRORS_PER_SECOND } from './log.js';
import type { PoolRuntime } from './pool.js';
import { PoolSet } from './pool-set.js';
import type { ControlPlaneKeeper } from './respawn.js';
import { type CompiledTable, compileTable, type Listener, type Refusal, selectPool } from './select.js';
import { connectionCap, type DataPlaneSettings, DEFAULT_SETTINGS, sweepInterval } from './settings.js';
import { loadTable, saveTable } from './state-file.js';
import { TrustedProxies } from './trusted.js';
import { forwardUpgrade } from './upgrade.js';
import { plainResponse, type RequestHead } from './wire.js';

export interface DataPlaneOptions {
  /** "host:port" users connect to; port 0 picks a free one (see `info().listen`). */
  listen: string;
  /** "host:port" of the preview listener, where `X-Teal-Slot` chooses the slot; none when absent. */
  previewListen?: string;
  /** Unix socket path of the admin API. */
  admin: string;
  /** Where the applied table is saved, and read back on start. */
  state: string;
  log: EventLog;
  settings?: Partial<DataPlaneSettings>;
  /**
   * Replaces this process with a fresh one without a gap (POST /v1/handoff); see handoff.ts. With
   * settings, the successor runs with them instead of this one's (how a reload of teal.yml applies them).
   */
  handoff?: (settings?: Partial<DataPlaneSettings>) => Promise<HandoffResult>;
  /** Watches the control plane that registers and respawns it (respawn.ts); `teal proxy` has one. */
  keeper?: ControlPlaneKeeper;
}

export interface HandoffResult {
  from: number;
  to: number;
}

/** Idle connections closed in one go when a newcomer finds the cap reached (nginx drains 32). */
const ROOM_BATCH = 16;

/** How long a newcomer refused at the cap may take to read its 503 before it is cut. */
const REFUSED_LINGER_MS = 1_000;

/** Unix socket paths are limited to ~104-108 bytes depending on the OS. */
const MAX_SOCKET_PATH = 100;

function listenOn(
  server: net.Server | http.Server,
  target: { host: string; port: number } | string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if (typeof target === 'string') server.listen(target, done);
    else server.listen(target.port, target.host, done);
  });
}

/** Binds a listener, turning the errors users meet into ones that name the address. */
async function bindListener(server: net.Server, listen: string, flag: string): Promise<string> {
  let address: { host: string; port: number };
  try {
    address = parseAddress(listen);
  } catch (err) {
    throw new TealError('TEAL_USAGE', `${flag}: ${(err as Error).message}`);
  }
  await listenOn(server, address).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EADDRINUSE') {
      throw new TealError(
        'TEAL_PORT_IN_USE',
        `cannot listen on ${listen}: the address is in use (EADDRINUSE)`,
        {
          listen,
        },
      );
    }
    throw new TealError('TEAL_PROXY_FAILED', `cannot listen on ${listen}: ${err.code ?? err.message}`, {
      listen,
    });
  });
  return boundAddress(server);
}

function boundAddress(server: net.Server): string {
  const a = server.address() as AddressInfo;
  return endpointText({ host: a.address, port: a.port });
}

/**
 * Refuses to start on an admin socket another data plane answers on (it must not be hijacked),
 * and removes a stale socket file a crashed one left behind.
 */
async function claimAdminSocket(socket: string): Promise<void> {
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw new TealError(
      'TEAL_USAGE',
      `admin socket path ${socket} is too long for a unix socket (over ${MAX_SOCKET_PATH} bytes); use a shorter state dir`,
    );
  }
  // Only our user may be able to create a socket beside ours: else another one could answer first.
  ensurePrivateDir(path.dirname(socket));
  const stat = await lstat(socket).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (stat === null) return;
  if (!stat.isSocket())
    throw new TealError(
      'TEAL_PROXY_FAILED',
      `${socket} exists and is not a socket; remove it or choose another --admin path`,
    );
  try {
    const info = await adminCall<DataPlaneInfo>(socket, 'GET', '/v1/info', { timeoutMs: 2_000 });
    throw new TealError(
      'TEAL_PROXY_FAILED',
      `another data plane (pid ${info.pid}, listening on ${info.listen}) already answers on ${socket}; stop it first or use another --admin path`,
      { pid: info.pid, socket },
    );
  } catch (err) {
    if (!isTealError(err, 'TEAL_PROXY_UNREACHABLE')) throw err;
  }
  await unlink(socket);
}

/**
 * The builtin data plane: the public HTTP server, the routing table it serves, the pools behind it
 * and the admin API that changes them. `teal proxy` runs one per process.
 */
export class DataPlane implements AdminTarget, PlaneContext {
  table: CompiledTable | null = null;
  closing = false;
  private applied: RoutingTable | null = null;
  private readonly pools = new PoolSet();
  readonly connections = new Set<ClientConnection>();
  readonly settings: DataPlaneSettings;
  readonly keeper: ControlPlaneKeeper | undefined;
  readonly trustedProxies: TrustedProxies;
  readonly upstreamErrors: EventLog;
  private readonly server: net.Server;
  /** The preview listener: the same table, but the slot header is honoured (select.ts). */
  private readonly previewServer: net.Server | null;
  private readonly admin: http.Server;
  private readonly opts: DataPlaneOptions;
  private readonly startedAt = new Date().toISOString();
  private readonly version = packageVersion();
  private readonly sweeper: NodeJS.Timeout;
  private saving: Promise<void> = Promise.resolve();
  private bound = '';
  /** Upgraded (websocket) connections: they left `connections` but still hold a socket each. */
  private spliced = 0;
  /** When the cap last refused a newcomer, so the log says so once a second at most. */
  private refusedLogged = 0;
  private previewBound: string | null = null;

  private constructor(opts: DataPlaneOptions, inherited?: net.Server, inheritedPreview?: net.Server | null) {
    this.opts = opts;
    this.keeper = opts.keeper;
    const settings = { ...DEFAULT_SETTINGS, ...opts.settings };
    const cap = connectionCap(settings.maxConnections);
    if (cap < settings.maxConnections) {
      opts.log('limits', {
        message: `maxConnections lowered from ${settings.maxConnections} to ${cap}: the open-file limit (ulimit -n) allows no more`,
      });
      settings.maxConnections = cap;
    }
    this.settings = settings;
    this.trustedProxies = new TrustedProxies(this.settings.trustedProxies);
    this.upstreamErrors = limited(opts.log, UPSTREAM_ERRORS_PER_SECOND);
    this.server = inherited ?? net.createServer({ noDelay: true });
    this.server.on('connection', (socket: Socket) => this.accept(socket, 'public'));
    this.previewServer =
      inheritedPreview ?? (opts.previewListen ? net.createServer({ noDelay: true }) : null);
    this.previewServer?.on('connection', (socket: Socket) => this.accept(socket, 'preview'));
    this.admin = createAdminServer(this, opts.log);
    // One timer for every deadline (idle clients, slow heads, connect and response timeouts, idle
    // upstream connections), instead of timers per request.
    let retentionSweep = Date.now();
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const c of this.connections) c.sweep(now);
      for (const pool of this.pools.all()) pool.sweep(now);
      if (now - retentionSweep > 30_000) {
        retentionSweep = now;
        this.pools.sweep(now);
      }
    }, sweepInterval(this.settings)).unref();
  }

  private readonly accept = (socket: Socket, listener: Listener): void => {
    if (this.connections.size + this.spliced >= this.settings.maxConnections && !this.makeRoom()) {
      this.refuse(socket);
      return;
    }
    new ClientConnection(this, socket, listener);
  };

  /**
   * At the cap: closes the connections idle the longest (up to ROOM_BATCH, so a flood does not
   * scan every connection for each newcomer), as nginx reuses its idle keep-alive connections when
   * worker_connections run out. Returns false when none is idle: every connection is serving.
   */
  private makeRoom(): boolean {
    const oldest: ClientConnection[] = [];
    const since: number[] = [];
    for (const c of this.connections) {
      const t = c.idleSince();
      if (t === 0 || (oldest.length === ROOM_BATCH && t >= since[ROOM_BATCH - 1]!)) continue;
      let i = oldest.length === ROOM_BATCH ? ROOM_BATCH - 1 : oldest.length;
      while (i > 0 && since[i - 1]! > t) {
        oldest[i] = oldest[i - 1]!;
        since[i] = since[i - 1]!;
        i--;
      }
      oldest[i] = c;
      since[i] = t;
    }
    // Closed now, not after a linger: the newcomer takes the place at once.
    for (const c of oldest) c.destroy();
    for (const c of oldest) this.connections.delete(c);
    return oldest.length > 0;
  }

  /**
   * Every connection is serving a request: the newcomer gets 503 and a close, rather than a reset,
   * so it knows to come back (Retry-After) and a load balancer in front tries another instance.
   */
  private refuse(socket: Socket): void {
    socket.on('error', () => socket.destroy());
    socket.end(
      plainResponse(
        503,
        'the data plane is at its connection limit; try again shortly',
        'none',
        true,
      ).replace('\r\n', '\r\nretry-after: 1\r\n'),
      'latin1',
    );
    // Read and drop what it sends so the close does not reset the answer; cut it soon regardless.
    socket.resume();
    setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref();
    const now = Date.now();
    if (now - this.refusedLogged >= 1_000) {
      this.refusedLogged = now;
      this.opts.log('limits', {
        message: `refused a connection: all ${this.settings.maxConnections} connections are busy (proxy.limits.maxConnections)`,
        client: socket.remoteAddress ?? null,
      });
    }
  }

  /**
   * Starts serving: the saved table at once if there is one, then the public port and the preview
   * listener, then the admin socket.
   */
  static async start(opts: DataPlaneOptions): Promise<DataPlane> {
    selfCheck();
    for (const [flag, listen] of [
      ['--listen', opts.listen],
      ['--preview-listen', opts.previewListen],
    ] as const) {
      try {
        if (listen !== undefined) parseAddress(listen);
      } catch (err) {
        throw new TealError('TEAL_USAGE', `${flag}: ${(err as Error).message}`);
      }
    }
    await claimAdminSocket(opts.admin);
    const plane = new DataPlane(opts);
    try {
      await plane.restore();
      plane.bound = await bindListener(plane.server, opts.listen, '--listen');
      if (plane.previewServer && opts.previewListen !== undefined)
        plane.previewBound = await bindListener(plane.previewServer, opts.previewListen, '--preview-listen');
      await listenOn(plane.admin, opts.admin);
      await chmod(opts.admin, 0o600);
    } catch (err) {
      await plane.close(0);
      throw err;
    }
    return plane;
  }

  /**
   * Starts on the listening socket of the data plane it replaces, with that one's table: both
   * accept connections until the old one stops, so no connection is ever refused. The admin socket
   * is bound later (`bindAdmin`), once the old data plane has let go of it.
   */
  static async adopt(
    opts: DataPlaneOptions,
    listeners: { public: net.Server; preview: net.Server | null },
    table: RoutingTable | null,
  ): Promise<DataPlane> {
    selfCheck();
    const plane = new DataPlane(opts, listeners.public, listeners.preview);
    if (table) plane.install(table);
    else await plane.restore();
    plane.bound = boundAddress(listeners.public);
    if (listeners.preview) plane.previewBound = boundAddress(listeners.preview);
    else if (plane.previewServer && opts.previewListen !== undefined) {
      // A predecessor without a preview listener: this one binds it.
      plane.previewBound = await bindListener(plane.previewServer, opts.previewListen, '--preview-listen');
    }
    return plane;
  }

  async bindAdmin(): Promise<void> {
    await claimAdminSocket(this.opts.admin);
    await listenOn(this.admin, this.opts.admin);
    await chmod(this.opts.admin, 0o600);
  }

  /** The listening sockets, for a successor to adopt. */
  get listeners(): { public: net.Server; preview: net.Server | null } {
    return { public: this.server, preview: this.previewServer };
  }

  /** Stops accepting user connections; those already open carry on. */
  stopAccepting(): void {
    this.server.close();
    this.previewServer?.close();
  }

  /** Lets go of the admin socket path (a successor binds it); admin requests in progress finish. */
  releaseAdmin(): void {
    // close() stops listening (and removes the socket file) at once; its callback would wait for the
    // admin connections still open, among them the handoff request itself.
    if (this.admin.listening) this.admin.close();
  }

  handoff(settings?: Partial<DataPlaneSettings>): Promise<HandoffResult> {
    if (!this.opts.handoff) {
      return Promise.reject(
        new TealError(
          'TEAL_BAD_REQUEST',
          'this data plane was not started as `teal proxy`; it cannot hand off',
        ),
      );
    }
    return this.opts.handoff(settings);
  }

  /**
   * After a handoff: every connection closes after its next response (Connection: close), so
   * clients move to the successor without a failed request; connections idle through the whole
   * grace, and anything still running then, are closed.
   */
  async retire(graceMs: number): Promise<void> {
    this.closing = true;
    const deadline = performance.now() + graceMs;
    while (this.connections.size > 0 && performance.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    await this.close(0);
  }

  private async restore(): Promise<void> {
    try {
      const saved = await loadTable(this.opts.state);
      if (saved) this.install(saved);
    } catch (err) {
      // A damaged state file must not keep the data plane down: start empty, the control plane re-applies.
      this.opts.log('error', { where: 'restore', state: this.opts.state, message: toTealError(err).message });
    }
  }

  /** The swap: one new immutable routing structure replaces the old in one assignment. */
  private install(table: RoutingTable): void {
    const pools = this.pools.adopt(table);
    this.table = compileTable(table, pools);
    this.applied = table;
  }

  route(req: RequestHead, listener: Listener): PoolRuntime | Refusal {
    return selectPool(this.table, req, listener);
  }

  upgrade(req: RequestHead, socket: Socket, head: Buffer, listener: Listener): void {
    this.spliced++;
    socket.once('close', () => this.spliced--);
    forwardUpgrade(
      selectPool(this.table, req, listener),
      req,
      socket,
      head,
      this.settings,
      this.upstreamErrors,
    );
  }

  info(): DataPlaneInfo {
    return {
      pid: process.pid,
      listen: this.bound,
      requestedListen: this.opts.listen,
      preview: this.previewBound,
      requestedPreview: this.opts.previewListen ?? null,
      revision: this.applied?.revision ?? null,
      startedAt: this.startedAt,
      version: this.version,
    };
  }

  currentTable(): RoutingTable | null {
    return this.applied;
  }

  async apply(table: RoutingTable): Promise<void> {
    this.install(table);
    this.opts.log('apply', {
      revision: table.revision,
      services: table.services.map((s) => ({
        service: s.service,
        live: s.live?.id ?? null,
        preview: s.preview?.id ?? null,
      })),
    });
    // Saves run one after another so the file ends with the last table applied.
    const save = this.saving.then(() => saveTable(this.opts.state, table));
    this.saving = save.catch(() => undefined);
    try {
      await save;
    } catch (err) {
      throw new TealError(
        'TEAL_PROXY_FAILED',
        `applied revision ${table.revision} but could not save it to ${this.opts.state}: ${toTealError(err).message}`,
      );
    }
  }

  stats(): TrafficStats {
    return { revision: this.applied?.revision ?? 0, pools: this.pools.all().map((p) => p.stats()) };
  }

  async drain(poolId: string, timeoutMs: number, signal?: AbortSignal): Promise<DrainResult> {
    const started = performance.now();
    const pool = this.pools.get(poolId);
    // A pool this data plane never served (or forgot long ago) has nothing in flight here.
    if (!pool) return { drained: true, remaining: 0, waitedMs: 0 };
    if (pool.inTable) {
      throw new TealError(
        'TEAL_BAD_REQUEST',
        `pool ${poolId} is still in the routing table (revision ${this.applied?.revision}); apply a table without it first`,
      );
    }
    const idle = await pool.waitIdle(timeoutMs, signal);
    const waitedMs = Math.round(performance.now() - started);
    let result: DrainResult;
    if (idle) result = { drained: true, remaining: 0, waitedMs };
    else if (pool.inTable) {
      // Switched back to while draining (a rollback): it is serving again, cut nothing.
      result = { drained: false, remaining: pool.busy, waitedMs };
    } else result = { drained: false, remaining: pool.destroyFlights(), waitedMs };
    if (!pool.inTable) {
      pool.closeAgents();
      pool.drainedAt = Date.now();
    }
    this.opts.log('drain', { pool: poolId, ...result });
    return result;
  }

  /**
   * Stops accepting, lets requests in flight finish for up to `graceMs`, then cuts what is left
   * (streams included) and closes the admin socket.
   */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    const stopped = Promise.all(
      [this.server, this.previewServer].map(
        (server) =>
          new Promise<void>((resolve) => {
            if (server?.listening) server.close(() => resolve());
            else resolve();
          }),
      ),
    );
    const deadline = performance.now() + graceMs;
    const inFlight = () => this.pools.all().reduce((n, p) => n + p.inFlight, 0);
    while (inFlight() > 0 && performance.now() < deadline) {
      for (const c of this.connections) c.closeWhenIdle();
      await new Promise((r) => setTimeout(r, 25));
    }
    this.pools.destroyAll();
    for (const c of this.connections) c.destroy();
    await stopped;
    if (this.admin.listening) {
      await new Promise<void>((resolve) => {
        this.admin.close(() => resolve());
        this.admin.closeAllConnections();
      });
    }
    await this.saving;
  }
}
