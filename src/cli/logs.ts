import { type Command, Option } from 'commander';
import { TealError } from '../core/errors.js';
import type { LogEntryJson } from '../core/log-follow.js';
import { type ConfigOption, withConfig } from './options.js';

interface LogsOptions extends ConfigOption {
  slot?: string;
  instance?: string;
  since?: string;
  follow?: boolean;
  lines?: string;
  tail?: string;
  json?: boolean;
}

export function logsCommand(program: Command): void {
  withConfig(
    program
      .command('logs')
      .description(
        "show a service's output (stdout and stderr of its instances), each line with its time and instance",
      )
      .argument('<service>', 'the service, as named in teal.yml')
      .option('--slot <slot>', 'blue or green (default: the live slot, followed across switches)')
      .option('--instance <id|index>', 'one instance: its id, or its index in the slot (0, 1, …)')
      .option(
        '--since <when>',
        'only lines from then on: a duration back ("10m", "1h") or a time (2026-05-01T12:00:00Z)',
      )
      .option(
        '-f, --follow',
        'keep printing new lines, following whatever is live across deploys and rollbacks',
      )
      .option('-n, --lines <count>', 'lines of history to start with, per instance ("all": the whole file)')
      .addOption(new Option('--tail <count>', 'the old name of --lines').hideHelp())
      .option(
        '--json',
        'one JSON object per line: time, service, slot, release, version, instance, stream, line',
      ),
  )
    .addHelpText(
      'after',
      `
Examples:
  teal logs web -f
  teal logs web --slot green -n 500
  teal logs web --since 10m --instance 1
  teal logs web -f --json | jq -r 'select(.stream == "stderr") | .line'

With -f, a line "── switched to green: r4 v2 (deployment 7) ──" marks each switch; the lines after it
are the new live release's. A time prefixed with ~ is approximate (written while teal up was down).`,
    )
    .action(async (service: string, opts: LogsOptions) => {
      const query = new URLSearchParams({ format: 'json' });
      if (opts.slot !== undefined) {
        if (opts.slot !== 'blue' && opts.slot !== 'green')
          throw new TealError('TEAL_USAGE', `--slot expects blue or green, got ${JSON.stringify(opts.slot)}`);
        query.set('slot', opts.slot);
      }
      if (opts.instance !== undefined) {
        if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(opts.instance))
          throw new TealError(
            'TEAL_USAGE',
            `--instance expects an instance id (as teal status shows it) or an index like 0, got ${JSON.stringify(opts.instance)}`,
          );
        query.set('instance', opts.instance);
      }
      const lines = opts.lines ?? opts.tail;
      if (lines !== undefined) {
        if (lines !== 'all' && !/^\d+$/.test(lines))
          throw new TealError(
            'TEAL_USAGE',
            `--lines expects a number of lines or "all", got ${JSON.stringify(lines)}`,
          );
        query.set('tail', lines);
      } else if (opts.since !== undefined) {
        query.set('tail', 'all'); // --since alone: every line since then
      }
      if (opts.since !== undefined) {
        const { parseSince } = await import('../core/since.js');
        try {
          // Resolved here, so "10m" means ten minutes before this command, whatever the daemon's clock.
          query.set('since', new Date(parseSince(opts.since)).toISOString());
        } catch (err) {
          throw new TealError('TEAL_USAGE', `--since ${(err as Error).message}`);
        }
      }
      if (opts.follow) query.set('follow', '1');
      const { clientFor } = await import('./context.js');
      const { entryText } = await import('../core/log-follow.js');
      const { jsonText } = await import('../core/visible.js');
      const { client } = clientFor(opts);
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      try {
        for await (const entry of client.jsonLines(
          `/v1/services/${encodeURIComponent(service)}/logs?${query}`,
          stop.signal,
        )) {
          process.stdout.write(`${opts.json ? jsonText(entry) : entryText(entry as LogEntryJson)}\n`);
        }
      } catch (err) {
        if (!stop.signal.aborted) throw err;
      }
    });
}
