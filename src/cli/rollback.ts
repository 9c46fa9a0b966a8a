import type { Command } from 'commander';
import { TealError } from '../core/errors.js';
import type { DeploymentRecord } from '../core/records.js';
import { followDeployment } from './follow.js';
import { type ConfigOption, withConfig } from './options.js';

interface RollbackOptions extends ConfigOption {
  to?: string;
  wait?: string | boolean;
  json?: boolean;
}

export function rollbackCommand(program: Command): void {
  withConfig(
    program
      .command('rollback')
      .description(
        'go back to the previous release: an instant switch while the old slot is warm, a full deploy after',
      )
      .argument('<service>', 'the service, as named in teal.yml')
      .option('--to <release>', 'the release number to go back to (see teal history)')
      .option('--wait [duration]', 'queue behind a running deployment instead of failing')
      .option('--json', 'print the final deployment record as JSON'),
  )
    .addHelpText(
      'after',
      `
Inside the keep-warm window (keepWarm in teal.yml) the old slot is still running, so a rollback only
flips the switch back after a quick health check. After it, the release is started again through
every step of a deploy (health checks and verification included), beside the warm release if there
is one, which stays until the switch. Only releases that went live are targets: one whose
deployments all failed or were aborted is refused with the reason (teal history lists the targets).

Examples:
  teal rollback web              back to the release live before this one
  teal rollback web --to 3       back to release 3`,
    )
    .action(async (service: string, opts: RollbackOptions) => {
      const { clientFor } = await import('./context.js');
      const { client } = clientFor(opts);
      let to: number | undefined;
      if (opts.to !== undefined) {
        to = Number(opts.to);
        if (!Number.isInteger(to) || to < 1)
          throw new TealError('TEAL_USAGE', `--to expects a release number, got ${JSON.stringify(opts.to)}`);
      }
      const wait = opts.wait === true ? '30m' : opts.wait || undefined;
      const record = await client.request<DeploymentRecord>(
        'POST',
        `/v1/services/${encodeURIComponent(service)}/rollback`,
        {
          ...(to === undefined ? {} : { to }),
          ...(wait ? { wait } : {}),
        },
      );
      process.exitCode = await followDeployment(client, record, Boolean(opts.json));
    });
}
