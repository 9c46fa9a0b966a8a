import type { InstanceImage } from '../runtimes/runtime.js';
import { formatDuration } from './config/duration.js';
import { interpolate } from './config/interpolate.js';
import type { HealthConfig, ServiceConfig, VerifyStep } from './config/schema.js';
import { TealError } from './errors.js';
import { type HostRecord, placeHosts } from './fleet.js';
import { otherSlot, type Slot } from './model.js';
import type { DeploymentRecord, InstanceRef, ReleaseRecord, ServiceState } from './records.js';
import { findSameRelease, type ReleaseDraft, resolveRelease } from './release.js';
import { assertRollbackTarget, releaseViews } from './rollback-targets.js';

/**
 * Planning is pure: from the service's state in the store and its config, decide what a deploy or
 * rollback will do. `teal deploy --dry-run` prints a plan; `run.ts` applies one. Tests check plans
 * without starting anything.
 */

export interface InstancePlan {
  index: number;
  /** The fleet host it runs on (services with hosts or hostLabels); absent: this machine. */
  hostId?: string;
  /** Fixed port from `ports`; a free one is picked when absent. */
  port?: number;
  portSource?: string;
}

export interface WarmInTarget {
  release: number;
  version: string;
  instances: number;
  how: 'beside' | 'replace';
}

export interface DeployPlan {
  service: string;
  kind: 'deploy' | 'rollback';
  /** "start" starts the release in the target slot; "flip" switches to the warm slot already running it. */
  mode: 'start' | 'flip';
  release: ReleaseDraft;
  /** Set when the release already exists (a redeploy or rollback reuses its number). */
  releaseN: number | null;
  targetSlot: Slot;
  /** The slot live now (null on a first deploy). */
  fromSlot: Slot | null;
  fromRelease: number | null;
  fromVersion: string | null;
  /** Instances left in the target slot: stopped before starting (not a warm release kept beside). */
  clear: InstanceRef[];
  /**
   * The warm release in the target slot (an instant rollback), and what this plan does to it:
   * `beside` starts the new release beside it and stops it only once the switch has moved the new
   * instances into the slot, so a failure leaves it warm; `replace` stops it first, because the
   * slot's fixed ports are the ones it holds.
   */
  warm: WarmInTarget | null;
  instances: InstancePlan[];
  /** Address the instances bind (docker: publish) on and the proxy reaches them at. */
  host: string;
  /**
   * A container release started again (a rollback): the image it ran, by ID, started without
   * pulling, so it comes back exactly as it ran even if its tag has moved.
   */
  image?: InstanceImage;
  health: HealthConfig;
  verify: VerifyStep[];
  /** manual: wait verified on the preview route for promote or abort (deploys only; rollbacks go on). */
  promote: 'auto' | 'manual';
  promoteTimeoutMs?: number;
  hooks: ServiceConfig['hooks'];
  /** Watch the new slot after the switch and switch back on failure (deploys only). */
  analysis?: NonNullable<ServiceConfig['analysis']>;
  drainMs: number;
  keepWarmMs: number;
  stopTimeoutMs: number;
  /** The steps in words, for --dry-run and the deployment's first event. */
  steps: string[];
}

export interface DeployRequest {
  service: string;
  config: ServiceConfig;
  configDir: string;
  version: string;
  /** The folder the release runs in instead of the configured cwd (a pipeline's artifact). */
  cwd?: string;
  state: ServiceState;
  releases: ReleaseRecord[];
  /** The fleet hosts registered now, for a service placed by hostLabels. */
  hosts?: HostRecord[];
}

const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;

export function planDeploy(req: DeployRequest): DeployPlan {
  if (!VERSION.test(req.version)) {
    throw new TealError(
      'TEAL_USAGE',
      `version ${JSON.stringify(req.version)} is not valid: use letters, digits and . _ + - (up to 128), like v2 or 1.4.0`,
    );
  }
  const draft = resolveRelease(
    req.service,
    req.config,
    req.version,
    req.configDir,
    req.cwd === undefined ? {} : { cwd: req.cwd },
  );
  const existing = findSameRelease(req.releases, draft);
  return startPlan(req.service, 'deploy', req.config, req.state, draft, existing?.n ?? null, req.hosts ?? []);
}

export interface RollbackRequest {
  service: string;
  config: ServiceConfig;
  state: ServiceState;
  releases: ReleaseRecord[];
  deployments: DeploymentRecord[];
  /** Release number to go back to; default: the one live before the current. */
  to?: number;
  /** Start the release cold even if the warm slot holds it (used when the warm instances died). */
  cold?: boolean;
  /** The fleet hosts registered now, for a service placed by hostLabels. */
  hosts?: HostRecord[];
}

export function planRollback(req: RollbackRequest): DeployPlan {
  const { state } = req;
  if (!state.live) {
    throw new TealError('TEAL_NOTHING_TO_ROLL_BACK', `${req.service} has no live release to roll back from`);
  }
  const liveSlot = state.slots[state.live];
  const idle = state.slots[otherSlot(state.live)];
  const target =
    req.to ??
    (idle.state === 'warm' && idle.release !== null
      ? idle.release
      : previousRelease(req.deployments, liveSlot.release));
  if (target === null) {
    throw new TealError(
      'TEAL_NOTHING_TO_ROLL_BACK',
      `${req.service} has no earlier release to roll back to; name one with --to <release> (see teal history ${req.service})`,
    );
  }
  if (target === liveSlot.release) {
    throw new TealError('TEAL_NOTHING_TO_ROLL_BACK', `release ${target} of ${req.service} is already live`);
  }
  const release = req.releases.find((r) => r.n === target);
  if (!release) {
    throw new TealError(
      'TEAL_NOT_FOUND',
      `${req.service} has no release ${target} (see teal history ${req.service})`,
    );
  }
  assertRollbackTarget(req.service, target, releaseViews(state, req.releases, req.deployments));
  const { n: _n, createdAt: _c, ...draft } = release;
  if (!req.cold && idle.state === 'warm' && idle.release === target && idle.instances.length > 0) {
    return flipPlan(req.service, req.config, state, draft, target);
  }
  const image = draft.container ? imageRan(req.deployments, target) : undefined;
  return startPlan(req.service, 'rollback', req.config, state, draft, target, req.hosts ?? [], image);
}

/** The image a container release last ran, preferring a deployment that completed. */
export function imageRan(deployments: DeploymentRecord[], release: number): InstanceImage | undefined {
  const ran = deployments.filter((d) => d.release === release && d.image !== undefined);
  return (ran.filter((d) => d.state === 'done').pop() ?? ran.pop())?.image;
}

/** The release that was live before `current`, from the history of completed deployments. */
export function previousRelease(deployments: DeploymentRecord[], current: number | null): number | null {
  for (let i = deployments.length - 1; i >= 0; i--) {
    const d = deployments[i]!;
    if (d.state === 'done' && d.release === current && d.fromRelease !== null && d.fromRelease !== current) {
      return d.fromRelease;
    }
  }
  return null;
}

function common(service: string, config: ServiceConfig, state: ServiceState) {
  const from = state.live;
  return {
    service,
    fromSlot: from,
    fromRelease: from ? state.slots[from].release : null,
    fromVersion: from ? state.slots[from].version : null,
    host: config.bindAddress,
    health: config.health,
    verify: config.verify,
    promote: 'auto' as 'auto' | 'manual',
    hooks: config.hooks,
    drainMs: config.drain,
    keepWarmMs: config.keepWarm,
    stopTimeoutMs: config.stopTimeout,
  };
}

function startPlan(
  service: string,
  kind: 'deploy' | 'rollback',
  config: ServiceConfig,
  state: ServiceState,
  release: ReleaseDraft,
  releaseN: number | null,
  hosts: HostRecord[],
  image?: InstanceImage,
): DeployPlan {
  const target: Slot = state.live ? otherSlot(state.live) : 'blue';
  const base = common(service, config, state);
  const slot = state.slots[target];
  const warm: WarmInTarget | null =
    slot.state === 'warm' && slot.release !== null && slot.instances.length > 0
      ? {
          release: slot.release,
          version: slot.version ?? '?',
          instances: slot.instances.length,
          // Fixed ports are the warm instances' own: the new ones cannot bind them beside.
          how: config.ports ? 'replace' : 'beside',
        }
      : null;
  const clear = warm?.how === 'beside' ? [] : slot.instances;
  const instances = placeInstances(service, config, target, hosts);
  const plan: DeployPlan = {
    ...base,
    kind,
    mode: 'start',
    release,
    releaseN,
    targetSlot: target,
    clear,
    warm,
    instances,
    ...(image ? { image } : {}),
    // A rollback restores a known release: it neither waits at a gate nor is analysed.
    ...(kind === 'deploy'
      ? {
          promote: config.promote,
          ...(config.promoteTimeout === undefined ? {} : { promoteTimeoutMs: config.promoteTimeout }),
          ...(config.analysis ? { analysis: config.analysis } : {}),
        }
      : {}),
    steps: [],
  };
  plan.steps = describeStart(plan);
  return plan;
}

/**
 * The slot's instances: `instances` on this machine, or `instancesPerHost` on each placed fleet
 * host. Fixed ports count per host (each host has its own address), so every host serves the slot
 * on the same ports.
 */
function placeInstances(
  service: string,
  config: ServiceConfig,
  target: Slot,
  hosts: HostRecord[],
): InstancePlan[] {
  const portOf = (k: number) =>
    config.ports ? { port: config.ports[target] + k, portSource: `services.${service}.ports.${target}` } : {};
  if (!config.hosts && !config.hostLabels) {
    return Array.from({ length: config.instances }, (_, index) => ({ index, ...portOf(index) }));
  }
  const perHost = config.instancesPerHost ?? 1;
  const placement = {
    instancesPerHost: perHost,
    ...(config.hosts ? { hosts: config.hosts } : {}),
    ...(config.hostLabels ? { hostLabels: config.hostLabels } : {}),
  };
  return placeHosts(service, placement, hosts).flatMap((hostId, h) =>
    Array.from({ length: perHost }, (_, k) => ({ index: h * perHost + k, hostId, ...portOf(k) })),
  );
}

function flipPlan(
  service: string,
  config: ServiceConfig,
  state: ServiceState,
  release: ReleaseDraft,
  releaseN: number,
): DeployPlan {
  const target = otherSlot(state.live!);
  const base = common(service, config, state);
  const plan: DeployPlan = {
    ...base,
    kind: 'rollback',
    mode: 'flip',
    release,
    releaseN,
    targetSlot: target,
    clear: [],
    warm: null,
    instances: state.slots[target].instances.map((i) => ({
      index: i.index,
      port: i.port,
      ...(i.hostId === undefined ? {} : { hostId: i.hostId }),
    })),
    steps: [],
  };
  plan.steps = [
    `check the warm ${target} slot (release ${releaseN}, ${release.version}) still answers ${config.health.path}`,
    `switch ${service} from ${base.fromSlot} to ${target}`,
    `drain ${base.fromSlot} for up to ${formatDuration(base.drainMs)}, then keep it warm for ${formatDuration(base.keepWarmMs)}`,
  ];
  return plan;
}

function describeStart(plan: DeployPlan): string[] {
  const { service, targetSlot: target, release } = plan;
  const ports = plan.instances.map((i) => (i.port ? String(i.port) : 'a free port')).join(', ');
  const steps: string[] = [];
  const warm = plan.warm;
  if (warm?.how === 'replace') steps.push(replaceWarmText(plan, warm));
  else if (plan.clear.length > 0) steps.push(`stop the ${plan.clear.length} instance(s) left in ${target}`);
  const what = release.container
    ? plan.image
      ? `container of ${plan.image.id.slice(0, 19)} (${release.container.image}, as it ran; not pulled)`
      : `container of ${release.container.image} (pull ${release.container.pull ?? 'missing'})${release.command.length > 0 ? `: ${release.command.join(' ')}` : ''}`
    : `${release.command.join(' ')} (in ${release.cwd})`;
  const placed = [...new Set(plan.instances.flatMap((i) => (i.hostId ? [i.hostId] : [])))];
  const where =
    placed.length > 0 ? `fleet host(s) ${placed.join(', ')} on port(s) ${ports}` : `${plan.host}:${ports}`;
  const beside =
    warm?.how === 'beside'
      ? ` beside the warm release ${warm.release} (${warm.version}), which stays the instant rollback until the switch`
      : '';
  steps.push(
    `start ${plan.instances.length} instance(s) of ${service} ${release.version} in ${target}${beside} on ${where}: ${what}`,
    `wait until ${plan.health.path} passes ${plan.health.healthyThreshold} times in a row (every ${formatDuration(plan.health.interval)}, up to ${formatDuration(plan.health.deadline)})`,
  );
  const vars = { version: release.version, service, slot: target };
  for (const step of plan.verify) {
    if ('run' in step) steps.push(`verify: run ${JSON.stringify(step.run)}`);
    else if ('load' in step) {
      const l = step.load;
      const amount =
        l.requests === undefined ? `for ${formatDuration(l.duration)}` : `${l.requests} requests`;
      const p99 = l.maxP99 === undefined ? '' : `, p99 at most ${formatDuration(l.maxP99)}`;
      steps.push(
        `verify: load ${l.method} ${interpolate(l.path, vars)} ${amount} on ${l.connections} connection(s) (${l.through}), errors at most ${l.maxErrorRate * 100}%${p99}`,
      );
    } else {
      const body =
        step.http.body === undefined ? '' : ` with ${JSON.stringify(interpolate(step.http.body, vars))}`;
      steps.push(
        `verify: ${step.http.method} ${interpolate(step.http.path, vars)} answers ${step.http.status}${body}`,
      );
    }
  }

  if (plan.promote === 'manual') {
    steps.push(
      `wait on the preview route for \`teal promote ${service}\` or \`teal abort ${service}\`${plan.promoteTimeoutMs === undefined ? '' : ` (aborted after ${formatDuration(plan.promoteTimeoutMs)})`}`,
    );
  }
  if (plan.fromSlot) {
    steps.push(
      `switch ${service} from ${plan.fromSlot} (${plan.fromVersion}) to ${target} (${release.version})`,
      ...(warm?.how === 'beside'
        ? [
            `stop the release ${warm.release} (${warm.version}) that was warm in ${target}: ${release.version} took its place`,
          ]
        : []),
      ...(plan.analysis
        ? [
            `watch ${target} for ${formatDuration(plan.analysis.window)}: errors at most ${plan.analysis.maxErrorRate * 100}%${plan.analysis.maxP99 === undefined ? '' : `, p99 at most ${formatDuration(plan.analysis.maxP99)}`}${plan.analysis.maxP99Ratio === undefined ? '' : `, p99 at most ${plan.analysis.maxP99Ratio}x ${plan.fromSlot}'s`}; on failure switch back to ${plan.fromSlot}`,
          ]
        : []),
      `drain ${plan.fromSlot} for up to ${formatDuration(plan.drainMs)}`,
      plan.keepWarmMs > 0
        ? `keep ${plan.fromSlot} warm for ${formatDuration(plan.keepWarmMs)} (instant rollback), then stop it`
        : `stop ${plan.fromSlot}`,
    );
  } else {
    steps.push(`switch ${service} live to ${target} (first release)`);
  }
  return steps;
}

/** The plain warning a fixed-ports plan gives before it stops the warm release (issue 14). */
export function replaceWarmText(plan: DeployPlan, warm: WarmInTarget): string {
  const ports = plan.instances.map((i) => i.port).filter((p) => p !== undefined);
  const fixed = ports.length > 0 ? ` (${[...new Set(ports)].join(', ')})` : '';
  return `the ${plan.targetSlot} slot's ports are fixed${fixed}: stop the warm release ${warm.release} (${warm.version}) to start ${plan.release.version}; after a failure nothing is warm`;
}
