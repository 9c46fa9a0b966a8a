/**
 * Each process covering the other's crash, measured under keep-alive load:
 *   npm run bench:dataplane-heal            (RUNS=10, DEPLOYS=20, KILLS=10 by default)
 * 1. the builtin data plane SIGKILLed RUNS times: from the kill to the first 2xx on the public
 *    port (fresh connections polled every few ms), and the failed requests of a 16-connection load;
 * 2. the control plane SIGKILLed RUNS times: from the kill to the respawned one's API answering;
 * 3. the chaos run (src/testing/chaos.ts): DEPLOYS deploys with the control plane and the data
 *    plane each killed KILLS times at random moments; its counts.
 * Prints `model name` from /proc/cpuinfo with the figures and writes its section of docs/benchmarks.md.
 */
import { readFileSync } from 'node:fs';
import { readDaemonInfo } from '../src/daemon/files.js';
import { pidAlive } from '../src/proc.js';
import { dataPlaneInfo } from '../src/proxy/builtin/launcher.js';
import { runChaos } from '../src/testing/chaos.js';
import { helloService, startTestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait } from '../test/helpers.js';
import { machine, median, writeSection } from './report.js';

const runs = Number(process.env.RUNS ?? 10);
const deploys = Number(process.env.DEPLOYS ?? 20);
const kills = Number(process.env.KILLS ?? 10);
const cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';

async function until(fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const daemon = await startTestDaemon({ services: `  hello:\n${helloService()}`, respawn: true });
const dataMs: number[] = [];
const dataFailed: number[] = [];
const controlMs: number[] = [];
try {
  await deployAndWait(daemon.client, 'hello', 'v1');
  const proxy = `${daemon.info.proxy}/`;
  for (let i = 0; i < runs; i++) {
    const load = backgroundLoad(proxy, 16);
    await new Promise((r) => setTimeout(r, 300));
    const plane = (await dataPlaneInfo(daemon.paths.proxySocket))!;
    const t0 = performance.now();
    process.kill(plane.pid, 'SIGKILL');
    await until(async () => !pidAlive(plane.pid));
    await until(async () => (await fetch(proxy, { signal: AbortSignal.timeout(500) })).ok);
    dataMs.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 700));
    const { report } = await load.stop();
    dataFailed.push(report.failed);
  }
  for (let i = 0; i < runs; i++) {
    const before = readDaemonInfo(daemon.paths)!;
    const t0 = performance.now();
    process.kill(before.pid, 'SIGKILL');
    await until(async () => {
      const now = readDaemonInfo(daemon.paths);
      return !!now && now.pid !== before.pid && (await fetch(`${now.api}/v1/health`)).ok;
    });
    controlMs.push(performance.now() - t0);
    // A control plane killed within 30 s of its respawn counts as a crash loop and is backed off
    // (respawn.ts): wait past that so each run measures a first respawn.
    await new Promise((r) => setTimeout(r, 31_000));
  }
} finally {
  await daemon.cleanup();
}

const chaos = await runChaos({ deploys, kills });
await chaos.daemon.cleanup();
const r = chaos.report;
const states = r.deploys.reduce<Record<string, number>>((m, d) => {
  m[d.state] = (m[d.state] ?? 0) + 1;
  return m;
}, {});
const back = (what: 'control' | 'data') => r.kills.filter((k) => k.what === what).map((k) => k.backMs);

const fmt = (xs: number[]) => `median ${median(xs).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms`;
const lines = [
  '## Data plane and control plane healing each other (`npm run bench:dataplane-heal`)',
  '',
  `model name: ${cpu}; ${machine()}`,
  '',
  `- data plane SIGKILLed under a 16-connection keep-alive load, ${runs} runs: kill to the public port serving again ${fmt(dataMs)}; failed requests per kill ${dataFailed.join(', ')} (requests in flight and connection attempts while nothing listened)`,
  `- control plane SIGKILLed, ${runs} runs: kill to the respawned control plane's API answering ${fmt(controlMs)} (the load never notices: 0 failed)`,
  `- chaos (seed ${r.seed}): ${deploys} deploys, control plane and data plane each SIGKILLed ${kills} times at random moments, ${r.requests} requests: ${r.failedOther} failed outside data plane kills (control plane kills: 0 is the goal), ${r.failedDataPlane} failed inside the data plane kills' windows; deploys ${Object.entries(
    states,
  )
    .map(([s, n]) => `${n} ${s}`)
    .join(
      ', ',
    )}; back after a control plane kill ${fmt(back('control'))}, after a data plane kill ${fmt(back('data'))}; the last live release (${r.finalLive}) serves`,
];
const text = lines.join('\n');
process.stdout.write(`${text}\n`);
writeSection('dataplane-heal', text);
