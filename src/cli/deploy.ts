import type { Command } from 'commander';
import type { DeployPlan } from '../core/plan.js';
import type { DeploymentRecord } from '../core/records.js';
import { followDeployment } from './follow.js';
import { type ConfigOption, withConfig } from './options.js';
import { paint, printJson } from './output.js';

interface DeployOptions extends ConfigOption {
  version: string;
  wait?: string | boolean;
  dryRun?: boolean;
  detach?: boolean;
  json?: boolean;
}

export function deployCommand(program: Command): void {
  withConfig(
    program
      .command('deploy')
      .description(
        'deploy a version of a service blue-green: start it beside the live one, prove it, switch, drain',
      )
      .argument('<service>', 'the service, as named in teal.yml')
      .requiredOption('-v, --version <version>', 'the version to deploy (fills {{version}} in teal.yml)')
      .option(
        '--wait [duration]',
        'if another deployment holds the lock, queue behind it (default up to 30m)',
      )
      .option('--dry-run', 'print the plan and change nothing')
      .option('--detach', 'start the deployment and return at once')
      .option('--json', 'print the final deployment record as JSON'),
  )
    .addHelpText(
      'after',
      `
Exit codes: 0 done, 1 failed or interrupted (the live slot is untouched unless the switch happened),
2 bad usage or config, 3 daemon unreachable, 4 locked.

Examples:
  teal deploy web --version v2                  deploy and follow the steps
  teal deploy web --version v2 --dry-run        show what would happen
  teal deploy web --version "$GIT_SHA" --wait   in CI: queue behind a running deploy
  teal deploy web --version v2 --json | jq .state`,
    )
    .action(async (service: string, opts: DeployOptions) => {
      const { clientFor } = await import('./context.js');
      const { client } = clientFor(opts);
      const path = `/v1/services/${encodeURIComponent(service)}/deployments`;
      if (opts.dryRun) {
        const { plan } = await client.request<{ plan: DeployPlan }>('POST', path, {
          version: opts.version,
          dryRun: true,
        });
        if (opts.json) printJson(plan);
        else printPlan(plan);
        return;
      }
      const wait = opts.wait === true ? '30m' : opts.wait || undefined;
      const record = await client.request<DeploymentRecord>('POST', path, {
        version: opts.version,
        ...(wait ? { wait } : {}),
      });
      if (opts.detach) {
        if (opts.json) printJson(record);
        else
          process.stderr.write(`deployment #${record.n} started; follow it with: teal history ${service}\n`);
        return;
      }
      process.exitCode = await followDeployment(client, record, Boolean(opts.json), { stopAtGate: true });
    });
}

function printPlan(plan: DeployPlan): void {
  const c = paint(process.stdout);
  const from = plan.fromSlot ? `${plan.fromSlot} (${plan.fromVersion})` : 'nothing live yet';
  process.stdout.write(
    `${c.bold(`plan: ${plan.kind} ${plan.service} ${plan.release.version}`)} to ${plan.targetSlot}; live now: ${from}\n`,
  );
  for (const [i, step] of plan.steps.entries())
    process.stdout.write(`  ${String(i + 1).padStart(2)}. ${step}\n`);
  process.stdout.write(c.dim('nothing was changed (--dry-run)\n'));
}
