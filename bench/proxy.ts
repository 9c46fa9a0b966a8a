/**
 * The data plane benchmark (`npm run bench`): teal's builtin data plane against nginx (1 worker,
 * upstream keepalive) and haproxy (1 thread), side by side on the same upstream, in one run.
 *
 * 1. throughput: wrk -t2 -c64 for BENCH_SECONDS (10) per target, targets interleaved, ROUNDS (3)
 *    rounds, medians: straight to the upstream, nginx, haproxy, teal;
 * 2. switching: SWITCHES (50) switches between two upstreams under wrk load, for teal (an apply of
 *    the routing table), nginx (config rewrite + reload), and teal's nginx and haproxy switches
 *    (their TrafficSwitch apply): failed requests, and the time from the
 *    switch to the first response from the new upstream (also for teal when idle);
 * 3. the data plane's RSS under load (max of samples during its throughput runs).
 * Writes its section of docs/benchmarks.md. Needs wrk, nginx, haproxy (scripts/install-test-deps.sh).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureDataPlane, stopDataPlane } from '../src/proxy/builtin/launcher.js';
import { BuiltinSwitch } from '../src/proxy/builtin/switch.js';
import { prepareStateDir, renderBaseConfig } from '../src/proxy/haproxy/base-config.js';
import { HaproxySwitch } from '../src/proxy/haproxy/switch.js';
import { NginxSwitch } from '../src/proxy/nginx/switch.js';
import type { RoutingTable } from '../src/proxy/switch.js';
import { freePort as freeLoopbackPort } from '../src/runtimes/ports.js';
import { findBinary } from '../src/testing/binaries.js';
import { startHaproxy, startHaproxyConfig } from '../src/testing/haproxy.js';
import { startNginx } from '../src/testing/nginx.js';
import { machine, median, writeSection } from './report.js';
import { type WrkResult, wrk } from './wrk.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SWITCHES = Number(process.env.SWITCHES ?? 50);

for (const bin of ['wrk', 'nginx', 'haproxy']) {
  if (!findBinary(bin)) {
    process.stderr.write(`bench: ${bin} is not installed; run scripts/install-test-deps.sh\n`);
    process.exit(2);
  }
}

const dir = mkdtempSync(path.join(tmpdir(), 'teal-bench-'));
const children: ChildProcess[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

async function upstream(body: string): Promise<number> {
  const port = await freeLoopbackPort('127.0.0.1');
  const child = spawn(
    process.execPath,
    [path.join(import.meta.dirname, 'upstream.mjs'), String(port), body],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.push(child);
  await once(child.stdout!, 'data');
  return port;
}

function table(revision: number, port: number, version: string): RoutingTable {
  return {
    revision,
    services: [
      {
        service: 'web',
        routes: [{ path: '/' }],
        live: {
          id: `web/${version}/r${revision}`,
          service: 'web',
          slot: revision % 2 ? 'blue' : 'green',
          release: revision,
          version,
          endpoints: [{ host: '127.0.0.1', port }],
        },
        preview: null,
      },
    ],
  };
}

const nginxHttp = (listen: number, port: number) => `
  upstream app { server 127.0.0.1:${port}; keepalive 64; }
  server {
    listen 127.0.0.1:${listen};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }`;

/** VmRSS (everything resident, the node binary's shared pages included) and RssAnon (private memory). */
function rssMb(pid: number): { total: number; anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) / 1024;
  return { total: kb('VmRSS'), anon: kb('RssAnon') };
}

/** One keep-alive client asking in a loop: reports when answers change from one body to another. */
function watcher(port: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let stopped = false;
  let waiting: { body: string; resolve: (t: number) => void } | undefined;
  const loop = async () => {
    while (!stopped) {
      const body = await new Promise<string>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve(text.trim()));
          // A connection closed mid-response (an nginx worker retiring) ends without 'end'.
          res.on('close', () => resolve(res.complete ? text.trim() : ''));
        });
        req.setTimeout(2_000, () => req.destroy());
        req.on('error', () => resolve(''));
      });
      if (waiting && body === waiting.body) {
        waiting.resolve(performance.now());
        waiting = undefined;
      }
    }
  };
  const done = loop();
  return {
    /** Resolves with the time the first answer with `body` arrived. */
    next: (body: string) => new Promise<number>((resolve) => (waiting = { body, resolve })),
    async stop() {
      stopped = true;
      await done;
      agent.destroy();
    },
  };
}

interface SwitchResult {
  medianMs: number;
  maxMs: number;
  failed: number;
  requests: number;
}

async function switching(
  proxyPort: number,
  flip: (to: 'A' | 'B', i: number) => Promise<number>,
  loaded: boolean,
): Promise<SwitchResult> {
  const seconds = Math.ceil(SWITCHES * 0.25) + 3;
  const load = loaded ? wrk(`http://127.0.0.1:${proxyPort}/`, { seconds }) : undefined;
  await new Promise((r) => setTimeout(r, 1_000));
  const w = watcher(proxyPort);
  const times: number[] = [];
  for (let i = 0; i < SWITCHES; i++) {
    const to = i % 2 === 0 ? 'B' : 'A';
    const seen = w.next(to);
    if (process.env.BENCH_DEBUG) process.stderr.write(`switch ${i}: flipping\n`);
    const t0 = await flip(to, i);
    if (process.env.BENCH_DEBUG) process.stderr.write(`switch ${i}: flipped\n`);
    times.push((await seen) - t0);
    if (process.env.BENCH_DEBUG)
      process.stderr.write(`switch ${i} to ${to}: ${(times.at(-1) ?? 0).toFixed(1)} ms\n`);
    await new Promise((r) => setTimeout(r, 150));
  }
  await w.stop();
  const result: WrkResult | undefined = load ? await load : undefined;
  return {
    medianMs: median(times),
    maxMs: Math.max(...times),
    failed: result ? result.socketErrors + result.non2xx : 0,
    requests: result?.requests ?? 0,
  };
}

try {
  const portA = await upstream('A');
  const portB = await upstream('B');

  const nginxPort = await freeLoopbackPort('127.0.0.1');
  const nginx = await startNginx(path.join(dir, 'nginx'), nginxHttp(nginxPort, portA));
  cleanups.push(() => nginx.stop());

  const haproxyPort = await freeLoopbackPort('127.0.0.1');
  const haproxy = await startHaproxy(
    path.join(dir, 'haproxy'),
    `frontend web
  bind 127.0.0.1:${haproxyPort}
  default_backend app
backend app
  http-reuse always
  server a 127.0.0.1:${portA}`,
  );
  cleanups.push(() => haproxy.stop());

  const adminSocket = path.join(dir, 'dp.sock');
  const plane = await ensureDataPlane({
    listen: '127.0.0.1:0',
    adminSocket,
    stateFile: path.join(dir, 'dp-table.json'),
    logFile: path.join(dir, 'dp.log'),
  });
  cleanups.push(() => stopDataPlane(adminSocket));
  const tealPort = Number(plane.listen.split(':').pop());
  const sw = new BuiltinSwitch({ adminSocket });
  let revision = 1;
  await sw.apply(table(revision, portA, 'A'));

  const targets = [
    { name: 'straight to the upstream', port: portA },
    { name: 'nginx, 1 worker, upstream keepalive', port: nginxPort },
    { name: 'haproxy, 1 thread', port: haproxyPort },
    { name: 'teal data plane', port: tealPort },
  ];
  const results = new Map<string, WrkResult[]>(targets.map((t) => [t.name, []]));
  const rss: number[] = [];
  const anon: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const t of targets) {
      const sampler =
        t.port === tealPort
          ? setInterval(() => {
              const m = rssMb(plane.pid);
              rss.push(m.total);
              anon.push(m.anon);
            }, 500)
          : undefined;
      const r = await wrk(`http://127.0.0.1:${t.port}/`, { seconds: SECONDS });
      clearInterval(sampler);
      results.get(t.name)!.push(r);
      process.stderr.write(
        `round ${round} ${t.name}: ${Math.round(r.requestsPerSecond)} req/s, p99 ${r.p99Ms.toFixed(1)} ms\n`,
      );
    }
  }

  const tealFlip = async (to: 'A' | 'B') => {
    const t0 = performance.now();
    await sw.apply(table(++revision, to === 'A' ? portA : portB, to));
    return t0;
  };
  const tealIdle = await switching(tealPort, tealFlip, false);
  process.stderr.write(`teal switch idle: median ${tealIdle.medianMs.toFixed(1)} ms\n`);
  const tealLoaded = await switching(tealPort, tealFlip, true);
  process.stderr.write(
    `teal switch under load: median ${tealLoaded.medianMs.toFixed(1)} ms, ${tealLoaded.failed} failed\n`,
  );
  const nginxLoaded = await switching(
    nginxPort,
    async (to) => {
      const t0 = performance.now();
      await nginx.reload(nginxHttp(nginxPort, to === 'A' ? portA : portB));
      return t0;
    },
    true,
  );
  process.stderr.write(
    `nginx reload under load: median ${nginxLoaded.medianMs.toFixed(1)} ms, ${nginxLoaded.failed} failed\n`,
  );

  // teal driving nginx and haproxy: the same flips, through their TrafficSwitch as a deploy does.
  const nginxTealPort = await freeLoopbackPort('127.0.0.1');
  const nginxTeal = await startNginx(path.join(dir, 'nginx-teal'), `include ${dir}/nginx-teal/teal*.conf;`);
  cleanups.push(() => nginxTeal.stop());
  const nginxSwitch = await NginxSwitch.open({
    configFile: path.join(dir, 'nginx-teal', 'teal.conf'),
    check: nginxTeal.commands.check,
    reload: nginxTeal.commands.reload,
    pidFile: nginxTeal.pidFile,
    listen: `127.0.0.1:${nginxTealPort}`,
    stateDir: path.join(dir, 'nginx-teal-state'),
    accessLog: path.join(dir, 'nginx-teal-access.log'),
  });
  let nginxRevision = 1;
  await nginxSwitch.apply(table(nginxRevision, portA, 'A'));
  const nginxSwitched = await switching(
    nginxTealPort,
    async (to) => {
      const t0 = performance.now();
      await nginxSwitch.apply(table(++nginxRevision, to === 'A' ? portA : portB, to));
      return t0;
    },
    true,
  );
  process.stderr.write(
    `teal's nginx switch under load: median ${nginxSwitched.medianMs.toFixed(1)} ms, ${nginxSwitched.failed} failed\n`,
  );

  const haproxyTealPort = await freeLoopbackPort('127.0.0.1');
  const haproxyState = path.join(dir, 'haproxy-teal-state');
  await prepareStateDir(haproxyState);
  const haproxyTeal = await startHaproxyConfig(path.join(dir, 'haproxy-teal'), (socket) =>
    renderBaseConfig({ listen: `127.0.0.1:${haproxyTealPort}`, socket, stateDir: haproxyState }),
  );
  cleanups.push(() => haproxyTeal.stop());
  const haproxySwitch = new HaproxySwitch({ socket: haproxyTeal.socket, stateDir: haproxyState });
  let haproxyRevision = 1;
  await haproxySwitch.apply(table(haproxyRevision, portA, 'A'));
  const haproxySwitched = await switching(
    haproxyTealPort,
    async (to) => {
      const t0 = performance.now();
      await haproxySwitch.apply(table(++haproxyRevision, to === 'A' ? portA : portB, to));
      return t0;
    },
    true,
  );
  process.stderr.write(
    `teal's haproxy switch under load: median ${haproxySwitched.medianMs.toFixed(1)} ms, ${haproxySwitched.failed} failed\n`,
  );

  const med = (name: string, pick: (r: WrkResult) => number) => median(results.get(name)!.map(pick));
  const nginxRps = med(targets[1]!.name, (r) => r.requestsPerSecond);
  const nginxP99 = med(targets[1]!.name, (r) => r.p99Ms);
  const rows = targets.map((t) => {
    const rps = med(t.name, (r) => r.requestsPerSecond);
    const p99 = med(t.name, (r) => r.p99Ms);
    return `| ${t.name} | ${Math.round(rps).toLocaleString('en-US')} | ${(rps / nginxRps).toFixed(2)} | ${med(t.name, (r) => r.p50Ms).toFixed(2)} | ${p99.toFixed(2)} | ${(p99 / nginxP99).toFixed(2)} |`;
  });
  const tealRps = med(targets[3]!.name, (r) => r.requestsPerSecond);
  const md = `## Data plane

\`npm run bench\`: wrk -t2 -c64, ${SECONDS} s per run, ${ROUNDS} rounds interleaved, medians; one Node keep-alive
upstream in its own process. Machine: ${machine()}. ${new Date().toISOString().slice(0, 10)}.

| path | req/s | vs nginx | p50 ms | p99 ms | p99 vs nginx |
|---|---|---|---|---|---|
${rows.join('\n')}

Goals (issue 3): teal at least 0.75 of nginx's req/s (now **${(tealRps / nginxRps).toFixed(2)}**), p99 at most 1.5x nginx's.

Data plane RSS under load: max **${Math.max(...rss).toFixed(0)} MB** (median sample ${median(rss).toFixed(0)} MB), of which
private memory (RssAnon) max **${Math.max(...anon).toFixed(0)} MB**; the rest is the node binary's pages, shared with
every other Node process on the host. Goal: under 60 MB.

### Switching: ${SWITCHES} switches between two upstreams

| | failed requests | requests | switch to first new response, median | max |
|---|---|---|---|---|
| teal, idle | - | - | ${tealIdle.medianMs.toFixed(1)} ms | ${tealIdle.maxMs.toFixed(1)} ms |
| teal, under wrk -c64 | ${tealLoaded.failed} | ${tealLoaded.requests.toLocaleString('en-US')} | ${tealLoaded.medianMs.toFixed(1)} ms | ${tealLoaded.maxMs.toFixed(1)} ms |
| nginx reload, under wrk -c64 | ${nginxLoaded.failed} (${(nginxLoaded.failed / SWITCHES).toFixed(1)} per reload) | ${nginxLoaded.requests.toLocaleString('en-US')} | ${nginxLoaded.medianMs.toFixed(1)} ms | ${nginxLoaded.maxMs.toFixed(1)} ms |
| teal's nginx switch (render, nginx -t, reload, confirmed), under wrk -c64 | ${nginxSwitched.failed} (${(nginxSwitched.failed / SWITCHES).toFixed(1)} per reload) | ${nginxSwitched.requests.toLocaleString('en-US')} | ${nginxSwitched.medianMs.toFixed(1)} ms | ${nginxSwitched.maxMs.toFixed(1)} ms |
| teal's haproxy switch (runtime API), under wrk -c64 | ${haproxySwitched.failed} | ${haproxySwitched.requests.toLocaleString('en-US')} | ${haproxySwitched.medianMs.toFixed(1)} ms | ${haproxySwitched.maxMs.toFixed(1)} ms |

teal's time is from the start of the apply request to the first answer from the new upstream on a
separate keep-alive connection; nginx's from the start of the reload (config write, \`nginx -t\`, SIGHUP);
teal's nginx and haproxy switches from the start of their \`apply\`, as a deploy's switch step runs it.
nginx's loss per reload is nginx's own (old workers close idle keep-alive connections): teal's
nginx switch should lose no more than the bare reload in the same run.
Goals: zero failed requests; under 5 ms idle and 15 ms under load.`;
  process.stdout.write(`${md}\n`);
  process.stdout.write(`wrote ${writeSection('proxy', md)}\n`);
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  for (const c of children) c.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
