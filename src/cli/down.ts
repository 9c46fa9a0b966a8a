import type { Command } from 'commander';
import { TealError } from '../core/errors.js';
import { readDaemonInfo, statePaths } from '../daemon/files.js';
import { pidAlive } from '../proc.js';
import { type ConfigOption, withConfig } from './options.js';

export function downCommand(program: Command): void {
  withConfig(
    program
      .command('down')
      .description(
        'stop what teal keeps running after `teal up` exits: the data plane and every app instance',
      ),
  )
    .addHelpText(
      'after',
      `
Stop the control plane (teal up) first: down refuses while it runs. Users get connection refused
afterwards; the store keeps the history, and the next teal up starts the data plane again.

Example:
  teal down -c examples/hello/teal.yml`,
    )
    .action(async (opts: ConfigOption) => {
      const { loadFor } = await import('./context.js');
      const loaded = loadFor(opts);
      const paths = statePaths(loaded.stateDir);
      const info = readDaemonInfo(paths);
      if (info && pidAlive(info.pid)) {
        throw new TealError(
          'TEAL_DAEMON_RUNNING',
          `teal up is still running (pid ${info.pid}); stop it first (Ctrl-C, or kill ${info.pid})`,
        );
      }
      // A control plane the data plane would respawn is dead by now: tell it not to (and to stop one
      // it is starting), before the check below, so none appears between the check and the stop.
      const { forgetControlPlane } = await import('../proxy/builtin/launcher.js');
      await forgetControlPlane(paths.proxySocket);
      const again = readDaemonInfo(paths);
      if (again && pidAlive(again.pid)) {
        throw new TealError(
          'TEAL_DAEMON_RUNNING',
          `teal up is running (pid ${again.pid}); stop it first (Ctrl-C, or kill ${again.pid})`,
        );
      }
      const { teardown } = await import('../daemon/teardown.js');
      await teardown(paths);
      process.stderr.write('stopped the data plane and every instance\n');
    });
}
