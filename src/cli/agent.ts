import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { TealError } from '../core/errors.js';

const DEFAULT_SOCKET = '/var/run/docker.sock';

interface AgentFlags {
  config?: string;
  id?: string;
  address?: string;
  etcd?: string;
  prefix: string;
  label: string[];
  capacity: string;
  stateDir: string;
  leaseTtl: string;
  logFormat?: string;
  dockerHost?: string;
}

export function agentCommand(program: Command): void {
  program
    .command('agent')
    .description('run a fleet host: run the instances the control plane assigns this host through etcd')
    .requiredOption('--address <ip>', 'the address instances bind on and data planes reach them at')
    .option('--id <name>', "this host's id in the store and in services' hosts: (default: the host name)")
    .option('--etcd <urls>', 'etcd endpoints, comma-separated (or take the store of -c teal.yml)')
    .option('--prefix <prefix>', "the store's key prefix, as the control plane's", '/teal')
    .option(
      '-c, --config <file>',
      'a teal.yml whose store (etcd, with its tls and auth) to use instead of --etcd',
    )
    .option('--label <key=value>', 'a label for hostLabels placement (repeatable)', collect, [])
    .option('--capacity <n>', 'most instances this host runs (0: no limit)', '0')
    .option('--state-dir <dir>', "this agent's instance records and logs", '.teal-agent')
    .option('--lease-ttl <duration>', 'how soon a dead agent drops out of the store', '10s')
    .option(
      '--docker-host <address>',
      'the Docker engine container assignments run on (default: DOCKER_HOST, else unix:///var/run/docker.sock)',
    )
    .option('--log-format <format>', 'json or pretty (default: pretty on a terminal, else json)')
    .addHelpText(
      'after',
      `
The agent registers this host at /teal/hosts/<id> under a lease, runs what the control plane
assigns it at /teal/assignments/<id>/ (a docker service's instances as containers on this host's
Docker engine, published on --address; any other as processes), and reports every instance (state,
address:port, image, exit, the tail of its log) at /teal/reports/<id>/ under the same lease. Instances
outlive the agent; a restarted agent adopts those still assigned and stops the rest. A service
runs on agents when teal.yml gives it hosts: [<id>, ...] or hostLabels: {key: value}.

Examples:
  teal agent --id web-1 --address 10.0.1.2 --etcd http://10.0.0.5:2379
  teal agent --id web-2 --address 10.0.2.2 --etcd http://10.0.0.5:2379 --label zone=b --capacity 8
  teal agent --id web-3 --address 10.0.3.2 -c /etc/teal/teal.yml --state-dir /var/lib/teal-agent
  teal agent --id web-4 --address 10.0.4.2 --etcd http://10.0.0.5:2379 --docker-host unix:///run/podman/podman.sock`,
    )
    .action(async (opts: AgentFlags) => {
      const { parseDuration } = await import('../core/config/duration.js');
      const { createLogger } = await import('../daemon/log.js');
      const { openStore } = await import('../stores/open.js');
      const { ProcessRuntime } = await import('../runtimes/process.js');
      const { DockerRuntime } = await import('../runtimes/docker/docker.js');
      const { RuntimeByKind } = await import('../runtimes/by-kind.js');
      const { parseEngineHost } = await import('../runtimes/docker/engine.js');
      const { FLEET_NAME } = await import('../core/fleet.js');
      const { runAgent } = await import('../agent/agent.js');
      const id = opts.id ?? hostname();
      if (!FLEET_NAME.test(id))
        throw new TealError('TEAL_USAGE', `--id: expected a name like web-1, got ${JSON.stringify(id)}`);
      const address = opts.address ?? '';
      if (!/^[0-9.]+$|^[0-9a-fA-F:]+$/.test(address))
        throw new TealError(
          'TEAL_USAGE',
          `--address: expected an IP address like 10.0.1.2, got ${JSON.stringify(address)}`,
        );
      const capacity = Number(opts.capacity);
      if (!Number.isInteger(capacity) || capacity < 0)
        throw new TealError('TEAL_USAGE', `--capacity: expected a whole number, got ${opts.capacity}`);
      let leaseTtlMs: number;
      try {
        leaseTtlMs = parseDuration(opts.leaseTtl);
      } catch {
        throw new TealError('TEAL_USAGE', `--lease-ttl: expected a duration like 10s, got ${opts.leaseTtl}`);
      }
      const labels: Record<string, string> = {};
      for (const l of opts.label) {
        const at = l.indexOf('=');
        if (at < 1)
          throw new TealError('TEAL_USAGE', `--label: expected key=value, got ${JSON.stringify(l)}`);
        labels[l.slice(0, at)] = l.slice(at + 1);
      }
      const dockerHost = opts.dockerHost ?? process.env.DOCKER_HOST;
      if (opts.dockerHost !== undefined) {
        try {
          parseEngineHost(opts.dockerHost);
        } catch (err) {
          throw new TealError('TEAL_USAGE', `--docker-host: ${(err as Error).message}`);
        }
      }
      const stateDir = path.resolve(opts.stateDir);
      const store = await agentStore(opts, stateDir, openStore);
      const pretty = opts.logFormat ? opts.logFormat === 'pretty' : Boolean(process.stdout.isTTY);
      const log = createLogger({ pretty });
      // Containers run on the engine, made on first use; a restart lists the engine's containers
      // too (to adopt them) when one was named or the default socket is there.
      const runtime = new RuntimeByKind({
        process: new ProcessRuntime({ stateDir }),
        docker: () => new DockerRuntime({ stateDir, ...(dockerHost ? { host: dockerHost } : {}) }),
        dockerInUse: Boolean(dockerHost) || existsSync(DEFAULT_SOCKET),
      });
      const stop = new AbortController();
      process.once('SIGTERM', () => stop.abort());
      process.once('SIGINT', () => stop.abort());
      log.info('agent is up', {
        id,
        address,
        labels,
        capacity,
        dockerHost: dockerHost || `${DEFAULT_SOCKET} (default)`,
      });
      try {
        await runAgent({
          store,
          runtime,
          id,
          address,
          labels,
          capacity,
          log,
          signal: stop.signal,
          leaseTtlMs,
          runtimeName: 'process,docker',
        });
      } finally {
        await runtime.close();
        await store.close();
      }
      log.info('agent stopped; its instances keep running and are adopted when it starts again');
    });
}

async function agentStore(
  opts: AgentFlags,
  stateDir: string,
  openStore: typeof import('../stores/open.js').openStore,
) {
  if (opts.etcd) {
    const endpoints = opts.etcd
      .split(',')
      .map((e) => e.trim())
      .filter(Boolean);
    return openStore({ kind: 'etcd', endpoints, prefix: opts.prefix }, stateDir, process.cwd());
  }
  if (!opts.config)
    throw new TealError('TEAL_USAGE', 'give the store: --etcd <urls>, or -c <teal.yml> with store kind etcd');
  const { loadFor } = await import('./context.js');
  const loaded = loadFor({ config: opts.config });
  if (loaded.config.store.kind !== 'etcd') {
    throw new TealError(
      'TEAL_USAGE',
      `${loaded.file}: an agent needs store: { kind: etcd }, not ${loaded.config.store.kind}`,
    );
  }
  return openStore(loaded.config.store, stateDir, loaded.dir);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
