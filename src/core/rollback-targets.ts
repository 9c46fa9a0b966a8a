import { TealError } from './errors.js';
import { SLOTS } from './model.js';
import type { DeploymentRecord, ReleaseRecord, ServiceState } from './records.js';

/**
 * Which releases a rollback may go to: only those that served users. A release whose every
 * deployment failed (health, verification, an abort, a crash before the switch) was never proven
 * in front of traffic, so going "back" to it is a deploy of an untested release under the name of
 * a rollback. The dashboard, `teal history` and `teal rollback` all ask this one place.
 */

export interface ReleaseView {
  n: number;
  version: string;
  createdAt: string;
  /** Where it runs now. */
  running: 'live' | 'warm' | null;
  /** Whether it ever took users' traffic (a deployment of it switched, or it is live or warm now). */
  wentLive: boolean;
  /** Epoch ms of the last switch to it, when recorded. */
  lastSwitchedAt?: number;
  /** Whether `teal rollback --to <n>` accepts it now. */
  target: boolean;
  /** Why it is not a target, when it is not. */
  why?: string;
}

/** Every release of the service, newest first, with whether a rollback may go to it and why not. */
export function releaseViews(
  state: ServiceState,
  releases: ReleaseRecord[],
  deployments: DeploymentRecord[],
): ReleaseView[] {
  const running = new Map<number, 'live' | 'warm'>();
  for (const s of SLOTS) {
    const slot = state.slots[s];
    if (slot.release === null) continue;
    if (state.live === s && slot.state === 'live') running.set(slot.release, 'live');
    else if (slot.state === 'warm') running.set(slot.release, 'warm');
  }
  return [...releases]
    .sort((a, b) => b.n - a.n)
    .map((r) => {
      const ofIt = deployments.filter((d) => d.release === r.n);
      const switched = ofIt.filter((d) => d.switchedAt !== undefined || d.state === 'done');
      const where = running.get(r.n) ?? null;
      const wentLive = switched.length > 0 || where !== null;
      const view: ReleaseView = {
        n: r.n,
        version: r.version,
        createdAt: r.createdAt,
        running: where,
        wentLive,
        target: wentLive && where !== 'live',
      };
      const last = switched.map((d) => d.switchedAt ?? 0).reduce((a, b) => Math.max(a, b), 0);
      if (last > 0) view.lastSwitchedAt = last;
      if (where === 'live') view.why = 'it is live now';
      else if (!wentLive) view.why = neverLive(ofIt);
      return view;
    });
}

/** Why a release never went live, from its last deployment: "its deployment #9 failed at health (…)". */
function neverLive(deployments: DeploymentRecord[]): string {
  const d = deployments[deployments.length - 1];
  if (!d) return 'no deployment of it ever switched traffic to it';
  // The step that failed; the closing `done` event a restarted control plane writes names none.
  const failedStep = [...d.events].reverse().find((e) => e.status === 'failed' && e.step !== 'done')?.step;
  const detail = d.error?.message.split('\n')[0];
  const short = detail && detail.length > 160 ? `${detail.slice(0, 157)}...` : detail;
  const what =
    d.state === 'interrupted'
      ? 'was interrupted'
      : d.state === 'failed'
        ? 'failed'
        : `is ${d.state} and has not switched`;
  return `its deployment #${d.n} ${what}${failedStep ? ` at ${failedStep}` : ''}${short ? ` (${short})` : ''}`;
}

/** "5 (v2), 4 (v1)": the releases a rollback may go to, newest first. */
export function targetsText(views: ReleaseView[]): string {
  const targets = views.filter((v) => v.target);
  return targets.length === 0 ? 'none' : targets.map((v) => `${v.n} (${v.version})`).join(', ');
}

/** Refuses a rollback to a release that never served, naming why and the ones that did. */
export function assertRollbackTarget(service: string, n: number, views: ReleaseView[]): void {
  const view = views.find((v) => v.n === n);
  if (!view || view.wentLive) return;
  throw new TealError(
    'TEAL_NEVER_LIVE',
    `release ${n} (${view.version}) of ${service} never went live: ${view.why}; roll back to a release that served: ${targetsText(views)}`,
    { service, release: n, targets: views.filter((v) => v.target).map((v) => v.n) },
  );
}
