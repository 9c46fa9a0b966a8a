import path from 'node:path';
import type { Command } from 'commander';
import { type ConfigOption, withConfig } from './options.js';
import { printJson } from './output.js';

export function validateCommand(program: Command): void {
  withConfig(
    program
      .command('validate')
      .description('check teal.yml: every problem with its line, path and what was expected (exit 2 if any)')
      .option('--json', 'print {valid, services} or the error with its problems as JSON'),
  )
    .addHelpText(
      'after',
      `
Examples:
  teal validate
  teal validate -c deploy/teal.yml --json`,
    )
    .action(async (opts: ConfigOption & { json?: boolean }) => {
      const { loadFor } = await import('./context.js');
      const loaded = loadFor(opts);
      const services = Object.keys(loaded.config.services);
      if (opts.json) {
        printJson({ valid: true, file: loaded.file, services });
        return;
      }
      const shown = path.relative(process.cwd(), loaded.file) || loaded.file;
      process.stdout.write(`${shown} is valid: ${services.length} service(s): ${services.join(', ')}\n`);
    });
}
