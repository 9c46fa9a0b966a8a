import { TealError } from './errors.js';

/**
 * The explicit states of slots and deployments, and the one place that says which moves are legal.
 * A record is never moved any other way, so an impossible history (a failed deployment that later
 * switched traffic) is a thrown error, not a silent corruption.
 */

/** What a slot holds right now. */
export type SlotState =
  /** Nothing running. */
  | 'empty'
  /** Instances of a new release are starting and being probed. */
  | 'starting'
  /** Healthy, being verified (reachable on the preview route). */
  | 'verifying'
  /** Taking users' traffic. */
  | 'live'
  /** Switched away from; in-flight requests finishing. */
  | 'draining'
  /** Drained but still running, so a rollback is a switch flip. */
  | 'warm'
  /** Being stopped. */
  | 'stopping';

const SLOT_MOVES: Record<SlotState, readonly SlotState[]> = {
  empty: ['starting', 'empty'],
  starting: ['starting', 'verifying', 'stopping', 'empty'],
  verifying: ['live', 'stopping', 'empty'],
  live: ['draining', 'live'],
  draining: ['warm', 'stopping', 'live', 'empty'],
  warm: ['live', 'stopping', 'empty', 'warm'],
  stopping: ['empty'],
};

export type DeploymentState =
  | 'queued'
  | 'starting'
  | 'verifying'
  /** Verified, waiting on the preview route for `teal promote` or `teal abort` (promote: manual). */
  | 'verified'
  | 'switching'
  /** Switched; the new slot is watched for the analysis window with the old one still running. */
  | 'analyzing'
  | 'draining'
  | 'done'
  | 'failed'
  /** The analysis failed after the switch and traffic went back to the old slot. */
  | 'rolled_back'
  | 'interrupted';

export const TERMINAL: readonly DeploymentState[] = ['done', 'failed', 'rolled_back', 'interrupted'];

const DEPLOYMENT_MOVES: Record<DeploymentState, readonly DeploymentState[]> = {
  queued: ['starting', 'switching', 'failed', 'interrupted'],
  starting: ['verifying', 'failed', 'interrupted'],
  verifying: ['verified', 'switching', 'failed', 'interrupted'],
  verified: ['switching', 'failed', 'interrupted'],
  // A flip (instant rollback) goes queued -> switching directly.
  // A first deploy has no old slot to drain: switching -> done.
  switching: ['analyzing', 'draining', 'done', 'failed', 'interrupted'],
  analyzing: ['draining', 'done', 'rolled_back', 'interrupted'],
  draining: ['done', 'interrupted'],
  done: [],
  failed: [],
  rolled_back: [],
  interrupted: [],
};

export function isTerminal(state: DeploymentState): boolean {
  return TERMINAL.includes(state);
}

export function canMoveSlot(from: SlotState, to: SlotState): boolean {
  return SLOT_MOVES[from].includes(to);
}

export function canMoveDeployment(from: DeploymentState, to: DeploymentState): boolean {
  return DEPLOYMENT_MOVES[from].includes(to);
}

export function assertSlotMove(what: string, from: SlotState, to: SlotState): void {
  if (!canMoveSlot(from, to)) {
    throw new TealError('TEAL_INTERNAL', `${what}: a slot cannot go from ${from} to ${to}`);
  }
}

export function assertDeploymentMove(what: string, from: DeploymentState, to: DeploymentState): void {
  if (!canMoveDeployment(from, to)) {
    throw new TealError('TEAL_INTERNAL', `${what}: a deployment cannot go from ${from} to ${to}`);
  }
}
