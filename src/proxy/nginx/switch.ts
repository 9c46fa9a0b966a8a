import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TealError } from '../../core/errors.js';
import { writeJsonAtomic } from '../../files.js';
import { pidAlive } from '../../proc.js';
import { loadTable } from '../builtin/state-file.js';
import type { DrainResult, Pool, RoutingTable, TrafficStats, TrafficSwitch } from '../switch.js';
import { AccessLogStats, type PoolIdentity } from './access-log.js';
import { runCommand } from './command.js';
import { ConfigFile } from './config-file.js';
import { DEFAULT_TEMPLATE } from './default-template.js';
import { buildView, renderTemplate } from './render.js';
import { filePath, listenAddress } from './validate.js';
import { clientConnections, readMasterPid, workersOf } from './workers.js';

export interface NginxSwitchOptions {
  /** The file teal writes, which nginx includes in its `http` block (`include .../teal.conf;`). */
  configFile: string;
  /** A Mustache template file of the user's (docs/nginx.md); teal's DEFAULT_TEMPLATE when absent. */
  template?: string;
  /** Checks the whole nginx config with the new file in place: `nginx -t -q` by default. */
  check: string;
  /** Makes nginx load it: `nginx -s reload` by default (or `systemctl reload nginx`). */
  reload: string;
  /** nginx's pid file (its `pid` directive): the master whose workers apply and drain watch. */
  pidFile: string;
  /** Where the rendered servers listen: `host:port`. */
  listen: string;
  /** Where the preview servers listen (X-Teal-Slot chooses the slot there); none when absent. */
  previewListen?: string;
  /** Where the applied table is kept, so `current()` survives a control-plane restart. */
  stateDir: string;
  /** The access log the template writes in the `teal_access` format; stats are read from it. */
  accessLog: string;
  /** `proxy.trustedProxies`: peers whose forwarded headers are kept (none by default). */
  trustedProxies?: readonly string[];
  /** How long check and reload commands may take (default 30 s). */
  commandTimeoutMs?: number;
  /** How long nginx may take to retire its old workers after a reload (default 10 s). */
  reloadTimeoutMs?: number;
}

interface Job {
  table: RoutingTable;
  waiters: { resolve(): void; reject(err: unknown): void }[];
}

const POLL_MS = 10;

/**
 * The TrafficSwitch for an nginx the user runs, done the way confd does it and then some: the
 * whole table is rendered from a template into one file nginx includes, staged beside it, checked
 * with `nginx -t`, renamed into place keeping a `.bak`, and loaded with a reload. A failed check
 * or reload puts the `.bak` back, so the file always says what nginx serves.
 *
 * One render and reload runs at a time; tables that arrive meanwhile are coalesced, and only the
 * newest is rendered next (every caller waiting on it resolves with it). A table that renders to
 * the same text as the file in place (a new revision, same routes) reloads nothing.
 *
 * `apply` resolves once every worker of the old config has been told to quit: from then on new
 * connections and requests meet only the new config. What an old worker still holds (a slow
 * request, a websocket) it finishes, which is what `drain` waits for. A reload costs nginx a few
 * kept-alive requests (an old worker closes idle connections as a request may be arriving on
 * one); the builtin data plane and haproxy switch without that loss.
 */
export class NginxSwitch implements TrafficSwitch {
  readonly kind = 'nginx';
  /** The file teal writes (options.configFile). */
  readonly configFile: string;
  private readonly file: ConfigFile;
  private readonly stateFile: string;
  private readonly stats_: AccessLogStats;
  /** The public and preview ports: a drain counts the client connections old workers hold on them. */
  private readonly listenPorts: number[];
  private template = DEFAULT_TEMPLATE;
  private table: RoutingTable | null = null;
  private queued: Job | null = null;
  private running = false;
  /** Pools taken out of the table, and the workers that served them and may still hold requests. */
  private readonly retired = new Map<string, { identity: PoolIdentity; workers: number[] }>();

  private constructor(private readonly options: NginxSwitchOptions) {
    this.configFile = options.configFile;
    this.file = new ConfigFile(options.configFile);
    this.stateFile = path.join(options.stateDir, 'nginx-table.json');
    this.stats_ = new AccessLogStats(filePath(options.accessLog, 'proxy.accessLog'));
    const portOf = (a: string) => Number(a.slice(a.lastIndexOf(':') + 1));
    this.listenPorts = [options.listen, options.previewListen]
      .filter((a): a is string => a !== undefined)
      .map((a) => portOf(listenAddress(a)));
  }

  /** Reads the template (rendering it once, so a broken one fails here), the applied table and the log's end. */
  static async open(options: NginxSwitchOptions): Promise<NginxSwitch> {
    const sw = new NginxSwitch(options);
    if (options.template) {
      try {
        sw.template = await readFile(options.template, 'utf8');
      } catch (err) {
        throw new TealError(
          'TEAL_CONFIG_INVALID',
          `cannot read the nginx template ${options.template}: ${(err as Error).message}`,
          { template: options.template },
        );
      }
    }
    sw.render({ revision: 0, services: [] });
    sw.table = await loadTable(sw.stateFile);
    await sw.stats_.start();
    return sw;
  }

  /** The config file's text for this table. */
  render(table: RoutingTable): string {
    const view = buildView(table, {
      listen: this.options.listen,
      ...(this.options.previewListen === undefined ? {} : { previewListen: this.options.previewListen }),
      accessLog: this.options.accessLog,
      stateDir: this.options.stateDir,
      trustedProxies: this.options.trustedProxies ?? [],
    });
    return renderTemplate(this.template, view, this.options.template ?? 'teal default template');
  }

  apply(table: RoutingTable, options?: { signal?: AbortSignal }): Promise<void> {
    options?.signal?.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      if (this.queued) this.queued.table = table;
      else this.queued = { table, waiters: [] };
      this.queued.waiters.push({ resolve, reject });
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.running || !this.queued) return;
    const job = this.queued;
    this.queued = null;
    this.running = true;
    try {
      await this.applyNow(job.table);
      for (const w of job.waiters) w.resolve();
    } catch (err) {
      for (const w of job.waiters) w.reject(err);
    } finally {
      this.running = false;
      void this.pump();
    }
  }

  private async applyNow(table: RoutingTable): Promise<void> {
    const text = this.render(table);
    if ((await this.file.read()) !== text) {
      const master = await readMasterPid(this.options.pidFile);
      const undo = await this.file.replace(text);
      try {
        await this.command('check', this.options.check);
        const before = workersOf(master)
          .filter((w) => !w.retiring)
          .map((w) => w.pid);
        await this.command('reload', this.options.reload);
        await this.waitForNewWorkers(master, before);
        this.retire(table, before);
      } catch (err) {
        await undo();
        throw err;
      }
    }
    this.table = table;
    await writeJsonAtomic(this.stateFile, table);
  }

  private command(what: string, command: string) {
    return runCommand(
      what,
      command,
      { TEAL_NGINX_CONFIG: this.options.configFile },
      this.options.commandTimeoutMs ?? 30_000,
    );
  }

  /**
   * A reload is a signal; nginx answers it by starting new workers and telling the old ones to
   * quit. Done when none of `before` serves any more and a new worker does. If nginx could not
   * load the file (a port it cannot bind), the old workers simply go on: that is a timeout here.
   */
  private async waitForNewWorkers(master: number, before: number[]): Promise<void> {
    const timeoutMs = this.options.reloadTimeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const now = workersOf(master);
      const oldServing = now.some((w) => !w.retiring && before.includes(w.pid));
      const newServing = now.some((w) => !w.retiring && !before.includes(w.pid));
      if (!oldServing && newServing) return;
      if (!pidAlive(master))
        throw new TealError('TEAL_PROXY_FAILED', `nginx (pid ${master}) exited during the reload`, {
          master,
        });
      if (Date.now() > deadline)
        throw new TealError(
          'TEAL_PROXY_FAILED',
          `nginx did not load the new config within ${timeoutMs} ms of the reload: its old workers still serve (nginx's error log says why; the previous ${this.options.configFile} was put back)`,
          { master, configFile: this.options.configFile },
        );
      await sleep(POLL_MS);
    }
  }

  /** Pools the new table no longer has were served by the workers now retiring. */
  private retire(next: RoutingTable, workers: number[]): void {
    const kept = new Set(poolsOf(next).map((p) => p.id));
    for (const p of poolsOf(this.table)) {
      if (kept.has(p.id)) continue;
      const seen = this.retired.get(p.id);
      this.retired.set(p.id, {
        identity: identityOf(p),
        workers: [...new Set([...(seen?.workers ?? []), ...workers])],
      });
    }
    for (const id of kept) this.retired.delete(id);
  }

  async current(): Promise<RoutingTable | null> {
    return this.table;
  }

  async stats(): Promise<TrafficStats> {
    const known = new Map<string, PoolIdentity>();
    for (const p of poolsOf(this.table)) known.set(p.id, identityOf(p));
    for (const [id, r] of this.retired) if (!known.has(id)) known.set(id, r.identity);
    return { revision: this.table?.revision ?? 0, pools: await this.stats_.poolStats(known) };
  }

  /**
   * Waits for the old workers that served the pool to finish what they hold and exit. At the
   * timeout they are told to stop at once (SIGTERM: an nginx worker then closes its connections),
   * which also cuts whatever else those workers still carried from before the switch.
   */
  async drain(poolId: string, options: { timeoutMs: number; signal?: AbortSignal }): Promise<DrainResult> {
    const started = Date.now();
    const master = await readMasterPid(this.options.pidFile);
    const recorded = this.retired.get(poolId)?.workers;
    // A pool retired by an earlier control plane: every retiring worker may hold some of it.
    const candidates = recorded ?? workersOf(master).map((w) => w.pid);
    const holding = () =>
      workersOf(master)
        .filter((w) => w.retiring && candidates.includes(w.pid))
        .map((w) => w.pid);
    for (;;) {
      const left = holding();
      if (left.length === 0) {
        this.forget(poolId);
        return { drained: true, remaining: 0, waitedMs: Date.now() - started };
      }
      if (Date.now() - started >= options.timeoutMs || options.signal?.aborted) {
        const remaining = this.listenPorts.reduce((n, port) => n + clientConnections(left, port), 0);
        for (const pid of left) {
          try {
            process.kill(pid, 'SIGTERM');
          } catch {}
        }
        this.forget(poolId);
        return { drained: false, remaining, waitedMs: Date.now() - started };
      }
      await sleep(POLL_MS);
    }
  }

  private forget(poolId: string): void {
    this.retired.delete(poolId);
  }

  async close(): Promise<void> {
    // Nothing held open between calls: nginx keeps serving what it has.
  }
}

function poolsOf(table: RoutingTable | null): Pool[] {
  const out: Pool[] = [];
  for (const s of table?.services ?? []) {
    if (s.live) out.push(s.live);
    if (s.preview) out.push(s.preview);
  }
  return out;
}

function identityOf(p: Pool): PoolIdentity {
  return { service: p.service, slot: p.slot, release: p.release };
}
