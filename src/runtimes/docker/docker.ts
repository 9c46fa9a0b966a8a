/**
 * The docker runtime: each instance is a container, run through the Docker Engine API (podman's
 * compatible socket too), never by parsing CLI text. The engine keeps the containers running while
 * the control plane stops or restarts, and it keeps their labels, exit codes and logs: a fresh
 * DockerRuntime on the same engine (and owner) lists them back and adopts them.
 *
 * @example
 *   const runtime = new DockerRuntime({ stateDir: '.teal' }); // engine from DOCKER_HOST
 *   const instance = await runtime.start(
 *     { ...spec, command: [], container: { image: 'registry.local/web:1.4.2', port: 3000 } },
 *     { signal },
 *   );
 *   instance.image; // { ref: 'registry.local/web:1.4.2', id: 'sha256:…', digest: 'registry.local/web@sha256:…' }
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { declaredEnv } from '../../child-env.js';
import { TealError } from '../../core/errors.js';
import { assertPortFree, freePort } from '../ports.js';
import { isSafeName } from '../records.js';
import type {
  ContainerSpec,
  ExitInfo,
  Instance,
  InstanceImage,
  InstanceSpec,
  InstanceStatus,
  ListedInstance,
  LogLine,
  LogOptions,
  Runtime,
} from '../runtime.js';
import { Engine, type EngineError, isEngineError } from './engine.js';
import {
  type ContainerInspect,
  containerLabels,
  containerName,
  instanceOf,
  LABEL,
  published,
} from './labels.js';
import { demuxLines, timedLine } from './logs.js';
import { pinnedImage, resolveImage, untagImage } from './pull.js';

export interface DockerRuntimeOptions {
  /** Names the owner of this runtime's containers (label teal.owner) unless `owner` is given. */
  stateDir: string;
  /** Engine address, `unix:///path` or `tcp://host:port`; default DOCKER_HOST, else /var/run/docker.sock. */
  host?: string;
  /** The teal.owner label value; default the absolute state dir. Runtimes see only their owner's containers. */
  owner?: string;
  /** How long a request waits for the engine's answer; default 30 s. */
  timeoutMs?: number;
}

/** How long stop waits, past the stop timeout, for the engine to report the container gone. */
const STOP_GRACE_MS = 30_000;

export class DockerRuntime implements Runtime {
  readonly kind = 'docker';
  readonly engine: Engine;
  readonly owner: string;

  constructor(options: DockerRuntimeOptions) {
    this.engine = new Engine({
      ...(options.host === undefined ? {} : { host: options.host }),
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    });
    this.owner = options.owner ?? path.resolve(options.stateDir);
  }

  async start(spec: InstanceSpec, options: { signal: AbortSignal }): Promise<Instance> {
    const { signal } = options;
    const { labels } = spec;
    const where = `services.${labels.service}`;
    signal.throwIfAborted();
    const container = checkSpec(spec, where);
    const image =
      container.imageId === undefined
        ? await resolveImage(this.engine, container.image, container.pull ?? 'missing', { where, signal })
        : await pinnedImage(this.engine, container.image, container.imageId, { where });
    signal.throwIfAborted();
    const hostPort = await this.hostPort(spec);
    signal.throwIfAborted();

    const id = `${labels.service}-${labels.slot}-r${labels.release}-${spec.index}-${randomId()}`;
    const name = containerName(id);
    const planned: Instance = {
      id,
      labels,
      index: spec.index,
      host: spec.host,
      port: hostPort,
      startedAt: Date.now(),
      image,
    };
    // Built first: a fromEnv or file that cannot be read fails the start before the engine is asked.
    const body = createBody(spec, container, image.id, hostPort, {
      ...container.labels,
      ...containerLabels(this.owner, planned, container.port),
    });
    let created: { Id: string };
    try {
      // Not abortable mid-request: the engine may create the container all the same, and then
      // only its id (which the answer carries) lets us remove it.
      created = await this.engine.json<{ Id: string }>('POST', '/containers/create', {
        query: { name },
        body,
      });
    } catch (err) {
      if (!isEngineError(err)) {
        // No answer (timeout, connection cut): the engine may have created it. Best effort only:
        // the error thrown says what went wrong, and a leftover shows up in list() as exited
        // (never started), for the reconciler to remove.
        await this.remove(name).catch(() => undefined);
      }
      throw startError(err, spec, where, name, hostPort);
    }
    try {
      signal.throwIfAborted();
      await this.engine.json('POST', `/containers/${created.Id}/start`);
      const inspected = await this.engine.json<ContainerInspect>('GET', `/containers/${created.Id}/json`);
      signal.throwIfAborted();
      return { ...planned, ...published(inspected, String(container.port)), host: spec.host };
    } catch (err) {
      const failure = signal.aborted ? signal.reason : startError(err, spec, where, name, hostPort);
      await this.remove(created.Id).catch((cleanup: unknown) => {
        throw new TealError(
          'TEAL_RUNTIME_FAILED',
          `${(failure as Error).message}; removing container ${name} afterwards failed too: ${(cleanup as Error).message}`,
          { container: name },
          { cause: failure },
        );
      });
      throw failure;
    }
  }

  async stop(instance: Instance, options: { timeoutMs: number }): Promise<void> {
    const found = await this.inspectOurs(instance.id);
    if (!found) return;
    if (found.State.Running) {
      // The engine sends the image's stop signal (SIGTERM unless it says otherwise), waits t
      // seconds, then SIGKILLs. Rounded up: never kill earlier than asked.
      const t = Math.ceil(Math.max(0, options.timeoutMs) / 1_000);
      try {
        await this.engine.json('POST', `/containers/${found.Id}/stop`, {
          query: { t },
          timeoutMs: t * 1_000 + STOP_GRACE_MS,
        });
      } catch (err) {
        // 304: it stopped by itself meanwhile; 404: removed meanwhile; any other refusal: the
        // force remove below kills it. An engine out of reach is another matter.
        if (!isEngineError(err)) throw err;
      }
    }
    await this.remove(found.Id);
  }

  async list(filter?: { service?: string }): Promise<ListedInstance[]> {
    const label = [`${LABEL.owner}=${this.owner}`];
    if (filter?.service !== undefined) label.push(`${LABEL.service}=${filter.service}`);
    const summaries = await this.engine.json<{ Id: string }[]>('GET', '/containers/json', {
      query: { all: true, filters: JSON.stringify({ label }) },
    });
    const listed: ListedInstance[] = [];
    for (const { Id } of summaries) {
      const inspected = await this.inspect(Id);
      if (!inspected) continue; // removed since the listing
      const instance = instanceOf(inspected);
      if (!instance) {
        process.emitWarning(
          `container ${Id} carries ${LABEL.owner}=${this.owner} but not teal's other labels; leaving it alone`,
          'TealDockerLabels',
        );
        continue;
      }
      listed.push({ ...instance, status: statusOf(inspected) });
    }
    return listed.sort((a, b) => a.startedAt - b.startedAt || a.id.localeCompare(b.id));
  }

  async status(instance: Instance): Promise<InstanceStatus> {
    const found = await this.inspectOurs(instance.id);
    return found ? statusOf(found) : { state: 'unknown' };
  }

  async exited(instance: Instance, options: { signal: AbortSignal }): Promise<ExitInfo> {
    const { signal } = options;
    signal.throwIfAborted();
    if (!isSafeName(instance.id)) return { code: null, signal: null };
    try {
      const { StatusCode } = await this.engine.json<{ StatusCode: number }>(
        'POST',
        `/containers/${containerName(instance.id)}/wait`,
        { query: { condition: 'not-running' }, signal, timeoutMs: 0 },
      );
      // The engine reports a container killed by a signal as 128 + its number (137: SIGKILL).
      return { code: StatusCode, signal: null };
    } catch (err) {
      if (isEngineError(err, 404)) return { code: null, signal: null };
      throw err;
    }
  }

  async logTail(instance: Instance, lines: number): Promise<string[]> {
    if (lines <= 0) return [];
    const tail: string[] = [];
    const signal = AbortSignal.timeout(30_000);
    for await (const { line } of this.logs(instance, { follow: false, signal, tail: lines })) tail.push(line);
    return tail;
  }

  async *logs(instance: Instance, options: LogOptions): AsyncGenerator<LogLine> {
    const { follow, signal, tail, since } = options;
    if (signal.aborted || !isSafeName(instance.id)) return;
    let res: IncomingMessage;
    try {
      res = await this.engine.open('GET', `/containers/${containerName(instance.id)}/logs`, {
        query: {
          stdout: true,
          stderr: true,
          follow,
          timestamps: true,
          tail: tail === undefined ? 'all' : Math.max(0, tail),
          // Whole seconds for the engine; the exact cut is ours, below.
          ...(since === undefined ? {} : { since: Math.floor(since / 1000) }),
        },
        signal,
        timeoutMs: follow ? 0 : undefined,
      });
    } catch (err) {
      if (signal.aborted || isEngineError(err, 404)) return;
      throw err;
    }
    for await (const raw of demuxLines(res, signal)) {
      const line = timedLine(raw);
      if (since === undefined || line.time >= since) yield line;
    }
  }

  async forgetImages(drop: InstanceImage[], keep: InstanceImage[]): Promise<string[]> {
    const kept = new Set(keep.map((i) => i.id));
    const removed: string[] = [];
    const seen = new Set<string>();
    const keptRefs = new Set(keep.map((i) => i.ref));
    for (const image of drop) {
      const key = `${image.ref} ${image.id}`;
      if (keptRefs.has(image.ref) || seen.has(key)) continue;
      seen.add(key);
      if (await untagImage(this.engine, image, kept)) removed.push(image.ref);
    }
    return removed;
  }

  /** Ends this client's requests in flight (log follows, exit waits); the containers keep running. */
  async close(): Promise<void> {
    this.engine.destroy();
  }

  /** The host port to publish on: checked or picked here when the engine is on this machine. */
  private async hostPort(spec: InstanceSpec): Promise<number> {
    if (!this.engine.isLocal) return spec.port ?? 0;
    if (spec.port !== undefined) {
      await assertPortFree(spec.host, spec.port, spec.portSource);
      return spec.port;
    }
    return freePort(spec.host);
  }

  /** A container of this owner's with that instance id, or undefined. */
  private async inspectOurs(id: string): Promise<ContainerInspect | undefined> {
    if (!isSafeName(id)) return undefined;
    const found = await this.inspect(containerName(id));
    const labels = found?.Config.Labels ?? {};
    return labels[LABEL.owner] === this.owner && labels[LABEL.id] === id ? found : undefined;
  }

  private async inspect(ref: string): Promise<ContainerInspect | undefined> {
    try {
      return await this.engine.json<ContainerInspect>('GET', `/containers/${ref}/json`);
    } catch (err) {
      if (isEngineError(err, 404)) return undefined;
      throw err;
    }
  }

  /** Force-removes (killing it if it still runs) with its anonymous volumes; gone already is fine. */
  private async remove(containerId: string): Promise<void> {
    try {
      await this.engine.json('DELETE', `/containers/${containerId}`, {
        query: { force: true, v: true },
        timeoutMs: STOP_GRACE_MS,
      });
    } catch (err) {
      if (isEngineError(err, 404)) return;
      // Another stop is removing it right now.
      if (isEngineError(err, 409) && /already in progress/i.test(err.engineMessage)) return;
      throw err;
    }
  }
}

function checkSpec(spec: InstanceSpec, where: string): ContainerSpec {
  const fail = (why: string) =>
    new TealError('TEAL_START_FAILED', `cannot start ${where}: ${why}`, {
      image: spec.container?.image,
      command: spec.command,
    });
  const { container } = spec;
  // The service name goes into container names and the instance id into engine URLs.
  if (!isSafeName(spec.labels.service)) throw fail('unusable name');
  if (!container) throw fail('the docker runtime needs an image (InstanceSpec.container)');
  if (!Number.isInteger(container.port) || container.port < 1 || container.port > 65_535) {
    throw fail(`container port ${container.port} is not a port number`);
  }
  if (container.network === 'host') {
    throw fail('network "host" is not supported: the docker runtime publishes the container port');
  }
  const reserved = Object.keys(container.labels ?? {}).filter((key) => key.startsWith('teal.'));
  if (reserved.length > 0) throw fail(`labels ${reserved.join(', ')} are reserved for teal`);
  return container;
}

function createBody(
  spec: InstanceSpec,
  container: ContainerSpec,
  imageId: string,
  hostPort: number,
  labels: Record<string, string>,
): Record<string, unknown> {
  const portKey = `${container.port}/tcp`;
  // HOST: the app must listen on the container's own interface for the engine's port proxy to
  // reach it; where it is reachable from outside is the published host address.
  const declared = declaredEnv({
    where: `services.${spec.labels.service}`,
    env: spec.env,
    ...(spec.envFrom ? { envFrom: spec.envFrom } : {}),
    ...(spec.inheritEnv ? { inheritEnv: spec.inheritEnv } : {}),
  });
  const env = { ...declared, PORT: String(container.port), HOST: '0.0.0.0' };
  return {
    // The image ID, not the reference: the container runs exactly the image resolved and
    // recorded, even if the tag moves in between.
    Image: imageId,
    ...(spec.command.length > 0 ? { Cmd: spec.command } : {}),
    ...(container.entrypoint ? { Entrypoint: container.entrypoint } : {}),
    ...(container.workdir ? { WorkingDir: container.workdir } : {}),
    Env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
    Labels: labels,
    ExposedPorts: { [portKey]: {} },
    HostConfig: {
      PortBindings: { [portKey]: [{ HostIp: spec.host, HostPort: hostPort === 0 ? '' : String(hostPort) }] },
      RestartPolicy: { Name: 'no' },
      ...(container.init === undefined ? {} : { Init: container.init }),
      ...(container.memoryBytes === undefined ? {} : { Memory: container.memoryBytes }),
      ...(container.cpus === undefined ? {} : { NanoCpus: Math.round(container.cpus * 1e9) }),
      ...(container.volumes ? { Binds: container.volumes } : {}),
      ...(container.network ? { NetworkMode: container.network } : {}),
    },
  };
}

/** What the engine said about a failed create or start, in teal's words. */
function startError(
  err: unknown,
  spec: InstanceSpec,
  where: string,
  name: string,
  hostPort: number,
): unknown {
  if (!isEngineError(err)) return err;
  const said = (err as EngineError).engineMessage;
  if (/address already in use|port is already allocated/i.test(said)) {
    const source = spec.portSource ? ` (${spec.portSource})` : '';
    return new TealError(
      'TEAL_PORT_IN_USE',
      `port ${hostPort || spec.port}${source} is already in use on ${spec.host}: ${said}`,
      { host: spec.host, port: hostPort || spec.port, source: spec.portSource },
      { cause: err },
    );
  }
  return new TealError(
    'TEAL_START_FAILED',
    `cannot start ${where}: the engine could not run container ${name} (command: ${JSON.stringify(spec.command)}): ${said}`,
    { container: name, command: spec.command, image: spec.container?.image, engineMessage: said },
    { cause: err },
  );
}

function statusOf(container: ContainerInspect): InstanceStatus {
  const { State } = container;
  if (State.Running) return { state: 'running' };
  // "created": never started (a control plane that died between create and start).
  return { state: 'exited', code: State.Status === 'created' ? null : State.ExitCode, signal: null };
}

/** 6 base36 characters: enough to keep two instances of one release and index apart. */
function randomId(): string {
  let id = '';
  for (const byte of randomBytes(6)) id += (byte % 36).toString(36);
  return id;
}
