#!/usr/bin/env node
/**
 * The main job, shown: start teal on the embedded defaults, deploy examples/hello v1, then deploy v2
 * while a keep-alive load generator sends requests through the proxy, and report what happened.
 * Run by scripts/demo.sh (which does the set-up first). `--exit` ends after the report (tests).
 */
import { appendFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ApiClient } from '../cli/client.js';
import { actor } from '../cli/context.js';
import { paint } from '../cli/output.js';
import { Progress } from '../cli/progress.js';
import { formatDuration } from '../core/config/duration.js';
import { loadConfig } from '../core/config/load.js';
import { TealError, toTealError } from '../core/errors.js';
import type { DeploymentEvent, DeploymentRecord } from '../core/records.js';
import { startDaemon } from '../daemon/daemon.js';
import { ensureStateDir, statePaths } from '../daemon/files.js';
import { createLogger } from '../daemon/log.js';
import { teardown } from '../daemon/teardown.js';
import { packageRoot } from '../paths.js';
import { reachableExample } from '../reachable-copy.js';
import { type LoadSample, runLoad } from '../verify/load.js';

const EXAMPLE = path.join(packageRoot(), 'examples/hello/teal.yml');

const { values: args } = parseArgs({
  options: {
    config: { type: 'string', default: EXAMPLE },
    connections: { type: 'string', default: '32' },
    exit: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});

const out = process.stdout;
const c = paint(out);
const say = (text = '') => out.write(`${text}\n`);
/** A path as short as it can be said: relative when it is below here, else absolute. */
const near = (file: string) => {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') ? rel : file;
};

async function deploy(client: ApiClient, service: string, version: string): Promise<DeploymentRecord> {
  const record = await client.request<DeploymentRecord>('POST', `/v1/services/${service}/deployments`, {
    version,
  });
  const progress = new Progress(out);
  for await (const e of client.events(`/v1/services/${service}/deployments/${record.n}/events`)) {
    if (e.event === 'step') progress.event(e.data as DeploymentEvent);
    if (e.event === 'end') break;
  }
  progress.stop();
  const final = await client.request<DeploymentRecord>(
    'GET',
    `/v1/services/${service}/deployments/${record.n}`,
  );
  if (final.state !== 'done') {
    throw new TealError(
      'TEAL_DEPLOY_FAILED',
      `deploying ${service} ${version} ended ${final.state}: ${final.error?.message ?? '?'}`,
    );
  }
  return final;
}

async function main(): Promise<void> {
  const asked = path.resolve(args.config!);
  // Run as root, teal runs the app as nobody, who cannot enter a clone under /root (0700): the
  // bundled example then runs from a copy nobody can read, rather than failing its first start.
  const example =
    asked === EXAMPLE ? reachableExample(path.dirname(asked), 'teal-demo-') : { dir: '', copied: false };
  const configFile = example.copied ? path.join(example.dir, path.basename(asked)) : asked;
  const connections = Number(args.connections);
  const shown = path.relative(process.cwd(), asked) || asked;
  say(c.bold('teal demo: a blue-green deploy with zero downtime, on the embedded defaults'));
  say(`  config     ${shown}`);
  if (example.copied) {
    say(
      `  copy       ${example.dir}: teal runs as root, so the app runs as nobody, who cannot reach ${path.dirname(asked)}`,
    );
  }

  const t0 = performance.now();
  // The daemon's own log goes to its file, so the demo's output stays the story of the deploy.
  const paths = statePaths(loadConfig(configFile).stateDir);
  ensureStateDir(paths);
  const log = createLogger({
    pretty: false,
    write: (line) => appendFileSync(paths.daemonLog, line, { mode: 0o600 }),
  });
  const daemon = await startDaemon({ configFile, log });
  say(
    `  state dir  ${path.relative(process.cwd(), daemon.paths.dir) || daemon.paths.dir} (daemon log: daemon.log)`,
  );
  say(
    `\n${c.bold('1. teal is up')} in ${formatDuration(performance.now() - t0)}: proxy ${daemon.proxyUrl}, API ${daemon.apiUrl}`,
  );

  const services = Object.keys(daemon.engine.serviceConfigs());
  const service = services.includes('hello') ? 'hello' : services[0]!;
  const client = new ApiClient({
    base: daemon.apiUrl,
    token: daemon.token,
    actor: `${actor().replace(' (cli)', '')} (demo)`,
    startHint: 'scripts/demo.sh',
  });

  let stopping = false;
  const cleanup = async () => {
    if (stopping) return;
    stopping = true;
    await daemon.close();
    if (!args.keep) {
      await teardown(daemon.paths);
      if (example.copied) rmSync(example.dir, { recursive: true, force: true });
    }
  };

  try {
    say(`\n${c.bold(`2. deploy ${service} v1`)}`);
    await deploy(client, service, 'v1');

    say(
      `\n${c.bold(`3. deploy ${service} v2`)} while ${connections} keep-alive connections send requests through the proxy`,
    );
    const load = new AbortController();
    const samples: { start: number; end: number; version: string | null; ok: boolean }[] = [];
    const onSample = (s: LoadSample) =>
      samples.push({
        start: s.start,
        end: s.end,
        ok: s.status !== null && s.status < 300,
        version: /hello (\S+)/.exec(s.body ?? '')?.[1] ?? null,
      });
    const running = runLoad({
      url: `${daemon.proxyUrl}/`,
      connections,
      signal: load.signal,
      captureBody: true,
      onSample,
    });
    await new Promise((r) => setTimeout(r, 1_000));
    const record = await deploy(client, service, 'v2');
    await new Promise((r) => setTimeout(r, 1_000));
    load.abort();
    const report = await running;

    const switchedAt = record.switchedAt ?? 0;
    const firstNew = samples
      .filter((s) => s.version === 'v2')
      .reduce((m, s) => Math.min(m, s.end), Number.POSITIVE_INFINITY);
    const lastOld = samples.filter((s) => s.version === 'v1').reduce((m, s) => Math.max(m, s.end), 0);
    const oldAfter = samples.filter((s) => s.start > switchedAt && s.version !== 'v2').length;
    const steps = record.events.filter((e) => e.status === 'done' && e.ms !== undefined && e.step !== 'done');
    const began =
      Date.parse(record.events.find((e) => e.step === 'switch' && e.status === 'started')?.at ?? '') ||
      switchedAt;
    const rel = (t: number) =>
      t >= began ? `${formatDuration(t - began)} after` : `${formatDuration(began - t)} before`;
    const took = Date.parse(record.endedAt!) - Date.parse(record.createdAt);

    say(`\n${c.bold('What happened')}`);
    for (const e of steps)
      say(`  ${e.step.padEnd(8)} ${formatDuration(e.ms!).padStart(7)}  ${e.message.split('\n')[0]}`);
    say(`  ${'total'.padEnd(8)} ${formatDuration(took).padStart(7)}`);
    say();
    const failed = report.failed === 0 ? c.green('0') : c.red(String(report.failed));
    say(
      `  requests sent     ${report.sent.toLocaleString('en-US')} (${Math.round(report.requestsPerSecond).toLocaleString('en-US')}/s, p99 ${report.latency.p99Ms.toFixed(1)}ms)`,
    );
    say(
      `  requests failed   ${failed}${report.failed ? ` ${JSON.stringify({ ...report.errors, ...report.statuses })}` : ''}`,
    );
    say(
      `  switch            began ${formatDuration(began - Date.parse(record.createdAt))} into the deploy, acknowledged by the proxy ${formatDuration(switchedAt - began)} later; first v2 response ${rel(firstNew)} it began, last v1 response ended ${rel(lastOld)} it began`,
    );
    say(
      `  after the switch  ${oldAfter === 0 ? c.green('every request answered by v2') : c.red(`${oldAfter} request(s) started after the switch got v1`)}`,
    );

    say(`\n${c.bold('Look at it')}`);
    say(`  dashboard ${daemon.apiUrl}/       log in with the token: cat ${near(daemon.paths.token)}`);
    say(`  proxy     ${daemon.proxyUrl}/            curl ${daemon.proxyUrl}/  -> hello v2`);
    say(`  warm v1   curl -H 'X-Teal-Slot: ${record.fromSlot}' ${daemon.previewUrl}/`);
    say(`  API       ${daemon.apiUrl}/v1/services/${service}  (Bearer token in ${near(daemon.paths.token)})`);
    const runningConfig = near(configFile);
    say(`  try       npx teal status -c ${runningConfig}`);
    say(`            npx teal rollback ${service} -c ${runningConfig}`);
    say(`            npx teal deploy ${service} --version v3 -c ${runningConfig}`);
    if (report.failed > 0 || oldAfter > 0) process.exitCode = 1;
  } catch (err) {
    await cleanup();
    throw err;
  }

  if (args.exit) {
    await cleanup();
    return;
  }
  say(c.dim(`\nServing until Ctrl-C${args.keep ? '' : ' (then everything the demo started is stopped)'}.`));
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await cleanup();
  say('stopped.');
}

main().catch((err: unknown) => {
  const e = toTealError(err);
  process.stderr.write(`teal demo: ${e.message}\n`);
  process.exitCode = e.exitCode;
});
