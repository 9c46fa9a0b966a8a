import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTealError, TealError } from '../../core/errors.js';
import { writeTextAtomic } from '../../files.js';
import type { DrainResult, PoolStats, RoutingTable, TrafficStats, TrafficSwitch } from '../switch.js';
import { DEFAULT_PREFIX, laneBackend, laneOf, ringName, serverName, stateFiles } from './base-config.js';
import { type LaneRecord, planApply } from './plan.js';
import { backendsNamed, checkTable, type MapEntry, mapFileText, poolsOf } from './routing-map.js';
import { RuntimeApi } from './runtime-api.js';
import {
  ADMIN_DRAIN,
  ADMIN_MAINT,
  type HaproxyInfo,
  parseInfo,
  parseMap,
  parseRequestLines,
  parseServersState,
  parseStat,
  tunnelsPerBackend,
} from './show.js';
import { loadState, type SwitchState, saveState } from './state.js';
import { type Counters, countersOf, LatencyBook, poolStats, since, ZERO } from './stats.js';

/** haproxy reads the map and server-state files, often as another user than teal. */
const HAPROXY_READABLE = 0o644;

export interface HaproxySwitchOptions {
  /**
   * Path of haproxy's admin socket (`stats socket <path> level admin` in its global section): every
   * read and change goes through haproxy's runtime API on it.
   */
  socket: string;
  /**
   * A directory the switch keeps for this haproxy, the one the base config was rendered with:
   * `applied.json` (the applied table, which pool each lane holds, counter baselines: current()
   * survives a control-plane restart and is null before the first apply), and `routes.map` and
   * `servers.state`, rewritten after every change, which haproxy loads when it (re)starts.
   */
  stateDir: string;
  /** The prefix the base config was rendered with (`<prefix>_lane_<n>` backends). Default `teal`. */
  prefix?: string;
  /** How often drain() asks haproxy how many sessions the pool still has. Default 20 ms. */
  drainPollMs?: number;
}

/** haproxy's `add map` payload must fit the CLI's buffer (16 kB by default): send it in parts. */
const PAYLOAD_BYTES = 8_000;
/** How long stats() waits for log lines of requests that haproxy counted but has not logged yet. */
const LOG_CATCH_UP_TRIES = 5;
const LOG_CATCH_UP_MS = 10;

interface Snapshot {
  info: HaproxyInfo;
  process: string;
  rows: Record<string, string>[];
}

/**
 * The TrafficSwitch of haproxy, driven through its runtime API: no reload, no config file
 * rewritten under it. haproxy runs a base config (base-config.ts) of lanes (backends of server
 * slots) and routes through one map; an apply addresses and enables the lanes of the table's pools
 * (`set server ... addr`, `state ready`) and then replaces the map in one `commit map`, which is
 * the switch itself. Capacity (lanes, server slots) is read from the running haproxy.
 *
 * @example
 *   const sw = new HaproxySwitch({ socket: '/run/haproxy/admin.sock', stateDir: '.teal/haproxy' });
 *   await sw.apply(table); // new requests use `table` once this resolves
 */
export class HaproxySwitch implements TrafficSwitch {
  readonly kind = 'haproxy';
  readonly socket: string;
  readonly stateDir: string;
  readonly prefix: string;
  private readonly api: RuntimeApi;
  private readonly files: ReturnType<typeof stateFiles>;
  private readonly drainPollMs: number;
  private readonly latency = new LatencyBook();
  /** Lanes a drain is waiting on: no apply gives them to another pool meanwhile. */
  private readonly draining = new Set<number>();
  /** Deficits of log lines already waited for once (lines lost to a full ring are not waited for again). */
  private readonly unlogged = new Map<string, number>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: HaproxySwitchOptions) {
    this.socket = options.socket;
    this.stateDir = options.stateDir;
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.drainPollMs = options.drainPollMs ?? 20;
    this.api = new RuntimeApi(options.socket);
    this.files = stateFiles(options.stateDir);
  }

  async apply(table: RoutingTable, options?: { signal?: AbortSignal }): Promise<void> {
    checkTable(table);
    const signal = options?.signal;
    await this.exclusive(async () => {
      signal?.throwIfAborted();
      const state = await loadState(this.files.applied);
      const snap = await this.snapshot();
      const servers = parseServersState(await this.api.run('show servers state', 'data'));
      const live = parseMap(await this.showMap());
      const plan = planApply({
        table,
        prefix: this.prefix,
        records: this.recordsFor(state, snap.process),
        capacity: this.capacity(snap.rows),
        referenced: backendsNamed(live),
        draining: this.draining,
        servers,
        counters: this.laneCounters(snap.rows),
        cumulativeRequests: snap.info.cumulativeRequests,
        now: Date.now(),
      });
      for (const command of plan.commands) {
        signal?.throwIfAborted();
        await this.api.run(command, 'empty');
      }
      signal?.throwIfAborted();
      await this.replaceMap(plan.entries);
      // haproxy serves the table from here on; what follows records it.
      await saveState(this.files.applied, { version: 1, table, lanes: plan.records, process: snap.process });
      await writeTextAtomic(this.files.map, mapFileText(plan.entries), HAPROXY_READABLE);
      await this.saveServerState();
    });
  }

  async current(): Promise<RoutingTable | null> {
    const state = await loadState(this.files.applied);
    if (state.table === null) return null;
    // The table counts as served only if haproxy has it: a haproxy started afresh (without the
    // state dir's files) or changed by hand serves something else, and the daemon must apply again.
    const revision = parseMap(await this.showMap()).find((e) => e.key === 'T')?.value;
    if (revision !== String(state.table.revision)) return null;
    const servers = new Map(
      parseServersState(await this.api.run('show servers state', 'data')).map((s) => [
        `${s.backend}/${s.server}`,
        s,
      ]),
    );
    for (const pool of poolsOf(state.table)) {
      const record = state.lanes.find((r) => r.pool.id === pool.id);
      if (!record) return null;
      const ok = pool.endpoints.every((e, i) => {
        const s = servers.get(`${laneBackend(this.prefix, record.lane)}/${serverName(i + 1)}`);
        return s && s.port === e.port && s.addr === e.host && (s.admin & (ADMIN_MAINT | ADMIN_DRAIN)) === 0;
      });
      if (!ok) return null;
    }
    return state.table;
  }

  async stats(): Promise<TrafficStats> {
    const state = await loadState(this.files.applied);
    let snap = await this.snapshot();
    const records = this.recordsFor(state, snap.process);
    const present = new Set(this.capacity(snap.rows).lanes);
    const held = records.filter((r) => present.has(r.lane));
    this.latency.forProcess(snap.process);
    await this.readRing(held);

    // haproxy counts a request when it starts and logs it when it ends: a request that just ended
    // may be counted but not yet in the ring. Wait a little for such lines, once per deficit.
    for (let i = 0; i < LOG_CATCH_UP_TRIES; i++) {
      const waiting = held.filter((r) => {
        const deficit = this.deficit(r, snap.rows);
        return deficit > 0 && deficit !== this.unlogged.get(r.pool.id);
      });
      if (waiting.length === 0) break;
      await sleep(LOG_CATCH_UP_MS);
      snap = await this.snapshot();
      await this.readRing(held);
      if (i === LOG_CATCH_UP_TRIES - 1)
        for (const r of waiting) this.unlogged.set(r.pool.id, this.deficit(r, snap.rows));
    }

    const sessions = this.laneSessions(snap.rows);
    const busy = held.some((r) => (sessions.get(r.lane) ?? 0) > 0);
    const tunnels = busy ? tunnelsPerBackend(await this.api.run('show sess all', 'data')) : new Map();
    const counters = this.laneCounters(snap.rows);
    const pools: PoolStats[] = held.map((r) =>
      poolStats(
        r,
        counters.get(r.lane) ?? ZERO,
        {
          sessions: sessions.get(r.lane) ?? 0,
          tunnels: tunnels.get(laneBackend(this.prefix, r.lane)) ?? 0,
        },
        this.latency.summary(r.pool.id),
      ),
    );
    this.latency.keepOnly(new Set(held.map((r) => r.pool.id)));
    return { revision: state.table?.revision ?? 0, pools };
  }

  async drain(poolId: string, options: { timeoutMs: number; signal?: AbortSignal }): Promise<DrainResult> {
    const started = performance.now();
    const state = await loadState(this.files.applied);
    if (state.table && poolsOf(state.table).some((p) => p.id === poolId))
      throw new TealError(
        'TEAL_PROXY_FAILED',
        `pool ${poolId} is still in the routing table: apply a table without it before draining it`,
        { pool: poolId },
      );
    const record = state.lanes.find((r) => r.pool.id === poolId);
    if (!record) return { drained: true, remaining: 0, waitedMs: 0 };
    const backend = laneBackend(this.prefix, record.lane);
    this.draining.add(record.lane);
    try {
      let open = await this.openSessions(backend);
      while (open.total > 0 && performance.now() - started < options.timeoutMs) {
        const left = options.timeoutMs - (performance.now() - started);
        await sleep(Math.max(1, Math.min(this.drainPollMs, left)), undefined, { signal: options.signal });
        open = await this.openSessions(backend);
      }
      if (open.total > 0)
        for (const server of open.servers)
          await this.api.run(`shutdown sessions server ${backend}/${server}`, 'empty');
      await this.exclusive(async () => {
        // Nothing may reach the drained pool's servers any more, unless it came back meanwhile (a rollback).
        const now = await loadState(this.files.applied);
        const held = now.lanes.find((r) => r.lane === record.lane);
        if (held?.pool.id !== poolId || (now.table && poolsOf(now.table).some((p) => p.id === poolId)))
          return;
        for (let slot = 1; slot <= held.pool.endpoints.length; slot++)
          await this.api.run(`set server ${backend}/${serverName(slot)} state maint`, 'empty');
        held.drainedAt = Date.now();
        await saveState(this.files.applied, now);
        await this.saveServerState();
      });
      return {
        drained: open.total === 0,
        remaining: open.total,
        waitedMs: Math.round(performance.now() - started),
      };
    } finally {
      this.draining.delete(record.lane);
    }
  }

  /** Waits for a change in progress; haproxy keeps serving, nothing is held between calls. */
  async close(): Promise<void> {
    await this.queue;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async snapshot(): Promise<Snapshot> {
    const info = parseInfo(await this.api.run('show info', 'data'));
    const rows = parseStat(await this.api.run('show stat', 'data'));
    return { info, process: `${info.pid}@${info.startedAt}`, rows };
  }

  /** The records with their baselines valid for this haproxy process (a restarted one counts from zero). */
  private recordsFor(state: SwitchState, process: string): LaneRecord[] {
    if (state.process === process) return state.lanes;
    return state.lanes.map((r) => ({ ...r, baseline: ZERO, fromRequest: 0 }));
  }

  private capacity(rows: Record<string, string>[]): { lanes: number[]; servers: number } {
    const lanes: number[] = [];
    const servers = new Map<string, number>();
    for (const row of rows) {
      const px = row.pxname ?? '';
      if (laneOf(this.prefix, px) === undefined) continue;
      if (row.svname === 'BACKEND') lanes.push(laneOf(this.prefix, px)!);
      else if (row.svname !== 'FRONTEND') servers.set(px, (servers.get(px) ?? 0) + 1);
    }
    const counts = lanes.map((l) => servers.get(laneBackend(this.prefix, l)) ?? 0);
    return { lanes: lanes.sort((a, b) => a - b), servers: counts.length ? Math.min(...counts) : 0 };
  }

  private laneRows(rows: Record<string, string>[]): Map<number, Record<string, string>> {
    const out = new Map<number, Record<string, string>>();
    for (const row of rows) {
      const lane = laneOf(this.prefix, row.pxname ?? '');
      if (lane !== undefined && row.svname === 'BACKEND') out.set(lane, row);
    }
    return out;
  }

  private laneCounters(rows: Record<string, string>[]): Map<number, Counters> {
    return new Map([...this.laneRows(rows)].map(([lane, row]) => [lane, countersOf(row)]));
  }

  private laneSessions(rows: Record<string, string>[]): Map<number, number> {
    return new Map([...this.laneRows(rows)].map(([lane, row]) => [lane, Number(row.scur || 0)]));
  }

  /** Requests haproxy counted for the pool, ended, and not (yet) seen in the ring. */
  private deficit(record: LaneRecord, rows: Record<string, string>[]): number {
    const counted = since(this.laneCounters(rows).get(record.lane) ?? ZERO, record.baseline).requests;
    const open = this.laneSessions(rows).get(record.lane) ?? 0;
    return counted - open - this.latency.count(record.pool.id);
  }

  private async readRing(records: LaneRecord[]): Promise<void> {
    const text = await this.api.run(`show events ${ringName(this.prefix)}`, 'any');
    this.latency.ingest(parseRequestLines(text), records, this.prefix);
  }

  private async openSessions(backend: string): Promise<{ total: number; servers: string[] }> {
    const rows = parseStat(await this.api.run('show stat', 'data')).filter((r) => r.pxname === backend);
    const total = Number(rows.find((r) => r.svname === 'BACKEND')?.scur || 0);
    const servers = rows
      .filter((r) => r.svname !== 'BACKEND' && r.svname !== 'FRONTEND' && Number(r.scur || 0) > 0)
      .map((r) => r.svname!);
    return { total, servers };
  }

  private async showMap(): Promise<string> {
    try {
      return await this.api.run(`show map ${this.files.map}`, 'any');
    } catch (err) {
      if (isTealError(err, 'TEAL_PROXY_FAILED') && /Unknown map/.test(String(err.details?.answer)))
        throw new TealError(
          'TEAL_PROXY_FAILED',
          `haproxy on ${this.socket} has no map ${this.files.map}: start it with the base config rendered for ` +
            `stateDir ${this.stateDir} (docs/haproxy.md)`,
          { socket: this.socket, map: this.files.map, answer: err.details?.answer },
          { cause: err },
        );
      throw err;
    }
  }

  /** Replaces the whole routes map in one commit: `prepare`, `add` to the new version, `commit`. */
  private async replaceMap(entries: MapEntry[]): Promise<void> {
    const map = this.files.map;
    const prepared = await this.api.run(`prepare map ${map}`, 'empty');
    const version = /New version created: (\d+)/.exec(prepared)?.[1];
    if (version === undefined)
      throw new TealError(
        'TEAL_PROXY_FAILED',
        `haproxy answered "prepare map ${map}" with: ${prepared.trim()}`,
        {
          command: `prepare map ${map}`,
          answer: prepared.trim(),
        },
      );
    let part = '';
    for (const line of mapFileText(entries).split(/(?<=\n)/)) {
      if (part.length + line.length > PAYLOAD_BYTES) {
        await this.api.run(`add map @${version} ${map} <<\n${part}\n`, 'empty');
        part = '';
      }
      part += line;
    }
    if (part !== '') await this.api.run(`add map @${version} ${map} <<\n${part}\n`, 'empty');
    // haproxy drops a payload that overflows its buffer without a word: check the version is whole
    // before it becomes the live one.
    const staged = parseMap(await this.api.run(`show map @${version} ${map}`, 'any'));
    if (staged.length !== entries.length)
      throw new TealError(
        'TEAL_PROXY_FAILED',
        `haproxy took ${staged.length} of the ${entries.length} routes map entries sent to version ${version} ` +
          `of ${map}; the live map is unchanged`,
        { map, version, expected: entries.length, got: staged.length },
      );
    await this.api.run(`commit map @${version} ${map}`, 'empty');
  }

  private async saveServerState(): Promise<void> {
    await writeTextAtomic(
      this.files.serverState,
      await this.api.run('show servers state', 'data'),
      HAPROXY_READABLE,
    );
  }
}
