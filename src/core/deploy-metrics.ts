import { labelValue, observe, type SecondsHistogram, writeHistogram } from '../prometheus.js';
import type { Store } from '../stores/store.js';
import { type DeploymentRecord, listDeployments } from './records.js';
import { isTerminal } from './state.js';

/** Bounds for step durations, in seconds: a health step is ~0.1 s, a long verify minutes. */
const BOUNDS_S = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300] as const;

/**
 * The control plane's metrics in Prometheus text, computed from the deployment records in the
 * store at scrape time: deployments by kind and outcome, step durations, and time spent waiting for
 * the deploy lock. Computed, not counted in memory, so they survive control-plane restarts, agree
 * between control planes sharing a store, and only grow (records are never deleted).
 */
export async function deploymentMetrics(store: Store, services: string[]): Promise<string> {
  const outcomes = new Map<string, number>();
  const steps = new Map<string, SecondsHistogram>();
  const lockWaits = new Map<string, SecondsHistogram>();
  const running = new Map<string, number>();
  for (const svc of services) {
    running.set(svc, 0);
    for (const d of await listDeployments(store, svc)) {
      if (!isTerminal(d.state)) {
        running.set(svc, running.get(svc)! + 1);
        continue;
      }
      const key = `service="${labelValue(svc)}",kind="${d.kind}",outcome="${d.state}"`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      observeSteps(d, steps);
      const wait = lockWaitSeconds(d);
      if (wait !== undefined) {
        observe(lockWaits, svc, wait, BOUNDS_S);
      }
    }
  }
  const lines: string[] = [
    '# HELP teal_deployments_total Deployments and rollbacks that ended, by outcome (done, failed, rolled_back, interrupted).',
    '# TYPE teal_deployments_total counter',
    ...[...outcomes].map(([labels, n]) => `teal_deployments_total{${labels}} ${n}`),
    '# HELP teal_deployments_running Deployments not ended yet (a manual gate included).',
    '# TYPE teal_deployments_running gauge',
    ...[...running].map(([svc, n]) => `teal_deployments_running{service="${labelValue(svc)}"} ${n}`),
  ];
  writeHistogram(lines, 'teal_deployment_step_seconds', 'How long each step of a deployment took.', steps);
  writeHistogram(
    lines,
    'teal_lock_wait_seconds',
    'Time a deployment queued with --wait spent waiting for the deploy lock.',
    new Map([...lockWaits].map(([svc, h]) => [`service="${labelValue(svc)}"`, h])),
  );
  return `${lines.join('\n')}\n`;
}

function observeSteps(d: DeploymentRecord, steps: Map<string, SecondsHistogram>): void {
  for (const e of d.events) {
    if ((e.status !== 'done' && e.status !== 'failed') || e.ms === undefined) continue;
    const key = `service="${labelValue(d.service)}",step="${e.step}"`;
    observe(steps, key, e.ms / 1000, BOUNDS_S);
  }
}

/** From the lock step's "waiting" event to the lock being taken (or given up). */
function lockWaitSeconds(d: DeploymentRecord): number | undefined {
  const waiting = d.events.find((e) => e.step === 'lock' && e.status === 'started');
  const ended = d.events.find((e) => e.step === 'lock' && (e.status === 'done' || e.status === 'failed'));
  if (!waiting || !ended) return undefined;
  return Math.max(0, (Date.parse(ended.at) - Date.parse(waiting.at)) / 1000);
}
