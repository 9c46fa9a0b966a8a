import type { EnvSource } from '../child-env.js';
import type { Probe } from '../health/probe.js';
import type { TrafficSwitch } from '../proxy/switch.js';
import type { Runtime } from '../runtimes/runtime.js';
import type { Json, Store } from '../stores/store.js';
import type { LoadedConfig } from './config/load.js';
import type { ConfigStamp } from './config/reload.js';
import type { HealthConfig, VerifyStep } from './config/schema.js';
import type { Endpoint, Slot } from './model.js';

/**
 * What the deploy engine needs from the world, all as interfaces: the daemon hands in the concrete
 * store, runtime, switch, probes and verifier; tests hand in the same interfaces over real servers.
 */

export interface VerifyTarget {
  service: string;
  slot: Slot;
  version: string;
  /** The new slot's first instance, directly: http://127.0.0.1:9002 */
  url: string;
  /**
   * The data plane's preview listener: requests with `X-Teal-Slot: <slot>` reach the new slot
   * through the same routes users take (the preview route). Absent when the engine does not know it.
   */
  previewUrl?: string;
  instances: Endpoint[];
  /** The service's declared environment, for `run` steps and hooks (they get nothing else of teal's). */
  exec?: CommandEnv;
}

/** What a service's own commands (`run` steps, hooks) run with, besides their TEAL_* values. */
export interface CommandEnv {
  /** "services.web": where errors say the values are configured. */
  where: string;
  env: Record<string, string>;
  envFrom?: Record<string, EnvSource>;
  inheritEnv?: string[];
  /** `user:`/`group:` as configured; nobody when teal runs as root and none is set. */
  user?: string;
  group?: string;
  /** Where they run: the release's folder (the app's own files, where a migration would run). */
  cwd: string;
}

export interface VerifyResult {
  ok: boolean;
  /** One line: what was checked and what came back. */
  detail: string;
  /** The tail of a command's output. */
  output?: string;
}

export interface Verifier {
  run(step: VerifyStep, target: VerifyTarget, options: { signal: AbortSignal }): Promise<VerifyResult>;
}

export interface Logger {
  info(message: string, fields?: Record<string, Json | undefined>): void;
  warn(message: string, fields?: Record<string, Json | undefined>): void;
  error(message: string, fields?: Record<string, Json | undefined>): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

export interface EngineDeps {
  store: Store;
  runtime: Runtime;
  traffic: TrafficSwitch;
  /** Where users reach the data plane (hooks' TEAL_URL before a slot runs, the analysis). */
  proxyUrl?: string;
  /**
   * The data plane's preview listener, loopback by default: the only place X-Teal-Slot chooses a
   * slot (verify steps with `through: preview`, TEAL_PREVIEW_URL, the gate's message).
   */
  previewUrl?: string;
  probe: (health: HealthConfig) => Probe;
  verifier: Verifier;
  /** The configuration as last applied (the daemon reloads it): read it here each time, never keep it. */
  config: () => LoadedConfig;
  /**
   * Re-reads teal.yml and applies it (daemon/config-source.ts), called when a deploy or rollback is
   * asked for, so it runs with the file as it is then; throws TEAL_CONFIG_INVALID (the running
   * config stays). Returns which file the deployment uses. Absent: `config()` as it is.
   */
  refreshConfig?: (reason: string) => Promise<ConfigStamp>;
  log: Logger;
}
