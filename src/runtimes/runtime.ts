import type { EnvSource } from '../child-env.js';
import type { Endpoint, Slot } from '../core/model.js';

/**
 * A Runtime runs instances of releases: processes (process.ts) or containers (docker.ts). Instances
 * carry labels, so a control plane that restarts finds them again with `list` and adopts or removes
 * them. Every implementation passes runtime.contract.ts.
 */

/** Recorded with every instance, so it can be recognised after a control-plane restart. */
export interface InstanceLabels {
  service: string;
  slot: Slot;
  /** Release number (the n of /services/<svc>/releases/<n>). */
  release: number;
  /** Deployment number that started it. */
  deployment: number;
  version: string;
}

export interface InstanceSpec {
  labels: InstanceLabels;
  /** 0-based instance number within the slot. */
  index: number;
  /** Program and arguments, already interpolated; run without a shell. */
  command: string[];
  /** Absolute working directory. */
  cwd: string;
  /** The service's env, already interpolated. The runtime adds PORT (and HOST). */
  env: Record<string, string>;
  /**
   * env values the runtime reads where the instance starts (teal's environment by name, a file's
   * content): only the reference travels, through the store to a fleet host too.
   */
  envFrom?: Record<string, EnvSource>;
  /** Names of the starting side's environment passed as they are; nothing else of it is. */
  inheritEnv?: string[];
  /**
   * Who a process instance runs as (`user:`/`group:`, names or ids, resolved where it starts):
   * nobody when absent and the runtime runs as root. Containers run as their image's USER.
   */
  user?: string;
  group?: string;
  /** Address the instance listens on and the proxy reaches it at. */
  host: string;
  /** Fixed port; when absent the runtime picks a free one. */
  port?: number;
  /** Human hint for errors about the port: "services.web.ports.blue". */
  portSource?: string;
  /**
   * What the docker runtime runs; other runtimes ignore it. With it, `command` is the container's
   * command (docker run's arguments after the image: the image's CMD when empty), `cwd` is not
   * used, `host`/`port` are where the container port is published, and the env reaches the
   * container alone (not the control plane's own environment) with PORT set to `container.port`.
   */
  container?: ContainerSpec;
  /**
   * The fleet host (`teal agent --id`) to run it on: the fleet runtime assigns it there through the
   * store, and the agent binds it on its own address (so `host` is not used). Absent: this machine.
   */
  hostId?: string;
}

/** A release as a container: see InstanceSpec.container. */
export interface ContainerSpec {
  /** Image reference with the version already interpolated: "registry.local/web:1.4.2". */
  image: string;
  /**
   * Runs exactly this image ID ("sha256:…", recorded when the release first ran) instead of
   * resolving `image`: `pull` is not consulted and nothing is pulled. A rollback uses it, so the
   * release comes back as it ran even if its tag has moved since.
   */
  imageId?: string;
  /** The port the app listens on inside the container; it gets PORT set to this. */
  port: number;
  /**
   * `missing` (default): pull when the engine has no image of that name; `always`: pull every
   * time, and a failed pull fails the start (never falls back to the local copy); `never`: the
   * image must already be on the engine.
   */
  pull?: 'always' | 'missing' | 'never';
  /** Runs an init process as PID 1 (docker run --init) that forwards signals and reaps zombies. */
  init?: boolean;
  /** Memory limit in bytes. */
  memoryBytes?: number;
  /** CPU limit in CPUs: 0.5 is half of one. */
  cpus?: number;
  /** Replaces the image's entrypoint. */
  entrypoint?: string[];
  /** Working directory inside the container (the image's when absent). */
  workdir?: string;
  /** Extra container labels; keys starting with `teal.` are teal's own and refused. */
  labels?: Record<string, string>;
  /** Mounts in docker's `source:target[:options]` form: a host path or a named volume. */
  volumes?: string[];
  /** A network to attach to instead of the engine's default bridge (not `host`). */
  network?: string;
}

export interface Instance extends Endpoint {
  /** Unique and stable across control-plane restarts: "web-blue-r3-0-<random>". */
  id: string;
  labels: InstanceLabels;
  index: number;
  /** Epoch ms. */
  startedAt: number;
  /** Process id for the process runtime (diagnostics only). */
  pid?: number;
  /** The image a container instance runs, as resolved when it started. */
  image?: InstanceImage;
  /** The fleet host it runs on (see InstanceSpec.hostId). */
  hostId?: string;
}

export interface InstanceImage {
  /** The reference asked for: "registry.local/web:1.4.2". */
  ref: string;
  /** The image ID ("sha256:…", the digest of its config): exactly what the container runs. */
  id: string;
  /** The registry manifest digest ("registry.local/web@sha256:…") when the image came from a registry. */
  digest?: string;
}

export type InstanceStatus =
  | { state: 'running' }
  | { state: 'exited'; code: number | null; signal: string | null }
  /** The runtime has no record of it (removed, or never existed). */
  | { state: 'unknown' };

export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

export interface ListedInstance extends Instance {
  status: InstanceStatus;
}

export interface LogOptions {
  follow: boolean;
  signal: AbortSignal;
  /** Only the last `tail` lines of what is there already. */
  tail?: number;
  /** Only lines written at or after this epoch ms. */
  since?: number;
}

export interface LogLine {
  line: string;
  /** Epoch ms it was written. */
  time: number;
  /**
   * The time is only an upper bound, possibly far off: the line was written while nothing was
   * timing it (a process instance's log while no control plane ran), or it comes from a
   * published tail (fleet hosts).
   */
  approx?: boolean;
  /** Absent when the runtime cannot tell (a process instance writes both into one file). */
  stream?: 'stdout' | 'stderr';
}

export interface Runtime {
  readonly kind: string;
  /**
   * Starts one instance and returns once it has been launched (not once it is healthy).
   * Throws TEAL_START_FAILED (program missing, not executable, cwd missing) or TEAL_PORT_IN_USE.
   */
  start(spec: InstanceSpec, options: { signal: AbortSignal }): Promise<Instance>;
  /** SIGTERM (or the runtime's equivalent), then SIGKILL after timeoutMs; idempotent; forgets the instance. */
  stop(instance: Instance, options: { timeoutMs: number }): Promise<void>;
  /** Every instance this runtime has a record of, optionally of one service. */
  list(filter?: { service?: string }): Promise<ListedInstance[]>;
  status(instance: Instance): Promise<InstanceStatus>;
  /** Resolves when the instance exits (with its code when the runtime can know it). */
  exited(instance: Instance, options: { signal: AbortSignal }): Promise<ExitInfo>;
  /** The last `lines` lines of its output (stdout and stderr interleaved). */
  logTail(instance: Instance, lines: number): Promise<string[]>;
  /**
   * Its output line by line, each with the time it was written (as well as the runtime can tell:
   * see LogLine): the lines there now (the last `tail` of them, only those from `since` on when
   * given), then, with follow, each new one until the signal aborts.
   */
  logs(instance: Instance, options: LogOptions): AsyncIterable<LogLine>;
  /**
   * Optional (runtimes that keep artefacts per release, like images): removes what `drop` names
   * unless `keep` names it too or something still uses it. Returns what it removed.
   */
  forgetImages?(drop: InstanceImage[], keep: InstanceImage[]): Promise<string[]>;
  close(): Promise<void>;
}
