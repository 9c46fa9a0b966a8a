/**
 * What a container says about itself. teal keeps no records of its own for containers: the engine
 * stores each container's labels, so a restarted control plane (or a fresh DockerRuntime) lists
 * them back from the engine. `teal.owner` scopes them to one teal installation, so two on one
 * engine never adopt or stop each other's containers.
 */
import type { Slot } from '../../core/model.js';
import type { Instance, InstanceLabels } from '../runtime.js';

export const LABEL = {
  owner: 'teal.owner',
  id: 'teal.id',
  service: 'teal.service',
  slot: 'teal.slot',
  release: 'teal.release',
  deployment: 'teal.deployment',
  version: 'teal.version',
  index: 'teal.index',
  startedAt: 'teal.started-at',
  containerPort: 'teal.container-port',
  image: 'teal.image',
  imageDigest: 'teal.image-digest',
} as const;

/** Container name of an instance; ids are safe names, so this is a valid one too. */
export function containerName(id: string): string {
  return `teal-${id}`;
}

/** Every teal label of a container about to be created for `instance`. */
export function containerLabels(
  owner: string,
  instance: Instance,
  containerPort: number,
): Record<string, string> {
  const { labels } = instance;
  return {
    [LABEL.owner]: owner,
    [LABEL.id]: instance.id,
    [LABEL.service]: labels.service,
    [LABEL.slot]: labels.slot,
    [LABEL.release]: String(labels.release),
    [LABEL.deployment]: String(labels.deployment),
    [LABEL.version]: labels.version,
    [LABEL.index]: String(instance.index),
    [LABEL.startedAt]: String(instance.startedAt),
    [LABEL.containerPort]: String(containerPort),
    ...(instance.image ? { [LABEL.image]: instance.image.ref } : {}),
    ...(instance.image?.digest ? { [LABEL.imageDigest]: instance.image.digest } : {}),
  };
}

/** The parts of a container inspection the runtime reads. */
export interface ContainerInspect {
  Id: string;
  Image: string;
  Config: { Labels?: Record<string, string> | null };
  State: { Status: string; Running: boolean; ExitCode: number };
  HostConfig: { PortBindings?: Record<string, PortBinding[] | null> | null };
  NetworkSettings: { Ports?: Record<string, PortBinding[] | null> | null };
}

interface PortBinding {
  HostIp: string;
  HostPort: string;
}

/** The instance a container of ours runs, or undefined when its labels are not teal's. */
export function instanceOf(container: ContainerInspect): Instance | undefined {
  const l = container.Config.Labels ?? {};
  const slot = l[LABEL.slot];
  const release = Number(l[LABEL.release]);
  const deployment = Number(l[LABEL.deployment]);
  const index = Number(l[LABEL.index]);
  const startedAt = Number(l[LABEL.startedAt]);
  const id = l[LABEL.id];
  const service = l[LABEL.service];
  const version = l[LABEL.version];
  if (
    id === undefined ||
    service === undefined ||
    version === undefined ||
    (slot !== 'blue' && slot !== 'green') ||
    ![release, deployment, index, startedAt].every(Number.isInteger)
  ) {
    return undefined;
  }
  const labels: InstanceLabels = { service, slot: slot as Slot, release, deployment, version };
  const { host, port } = published(container, l[LABEL.containerPort]);
  const ref = l[LABEL.image];
  const digest = l[LABEL.imageDigest];
  return {
    id,
    labels,
    index,
    host,
    port,
    startedAt,
    ...(ref === undefined ? {} : { image: { ref, id: container.Image, ...(digest ? { digest } : {}) } }),
  };
}

/**
 * Where the container port is published: the engine's live mapping while it runs, else the
 * binding asked for at create (teal always asks for a fixed host port on a local engine).
 */
export function published(
  container: ContainerInspect,
  containerPort: string | undefined,
): {
  host: string;
  port: number;
} {
  const key = `${containerPort}/tcp`;
  const asked = container.HostConfig.PortBindings?.[key]?.[0];
  const live = container.NetworkSettings.Ports?.[key]?.[0];
  const host = asked?.HostIp || live?.HostIp || '0.0.0.0';
  const port = Number(live?.HostPort || asked?.HostPort || 0);
  return { host, port };
}
