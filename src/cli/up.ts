import path from 'node:path';
import type { Command } from 'commander';
import { TealError } from '../core/errors.js';
import type { Daemon } from '../daemon/daemon.js';
import { createLogger } from '../daemon/log.js';
import { type ConfigOption, withConfig } from './options.js';

export function upCommand(program: Command): void {
  withConfig(
    program
      .command('up')
      .description('start the control plane: the data plane (proxy), the API, and the deploy engine')
      .option('--log-format <format>', 'json or pretty (default: pretty on a terminal, else json)')
      .option(
        '--no-respawn',
        'the data plane does not start teal up again if it dies (automatic under systemd: INVOCATION_ID)',
      ),
  )
    .addHelpText(
      'after',
      `
teal up runs in the foreground; stop it with Ctrl-C or SIGTERM. The data plane and the app
instances keep serving while it is stopped, and it re-attaches to them when started again.
SIGHUP (or \`teal reload\`) makes it re-read teal.yml and apply it without a restart; each deploy
re-reads it too.
teal up restarts a builtin data plane that dies; the data plane starts teal up again if it dies
without being stopped (SIGKILL, a crash), its output then in <state dir>/daemon.log, unless
--no-respawn or a supervisor runs it (systemd: INVOCATION_ID is set).

Examples:
  teal up
  teal up -c examples/hello/teal.yml
  teal up --log-format json >> teal.log 2>&1 &`,
    )
    .action(async (opts: ConfigOption & { logFormat?: string; respawn: boolean }) => {
      if (opts.logFormat !== undefined && opts.logFormat !== 'json' && opts.logFormat !== 'pretty') {
        throw new TealError(
          'TEAL_USAGE',
          `--log-format expects json or pretty, got ${JSON.stringify(opts.logFormat)}`,
        );
      }
      const pretty = opts.logFormat ? opts.logFormat === 'pretty' : Boolean(process.stdout.isTTY);
      const log = createLogger({ pretty });
      // SIGHUP re-reads teal.yml (as `teal reload` does). Caught from the start: its default action
      // would end teal up, and one that comes while it starts is applied once it is up.
      let daemon: Daemon | undefined;
      let hupWhileStarting = false;
      const reload = () => {
        if (!daemon) {
          hupWhileStarting = true;
          return;
        }
        // The reload logs what it applied or why the file was refused; the running config stays.
        daemon.config.reload('SIGHUP').catch(() => undefined);
      };
      process.on('SIGHUP', reload);
      const { startDaemon } = await import('../daemon/daemon.js');
      const { underSupervisor } = await import('../daemon/respawn-registration.js');
      const supervisor = underSupervisor();
      if (supervisor && opts.respawn)
        log.info(`run by ${supervisor}: the data plane will not respawn teal up`);
      daemon = await startDaemon({
        configFile: path.resolve(opts.config),
        log,
        respawn: opts.respawn && supervisor === undefined,
      });
      if (hupWhileStarting) reload();
      if (pretty) {
        process.stdout.write(
          `\n  proxy      ${daemon.proxyUrl}\n  preview    ${daemon.previewUrl}  (X-Teal-Slot chooses the slot here)\n  API        ${daemon.apiUrl}  (token in ${daemon.paths.token} or TEAL_TOKEN)\n  state dir  ${daemon.paths.dir}\n\n`,
        );
      }
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info(`got ${signal}; stopping the control plane`);
          resolve();
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      await daemon.close();
    });
}
