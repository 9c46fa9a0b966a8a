import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeReport, type EdgeStats, listEdgeStats, listEdges } from '../src/core/edges.js';
import type { DeploymentRecord } from '../src/core/records.js';
import { statePaths } from '../src/daemon/files.js';
import { teardown } from '../src/daemon/teardown.js';
import { cliEntry } from '../src/paths.js';
import { dataPlaneInfo } from '../src/proxy/builtin/launcher.js';
import { request } from '../src/proxy/switch.contract.js';
import { etcdStore } from '../src/stores/etcd.js';
import type { Store } from '../src/stores/store.js';
import { haveBinary } from '../src/testing/binaries.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { type EtcdInstance, startEtcd } from '../src/testing/etcd.js';
import { backgroundLoad, deployAndWait, staleAfterSwitch } from './helpers.js';

/**
 * The original stack's shared brain: the control plane keeps its state in a real etcd, two edges
 * (`teal edge`) serve the table it publishes there, and etcd goes away in the middle of traffic.
 */
const hasEtcd = haveBinary('etcd', 'etcd-server');

interface Edge {
  id: string;
  child: ChildProcess;
  dir: string;
  url: string;
  log(): string;
}

describe.runIf(hasEtcd)('teal on etcd, with edges', () => {
  let etcd: EtcdInstance;
  let daemon: TestDaemon;
  let store: Store;
  const edges: Edge[] = [];
  const prefix = `/teal-${process.pid}`;

  async function reports(): Promise<EdgeReport[]> {
    return listEdges(store);
  }

  async function startEdge(id: string): Promise<Edge> {
    const dir = path.join(daemon.dir, id);
    const logFile = path.join(daemon.dir, `${id}.out`);
    const out = openSync(logFile, 'a');
    const child = spawn(
      process.execPath,
      [
        cliEntry(),
        'edge',
        '-c',
        daemon.configFile,
        '--id',
        id,
        '--listen',
        '127.0.0.1:0',
        '--preview-listen',
        '127.0.0.1:0',
        '--state-dir',
        dir,
        '--log-format',
        'json',
      ],
      { stdio: ['ignore', out, out] },
    );
    closeSync(out);
    const log = () => readFileSync(logFile, 'utf8');
    const deadline = Date.now() + 20_000;
    for (;;) {
      const mine = (await reports()).find((r) => r.id === id);
      if (mine) return { id, child, dir, url: mine.listen, log };
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`edge ${id} did not register:\n${log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  beforeAll(async () => {
    etcd = await startEtcd();
    store = etcdStore({ endpoints: [etcd.endpoint], prefix });
    daemon = await startTestDaemon({
      extraConfig: `store: { kind: etcd, endpoints: [${etcd.endpoint}], prefix: ${prefix} }\n`,
      services: `  hello:\n${helloService()}\n  checked:\n${helloService({
        routes: '[{ path: /checked }]',
        env: '{ APP_VERSION: "{{version}}", ERROR_VERSIONS: "v2-broken" }',
        analysis: '{ window: 5s, interval: 200ms, maxErrorRate: 0.05, minRequests: 40 }',
      })}`,
    });
    edges.push(await startEdge('edge-1'), await startEdge('edge-2'));
  }, 90_000);

  afterAll(async () => {
    for (const e of edges) {
      if (e.child.exitCode === null) {
        e.child.kill('SIGTERM');
        await new Promise((r) => e.child.once('exit', r));
      }
      await teardown(statePaths(e.dir), { stopTimeoutMs: 2_000 }).catch(() => undefined);
    }
    await daemon?.cleanup();
    await store?.close();
    await etcd?.close();
  });

  it('deploys switch every edge before the old slot is drained: no failed or stale request on any of them', async () => {
    expect((await deployAndWait(daemon.client, 'hello', 'v1')).state).toBe('done');
    const loads = [daemon.info.proxy, ...edges.map((e) => e.url)].map((url) => backgroundLoad(`${url}/`, 12));
    const deployments: DeploymentRecord[] = [];
    for (const v of ['v2', 'v3', 'v4']) {
      const d = await deployAndWait(daemon.client, 'hello', v);
      expect(d.state, d.error?.message).toBe('done');
      deployments.push(d);
    }
    await new Promise((r) => setTimeout(r, 200));
    for (const [i, load] of loads.entries()) {
      const { report, samples } = await load.stop();
      expect(report.failures, `load ${i}`).toEqual([]);
      expect(report.sent, `load ${i}`).toBeGreaterThan(100);
      // The switch step ends only when every edge serves the new table, so after it nobody serves the old one.
      expect(staleAfterSwitch(samples, deployments), `load ${i}`).toEqual([]);
    }
    const serving = await reports();
    expect(serving.map((r) => r.id).sort()).toEqual(['edge-1', 'edge-2']);
    // The store's keys are DESIGN's, under the prefix, for a confd user to read.
    expect((await store.get('/services/hello/live'))?.value).toBe('green');
    // Each edge has its own loopback preview listener: the warm v3 there, never on its public port.
    for (const e of edges) {
      const info = await dataPlaneInfo(statePaths(e.dir).proxySocket);
      expect(info?.preview, e.id).toMatch(/^127\.0\.0\.1:\d+$/);
      const slot = { headers: { 'x-teal-slot': 'blue' } };
      expect((await request(`http://${info!.preview}/`, slot)).body, e.id).toBe('hello v3\n');
      expect((await request(`${e.url}/`, slot)).body, e.id).toBe('hello v4\n');
    }
  }, 120_000);

  it('the analysis after a switch counts what went through the edges: a release failing only there is switched back', async () => {
    expect((await deployAndWait(daemon.client, 'checked', 'v1')).state).toBe('done');
    // Users reach the service only through the edges; the control plane's data plane sees none of it.
    const loads = edges.map((e) => backgroundLoad(`${e.url}/checked`, 8));
    await new Promise((r) => setTimeout(r, 300));
    const bad = await deployAndWait(daemon.client, 'checked', 'v2-broken');
    await new Promise((r) => setTimeout(r, 500));
    expect(bad.state, bad.error?.message).toBe('rolled_back');
    expect(bad.error?.code).toBe('TEAL_ANALYSIS_FAILED');
    expect(bad.analysis?.detail).toMatch(/error rate over 5\.00%/);
    expect(bad.switchedBackAt).toBeGreaterThan(bad.switchedAt!);
    console.log(
      `edges analysis: switched back ${bad.switchedBackAt! - bad.switchedAt!} ms after the switch: ${bad.analysis?.detail}`,
    );
    for (const [i, load] of loads.entries()) {
      const { report, samples } = await load.stop();
      expect(Object.keys(report.errors), `edge ${i}`).toEqual([]);
      expect(report.sent, `edge ${i}`).toBeGreaterThan(50);
      expect(report.failed, `edge ${i}`).toBeGreaterThan(0);
      expect(report.failures.every((f) => f.status === 500)).toBe(true);
      // The switch back, like every switch, ends only once every edge serves it.
      expect(samples.filter((s) => s.start > bad.switchedBackAt! + 50 && s.version !== 'v1')).toEqual([]);
      expect(samples.at(-1)?.version).toBe('v1');
    }
    // Each edge publishes its counters under its lease, for the served table's pools only.
    const published: EdgeStats[] = await listEdgeStats(store);
    expect(published.map((p) => p.id).sort()).toEqual(['edge-1', 'edge-2']);
    for (const p of published)
      expect(p.pools.some((x) => x.pool.startsWith('checked/') && x.requests > 0)).toBe(true);
    const status = JSON.parse((await daemon.cli(['status', 'checked', '--json'])).stdout);
    expect(status).toMatchObject({ live: 'blue', slots: { blue: { version: 'v1', state: 'live' } } });
  }, 120_000);

  it('etcd stopping mid-traffic fails no request; a deploy fails fast and clearly; when etcd returns the next deploy works', async () => {
    const loads = [daemon.info.proxy, ...edges.map((e) => e.url)].map((url) => backgroundLoad(`${url}/`, 12));
    await new Promise((r) => setTimeout(r, 200));
    await etcd.stop();
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    const refused = await daemon.cli(['deploy', 'hello', '--version', 'v5']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/etcd at http:\/\/127\.0\.0\.1:\d+ is unreachable/);
    expect(Date.now() - t0).toBeLessThan(15_000);
    await etcd.restart();
    // The control plane and the edges carry on without a restart.
    const d = await deployAndWait(daemon.client, 'hello', 'v6');
    expect(d.state, d.error?.message).toBe('done');
    await new Promise((r) => setTimeout(r, 200));
    for (const [i, load] of loads.entries()) {
      const { report, samples } = await load.stop();
      expect(report.failures, `load ${i}`).toEqual([]);
      expect(staleAfterSwitch(samples, [d]), `load ${i}`).toEqual([]);
    }
  }, 120_000);
});
