import type { ErrorCode } from '../core/errors.js';

/**
 * A pipeline run's record, kept at /pipelines/<name>/runs/<n> (relative to the store's prefix, as
 * the services' keys are). Written whole after every change, so a watcher (the API's event stream,
 * `teal pipeline status`) sees each step as it happens.
 */
export const pipelineKeys = {
  runs: (pipeline: string) => `/pipelines/${pipeline}/runs/`,
  run: (pipeline: string, n: number) => `/pipelines/${pipeline}/runs/${n}`,
};

export type RunState =
  | 'queued'
  /** Checking out, running stages, keeping the artifact. */
  | 'running'
  /** Deploying its environments in order. */
  | 'deploying'
  /** An environment with promote: manual is verified and waits for `teal promote`. */
  | 'waiting'
  | 'done'
  | 'failed'
  | 'cancelled'
  /** A newer commit of the pipeline took its place before it deployed anything. */
  | 'superseded'
  /** The control plane stopped while it ran. */
  | 'interrupted';

export const TERMINAL_RUN: readonly RunState[] = ['done', 'failed', 'cancelled', 'superseded', 'interrupted'];

export function isTerminalRun(state: RunState): boolean {
  return TERMINAL_RUN.includes(state);
}

export interface RunStep {
  kind: 'checkout' | 'stage' | 'artifact' | 'deploy';
  name: string;
  state: 'pending' | 'running' | 'waiting' | 'done' | 'failed' | 'cancelled';
  startedAt?: string;
  ms?: number;
  /** A stage's exit code (null when it was killed). */
  exitCode?: number | null;
  /** The last lines of a stage's output; the whole of it is in `log`. */
  tail?: string;
  /** The file with a stage's whole output. */
  log?: string;
  /** For a deploy: the service and its deployment. */
  service?: string;
  deployment?: number;
  detail?: string;
}

/** Where a run came from: a provider's webhook delivery or `teal pipeline run`. */
export interface RunTrigger {
  kind: 'github' | 'gitlab' | 'gitea' | 'generic' | 'cli' | 'api';
  actor: string;
  /** The provider's delivery id: a redelivery with the same id starts no second run. */
  delivery?: string;
}

export interface PipelineRun {
  n: number;
  pipeline: string;
  state: RunState;
  /** Full sha (what the webhook or --commit named; resolved to 40 hex once checked out). */
  commit: string;
  /** The release version the environments are deployed with: the short commit. */
  version: string;
  branch: string;
  /** The head commit's message and author, as data only: they reach stages as env vars. */
  message?: string;
  author?: string;
  trigger: RunTrigger;
  steps: RunStep[];
  /** The folder kept for the release (process services run in it). */
  artifact?: string;
  createdAt: string;
  startedAt?: string;
  endedAt?: string;
  /** Set when superseded: the run that took its place. */
  supersededBy?: number;
  error?: { code: ErrorCode; message: string };
}
