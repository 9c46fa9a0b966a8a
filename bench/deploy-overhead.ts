/**
 * Deploy overhead: how long a teal deploy takes beyond the app's own time to become ready.
 *   npm run bench:deploy            (ROUNDS=10 by default)
 * 1. the example app alone: spawn it, poll /health every 2 ms, time to the first 200 (median);
 * 2. teal: a real `teal up`, then ROUNDS deploys of the example app (alternating slots, under a
 *    light keep-alive load), each timed from the API request to the deployment's end.
 * Overhead = median deploy time - median app ready time. Then ROUNDS instant rollbacks (a flip to
 * the warm slot) and back, each timed from the API request to the deployment's end, and from the
 * request to the moment the data plane serves the other release.
 * Writes its section of docs/benchmarks.md.
 */
import { spawn } from 'node:child_process';
import type { ApiClient } from '../src/cli/client.js';
import type { DeploymentRecord } from '../src/core/records.js';
import { freePort as freeLoopbackPort } from '../src/runtimes/ports.js';
import { HELLO, helloService, startTestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait, waitEnded } from '../test/helpers.js';
import { healthy, machine, median, writeSection } from './report.js';

const rounds = Number(process.env.ROUNDS ?? 10);

async function appReadyMs(): Promise<number> {
  const port = await freeLoopbackPort('127.0.0.1');
  const t0 = performance.now();
  const child = spawn(process.execPath, [HELLO], {
    env: { ...process.env, PORT: String(port), APP_VERSION: 'bench' },
    stdio: 'ignore',
  });
  while (!(await healthy(port))) await new Promise((r) => setTimeout(r, 2));
  const ms = performance.now() - t0;
  child.kill('SIGKILL');
  return ms;
}

const ready: number[] = [];
for (let i = 0; i < rounds; i++) ready.push(await appReadyMs());

const daemon = await startTestDaemon({ services: `  hello:\n${helloService({ keepWarm: '1m' })}` });
const deploys: { wall: number; record: DeploymentRecord }[] = [];
const rollbacks: { wall: number; switchMs: number }[] = [];

async function rollbackAndWait(client: ApiClient, service: string): Promise<DeploymentRecord> {
  const record = await client.request<DeploymentRecord>('POST', `/v1/services/${service}/rollback`, {});
  return waitEnded(client, record);
}
let failed = 0;
try {
  await deployAndWait(daemon.client, 'hello', 'b0');
  const load = backgroundLoad(`${daemon.info.proxy}/`, 4);
  for (let i = 1; i <= rounds; i++) {
    const t0 = performance.now();
    const record = await deployAndWait(daemon.client, 'hello', `b${i}`);
    if (record.state !== 'done') throw new Error(`deploy b${i} ${record.state}: ${record.error?.message}`);
    deploys.push({ wall: performance.now() - t0, record });
  }
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const record = await rollbackAndWait(daemon.client, 'hello');
    if (record.state !== 'done' || record.mode !== 'flip')
      throw new Error(`rollback ${i}: ${record.state} ${record.mode}: ${record.error?.message}`);
    rollbacks.push({
      wall: performance.now() - t0,
      switchMs: (record.switchedAt ?? 0) - Date.parse(record.createdAt),
    });
  }
  failed = (await load.stop()).report.failed;
} finally {
  await daemon.cleanup();
}

const step = (name: string) =>
  median(
    deploys.map((d) =>
      d.record.events.filter((e) => e.step === name && e.ms !== undefined).reduce((s, e) => s + e.ms!, 0),
    ),
  );
const appMs = median(ready);
const deployMs = median(deploys.map((d) => d.wall));
const rows = [
  ['the app alone: spawn to first 200 on /health', appMs],
  ['teal deploy: API request to deployment end', deployMs],
  ['**overhead** (deploy - app)', deployMs - appMs],
  ['  of which: start (spawn, records; beside the warm slot, which is not stopped first)', step('start')],
  ["  health (includes the app's own readiness; probes every 50 ms, 2 passes)", step('health')],
  ['  verify (one http step)', step('verify')],
  ['  switch (store CAS + data plane apply)', step('switch')],
  ['  stop the displaced warm release, after the switch', step('stop')],
  ['  drain the old slot', step('drain')],
  [
    'instant rollback (flip to the warm slot): API request to deployment end',
    median(rollbacks.map((r) => r.wall)),
  ],
  [
    '  of which: request to the data plane serving the warm release',
    median(rollbacks.map((r) => r.switchMs)),
  ],
];
const md = `## Deploy overhead

\`npm run bench:deploy\`, ${rounds} rounds, medians. Machine: ${machine()}. ${new Date().toISOString().slice(0, 10)}.
Config: example app, \`health: { interval: 50ms, healthyThreshold: 2 }\`, one http verify step, keepWarm 1m
(each deploy starts beside the warm release in the slot it lands on and stops it after the switch), then ${rounds} instant rollbacks back and forth;
4 keep-alive connections of load throughout (${failed} failed requests).

| what | ms |
|---|---|
${rows.map(([k, v]) => `| ${k} | ${(v as number).toFixed(0)} |`).join('\n')}

The health step's floor is the app's own readiness plus one probe interval for the second
consecutive pass; a larger \`interval\` or \`healthyThreshold\` adds to it directly.`;
process.stdout.write(`${md}\n`);
process.stdout.write(`wrote ${writeSection('deploy', md)}\n`);
