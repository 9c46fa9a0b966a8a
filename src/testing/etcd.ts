import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
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

/** A free loopback port: bound once by the OS, then released for etcd to take. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
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
  const bin = findBinary('etcd');
  if (!bin) throw new Error('etcd is not installed (Debian etcd-server); run scripts/install-test-deps.sh');
  const ownDir = dir === undefined;
  const root = dir ?? mkdtempSync(path.join(tmpdir(), 'teal-etcd-'));
  const clientPort = await freePort();
  const peerPort = await freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const name = `teal-${process.pid}-${clientPort}`;
  const logFile = path.join(root, 'etcd.log');
  const args = [
    `--name=${name}`,
    `--data-dir=${path.join(root, 'data')}`,
    `--listen-client-urls=${[endpoint, ...(options.clientHosts ?? []).map((h) => `http://${h}:${clientPort}`)].join(',')}`,
    `--advertise-client-urls=${endpoint}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=${name}=${peer}`,
    `--initial-cluster-token=${name}`,
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

  await start();
  return {
    endpoint,
    dir: root,
    pid: () => child?.pid,
    stop: () => halt('SIGTERM'),
    kill: () => halt('SIGKILL'),
    async restart() {
      await halt('SIGTERM');
      await start();
    },
    async close() {
      await halt('SIGTERM');
      if (ownDir) rmSync(root, { recursive: true, force: true });
    },
  };
}

function tail(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-20).join('\n') : '(no log)';
}
