/**
 * One Runtime in front of the process and docker runtimes, so the engine keeps a single `runtime`
 * dependency: a spec with `container` starts a container, any other a process, and an instance is
 * the docker runtime's when it carries an image. The docker runtime is created on first use, so a
 * teal with only process services never needs (or reaches for) a Docker engine.
 *
 * @example
 *   const runtime = new RuntimeByKind({
 *     process: new ProcessRuntime({ stateDir }),
 *     docker: () => new DockerRuntime({ stateDir }),
 *     dockerInUse: config has a docker service,
 *   });
 */
import { TealError } from '../core/errors.js';
import type {
  ExitInfo,
  Instance,
  InstanceImage,
  InstanceSpec,
  InstanceStatus,
  ListedInstance,
  LogLine,
  LogOptions,
  Runtime,
} from './runtime.js';

export interface RuntimeByKindOptions {
  process: Runtime;
  /** Makes the container runtime; called at most once, on first use. */
  docker: () => Runtime;
  /** A service is configured with runtime docker: `list` then asks the engine from the start. */
  dockerInUse: boolean;
  /** Instances on fleet hosts (a spec or instance with `hostId`); none when absent. */
  fleet?: Runtime;
}

export class RuntimeByKind implements Runtime {
  readonly kind = 'by-kind';
  readonly #process: Runtime;
  readonly #makeDocker: () => Runtime;
  readonly #dockerInUse: boolean;
  readonly #fleet: Runtime | undefined;
  #docker: Runtime | undefined;

  constructor(options: RuntimeByKindOptions) {
    this.#process = options.process;
    this.#makeDocker = options.docker;
    this.#dockerInUse = options.dockerInUse;
    this.#fleet = options.fleet;
  }

  /** The docker runtime, created now if it was not yet. */
  get docker(): Runtime {
    this.#docker ??= this.#makeDocker();
    return this.#docker;
  }

  start(spec: InstanceSpec, options: { signal: AbortSignal }): Promise<Instance> {
    if (spec.hostId) return this.#fleetRuntime().start(spec, options);
    return (spec.container ? this.docker : this.#process).start(spec, options);
  }

  stop(instance: Instance, options: { timeoutMs: number }): Promise<void> {
    return this.#of(instance).stop(instance, options);
  }

  async list(filter?: { service?: string }): Promise<ListedInstance[]> {
    const processes = await this.#process.list(filter);
    const fleet = this.#fleet ? await this.#fleet.list(filter) : [];
    if (!this.#dockerInUse && !this.#docker) return [...processes, ...fleet];
    return [...processes, ...fleet, ...(await this.docker.list(filter))].sort(
      (a, b) => a.startedAt - b.startedAt || a.id.localeCompare(b.id),
    );
  }

  status(instance: Instance): Promise<InstanceStatus> {
    return this.#of(instance).status(instance);
  }

  exited(instance: Instance, options: { signal: AbortSignal }): Promise<ExitInfo> {
    return this.#of(instance).exited(instance, options);
  }

  logTail(instance: Instance, lines: number): Promise<string[]> {
    return this.#of(instance).logTail(instance, lines);
  }

  logs(instance: Instance, options: LogOptions): AsyncIterable<LogLine> {
    return this.#of(instance).logs(instance, options);
  }

  async forgetImages(drop: InstanceImage[], keep: InstanceImage[]): Promise<string[]> {
    if (drop.length === 0) return [];
    return (await this.docker.forgetImages?.(drop, keep)) ?? [];
  }

  async close(): Promise<void> {
    await Promise.all([this.#process.close(), this.#docker?.close(), this.#fleet?.close()]);
  }

  /** Fleet instances carry their host, containers the image they run; processes neither. */
  #of(instance: Instance): Runtime {
    if (instance.hostId) return this.#fleetRuntime();
    return instance.image ? this.docker : this.#process;
  }

  #fleetRuntime(): Runtime {
    if (!this.#fleet) {
      throw new TealError(
        'TEAL_CONFIG_INVALID',
        'an instance is placed on a fleet host, but this control plane has no fleet (store: { kind: etcd } is needed)',
      );
    }
    return this.#fleet;
  }
}
