import type { Command } from 'commander';
import { type ConfigOption, withConfig } from './options.js';

export function restartProxyCommand(program: Command): void {
  withConfig(
    program
      .command('restart-proxy')
      .description(
        'replace the running data plane with a fresh process, without refusing or failing a request',
      )
      .option('--json', 'print {from, to} (the old and new pid) as JSON'),
  )
    .addHelpText(
      'after',
      `
The running data plane starts a new \`teal proxy\` (the teal installed now: this is how an upgrade
of teal reaches the data plane), hands it the listening socket and the routing table, and retires:
its requests and streams finish, then it exits. \`teal up\` does this by itself when the running
data plane is of another teal version.

Example:
  teal restart-proxy -c examples/hello/teal.yml`,
    )
    .action(async (opts: ConfigOption & { json?: boolean }) => {
      const { loadFor } = await import('./context.js');
      const { statePaths } = await import('../daemon/files.js');
      const { restartDataPlane } = await import('../proxy/builtin/launcher.js');
      const paths = statePaths(loadFor(opts).stateDir);
      const result = await restartDataPlane(paths.proxySocket);
      if (opts.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      else
        process.stderr.write(
          `the data plane moved from pid ${result.from} to pid ${result.to} without a gap\n`,
        );
    });
}
