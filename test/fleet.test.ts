import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeReport, listEdges, TABLE_KEY } from '../src/core/edges.js';
import { fleetKeys, type HostRecord, type InstanceReport, REPORTS_PREFIX } from '../src/core/fleet.js';
import type { DeploymentRecord, SlotRecord } from '../src/core/records.js';
import { isTerminal } from '../src/core/state.js';
import { statePaths } from '../src/daemon/files.js';
import { teardown } from '../src/daemon/teardown.js';
import { cliEntry } from '../src/paths.js';
import { dataPlaneInfo } from '../src/proxy/builtin/launcher.js';
import type { RoutingTable } from '../src/proxy/switch.js';
import { etcdStore } from '../src/stores/etcd.js';
import type { Store } from '../src/stores/store.js';
import { haveBinary } from '../src/testing/binaries.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { type EtcdCluster, type EtcdInstance, startEtcdCluster } from '../src/testing/etcd.js';
import { createHosts, killHost, type NetnsHost, netnsAvailable, removeHosts } from '../src/testing/netns.js';
import { backgroundLoad, deployAndWait, waitEnded } from './helpers.js';

/**
 * A fleet on one machine: three hosts are network namespaces, each with its own `teal agent` and
 * app instances bound on the namespace's address; a three-member etcd cluster, the control plane
 * (`teal up`, builtin data plane) and two edges (`teal edge`, each with its own builtin data plane
 * and state dir) are in the root namespace. etcd is the only thing the parts share, and every part
 * is given all three members.
 */
const hasEtcd = haveBinary('etcd', 'etcd-server');
const netns = netnsAvailable();
if (!netns.ok) {
  const message = `network namespaces are unavailable (ip netns add: ${netns.why}); the fleet tests need root and iproute2`;
  if (process.env.CI === 'true') throw new Error(`CI=true and ${message}`);
  process.stderr.write(`skipping the fleet tests: ${message}\n`);
}

interface Agent {
  host: NetnsHost;
  id: string;
  child: ChildProcess;
  log(): string;
}

interface Edge {
  id: string;
  dir: string;
  child: ChildProcess;
  url: string;
  log(): string;
}

/** The member of the cluster that leads now (etcd's HTTP gateway: maintenance status). */
async function leaderOf(cluster: EtcdCluster): Promise<EtcdInstance> {
  for (const m of cluster.members) {
    const status = await fetch(`${m.endpoint}/v3/maintenance/status`, { method: 'POST', body: '{}' })
      .then((r) => r.json() as Promise<{ header: { member_id: string }; leader: string }>)
      .catch(() => undefined);
    if (status && status.header.member_id === status.leader) return m;
  }
  throw new Error('no etcd member says it leads');
}

describe.runIf(hasEtcd && netns.ok)(
  'a deployment across hosts (network namespaces) coordinated through etcd',
  () => {
    let hosts: NetnsHost[] = [];
    let etcd: EtcdCluster | undefined;
    let daemon: TestDaemon | undefined;
    /** A second control plane on the same etcd (the take-over test). */
    let standby: TestDaemon | undefined;
    let daemonConfig: { extraConfig: string; services: string } | undefined;
    let store: Store | undefined;
    const agents: Agent[] = [];
    const edges: Edge[] = [];
    const prefix = `/teal-fleet-${process.pid}`;

    async function startAgent(host: NetnsHost): Promise<Agent> {
      const id = `h${host.index}`;
      const logFile = path.join(daemon!.dir, `agent-${id}.out`);
      const out = openSync(logFile, 'a');
      // `ip netns exec` execs the program: the child's pid is the agent's.
      const child = spawn(
        'ip',
        [
          'netns',
          'exec',
          host.ns,
          process.execPath,
          cliEntry(),
          'agent',
          '--id',
          id,
          '--address',
          host.address,
          '--etcd',
          etcd!.endpoints.map((e) => `http://${host.gateway}:${new URL(e).port}`).join(','),
          '--prefix',
          prefix,
          '--label',
          `rack=r${host.index}`,
          '--state-dir',
          path.join(daemon!.dir, `agent-${id}`),
          '--lease-ttl',
          '2s',
          '--log-format',
          'json',
        ],
        { stdio: ['ignore', out, out] },
      );
      closeSync(out);
      const log = () => readFileSync(logFile, 'utf8');
      const deadline = Date.now() + 20_000;
      while (!(await store!.get<HostRecord>(fleetKeys.host(id)))) {
        if (child.exitCode !== null || Date.now() > deadline)
          throw new Error(`agent ${id} did not register:\n${log()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return { host, id, child, log };
    }

    async function edgeReports(): Promise<EdgeReport[]> {
      return listEdges(store!);
    }

    /** `teal edge` with its own state dir (its own builtin data plane) on the control plane's teal.yml. */
    async function startEdge(id: string): Promise<Edge> {
      const dir = path.join(daemon!.dir, id);
      const logFile = path.join(daemon!.dir, `${id}.out`);
      const out = openSync(logFile, 'a');
      const child = spawn(
        process.execPath,
        [
          cliEntry(),
          'edge',
          '-c',
          daemon!.configFile,
          '--id',
          id,
          '--listen',
          '127.0.0.1:0',
          '--state-dir',
          dir,
          '--lease-ttl',
          '2s',
          '--log-format',
          'json',
        ],
        { stdio: ['ignore', out, out] },
      );
      closeSync(out);
      const log = () => readFileSync(logFile, 'utf8');
      const deadline = Date.now() + 20_000;
      for (;;) {
        const mine = (await edgeReports()).find((r) => r.id === id && r.pid === child.pid);
        if (mine) return { id, dir, child, url: mine.listen, log };
        if (child.exitCode !== null || Date.now() > deadline)
          throw new Error(`edge ${id} did not register:\n${log()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    /** Which host answered each of `n` requests to /info through `url` (by the instance's pid). */
    async function spread(url: string, n: number): Promise<Record<string, number>> {
      const reports = (await store!.list<InstanceReport>(REPORTS_PREFIX)).map((e) => e.value);
      const byPid = new Map(reports.map((r) => [r.pid, r.host]));
      const counts: Record<string, number> = {};
      for (let i = 0; i < n; i++) {
        const info = (await (await fetch(`${url}/info`)).json()) as { pid: number };
        const host = byPid.get(info.pid) ?? `pid ${info.pid}`;
        counts[host] = (counts[host] ?? 0) + 1;
      }
      return counts;
    }

    async function slot(name: 'blue' | 'green'): Promise<SlotRecord> {
      return (await store!.get<SlotRecord>(`/services/hello/slots/${name}`))!.value;
    }

    beforeAll(async () => {
      hosts = createHosts(3);
      etcd = await startEtcdCluster(3, { clientHosts: hosts.map((h) => h.gateway) });
      store = etcdStore({ endpoints: etcd.endpoints, prefix });
      daemonConfig = {
        extraConfig: `store: { kind: etcd, endpoints: [${etcd.endpoints.join(', ')}], prefix: ${prefix} }\n`,
        services: `  hello:\n${helloService({ hosts: '[h1, h2, h3]', drain: '2s' })}`,
      };
      daemon = await startTestDaemon(daemonConfig);
      for (const host of hosts) agents.push(await startAgent(host));
      edges.push(await startEdge('edge-1'), await startEdge('edge-2'));
    }, 90_000);

    afterAll(async () => {
      // Agents and their instances live in the namespaces: removing the hosts kills them by pid.
      removeHosts(hosts);
      for (const e of edges) {
        if (e.child.exitCode === null && e.child.signalCode === null) e.child.kill('SIGKILL');
        await teardown(statePaths(e.dir), { stopTimeoutMs: 2_000 }).catch(() => undefined);
      }
      await standby?.cleanup();
      await daemon?.cleanup();
      await store?.close();
      await etcd?.close();
    }, 60_000);

    it('deploys on every host under keep-alive load through the data plane and both edges, with the etcd leader stopped mid-deploy: no failed request', async () => {
      const first = await deployAndWait(daemon!.client, 'hello', 'v1');
      expect(first.state, first.error?.message).toBe('done');
      const urls = [daemon!.info.proxy, ...edges.map((e) => e.url)];
      const loads = urls.map((url) => backgroundLoad(`${url}/`, 8));
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      const record = await daemon!.client.request<DeploymentRecord>(
        'POST',
        '/v1/services/hello/deployments',
        {
          version: 'v2',
        },
      );
      // Once the release is assigned to the hosts, the member that leads the cluster stops (SIGTERM:
      // etcd hands leadership over first). A SIGKILLed leader can swallow a write in flight, which
      // etcd answers only after its request timeout (~7 s), past the store's 5 s call timeout.
      const deadline = Date.now() + 20_000;
      while ((await store!.list(fleetKeys.assignments('h1'))).length < 2) {
        if (Date.now() > deadline) throw new Error('v2 was never assigned to h1');
        await new Promise((r) => setTimeout(r, 10));
      }
      const leader = await leaderOf(etcd!);
      await leader.stop();
      const stoppedAt = Date.now() - t0;
      const d = await waitEnded(daemon!.client, record);
      const deployMs = Date.now() - t0;
      expect(d.state, d.error?.message).toBe('done');
      await new Promise((r) => setTimeout(r, 300));
      const results = await Promise.all(loads.map((l) => l.stop()));
      for (const [i, { report, samples }] of results.entries()) {
        expect(report.failures, urls[i]).toEqual([]);
        expect(report.sent, urls[i]).toBeGreaterThan(50);
        expect(samples.at(-1)?.version, urls[i]).toBe('v2');
      }
      // Each edge spreads requests over the live instances of all three hosts.
      const spreads: Record<string, number>[] = [];
      for (const e of edges) {
        const counts = await spread(e.url, 60);
        spreads.push(counts);
        expect(Object.keys(counts).sort(), e.id).toEqual(['h1', 'h2', 'h3']);
        for (const n of Object.values(counts)) expect(n, e.id).toBeGreaterThanOrEqual(10);
      }
      await leader.restart();
      // The live slot is one instance on each host, at the host's own address.
      const live = await slot(d.targetSlot!);
      expect(live.state).toBe('live');
      expect(live.instances.map((i) => [i.hostId, i.host]).sort()).toEqual(
        hosts.map((h) => [`h${h.index}`, h.address]),
      );
      // Each agent reports its instance running, under its lease.
      const reports = (await store!.list<InstanceReport>(REPORTS_PREFIX)).map((e) => e.value);
      for (const i of live.instances) {
        expect(reports.find((r) => r.id === i.id)).toMatchObject({
          state: 'running',
          address: i.host,
          port: i.port,
        });
      }
      process.stderr.write(
        `fleet: v2 on 3 hosts in ${deployMs} ms, etcd leader stopped at ${stoppedAt} ms; ${results.map((r, i) => `${['data plane', ...edges.map((e) => e.id)][i]}: ${r.report.sent} requests, ${r.report.failed} failed, p99 ${Math.round(r.report.latency.p99Ms)} ms`).join('; ')}; per host through the edges ${JSON.stringify(spreads)}\n`,
      );
    }, 120_000);

    it('an edge killed after the switch: the other keeps serving, the restarted one catches up from etcd', async () => {
      const [victim, survivor] = edges as [Edge, Edge];
      const loads = [daemon!.info.proxy, survivor.url].map((url) => backgroundLoad(`${url}/`, 8));
      await new Promise((r) => setTimeout(r, 300));
      const record = await daemon!.client.request<DeploymentRecord>(
        'POST',
        '/v1/services/hello/deployments',
        {
          version: 'v3',
        },
      );
      // The moment the switch is recorded, the edge dies with its data plane (its host's power cord).
      const plane = await dataPlaneInfo(statePaths(victim.dir).proxySocket);
      expect(plane?.pid).toBeGreaterThan(0);
      const deadline = Date.now() + 30_000;
      for (;;) {
        const now = await daemon!.client.request<DeploymentRecord>(
          'GET',
          `/v1/services/hello/deployments/${record.n}`,
        );
        if (now.switchedAt !== undefined || now.state === 'done') break;
        if (now.state === 'failed' || Date.now() > deadline)
          throw new Error(`v3 did not switch: ${now.state}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      victim.child.kill('SIGKILL');
      process.kill(plane!.pid, 'SIGKILL');
      const v3 = await waitEnded(daemon!.client, record);
      expect(v3.state, v3.error?.message).toBe('done');
      // A deploy while it is down waits for it no longer than its lease.
      const t0 = Date.now();
      const v4 = await deployAndWait(daemon!.client, 'hello', 'v4');
      expect(v4.state, v4.error?.message).toBe('done');
      const v4Ms = Date.now() - t0;
      // Back, it serves the newest table at once.
      const t1 = Date.now();
      const back = await startEdge(victim.id);
      edges[0] = back;
      const table = (await store!.get<RoutingTable>(TABLE_KEY))!.value;
      const until = Date.now() + 10_000;
      while (((await edgeReports()).find((r) => r.id === back.id)?.revision ?? 0) < table.revision) {
        if (Date.now() > until) throw new Error(`${back.id} did not catch up:\n${back.log()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const catchUpMs = Date.now() - t1;
      const answers = await Promise.all(
        Array.from({ length: 10 }, async () => (await fetch(`${back.url}/`)).text()),
      );
      expect(new Set(answers)).toEqual(new Set(['hello v4\n']));
      await new Promise((r) => setTimeout(r, 200));
      const results = await Promise.all(loads.map((l) => l.stop()));
      for (const [i, { report }] of results.entries()) {
        expect(report.failures, `load ${i}`).toEqual([]);
        expect(report.sent, `load ${i}`).toBeGreaterThan(50);
      }
      expect(results[1]!.samples.at(-1)?.version).toBe('v4');
      process.stderr.write(
        `fleet: ${victim.id} killed after v3's switch; v4 deployed without it in ${v4Ms} ms; restarted, it served revision ${table.revision} after ${catchUpMs} ms; through ${survivor.id}: ${results[1]!.report.sent} requests, ${results[1]!.report.failed} failed\n`,
      );
    }, 120_000);

    it('the coordinator killed mid-deploy: another control plane on the same etcd takes over and finishes the deployment, no failed request', async () => {
      standby = await startTestDaemon(daemonConfig!);
      // The coordinator will SIGKILL itself right after the switch's store transaction: the store
      // says v5 is live, no data plane or edge has been told.
      await daemon!.stop();
      await daemon!.restart({ env: { TEAL_FAILPOINT: 'after-store-switch' } });
      const loads = edges.map((e) => backgroundLoad(`${e.url}/`, 8));
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      const record = await daemon!.client.request<DeploymentRecord>(
        'POST',
        '/v1/services/hello/deployments',
        {
          version: 'v5',
        },
      );
      expect(await daemon!.exited()).toBe('SIGKILL');
      const killedMs = Date.now() - t0;
      // The other control plane takes the lock once the dead one's lease ends, and completes it.
      const deadline = Date.now() + 45_000;
      let d: DeploymentRecord;
      for (;;) {
        d = await standby.client.request<DeploymentRecord>(
          'GET',
          `/v1/services/hello/deployments/${record.n}`,
        );
        if (isTerminal(d.state)) break;
        if (Date.now() > deadline)
          throw new Error(`nobody finished #${record.n}: ${d.state}\n${standby.log()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const settledMs = Date.now() - t0;
      expect(d.state, d.error?.message).toBe('done');
      expect(d.events.at(-1)?.message).toMatch(/completed it: hello v5 is live/);
      // The take-over logs once it has released the lock, just after the record is written.
      const logged = Date.now() + 5_000;
      while (!/took over from a control plane that stopped/.test(standby.log()) && Date.now() < logged)
        await new Promise((r) => setTimeout(r, 50));
      expect(standby.log()).toMatch(/took over from a control plane that stopped/);
      expect((await slot(d.targetSlot!)).state).toBe('live');
      expect((await slot(d.fromSlot!)).state).toBe('warm');
      // Every edge serves v5 now.
      for (const e of edges) expect(await (await fetch(`${e.url}/`)).text(), e.id).toBe('hello v5\n');
      await new Promise((r) => setTimeout(r, 200));
      const results = await Promise.all(loads.map((l) => l.stop()));
      for (const [i, { report, samples }] of results.entries()) {
        expect(report.failures, edges[i]!.id).toEqual([]);
        expect(samples.at(-1)?.version, edges[i]!.id).toBe('v5');
      }
      // The first control plane comes back as an ordinary one (for the next test).
      await daemon!.restart();
      process.stderr.write(
        `fleet: coordinator SIGKILLed after the store switch at ${killedMs} ms; the other control plane completed #${d.n} at ${settledMs} ms (lock lease 15 s); ${results.map((r, i) => `${edges[i]!.id}: ${r.report.sent} requests, ${r.report.failed} failed`).join('; ')}\n`,
      );
    }, 120_000);

    it('a host killed while the release starts fails the deployment: nothing is switched, what started is stopped, no request fails', async () => {
      const before = await store!.get<'blue' | 'green'>('/services/hello/live');
      const idle = before!.value === 'blue' ? 'green' : 'blue';
      const idleBefore = await slot(idle);
      const urls = [daemon!.info.proxy, ...edges.map((e) => e.url)];
      const loads = urls.map((url) => backgroundLoad(`${url}/`, 8));
      await new Promise((r) => setTimeout(r, 300));
      const victim = hosts[2]!;
      const record = await daemon!.client.request<DeploymentRecord>(
        'POST',
        '/v1/services/hello/deployments',
        {
          version: 'v6',
        },
      );
      // The moment the release is assigned to the third host, its agent and every instance on it die.
      const deadline = Date.now() + 20_000;
      const assignedV6 = async () =>
        (await store!.list<{ spec: { labels: { version: string } } }>(fleetKeys.assignments('h3'))).some(
          (e) => e.value.spec.labels.version === 'v6',
        );
      while (!(await assignedV6())) {
        if (Date.now() > deadline) throw new Error('v6 was never assigned to h3');
        await new Promise((r) => setTimeout(r, 10));
      }
      const killed = killHost(victim);
      expect(killed.length).toBeGreaterThan(0);
      const d = await waitEnded(daemon!.client, record);
      await new Promise((r) => setTimeout(r, 300));
      const results = await Promise.all(loads.map((l) => l.stop()));

      expect(d.state).toBe('failed');
      expect(d.error?.message).toMatch(/h3/);
      expect(d.switchedAt).toBeUndefined();
      expect(await store!.get<string>('/services/hello/live')).toMatchObject({ value: before!.value });
      // The slot v6 was starting in (whichever it is after the deployments before) is as it was:
      // v6 started beside what it held (warm or empty), so a failure leaves it; the live one was
      // never touched.
      expect(d.targetSlot).toBe(idle);
      expect(await slot(idle)).toMatchObject({ state: idleBefore.state, release: idleBefore.release });
      expect((await slot(before!.value)).state).toBe('live');
      // Nothing of v6 is left assigned or running on the surviving hosts.
      for (const host of ['h1', 'h2', 'h3']) {
        const left = (
          await store!.list<{ spec: { labels: { version: string } } }>(fleetKeys.assignments(host))
        ).filter((e) => e.value.spec.labels.version === 'v6');
        expect(left, host).toEqual([]);
      }
      const reports = (await store!.list<InstanceReport>(REPORTS_PREFIX)).map((e) => e.value);
      expect(reports.filter((r) => r.labels.version === 'v6')).toEqual([]);
      expect(reports.filter((r) => r.host === 'h3')).toEqual([]);
      for (const [i, { report, samples }] of results.entries()) {
        expect(report.failures, urls[i]).toEqual([]);
        expect(report.sent, urls[i]).toBeGreaterThan(50);
        expect(new Set(samples.map((s) => s.version)), urls[i]).toEqual(new Set(['v5']));
      }
      process.stderr.write(
        `fleet: host h3 killed during start; deployment ${d.state} (${d.error?.code}: ${d.error?.message}) in ${Date.parse(d.endedAt ?? '') - Date.parse(d.createdAt)} ms; ${results.map((r) => `${r.report.sent} requests, ${r.report.failed} failed`).join('; ')} (data plane; edges)\n`,
      );
    }, 120_000);
  },
);
