import type { TealConfig } from '../core/config/schema.js';
import { RuntimeByKind } from '../runtimes/by-kind.js';
import { DockerRuntime } from '../runtimes/docker/docker.js';
import { FleetRuntime } from '../runtimes/fleet.js';
import { ProcessRuntime } from '../runtimes/process.js';
import type { Store } from '../stores/store.js';

/**
 * The runtime the daemon hands the engine: processes always, containers once a service (or an
 * instance found in the store) needs them. The engine address comes from `docker.host`, else
 * DOCKER_HOST, else the default socket.
 */
export function openRuntime(
  config: Pick<TealConfig, 'docker' | 'services'> & { store?: TealConfig['store'] },
  stateDir: string,
  store?: Store,
): RuntimeByKind {
  const { docker } = config;
  // Instances on fleet hosts go through etcd to their agents (core/fleet.ts).
  const fleet = store && config.store?.kind === 'etcd' ? new FleetRuntime({ store }) : undefined;
  return new RuntimeByKind({
    ...(fleet ? { fleet } : {}),
    process: new ProcessRuntime({ stateDir }),
    docker: () =>
      new DockerRuntime({
        stateDir,
        ...(docker?.host === undefined ? {} : { host: docker.host }),
        ...(docker === undefined ? {} : { timeoutMs: docker.timeout }),
      }),
    // Containers placed on fleet hosts run on their agents' engines, not on this one.
    dockerInUse: Object.values(config.services).some(
      (s) => s.runtime === 'docker' && !s.hosts && !s.hostLabels,
    ),
  });
}
