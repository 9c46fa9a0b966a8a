import { labelValue, observe, type SecondsHistogram, writeHistogram } from '../prometheus.js';
import type { Store } from '../stores/store.js';
import { isTerminalRun, type PipelineRun } from './records.js';

/** Bounds in seconds: a lint stage takes a second, a test suite minutes, a whole run up to an hour. */
const BOUNDS_S = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600] as const;

/**
 * Pipeline runs in Prometheus text, computed from the run records in the store at scrape time (as
 * the deployments' metrics are): runs by outcome, runs in progress, and how long stages and whole
 * runs took. Every pipeline that has runs in the store is counted, whatever teal.yml says now.
 */
export async function pipelineMetrics(store: Store): Promise<string> {
  const runs = (await store.list<PipelineRun>('/pipelines/')).map((e) => e.value);
  const outcomes = new Map<string, number>();
  const running = new Map<string, number>();
  const stages = new Map<string, SecondsHistogram>();
  const durations = new Map<string, SecondsHistogram>();
  for (const run of runs) {
    const pipeline = `pipeline="${labelValue(run.pipeline)}"`;
    if (!isTerminalRun(run.state)) {
      running.set(pipeline, (running.get(pipeline) ?? 0) + 1);
      continue;
    }
    const key = `${pipeline},outcome="${run.state}"`;
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    for (const step of run.steps) {
      if (step.kind !== 'stage' || step.ms === undefined) continue;
      if (step.state !== 'done' && step.state !== 'failed') continue;
      observe(
        stages,
        `${pipeline},stage="${labelValue(step.name)}",outcome="${step.state}"`,
        step.ms / 1000,
        BOUNDS_S,
      );
    }
    if (run.startedAt && run.endedAt) {
      const seconds = Math.max(0, (Date.parse(run.endedAt) - Date.parse(run.startedAt)) / 1000);
      observe(durations, `${pipeline},outcome="${run.state}"`, seconds, BOUNDS_S);
    }
  }
  const lines: string[] = [
    '# HELP teal_pipeline_runs_total Pipeline runs that ended, by outcome (done, failed, cancelled, superseded, interrupted).',
    '# TYPE teal_pipeline_runs_total counter',
    ...[...outcomes].map(([labels, n]) => `teal_pipeline_runs_total{${labels}} ${n}`),
    '# HELP teal_pipeline_runs_running Pipeline runs not ended yet (queued, running, deploying, waiting for promote).',
    '# TYPE teal_pipeline_runs_running gauge',
    ...[...running].map(([labels, n]) => `teal_pipeline_runs_running{${labels}} ${n}`),
  ];
  writeHistogram(lines, 'teal_pipeline_stage_seconds', 'How long each stage of a pipeline run took.', stages);
  writeHistogram(
    lines,
    'teal_pipeline_run_seconds',
    'How long a pipeline run took, from its start to its end (a manual gate included).',
    durations,
  );
  return `${lines.join('\n')}\n`;
}
