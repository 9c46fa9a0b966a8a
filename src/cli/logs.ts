import type { Command } from 'commander';
import { TealError } from '../core/errors.js';
import { type ConfigOption, withConfig } from './options.js';

export function logsCommand(program: Command): void {
  withConfig(
    program
      .command('logs')
      .description("show a service's output (stdout and stderr of its instances)")
      .argument('<service>', 'the service, as named in teal.yml')
      .option('--slot <slot>', 'blue or green (default: the live slot)')
      .option('-f, --follow', 'keep printing new lines')
      .option('-n, --tail <lines>', 'lines of history to start with', '100'),
  )
    .addHelpText(
      'after',
      `
Examples:
  teal logs web -f
  teal logs web --slot green --tail 500`,
    )
    .action(
      async (service: string, opts: ConfigOption & { slot?: string; follow?: boolean; tail: string }) => {
        if (opts.slot !== undefined && opts.slot !== 'blue' && opts.slot !== 'green') {
          throw new TealError('TEAL_USAGE', `--slot expects blue or green, got ${JSON.stringify(opts.slot)}`);
        }
        const { clientFor } = await import('./context.js');
        const { client } = clientFor(opts);
        const query = new URLSearchParams({
          tail: opts.tail,
          ...(opts.slot ? { slot: opts.slot } : {}),
          ...(opts.follow ? { follow: '1' } : {}),
        });
        const stop = new AbortController();
        process.once('SIGINT', () => stop.abort());
        try {
          for await (const chunk of client.text(
            `/v1/services/${encodeURIComponent(service)}/logs?${query}`,
            stop.signal,
          )) {
            process.stdout.write(chunk);
          }
        } catch (err) {
          if (!stop.signal.aborted) throw err;
        }
      },
    );
}
