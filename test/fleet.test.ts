import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fleetKeys, type HostRecord, type InstanceReport, REPORTS_PREFIX } from '../src/core/fleet.js';
import type { DeploymentRecord, SlotRecord } from '../src/core/records.js';
import { cliEntry } from '../src/paths.js';
import { etcdStore } from '../src/stores/etcd.js';
import type { Store } from '../src/stores/store.js';
import { haveBinary } from '../src/testing/binaries.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { type EtcdInstance, startEtcd } from '../src/testing/etcd.js';
import { createHosts, killHost, type NetnsHost, netnsAvailable, removeHosts } from '../src/testing/netns.js';
import { backgroundLoad, deployAndWait, waitEnded } from './helpers.js';

/**
 * A fleet on one machine: three hosts are network namespaces, each with its own `teal agent` and
 * app instances bound on the namespace's address; etcd and the control plane (`teal up`, builtin
 * data plane) are in the root namespace. etcd is the only thing the parts share.
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

describe.runIf(hasEtcd && netns.ok)(
  'a deployment across hosts (network namespaces) coordinated through etcd',
  () => {
    let hosts: NetnsHost[] = [];
    let etcd: EtcdInstance | undefined;
    let daemon: TestDaemon | undefined;
    let store: Store | undefined;
    const agents: Agent[] = [];
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
          `http://${host.gateway}:${new URL(etcd!.endpoint).port}`,
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

    async function slot(name: 'blue' | 'green'): Promise<SlotRecord> {
      return (await store!.get<SlotRecord>(`/services/hello/slots/${name}`))!.value;
    }

    beforeAll(async () => {
      hosts = createHosts(3);
      etcd = await startEtcd(undefined, { clientHosts: hosts.map((h) => h.gateway) });
      store = etcdStore({ endpoints: [etcd.endpoint], prefix });
      daemon = await startTestDaemon({
        extraConfig: `store: { kind: etcd, endpoints: [${etcd.endpoint}], prefix: ${prefix} }\n`,
        services: `  hello:\n${helloService({ hosts: '[h1, h2, h3]', drain: '2s' })}`,
      });
      for (const host of hosts) agents.push(await startAgent(host));
    }, 90_000);

    afterAll(async () => {
      // Agents and their instances live in the namespaces: removing the hosts kills them by pid.
      removeHosts(hosts);
      await daemon?.cleanup();
      await store?.close();
      await etcd?.close();
    }, 60_000);

    it('deploys on every host under keep-alive load through the data plane with no failed request', async () => {
      const first = await deployAndWait(daemon!.client, 'hello', 'v1');
      expect(first.state, first.error?.message).toBe('done');
      const load = backgroundLoad(`${daemon!.info.proxy}/`, 12);
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      const d = await deployAndWait(daemon!.client, 'hello', 'v2');
      const deployMs = Date.now() - t0;
      expect(d.state, d.error?.message).toBe('done');
      await new Promise((r) => setTimeout(r, 300));
      const { report, samples } = await load.stop();
      expect(report.failures).toEqual([]);
      expect(report.sent).toBeGreaterThan(100);
      expect(samples.at(-1)?.version).toBe('v2');
      // The live slot is one instance on each host, at the host's own address.
      const live = await slot('green');
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
        `fleet: v2 on 3 hosts in ${deployMs} ms; ${report.sent} requests, ${report.failed} failed, p99 ${Math.round(report.latency.p99Ms)} ms\n`,
      );
    }, 120_000);

    it('a host killed while the release starts fails the deployment: nothing is switched, what started is stopped, no request fails', async () => {
      const before = await store!.get<string>('/services/hello/live');
      const load = backgroundLoad(`${daemon!.info.proxy}/`, 12);
      await new Promise((r) => setTimeout(r, 300));
      const victim = hosts[2]!;
      const record = await daemon!.client.request<DeploymentRecord>(
        'POST',
        '/v1/services/hello/deployments',
        {
          version: 'v3',
        },
      );
      // The moment the release is assigned to the third host, its agent and every instance on it die.
      const deadline = Date.now() + 20_000;
      const assignedV3 = async () =>
        (await store!.list<{ spec: { labels: { version: string } } }>(fleetKeys.assignments('h3'))).some(
          (e) => e.value.spec.labels.version === 'v3',
        );
      while (!(await assignedV3())) {
        if (Date.now() > deadline) throw new Error('v3 was never assigned to h3');
        await new Promise((r) => setTimeout(r, 10));
      }
      const killed = killHost(victim);
      expect(killed.length).toBeGreaterThan(0);
      const d = await waitEnded(daemon!.client, record);
      await new Promise((r) => setTimeout(r, 300));
      const { report, samples } = await load.stop();

      expect(d.state).toBe('failed');
      expect(d.error?.message).toMatch(/h3/);
      expect(d.switchedAt).toBeUndefined();
      expect(await store!.get<string>('/services/hello/live')).toMatchObject({ value: before!.value });
      expect((await slot('blue')).state).toBe('empty');
      // Nothing of v3 is left assigned or running on the surviving hosts.
      for (const host of ['h1', 'h2', 'h3']) {
        const left = (
          await store!.list<{ spec: { labels: { version: string } } }>(fleetKeys.assignments(host))
        ).filter((e) => e.value.spec.labels.version === 'v3');
        expect(left, host).toEqual([]);
      }
      const reports = (await store!.list<InstanceReport>(REPORTS_PREFIX)).map((e) => e.value);
      expect(reports.filter((r) => r.labels.version === 'v3')).toEqual([]);
      expect(reports.filter((r) => r.host === 'h3')).toEqual([]);
      expect(report.failures).toEqual([]);
      expect(report.sent).toBeGreaterThan(100);
      expect(new Set(samples.map((s) => s.version))).toEqual(new Set(['v2']));
      process.stderr.write(
        `fleet: host h3 killed during start; deployment ${d.state} (${d.error?.code}: ${d.error?.message}) in ${Date.parse(d.endedAt ?? '') - Date.parse(d.createdAt)} ms; ${report.sent} requests, ${report.failed} failed\n`,
      );
    }, 120_000);
  },
);
