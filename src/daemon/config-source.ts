import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { type LoadedConfig, loadConfigText } from '../core/config/load.js';
import { type ConfigStamp, planReload } from '../core/config/reload.js';
import type { TealConfig } from '../core/config/schema.js';
import type { Logger } from '../core/deps.js';
import { TealError, toTealError } from '../core/errors.js';
import { readServiceState } from '../core/records.js';
import type { TableSync } from '../core/table.js';
import type { Store } from '../stores/store.js';

/** What `POST /v1/config/reload` (and SIGHUP, and each deploy) did with the file. */
export interface ReloadReport {
  file: string;
  sha256: string;
  /** False when the file was the one already applied: nothing was done. */
  changed: boolean;
  /** Applied now: "services.web.routes", "proxy.timeouts". */
  live: string[];
  /** Taken by the next deploy of that service: "services.web.env". */
  nextDeploy: string[];
  /** Changed in the file, kept as running until teal up restarts: "api.listen". */
  needsRestart: string[];
}

/** `GET /v1/config`: the file applied, the file on disk, and whether they differ. */
export interface ConfigState {
  file: string;
  applied: ConfigStamp & { appliedAt: string };
  /** The file as it is now; `error` when it cannot be read or does not validate. */
  onDisk: { sha256: string | null; mtime: string | null; error?: string };
  /** The file on disk is not the one applied: `teal reload` (or the next deploy) applies it. */
  differs: boolean;
  /** Applied from the file but waiting for a restart of teal up (they keep their running values). */
  needsRestart: string[];
}

export interface ConfigSourceWiring {
  store: Store;
  tables: TableSync;
  /** Hands changed proxy settings to the data plane; absent when the switch cannot take them live. */
  reconfigureProxy?: (proxy: TealConfig['proxy']) => Promise<void>;
}

/**
 * The control plane's teal.yml: read at start, and again on SIGHUP, `teal reload` and each deploy
 * or rollback, so a deploy runs with the file as it is when asked. A file that does not validate
 * (or cannot be applied) is refused with its problems and the running config stays. Every reader
 * goes through `current()`, so they all see the newest applied config at once.
 */
export class ConfigSource {
  readonly file: string;
  readonly #log: Logger;
  /** Checks the file cannot make at parse time (users teal must switch to): throws TEAL_CONFIG_INVALID. */
  readonly #check: (loaded: LoadedConfig) => void;
  #current: LoadedConfig;
  #stamp: ConfigStamp;
  #appliedAt = new Date().toISOString();
  #needsRestart: string[] = [];
  #wiring: ConfigSourceWiring | undefined;
  /** Reloads run one at a time: two SIGHUPs, or a deploy beside a reload, never interleave. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(file: string, options: { log: Logger; check?: (loaded: LoadedConfig) => void }) {
    this.file = file;
    this.#log = options.log;
    this.#check = options.check ?? (() => undefined);
    const { loaded, text } = loadConfigText(file);
    this.#check(loaded);
    this.#current = loaded;
    this.#stamp = stampOf(loaded.file, text);
  }

  /** What reload needs to apply a file: set once the engine exists. */
  wire(wiring: ConfigSourceWiring): void {
    this.#wiring = wiring;
  }

  current(): LoadedConfig {
    return this.#current;
  }

  /** Which file is applied. */
  stamp(): ConfigStamp {
    return this.#stamp;
  }

  /**
   * Reads the file and applies what changed: routes and added or removed services to the table,
   * builtin proxy settings to the data plane, the rest to whoever reads it next (the next deploy).
   * Throws TEAL_CONFIG_INVALID (or TEAL_CONFIG_REFUSED) and keeps the running config.
   */
  reload(reason: string): Promise<ReloadReport> {
    const next = this.#queue.then(() => this.#reload(reason));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #reload(reason: string): Promise<ReloadReport> {
    const file = this.#current.file;
    let loaded: LoadedConfig;
    let stamp: ConfigStamp;
    try {
      const read = loadConfigText(file);
      stamp = stampOf(file, read.text);
      if (stamp.sha256 === this.#stamp.sha256) return this.#report(false, [], []);
      this.#check(read.loaded);
      loaded = read.loaded;
    } catch (err) {
      const error = toTealError(err);
      this.#log.warn(`${reason}: ${file} was refused; the running config stays`, {
        code: error.code,
        error: error.message,
      });
      throw error;
    }
    const wiring = this.#wiring;
    if (!wiring) throw new TealError('TEAL_INTERNAL', 'the config source is not wired to the engine yet');

    const running = this.#current;
    const busy = await busyServices(
      wiring.store,
      Object.keys(running.config.services).filter((s) => !(s in loaded.config.services)),
    );
    const plan = planReload(running.config, loaded.config, busy, {
      proxyLive: wiring.reconfigureProxy !== undefined,
    });
    if (plan.refused.length > 0) {
      const lines = plan.refused.map((p) => `${stamp.file} ${p.path}: ${p.message}`);
      const error = new TealError(
        'TEAL_CONFIG_REFUSED',
        `${stamp.file} cannot be applied; the running config stays:\n  ${lines.join('\n  ')}`,
        { problems: plan.refused.map((p) => ({ file: stamp.file, ...p })) },
      );
      this.#log.warn(`${reason}: ${file} was refused; the running config stays`, { error: error.message });
      throw error;
    }

    // What waits for a restart keeps its running value, so every reader sees what really runs.
    this.#current = { ...loaded, config: plan.config, stateDir: running.stateDir, workDir: running.workDir };
    try {
      // The table before the settings: a handoff gives the successor the table being served, and
      // the retiring process answers each kept-alive connection once more: both with the new routes.
      if (plan.routes) await wiring.tables.sync();
      if (plan.proxySettings) await wiring.reconfigureProxy!(plan.config.proxy);
    } catch (err) {
      this.#current = running;
      if (plan.routes) await wiring.tables.sync().catch(() => undefined);
      const error = toTealError(err);
      this.#log.warn(`${reason}: ${file} could not be applied; the running config stays`, {
        error: error.message,
      });
      throw error;
    }
    this.#stamp = stamp;
    this.#appliedAt = new Date().toISOString();
    this.#needsRestart = plan.needsRestart;
    const report = this.#report(true, plan.live, plan.nextDeploy);
    this.#log.info(`${reason}: applied ${file}`, {
      sha256: stamp.sha256.slice(0, 12),
      live: report.live.join(', ') || 'nothing',
      nextDeploy: report.nextDeploy.join(', ') || 'nothing',
    });
    if (report.needsRestart.length > 0) {
      this.#log.warn(`${file}: these settings need a restart of teal up and keep their running values`, {
        needsRestart: report.needsRestart.join(', '),
      });
    }
    return report;
  }

  #report(changed: boolean, live: string[], nextDeploy: string[]): ReloadReport {
    return {
      file: this.#stamp.file,
      sha256: this.#stamp.sha256,
      changed,
      live,
      nextDeploy,
      needsRestart: this.#needsRestart,
    };
  }

  /**
   * The config a reload would apply now, without applying it (`teal deploy --dry-run` plans with
   * the file as it is); throws TEAL_CONFIG_INVALID when the file does not validate.
   */
  preview(): LoadedConfig {
    const { loaded, text } = loadConfigText(this.#current.file);
    if (stampOf(loaded.file, text).sha256 === this.#stamp.sha256) return this.#current;
    this.#check(loaded);
    const plan = planReload(this.#current.config, loaded.config, {}, { proxyLive: true });
    return { ...loaded, config: plan.config };
  }

  /** The applied file against the one on disk: `teal status` says when they differ. */
  state(): ConfigState {
    const file = this.#current.file;
    let onDisk: ConfigState['onDisk'];
    try {
      const text = readFileSync(file, 'utf8');
      const disk = stampOf(file, text);
      onDisk = { sha256: disk.sha256, mtime: disk.mtime };
      if (disk.sha256 !== this.#stamp.sha256) {
        // Say now whether `teal reload` would take it, rather than at the reload.
        try {
          this.#check(loadConfigText(file).loaded);
        } catch (err) {
          onDisk.error = toTealError(err).message;
        }
      }
    } catch (err) {
      onDisk = { sha256: null, mtime: null, error: toTealError(err).message };
    }
    return {
      file,
      applied: { ...this.#stamp, appliedAt: this.#appliedAt },
      onDisk,
      differs: onDisk.sha256 !== this.#stamp.sha256,
      needsRestart: this.#needsRestart,
    };
  }
}

function stampOf(file: string, text: string): ConfigStamp {
  let mtime: string;
  try {
    mtime = statSync(file).mtime.toISOString();
  } catch {
    mtime = new Date(0).toISOString();
  }
  return { file, sha256: createHash('sha256').update(text).digest('hex'), mtime };
}

/** Of `services`, those with instances in a slot, each with what runs there. */
async function busyServices(store: Store, services: string[]): Promise<Record<string, string>> {
  const busy: Record<string, string> = {};
  for (const svc of services) {
    const state = await readServiceState(store, svc);
    const running = Object.values(state.slots).filter((s) => s.instances.length > 0);
    if (running.length === 0) continue;
    busy[svc] = running
      .map((s) => `release ${s.release ?? '?'} is ${state.live === s.slot ? 'live' : s.state} in ${s.slot}`)
      .join(' and ');
  }
  return busy;
}
