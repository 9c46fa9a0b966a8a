import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort as freeLoopbackPort } from '../runtimes/ports.js';
import { findBinary } from './binaries.js';

export interface EtcdInstance {
  /** http://127.0.0.1:<port>, for `etcdStore({endpoints: [endpoint]})`. */
  endpoint: string;
  /** Holds the data dir (`data/`) and etcd's log (`etcd.log`). */
  dir: string;
  pid(): number | undefined;
  /** SIGTERM, then waits for it to exit. The data stays, for `restart()`. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash or a pulled plug. The data stays, for `restart()`. */
  kill(): Promise<void>;
  /** Starts it again (stopping it first if it runs) on the same ports and data dir. */
  restart(): Promise<void>;
  /** Stops it and removes its dir (when startEtcd created it). */
  close(): Promise<void>;
}

export interface EtcdCluster {
  /** Every member's loopback client URL, for `etcdStore({endpoints})`. */
  endpoints: string[];
  members: EtcdInstance[];
  /** Stops every member and removes the cluster's dir. */
  close(): Promise<void>;
}

interface MemberPlan {
  name: string;
  root: string;
  clientPort: number;
  peer: string;
}

async function planMember(root: string, tag: string): Promise<MemberPlan> {
  const clientPort = await freeLoopbackPort('127.0.0.1');
  const peerPort = await freeLoopbackPort('127.0.0.1');
  return {
    name: `teal-${process.pid}-${tag}-${clientPort}`,
    root,
    clientPort,
    peer: `http://127.0.0.1:${peerPort}`,
  };
}

/**
 * One etcd process of `cluster` (name=peer URL pairs), our child, with its own data dir and log under
 * `plan.root`. `start()` resolves once it answers GET /health (which needs a leader: a quorum).
 */
function member(
  bin: string,
  plan: MemberPlan,
  cluster: MemberPlan[],
  clientHosts: string[],
  onClose: () => void,
): EtcdInstance & { start(): Promise<void> } {
  const endpoint = `http://127.0.0.1:${plan.clientPort}`;
  const logFile = path.join(plan.root, 'etcd.log');
  const args = [
    `--name=${plan.name}`,
    `--data-dir=${path.join(plan.root, 'data')}`,
    `--listen-client-urls=${[endpoint, ...clientHosts.map((h) => `http://${h}:${plan.clientPort}`)].join(',')}`,
    `--advertise-client-urls=${endpoint}`,
    `--listen-peer-urls=${plan.peer}`,
    `--initial-advertise-peer-urls=${plan.peer}`,
    `--initial-cluster=${cluster.map((m) => `${m.name}=${m.peer}`).join(',')}`,
    `--initial-cluster-token=${cluster[0]!.name}`,
  ];
  let child: ChildProcess | undefined;

  const start = async () => {
    const log = openSync(logFile, 'a');
    const proc = spawn(bin, args, { stdio: ['ignore', log, log] });
    closeSync(log);
    child = proc;
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
        if (proc.exitCode === null) proc.kill('SIGKILL');
        throw new Error(`etcd did not start at ${endpoint}:\n${tail(logFile)}`);
      }
      const healthy = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) })
        .then(async (res) => res.ok && ((await res.json()) as { health?: string }).health === 'true')
        .catch(() => false);
      if (healthy) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const halt = async (signal: NodeJS.Signals) => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = once(proc, 'exit');
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };

  return {
    endpoint,
    dir: plan.root,
    start,
    pid: () => child?.pid,
    stop: () => halt('SIGTERM'),
    kill: () => halt('SIGKILL'),
    async restart() {
      await halt('SIGTERM');
      await start();
    },
    async close() {
      await halt('SIGTERM');
      onClose();
    },
  };
}

/**
 * A private single-member etcd for tests: our child process, on free loopback ports, with its own
 * data dir and name. Resolves once it answers GET /health.
 */
export async function startEtcd(
  dir?: string,
  options: {
    /** More addresses to serve clients on, same port (veth addresses that network namespaces reach). */
    clientHosts?: string[];
  } = {},
): Promise<EtcdInstance> {
  const bin = etcdBinary();
  const ownDir = dir === undefined;
  const root = dir ?? mkdtempSync(path.join(tmpdir(), 'teal-etcd-'));
  const plan = await planMember(root, 'solo');
  const m = member(bin, plan, [plan], options.clientHosts ?? [], () => {
    if (ownDir) rmSync(root, { recursive: true, force: true });
  });
  await m.start();
  return m;
}

/**
 * A private etcd cluster of `size` members (three for a quorum that survives one member down):
 * each its own process, data dir (`<dir>/m<i>/`), client port and peer port on loopback, all
 * listed in each member's --initial-cluster. Members also serve clients on `clientHosts` (same
 * port). Resolves once every member answers GET /health, i.e. the cluster has a leader.
 */
export async function startEtcdCluster(
  size = 3,
  options: { clientHosts?: string[] } = {},
): Promise<EtcdCluster> {
  const bin = etcdBinary();
  const root = mkdtempSync(path.join(tmpdir(), 'teal-etcd-cluster-'));
  const plans: MemberPlan[] = [];
  for (let i = 1; i <= size; i++) {
    const dir = path.join(root, `m${i}`);
    mkdirSync(dir);
    plans.push(await planMember(dir, `m${i}`));
  }
  const members = plans.map((p) => member(bin, p, plans, options.clientHosts ?? [], () => undefined));
  const close = async () => {
    await Promise.all(members.map((m) => m.close()));
    rmSync(root, { recursive: true, force: true });
  };
  // No member is healthy before a quorum runs: start them together.
  const started = await Promise.allSettled(members.map((m) => m.start()));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await close();
    throw (failed as PromiseRejectedResult).reason;
  }
  return { endpoints: members.map((m) => m.endpoint), members, close };
}

function etcdBinary(): string {
  const bin = findBinary('etcd');
  if (!bin) throw new Error('etcd is not installed (Debian etcd-server); run scripts/install-test-deps.sh');
  return bin;
}

function tail(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-20).join('\n') : '(no log)';
}
