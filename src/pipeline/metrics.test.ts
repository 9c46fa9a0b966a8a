import { describe, expect, it } from 'vitest';
import { memoryStore } from '../stores/memory.js';
import type { Json } from '../stores/store.js';
import { pipelineMetrics } from './metrics.js';
import { type PipelineRun, pipelineKeys } from './records.js';

const run = (n: number, state: PipelineRun['state'], testMs?: number): PipelineRun => ({
  n,
  pipeline: 'web',
  state,
  commit: 'a'.repeat(40),
  version: 'aaaaaaa',
  branch: 'main',
  trigger: { kind: 'cli', actor: 'alice' },
  steps:
    testMs === undefined
      ? []
      : [
          { kind: 'checkout', name: 'checkout', state: 'done', ms: 40 },
          {
            kind: 'stage',
            name: 'test',
            state: state === 'failed' ? 'failed' : 'done',
            ms: testMs,
            exitCode: 0,
          },
        ],
  createdAt: '2030-01-01T00:00:00.000Z',
  startedAt: '2030-01-01T00:00:00.000Z',
  ...(state === 'running' ? {} : { endedAt: '2030-01-01T00:00:07.000Z' }),
});

describe('pipeline metrics', () => {
  it('counts ended runs by outcome, runs in progress, and stage and run durations from the records', async () => {
    const store = memoryStore();
    const empty = await pipelineMetrics(store);
    expect(empty).toContain('# TYPE teal_pipeline_runs_total counter');
    expect(empty).not.toMatch(/^teal_pipeline_runs_total\{/m);

    const runs = [run(1, 'done', 1200), run(2, 'failed', 300), run(3, 'done', 2000), run(4, 'running')];
    for (const r of runs) await store.put(pipelineKeys.run(r.pipeline, r.n), r as unknown as Json);
    const text = await pipelineMetrics(store);
    expect(text).toContain('teal_pipeline_runs_total{pipeline="web",outcome="done"} 2\n');
    expect(text).toContain('teal_pipeline_runs_total{pipeline="web",outcome="failed"} 1\n');
    expect(text).toContain('teal_pipeline_runs_running{pipeline="web"} 1\n');
    expect(text).toContain(
      'teal_pipeline_stage_seconds_count{pipeline="web",stage="test",outcome="done"} 2\n',
    );
    expect(text).toContain(
      'teal_pipeline_stage_seconds_bucket{pipeline="web",stage="test",outcome="done",le="1"} 0\n',
    );
    expect(text).toContain(
      'teal_pipeline_stage_seconds_bucket{pipeline="web",stage="test",outcome="done",le="2.5"} 2\n',
    );
    expect(text).toContain(
      'teal_pipeline_stage_seconds_sum{pipeline="web",stage="test",outcome="done"} 3.200\n',
    );
    expect(text).toContain('teal_pipeline_run_seconds_count{pipeline="web",outcome="done"} 2\n');
    expect(text).toContain('teal_pipeline_run_seconds_sum{pipeline="web",outcome="done"} 14.000\n');
    // The checkout is no stage.
    expect(text).not.toContain('stage="checkout"');
  });
});
