/**
 * Deploy time for containers next to processes, in one run on one machine:
 *   npm run bench:docker        (ROUNDS=8 by default; needs root and dockerd, as the tests)
 * 1. the container alone: DockerRuntime.start of the example app's image (built FROM scratch on an
 *    isolated dockerd), polling /health every 2 ms, to the first 200;
 * 2. a real `teal up` with the same example app as a process service and as a docker service (same
 *    health, verify, drain), ROUNDS deploys of each, each timed from the API request to the end.
 * Overhead = median deploy - median ready. Writes its section of docs/benchmarks.md.
 */
import { tmpdir } from 'node:os';
import { DockerRuntime } from '../src/runtimes/docker/docker.js';
import { HELLO, startTestDaemon } from '../src/testing/daemon.js';
import { buildNodeImage, startDockerd } from '../src/testing/docker.js';
import { deployAndWait } from '../test/helpers.js';
import { healthy, machine, median, writeSection } from './report.js';

const rounds = Number(process.env.ROUNDS ?? 8);
const REPO = 'teal-bench/hello';

const common = [
  'env: { APP_VERSION: "{{version}}" }',
  'health: { interval: 50ms, healthyThreshold: 2, deadline: 15s }',
  'verify: [{ http: { path: /, body: "hello {{version}}" } }]',
  'drain: 5s',
  'keepWarm: 1m',
  'stopTimeout: 3s',
];
const service = (name: string, fields: string[]) =>
  `  ${name}:\n${[...fields, ...common].map((f) => `    ${f}`).join('\n')}`;

const dockerd = await startDockerd();
const ready: number[] = [];
const took: Record<'process' | 'docker', number[]> = { process: [], docker: [] };
try {
  await buildNodeImage(dockerd.engine, `${REPO}:base`);
  for (let i = 0; i <= rounds; i++) {
    await dockerd.engine.json('POST', `/images/${REPO}:base/tag`, { query: { repo: REPO, tag: `b${i}` } });
  }
  const runtime = new DockerRuntime({ stateDir: tmpdir(), host: dockerd.host });
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const instance = await runtime.start(
      {
        labels: { service: 'bench', slot: 'blue', release: 1, deployment: 1, version: 'b' },
        index: 0,
        command: [],
        cwd: '/',
        env: { APP_VERSION: 'b' },
        host: '127.0.0.1',
        container: { image: `${REPO}:base`, port: 3000, pull: 'never', init: true },
      },
      { signal: AbortSignal.timeout(30_000) },
    );
    while (!(await healthy(instance.port))) await new Promise((r) => setTimeout(r, 2));
    ready.push(performance.now() - t0);
    await runtime.stop(instance, { timeoutMs: 3_000 });
  }
  await runtime.close();

  const daemon = await startTestDaemon({
    services: [
      service('proc', [`command: ${JSON.stringify([process.execPath, HELLO])}`, 'routes: [{ path: /p }]']),
      service('boxed', ['runtime: docker', `image: "${REPO}:{{version}}"`, 'port: 3000', 'pull: never']),
    ].join('\n'),
    extraConfig: `docker: { host: "${dockerd.host}" }\n`,
  });
  try {
    for (const [svc, kind] of [
      ['proc', 'process'],
      ['boxed', 'docker'],
    ] as const) {
      for (let i = 0; i <= rounds; i++) {
        const t0 = performance.now();
        const d = await deployAndWait(daemon.client, svc, `b${i}`);
        if (d.state !== 'done') throw new Error(`${svc} b${i}: ${d.state}: ${d.error?.message}`);
        // The first deploy of each has no warm slot to clear: not a steady-state deploy.
        if (i > 0) took[kind].push(performance.now() - t0);
      }
    }
  } finally {
    await daemon.cleanup();
  }
} finally {
  await dockerd.close();
}

const readyMs = median(ready);
const rows: [string, number][] = [
  ['the container alone: create + start to first 200 on /health', readyMs],
  ['teal deploy, process: API request to deployment end', median(took.process)],
  ['teal deploy, docker: API request to deployment end', median(took.docker)],
  ['docker deploy overhead (docker deploy - container ready)', median(took.docker) - readyMs],
];
const md = `## Container deploys

\`npm run bench:docker\` (needs root and dockerd, as the tests): the example app as processes and as
containers (a \`FROM scratch\` image of the host's node), ${rounds} deploys of each, each timed from
the API request to the deployment's end (start, health, verify, switch, drain), medians.
Machine: ${machine()}. ${new Date().toISOString().slice(0, 10)}.

| what | ms |
|---|---|
${rows.map(([k, v]) => `| ${k} | ${v.toFixed(0)} |`).join('\n')}

raw: ready ${ready.map(Math.round).join(', ')}; process ${took.process.map(Math.round).join(', ')}; docker ${took.docker.map(Math.round).join(', ')}`;
process.stdout.write(`${md}\n`);
process.stdout.write(`wrote ${writeSection('docker', md)}\n`);
