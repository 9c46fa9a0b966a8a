import type { Command } from 'commander';
import { formatDuration } from '../core/config/duration.js';
import { EXIT } from '../core/errors.js';
import type { PipelineRun, RunStep } from '../pipeline/records.js';
import type { ApiClient } from './client.js';
import { type ConfigOption, withConfig } from './options.js';

interface JsonOption extends ConfigOption {
  json?: boolean;
}

/** `teal pipeline run|status|history|logs|cancel`: deploy on every commit (docs/pipelines.md). */
export function pipelineCommand(program: Command): void {
  const pipeline = program
    .command('pipeline')
    .description('run pipelines: a commit through its stages, then deployed to each environment in order')
    .addHelpText(
      'after',
      `
Examples:
  teal pipeline run web                       run the head of web's first branch now
  teal pipeline run web --commit 3f2a9c1      run that commit
  teal pipeline status web                    the latest run, step by step
  teal pipeline history web                   runs, newest first
  teal pipeline logs web 12 --stage test      a stage's output
  teal pipeline cancel web                    stop the run in progress`,
    );

  withConfig(
    pipeline
      .command('run')
      .description("start a run of a commit (default: the head of the pipeline's first branch)")
      .argument('<pipeline>', 'the pipeline, as named in teal.yml')
      .option('--commit <sha>', 'the commit to run (hex, 7 to 40 digits)')
      .option('--branch <branch>', 'the branch it belongs to (and whose head runs without --commit)')
      .option('--detach', 'return once queued, without following the run')
      .option('--json', 'print the run record as JSON'),
  )
    .addHelpText(
      'after',
      `
A newer run of the same pipeline supersedes this one while it waits or is still in its stages.

Examples:
  teal pipeline run web
  teal pipeline run web --commit 3f2a9c1 --branch main
  teal pipeline run web --detach --json`,
    )
    .action(
      async (name: string, opts: JsonOption & { commit?: string; branch?: string; detach?: boolean }) => {
        const client = await clientOf(opts);
        const run = await client.request<PipelineRun>(
          'POST',
          `/v1/pipelines/${encodeURIComponent(name)}/runs`,
          {
            ...(opts.commit === undefined ? {} : { commit: opts.commit }),
            ...(opts.branch === undefined ? {} : { branch: opts.branch }),
          },
        );
        if (opts.detach) {
          await show(run, opts.json);
          return;
        }
        process.exitCode = await follow(client, run, Boolean(opts.json));
      },
    );

  withConfig(
    pipeline
      .command('status')
      .description("a pipeline's latest run (or run <n>), step by step")
      .argument('<pipeline>', 'the pipeline, as named in teal.yml')
      .argument('[run]', 'the run number; the latest when absent')
      .option('--json', 'print the run record as JSON'),
  )
    .addHelpText(
      'after',
      `
Examples:
  teal pipeline status web
  teal pipeline status web 12 --json`,
    )
    .action(async (name: string, n: string | undefined, opts: JsonOption) => {
      const client = await clientOf(opts);
      const run = n === undefined ? (await history(client, name, 1))[0] : await one(client, name, n);
      if (!run) {
        if (opts.json) process.stdout.write('null\n');
        else process.stdout.write(`pipeline ${name} has not run yet; try: teal pipeline run ${name}\n`);
        return;
      }
      await show(run, opts.json);
    });

  withConfig(
    pipeline
      .command('history')
      .description("a pipeline's runs, newest first")
      .argument('<pipeline>', 'the pipeline, as named in teal.yml')
      .option('-n, --limit <count>', 'how many to show', '20')
      .option('--json', 'print the runs as JSON'),
  )
    .addHelpText(
      'after',
      `
Examples:
  teal pipeline history web
  teal pipeline history web --json | jq '.[] | select(.state=="failed") | .commit'`,
    )
    .action(async (name: string, opts: JsonOption & { limit: string }) => {
      const client = await clientOf(opts);
      const runs = await history(client, name, Number(opts.limit) || 20);
      const { printJson, table, ago, paint } = await import('./output.js');
      if (opts.json) {
        printJson(runs);
        return;
      }
      if (runs.length === 0) {
        process.stdout.write(`pipeline ${name} has not run yet; try: teal pipeline run ${name}\n`);
        return;
      }
      const c = paint(process.stdout);
      const rows = [['#', 'commit', 'branch', 'state', 'took', 'when', 'by', 'message']];
      for (const r of runs) {
        rows.push([
          String(r.n),
          r.version,
          r.branch,
          colour(c, r.state),
          r.endedAt ? formatDuration(Date.parse(r.endedAt) - Date.parse(r.createdAt)) : '-',
          ago(r.createdAt),
          r.trigger.actor,
          (r.message ?? '').split('\n')[0]!.slice(0, 50),
        ]);
      }
      process.stdout.write(`${table(rows)}\n`);
    });

  withConfig(
    pipeline
      .command('logs')
      .description("a run's stage output (every stage, or one)")
      .argument('<pipeline>', 'the pipeline, as named in teal.yml')
      .argument('[run]', 'the run number; the latest when absent')
      .option('--stage <name>', 'only this stage'),
  )
    .addHelpText(
      'after',
      `
Examples:
  teal pipeline logs web
  teal pipeline logs web 12 --stage test`,
    )
    .action(async (name: string, n: string | undefined, opts: ConfigOption & { stage?: string }) => {
      const client = await clientOf(opts);
      const run = n === undefined ? (await history(client, name, 1))[0] : await one(client, name, n);
      if (!run) {
        process.stdout.write(`pipeline ${name} has not run yet\n`);
        return;
      }
      const query = opts.stage === undefined ? '' : `?stage=${encodeURIComponent(opts.stage)}`;
      for await (const chunk of client.text(
        `/v1/pipelines/${encodeURIComponent(name)}/runs/${run.n}/logs${query}`,
      )) {
        process.stdout.write(chunk);
      }
    });

  withConfig(
    pipeline
      .command('cancel')
      .description('stop a run: a queued one never starts; a running one is stopped where it is')
      .argument('<pipeline>', 'the pipeline, as named in teal.yml')
      .argument('[run]', 'the run number; the one in progress when absent')
      .option('--json', 'print the run record as JSON'),
  )
    .addHelpText(
      'after',
      `
A stage is killed; a deployment is aborted if it has not switched yet (after the switch it
finishes, and the run stops before the next environment).

Examples:
  teal pipeline cancel web
  teal pipeline cancel web 12`,
    )
    .action(async (name: string, n: string | undefined, opts: JsonOption) => {
      const client = await clientOf(opts);
      const run = await client.request<PipelineRun>(
        'POST',
        `/v1/pipelines/${encodeURIComponent(name)}/cancel`,
        {
          ...(n === undefined ? {} : { run: Number(n) }),
        },
      );
      await show(run, opts.json);
    });
}

async function clientOf(opts: ConfigOption & { json?: boolean }): Promise<ApiClient> {
  const { clientFor } = await import('./context.js');
  return clientFor(opts).client;
}

function history(client: ApiClient, name: string, limit: number): Promise<PipelineRun[]> {
  return client.request<PipelineRun[]>(
    'GET',
    `/v1/pipelines/${encodeURIComponent(name)}/runs?limit=${limit}`,
  );
}

function one(client: ApiClient, name: string, n: string): Promise<PipelineRun> {
  return client.request<PipelineRun>(
    'GET',
    `/v1/pipelines/${encodeURIComponent(name)}/runs/${encodeURIComponent(n)}`,
  );
}

type Paint = ReturnType<typeof import('./output.js').paint>;

function colour(c: Paint, state: string): string {
  if (state === 'done') return c.green(state);
  if (state === 'waiting') return c.yellow('waiting for promote');
  return ['failed', 'cancelled', 'interrupted'].includes(state) ? c.red(state) : c.cyan(state);
}

function stepLine(c: Paint, s: RunStep): string {
  const mark =
    s.state === 'done'
      ? c.green('✓')
      : s.state === 'failed'
        ? c.red('✗')
        : s.state === 'waiting'
          ? c.yellow('…')
          : c.dim('·');
  const took = s.ms === undefined ? '' : c.dim(` ${formatDuration(s.ms)}`);
  const exit = s.exitCode === undefined || s.exitCode === 0 ? '' : ` exit ${s.exitCode}`;
  const what =
    s.kind === 'deploy'
      ? `deploy ${s.name}${s.deployment ? ` (deployment #${s.deployment})` : ''}`
      : `${s.kind === 'stage' ? '' : `${s.kind} `}${s.name}`;
  const detail = s.detail && s.state !== 'done' ? c.dim(`  ${s.detail}`) : '';
  return `  ${mark} ${what}${exit}${took}${detail}`;
}

async function show(run: PipelineRun, json: boolean | undefined): Promise<void> {
  const { printJson, paint } = await import('./output.js');
  if (json) {
    printJson(run);
    return;
  }
  const c = paint(process.stdout);
  const lines = [
    `${c.bold(`run #${run.n}`)} of ${run.pipeline}: ${run.version} on ${run.branch} ${colour(c, run.state)} ${c.dim(`(by ${run.trigger.actor})`)}`,
    ...(run.message ? [c.dim(`  ${run.message.split('\n')[0]}`)] : []),
    ...run.steps.map((s) => stepLine(c, s)),
  ];
  if (run.state === 'waiting') {
    const gate = run.steps.find((s) => s.state === 'waiting');
    if (gate?.service) lines.push(`  teal promote ${gate.service}  or  teal abort ${gate.service}`);
  }
  if (run.error) lines.push(c.red(`  ${run.error.message}`));
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Follows a run until it ends (or waits at a gate); 0 done or waiting, 1 otherwise. */
async function follow(client: ApiClient, run: PipelineRun, json: boolean): Promise<number> {
  let last = run;
  let shown = 0;
  for await (const e of client.events(
    `/v1/pipelines/${encodeURIComponent(run.pipeline)}/runs/${run.n}/events`,
  )) {
    if (e.event === 'run') {
      last = e.data as PipelineRun;
      if (!json) {
        const { paint } = await import('./output.js');
        const c = paint(process.stderr);
        const done = last.steps.filter((s) => !['running', 'pending'].includes(s.state));
        for (; shown < done.length; shown++) process.stderr.write(`${stepLine(c, done[shown]!)}\n`);
      }
      if (last.state === 'waiting') break;
    }
    if (e.event === 'end') break;
  }
  await show(last, json);
  return last.state === 'done' || last.state === 'waiting' ? EXIT.ok : EXIT.failed;
}
