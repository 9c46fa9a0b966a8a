import { hostname } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { TealError } from '../core/errors.js';
import { type ConfigOption, withConfig } from './options.js';

interface EdgeFlags extends ConfigOption {
  id?: string;
  listen?: string;
  previewListen?: string;
  stateDir?: string;
  logFormat?: string;
  leaseTtl: string;
}

export function edgeCommand(program: Command): void {
  withConfig(
    program
      .command('edge')
      .description(
        'run an edge: a data plane that serves the routing table the control plane publishes in the store',
      )
      .option('--id <name>', "this edge's name in the store (default: the host name)")
      .option('--listen <host:port>', "where users connect (default: teal.yml's proxy.listen)")
      .option(
        '--preview-listen <host:port>',
        "this edge's preview listener, where X-Teal-Slot chooses the slot (default: teal.yml's proxy.preview.listen, else 127.0.0.1 on the public port + 1)",
      )
      .option('--state-dir <dir>', "this edge's own state dir (default: teal.yml's stateDir)")
      .option('--log-format <format>', 'json or pretty (default: pretty on a terminal, else json)')
      .option(
        '--lease-ttl <duration>',
        "how soon a dead edge stops being waited for by a deploy's switch",
        '10s',
      ),
  )
    .addHelpText(
      'after',
      `
Edges share the control plane's teal.yml and its store (etcd, for several hosts). Each applies every
table the control plane publishes and reports the revision it serves under /teal/proxies/<id>; a
deploy switches only once every edge serves the new table, and drains the old slot only then. The
data plane keeps serving the last table while the store or the edge process is away.

Examples:
  teal edge -c teal.yml --id edge-1
  teal edge -c teal.yml --id edge-2 --listen 0.0.0.0:8081 --state-dir .teal-edge-2`,
    )
    .action(async (opts: EdgeFlags) => {
      const { loadFor } = await import('./context.js');
      const { parseAddress } = await import('../core/config/address.js');
      const { statePaths, ensureStateDir } = await import('../daemon/files.js');
      const { createLogger } = await import('../daemon/log.js');
      const { openStore } = await import('../stores/open.js');
      const { openTrafficSwitch } = await import('../proxy/open.js');
      const { runEdge } = await import('../daemon/edge.js');
      const { parseDuration } = await import('../core/config/duration.js');
      let leaseTtlMs: number;
      try {
        leaseTtlMs = parseDuration(opts.leaseTtl);
      } catch {
        throw new TealError('TEAL_USAGE', `--lease-ttl: expected a duration like 10s, got ${opts.leaseTtl}`);
      }
      const loaded = loadFor(opts);
      const proxy = { ...loaded.config.proxy };
      if (opts.listen) {
        try {
          proxy.listen = parseAddress(opts.listen);
        } catch (err) {
          throw new TealError('TEAL_USAGE', `--listen: ${(err as Error).message}`);
        }
      }
      if (opts.previewListen) {
        try {
          proxy.preview = { listen: parseAddress(opts.previewListen) };
        } catch (err) {
          throw new TealError('TEAL_USAGE', `--preview-listen: ${(err as Error).message}`);
        }
      }
      const pretty = opts.logFormat ? opts.logFormat === 'pretty' : Boolean(process.stdout.isTTY);
      const log = createLogger({ pretty });
      const paths = statePaths(opts.stateDir ? path.resolve(opts.stateDir) : loaded.stateDir);
      ensureStateDir(paths);
      const store = openStore(loaded.config.store, paths.dir, loaded.dir);
      const id = opts.id ?? hostname();
      const stop = new AbortController();
      process.once('SIGTERM', () => stop.abort());
      process.once('SIGINT', () => stop.abort());
      try {
        const { traffic, url } = await openTrafficSwitch(proxy, { ...paths, configDir: loaded.dir }, log);
        log.info('edge is up', { id, url, store: loaded.config.store.kind });
        await runEdge({ store, traffic, id, listen: url, log, signal: stop.signal, leaseTtlMs });
        await traffic.close();
      } finally {
        await store.close();
      }
      log.info('edge stopped; its data plane keeps serving the last table');
    });
}
