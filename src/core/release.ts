import { createHash } from 'node:crypto';
import path from 'node:path';
import type { EnvSource } from '../child-env.js';
import type { ContainerSpec } from '../runtimes/runtime.js';
import { interpolate, type TemplateVars } from './config/interpolate.js';
import type { ServiceConfig } from './config/schema.js';
import type { CommandEnv } from './deps.js';
import type { Slot } from './model.js';
import type { ReleaseRecord } from './records.js';

/** A release before it has a number: what `version` of the config resolves to. */
export type ReleaseDraft = Omit<ReleaseRecord, 'n' | 'createdAt'>;

/**
 * Resolves a service's config at a version into a release: {{version}} and {{service}} filled,
 * cwd made absolute (or the `cwd` override: a pipeline's artifact folder). {{slot}} stays, since one release runs in either slot; `forInstance` fills it.
 */
export function resolveRelease(
  service: string,
  config: ServiceConfig,
  version: string,
  configDir: string,
  overrides: { cwd?: string } = {},
): ReleaseDraft {
  const vars: Partial<TemplateVars> = { version, service };
  const fill = (text: string) => interpolate(text, vars);
  const command = (config.command ?? []).map(fill);
  // A pipeline's artifact replaces the configured cwd: the release runs what that commit built.
  const cwd = path.resolve(configDir, overrides.cwd ?? fill(config.cwd));
  const { env, envFrom } = splitEnv(config.env, fill, configDir);
  const draft: Omit<ReleaseDraft, 'configHash'> = {
    service,
    version,
    runtime: config.runtime,
    command,
    cwd,
    env,
  };
  // Only when used, so a release without them keeps the hash it had before they existed.
  if (Object.keys(envFrom).length > 0) draft.envFrom = envFrom;
  if (config.inheritEnv.length > 0) draft.inheritEnv = [...config.inheritEnv];
  if (config.user !== undefined) draft.user = config.user;
  if (config.group !== undefined) draft.group = config.group;
  if (config.runtime === 'docker') draft.container = containerOf(config, fill);
  return { ...draft, configHash: hashOf(draft) };
}

/**
 * An `env:` mapping split into plain values (interpolated) and the references resolved where the
 * code starts (`file` made absolute from teal.yml's folder), so secrets never reach the store.
 */
export function splitEnv(
  config: Record<string, string | number | boolean | EnvSource>,
  fill: (text: string) => string,
  configDir: string,
): { env: Record<string, string>; envFrom: Record<string, EnvSource> } {
  const env: Record<string, string> = {};
  const envFrom: Record<string, EnvSource> = {};
  for (const [key, value] of Object.entries(config)) {
    if (typeof value !== 'object') env[key] = fill(String(value));
    else if ('fromEnv' in value) envFrom[key] = { fromEnv: value.fromEnv };
    else envFrom[key] = { file: path.resolve(configDir, value.file) };
  }
  return { env, envFrom };
}

/** The container part of a docker release, with the defaults the config leaves implicit made explicit. */
function containerOf(config: ServiceConfig, fill: (text: string) => string): ContainerSpec {
  const c: ContainerSpec = {
    image: fill(config.image ?? ''),
    port: config.port ?? 0,
    pull: config.pull ?? 'missing',
    // Without an init, node as PID 1 ignores SIGTERM and every stop waits the full stop timeout.
    init: config.init ?? true,
  };
  if (config.memory !== undefined) c.memoryBytes = config.memory;
  if (config.cpus !== undefined) c.cpus = config.cpus;
  if (config.entrypoint !== undefined) c.entrypoint = config.entrypoint.map(fill);
  if (config.workdir !== undefined) c.workdir = fill(config.workdir);
  if (config.labels !== undefined) {
    c.labels = Object.fromEntries(Object.entries(config.labels).map(([k, v]) => [k, fill(v)]));
  }
  if (config.volumes !== undefined) c.volumes = config.volumes.map(fill);
  if (config.network !== undefined) c.network = config.network;
  return c;
}

function hashOf(draft: Omit<ReleaseDraft, 'configHash'>): string {
  const parts: unknown[] = [
    draft.runtime,
    draft.command,
    draft.cwd,
    Object.entries(draft.env).sort(([a], [b]) => (a < b ? -1 : 1)),
  ];
  // Only when present, so a process release keeps the hash it had before containers existed.
  if (draft.container) parts.push(canonical(draft.container));
  if (draft.envFrom || draft.inheritEnv)
    parts.push(canonical({ envFrom: draft.envFrom, inherit: draft.inheritEnv }));
  if (draft.user !== undefined || draft.group !== undefined) parts.push([draft.user, draft.group]);
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

/** Keys sorted at every level, so the hash does not depend on the order fields were written in. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.keys(value)
      .sort()
      .map((k) => [k, canonical((value as Record<string, unknown>)[k])]);
  }
  return value;
}

/** The command and env of one instance of a release in a slot. */
export function forInstance(
  release: ReleaseDraft,
  slot: Slot,
): { command: string[]; env: Record<string, string> } {
  const vars: Partial<TemplateVars> = { slot };
  return {
    command: release.command.map((arg) => interpolate(arg, vars)),
    env: Object.fromEntries(Object.entries(release.env).map(([k, v]) => [k, interpolate(v, vars)])),
  };
}

/** An existing release with the same version and definition, so redeploying it reuses its number. */
export function findSameRelease(releases: ReleaseRecord[], draft: ReleaseDraft): ReleaseRecord | undefined {
  return releases.find((r) => r.version === draft.version && r.configHash === draft.configHash);
}

/** The release's declared environment for the service's `run` steps and hooks, {{slot}} filled. */
export function commandEnvOf(release: ReleaseDraft, slot: Slot): CommandEnv {
  return {
    where: `services.${release.service}`,
    env: forInstance(release, slot).env,
    ...(release.envFrom ? { envFrom: release.envFrom } : {}),
    ...(release.inheritEnv ? { inheritEnv: release.inheritEnv } : {}),
    ...(release.user === undefined ? {} : { user: release.user }),
    ...(release.group === undefined ? {} : { group: release.group }),
    cwd: release.cwd,
  };
}
