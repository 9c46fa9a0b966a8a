import type { Command } from 'commander';
import { type ConfigOption, withConfig } from './options.js';

interface HaproxyConfigFlags extends ConfigOption {
  stateDir?: string;
}

export function haproxyConfigCommand(program: Command): void {
  withConfig(
    program
      .command('haproxy-config')
      .description(
        'print the base config to start haproxy with (proxy.kind: haproxy), and create the state files it loads',
      )
      .option('--state-dir <dir>', "teal's state dir (default: teal.yml's stateDir)"),
  )
    .addHelpText(
      'after',
      `
haproxy is started once with this config; from then on teal changes servers and routes through its
runtime API, with no reload (docs/haproxy.md). Re-render it when you change proxy.listen, socket,
lanes or serversPerLane, then restart or reload haproxy.

Examples:
  teal haproxy-config > /etc/haproxy/haproxy.cfg && haproxy -c -f /etc/haproxy/haproxy.cfg
  teal haproxy-config -c deploy/teal.yml`,
    )
    .action(async (opts: HaproxyConfigFlags) => {
      const path = await import('node:path');
      const { TealError } = await import('../core/errors.js');
      const { loadFor } = await import('./context.js');
      const { haproxyOptions } = await import('../proxy/open.js');
      const { renderBaseConfig, prepareStateDir } = await import('../proxy/haproxy/base-config.js');
      const loaded = loadFor(opts);
      const proxy = loaded.config.proxy;
      if (proxy.kind !== 'haproxy')
        throw new TealError(
          'TEAL_USAGE',
          `${loaded.file} has proxy.kind: ${proxy.kind}; haproxy-config is for proxy.kind: haproxy`,
        );
      const dir = opts.stateDir ? path.resolve(opts.stateDir) : loaded.stateDir;
      const o = haproxyOptions(proxy, { dir, configDir: loaded.dir });
      await prepareStateDir(o.stateDir);
      process.stdout.write(renderBaseConfig(o));
    });
}
