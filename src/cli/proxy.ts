import type { Command } from 'commander';

export function proxyCommand(program: Command): void {
  program
    .command('proxy')
    .description('run the builtin data plane (started by `teal up`; rarely run by hand)')
    .requiredOption('--listen <host:port>', 'address users connect to')
    .requiredOption('--admin <socket>', 'unix socket of the admin API the control plane drives')
    .requiredOption('--state <file>', 'where the applied routing table is saved and read back on start')
    .addHelpText(
      'after',
      `
The data plane is its own process so it keeps serving while the control plane stops, crashes or
restarts. \`teal up\` starts it (or re-attaches to it) with the state dir's paths.

Example:
  teal proxy --listen 0.0.0.0:8080 --admin .teal/proxy.sock --state .teal/proxy-table.json`,
    )
    .action(async (opts: { listen: string; admin: string; state: string }) => {
      const { runDataPlaneProcess } = await import('../proxy/builtin/process-main.js');
      await runDataPlaneProcess({ listen: opts.listen, admin: opts.admin, state: opts.state });
    });
}
