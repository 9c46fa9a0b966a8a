import { ApiClient } from '../cli/client.js';
import type { DeploymentRecord } from '../core/records.js';
import { isTerminal } from '../core/state.js';
import { readDaemonInfo } from '../daemon/files.js';
import { pidAlive } from '../proc.js';
import { dataPlaneInfo } from '../proxy/builtin/launcher.js';
import type { DataPlaneStatus } from '../proxy/builtin/watchdog.js';
import { freePort } from '../runtimes/ports.js';
import { type LoadSample, runLoad } from '../verify/load.js';
import { helloService, startTestDaemon, type TestDaemon } from './daemon.js';

/**
 * The chaos run: `deploys` deploys through the API under a keep-alive load, with the
 * control plane and the data plane each SIGKILLed `kills` times at random moments (a random point
 * of a random deploy's run). Nobody but teal restarts anything: the data plane respawns the
 * control plane, the control plane restarts the data plane. A kill waits until both are up again
 * before the next one (killing both at once is what the boot supervisor covers, not this).
 *
 * Failed requests are put down to the data plane kill whose window (the kill to its successor
 * serving, plus a second) they started in; any other failure counts against the control plane.
 */
export interface ChaosReport {
  seed: number;
  deploys: { version: string; n: number; state: string; error: string | null }[];
  kills: { what: 'control' | 'data'; atMs: number; backMs: number }[];
  requests: number;
  /** Failed requests inside a data plane kill's window: connections the SIGKILL cut. */
  failedDataPlane: number;
  /** Failed requests anywhere else (the goal: 0). */
  failedOther: number;
  otherFailures: LoadSample[];
  finalLive: string | null;
  finalBody: string;
  durationMs: number;
}

/** A small seeded PRNG (mulberry32): the same seed replays the same kill schedule. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`chaos: timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** An API call that rides out a control plane being down (the API address is fixed in teal.yml). */
async function call<T>(client: ApiClient, method: string, path: string, body?: unknown): Promise<T> {
  return until(`${method} ${path}`, () => client.request<T>(method, path, body), 60_000);
}

export async function runChaos(options: { deploys?: number; kills?: number; seed?: number } = {}): Promise<{
  report: ChaosReport;
  daemon: TestDaemon;
}> {
  const deploys = options.deploys ?? 20;
  const kills = options.kills ?? 10;
  const seed = options.seed ?? Date.now() % 100_000;
  const rand = random(seed);
  const apiPort = await freePort('127.0.0.1');
  const daemon = await startTestDaemon({
    services: `  hello:\n${helloService({ env: '{ APP_VERSION: "{{version}}", START_DELAY_MS: "300" }' })}`,
    api: `{ listen: 127.0.0.1:${apiPort} }`,
    respawn: true,
  });
  const client = new ApiClient({
    base: daemon.info.api,
    token: daemon.token,
    actor: 'chaos',
    startHint: 'test',
  });
  const t0 = Date.now();
  const samples: LoadSample[] = [];
  const ac = new AbortController();
  const proxy = `${daemon.info.proxy}/`;

  // Which deploys get which kill: `kills` of each kind over the deploys, shuffled.
  const plan: ('control' | 'data' | null)[] = Array.from({ length: deploys }, (_, i) =>
    i < kills ? 'control' : i < 2 * kills ? 'data' : null,
  );
  for (let i = plan.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [plan[i], plan[j]] = [plan[j]!, plan[i]!];
  }
  // More kills than deploys: the rest go at random points between deploys too.
  const extra: ('control' | 'data')[] = [];
  for (let i = deploys; i < 2 * kills; i++) extra.push(i % 2 === 0 ? 'control' : 'data');

  const first = await call<DeploymentRecord>(client, 'POST', '/v1/services/hello/deployments', {
    version: 'c0',
  });
  await ended(client, first.n);
  const load = runLoad({ url: proxy, connections: 16, signal: ac.signal, onSample: (s) => samples.push(s) });
  const report: ChaosReport = {
    seed,
    deploys: [],
    kills: [],
    requests: 0,
    failedDataPlane: 0,
    failedOther: 0,
    otherFailures: [],
    finalLive: null,
    finalBody: '',
    durationMs: 0,
  };
  const windows: [number, number][] = [];

  const kill = async (what: 'control' | 'data') => {
    const at = Date.now();
    if (what === 'control') {
      const info = readDaemonInfo(daemon.paths);
      if (!info || !pidAlive(info.pid)) return;
      process.kill(info.pid, 'SIGKILL');
      await until('the control plane to die', async () => (pidAlive(info.pid) ? undefined : true), 5_000);
      // Back when another pid holds daemon.json and its API answers.
      await until(
        'the data plane to respawn the control plane',
        async () => {
          const now = readDaemonInfo(daemon.paths);
          if (!now || now.pid === info.pid || !pidAlive(now.pid)) return undefined;
          return (await fetch(`${now.api}/v1/health`)).ok ? true : undefined;
        },
        30_000,
      );
    } else {
      const plane = await dataPlaneInfo(daemon.paths.proxySocket);
      if (!plane) return;
      process.kill(plane.pid, 'SIGKILL');
      await until('the data plane to die', async () => (pidAlive(plane.pid) ? undefined : true), 5_000);
      await until(
        'the public port to serve again',
        async () => ((await fetch(proxy, { signal: AbortSignal.timeout(1_000) })).ok ? true : undefined),
        30_000,
      );
      windows.push([at, Date.now() + 1_000]);
      // And the control plane knows it (its watchdog), before the next kill.
      await until(
        'the watchdog to see the new data plane',
        async () =>
          (await client.request<DataPlaneStatus>('GET', '/v1/dataplane')).state === 'up' ? true : undefined,
        30_000,
      );
    }
    report.kills.push({ what, atMs: at - t0, backMs: Date.now() - at });
  };

  for (let i = 1; i <= deploys; i++) {
    const version = `c${i}`;
    const record = await call<DeploymentRecord>(client, 'POST', '/v1/services/hello/deployments', {
      version,
    });
    const what = plan[i - 1];
    if (what) {
      // A random moment of the deploy (it takes about 1-2 s here): starting, verifying, switching, draining.
      await sleep(rand() * 1_500);
      await kill(what);
    }
    const done = await ended(client, record.n);
    report.deploys.push({
      version,
      n: record.n,
      state: done.state,
      error: done.error?.message ?? null,
    });
    const next = extra.shift();
    if (next) await kill(next);
  }
  await sleep(500);
  ac.abort();
  await load;

  const inWindow = (s: LoadSample) => windows.some(([a, b]) => s.start >= a - 50 && s.start <= b);
  for (const s of samples) {
    const failed = s.status === null || s.status >= 300;
    if (!failed) continue;
    if (inWindow(s)) report.failedDataPlane++;
    else {
      report.failedOther++;
      if (report.otherFailures.length < 20) report.otherFailures.push(s);
    }
  }
  report.requests = samples.length;
  const status = await call<{ live: string | null; slots: Record<string, { version: string | null }> }>(
    client,
    'GET',
    '/v1/services/hello',
  );
  report.finalLive = status.live ? (status.slots[status.live]?.version ?? null) : null;
  report.finalBody = await (await fetch(proxy)).text();
  report.durationMs = Date.now() - t0;
  daemon.client = client;
  return { report, daemon };
}

/** The deployment's final record, whichever control plane settles it (a killed one's is interrupted at restart). */
async function ended(client: ApiClient, n: number): Promise<DeploymentRecord> {
  return until(
    `deployment #${n} to end`,
    async () => {
      const r = await client.request<DeploymentRecord>('GET', `/v1/services/hello/deployments/${n}`);
      return isTerminal(r.state) ? r : undefined;
    },
    120_000,
  );
}
