import type { Store } from '../stores/store.js';
import { isTerminalRun, type PipelineRun } from './records.js';

/** Bounds in seconds: a lint stage takes a second, a test suite minutes, a whole run up to an hour. */
const BOUNDS_S = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600] as const;

class Histogram {
  readonly counts: number[] = BOUNDS_S.map(() => 0);
  count = 0;
  sum = 0;

  record(seconds: number): void {
    this.count++;
    this.sum += seconds;
    BOUNDS_S.forEach((le, i) => {
      if (seconds <= le) this.counts[i]!++;
    });
  }
}

function esc(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function observe(series: Map<string, Histogram>, labels: string, seconds: number): void {
  const h = series.get(labels) ?? new Histogram();
  h.record(seconds);
  series.set(labels, h);
}

/**
 * Pipeline runs in Prometheus text, computed from the run records in the store at scrape time (as
 * the deployments' metrics are): runs by outcome, runs in progress, and how long stages and whole
 * runs took. Every pipeline that has runs in the store is counted, whatever teal.yml says now.
 */
export async function pipelineMetrics(store: Store): Promise<string> {
  const runs = (await store.list<PipelineRun>('/pipelines/')).map((e) => e.value);
  const outcomes = new Map<string, number>();
  const running = new Map<string, number>();
  const stages = new Map<string, Histogram>();
  const durations = new Map<string, Histogram>();
  for (const run of runs) {
    const pipeline = `pipeline="${esc(run.pipeline)}"`;
    if (!isTerminalRun(run.state)) {
      running.set(pipeline, (running.get(pipeline) ?? 0) + 1);
      continue;
    }
    const key = `${pipeline},outcome="${run.state}"`;
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    for (const step of run.steps) {
      if (step.kind !== 'stage' || step.ms === undefined) continue;
      if (step.state !== 'done' && step.state !== 'failed') continue;
      observe(stages, `${pipeline},stage="${esc(step.name)}",outcome="${step.state}"`, step.ms / 1000);
    }
    if (run.startedAt && run.endedAt) {
      const seconds = Math.max(0, (Date.parse(run.endedAt) - Date.parse(run.startedAt)) / 1000);
      observe(durations, `${pipeline},outcome="${run.state}"`, seconds);
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
  histogram(lines, 'teal_pipeline_stage_seconds', 'How long each stage of a pipeline run took.', stages);
  histogram(
    lines,
    'teal_pipeline_run_seconds',
    'How long a pipeline run took, from its start to its end (a manual gate included).',
    durations,
  );
  return `${lines.join('\n')}\n`;
}

function histogram(lines: string[], name: string, help: string, series: Map<string, Histogram>): void {
  lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
  for (const [labels, h] of series) {
    BOUNDS_S.forEach((le, i) => {
      lines.push(`${name}_bucket{${labels},le="${le}"} ${h.counts[i]}`);
    });
    lines.push(
      `${name}_bucket{${labels},le="+Inf"} ${h.count}`,
      `${name}_sum{${labels}} ${h.sum.toFixed(3)}`,
      `${name}_count{${labels}} ${h.count}`,
    );
  }
}
