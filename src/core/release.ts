import { createHash } from 'node:crypto';
import path from 'node:path';
import { interpolate, type TemplateVars } from './config/interpolate.js';
import type { ServiceConfig } from './config/schema.js';
import type { Slot } from './model.js';
import type { ReleaseRecord } from './records.js';

/** A release before it has a number: what `version` of the config resolves to. */
export type ReleaseDraft = Omit<ReleaseRecord, 'n' | 'createdAt'>;

/**
 * Resolves a service's config at a version into a release: {{version}} and {{service}} filled,
 * cwd made absolute. {{slot}} stays, since one release runs in either slot; `forInstance` fills it.
 */
export function resolveRelease(
  service: string,
  config: ServiceConfig,
  version: string,
  configDir: string,
): ReleaseDraft {
  const vars: Partial<TemplateVars> = { version, service };
  const command = config.command.map((arg) => interpolate(arg, vars));
  const cwd = path.resolve(configDir, interpolate(config.cwd, vars));
  const env = Object.fromEntries(
    Object.entries(config.env).map(([k, v]) => [k, interpolate(String(v), vars)]),
  );
  const draft = { service, version, runtime: config.runtime, command, cwd, env };
  return { ...draft, configHash: hashOf(draft) };
}

function hashOf(draft: Omit<ReleaseDraft, 'configHash'>): string {
  const canonical = JSON.stringify([
    draft.runtime,
    draft.command,
    draft.cwd,
    Object.entries(draft.env).sort(([a], [b]) => (a < b ? -1 : 1)),
  ]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
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
