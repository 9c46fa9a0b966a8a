import type { TealConfig } from '../core/config/schema.js';
import { RuntimeByKind } from '../runtimes/by-kind.js';
import { DockerRuntime } from '../runtimes/docker/docker.js';
import { ProcessRuntime } from '../runtimes/process.js';

/**
 * The runtime the daemon hands the engine: processes always, containers once a service (or an
 * instance found in the store) needs them. The engine address comes from `docker.host`, else
 * DOCKER_HOST, else the default socket.
 */
export function openRuntime(
  config: Pick<TealConfig, 'docker' | 'services'>,
  stateDir: string,
): RuntimeByKind {
  const { docker } = config;
  return new RuntimeByKind({
    process: new ProcessRuntime({ stateDir }),
    docker: () =>
      new DockerRuntime({
        stateDir,
        ...(docker?.host === undefined ? {} : { host: docker.host }),
        ...(docker === undefined ? {} : { timeoutMs: docker.timeout }),
      }),
    dockerInUse: Object.values(config.services).some((s) => s.runtime === 'docker'),
  });
}
