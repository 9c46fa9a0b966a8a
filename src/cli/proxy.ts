import type { Command } from 'commander';

/**
 * `teal proxy` as the full command line knows it, for its help; runs go through main.ts's short
 * path (proxy-fast.ts), which parses the same flags without loading the control plane.
 */
export function proxyCommand(program: Command): void {
  program
    .command('proxy')
    .description('run the builtin data plane (started by `teal up`; rarely run by hand)')
    .requiredOption('--listen <host:port>', 'address users connect to (X-Teal-Slot is ignored there)')
    .option(
      '--preview-listen <host:port>',
      'preview listener, where X-Teal-Slot: blue|green chooses the slot',
    )
    .requiredOption('--admin <socket>', 'unix socket of the admin API the control plane drives')
    .requiredOption('--state <file>', 'where the applied routing table is saved and read back on start')
    .option('--max-body <size>', 'request bodies over this get 413', '100MB')
    .option('--connect-timeout <duration>', 'an upstream not accepting a connection in this long: 504', '5s')
    .option('--response-timeout <duration>', 'an upstream sending no response head in this long: 504', '60s')
    .option('--idle-timeout <duration>', 'idle client connections are closed after this', '75s')
    .option('--headers-timeout <duration>', 'a request head must arrive within this: 408', '60s')
    .addHelpText(
      'after',
      `
The data plane is its own process so it keeps serving while the control plane stops, crashes or
restarts. \`teal up\` starts it (or re-attaches to it) with the state dir's paths and the limits
from teal.yml's proxy section.

Example:
  teal proxy --listen 0.0.0.0:8080 --preview-listen 127.0.0.1:8081 --admin .teal/proxy.sock --state .teal/proxy-table.json`,
    )
    .action(async () => {
      const { proxyFastPath } = await import('./proxy-fast.js');
      await proxyFastPath(process.argv.slice(process.argv.indexOf('proxy') + 1));
    });
}
