import type { Command } from 'commander';
import type { DeploymentRecord } from '../core/records.js';
import { followDeployment } from './follow.js';
import { type ConfigOption, withConfig } from './options.js';

interface GateOptions extends ConfigOption {
  json?: boolean;
  detach?: boolean;
}

/** `teal promote` and `teal abort`: the decision at the manual gate (promote: manual). */
export function gateCommands(program: Command): void {
  withConfig(
    program
      .command('promote')
      .description(
        'switch to the release waiting verified at the manual gate (promote: manual), and follow it',
      )
      .argument('<service>', 'the service, as named in teal.yml')
      .option('--detach', 'return once promoted, without following the switch')
      .option('--json', 'print the final deployment record as JSON'),
  )
    .addHelpText(
      'after',
      `
With promote: manual in teal.yml, a deployment stops after verification with the new release on the
preview route: on this host, requests to the preview listener (proxy.preview.listen, 127.0.0.1 on
the public port + 1 by default) with X-Teal-Slot: <slot> reach it; for testers elsewhere,
\`teal preview <service>\` prints a link to the public port that does. Look at it, then promote or abort.

Examples:
  teal deploy web --version v2     stops at the gate
  curl -H 'X-Teal-Slot: green' http://127.0.0.1:8081/
  teal preview web --ttl 1h        a link for a tester
  teal promote web                 switches, drains, keeps the old slot warm`,
    )
    .action((service: string, opts: GateOptions) => decide('promote', service, opts));

  withConfig(
    program
      .command('abort')
      .description(
        'stop the deployment in progress before it switches (at the gate, or while starting or verifying)',
      )
      .argument('<service>', 'the service, as named in teal.yml')
      .option('--detach', 'return once asked, without waiting for the new slot to be stopped')
      .option('--json', 'print the final deployment record as JSON'),
  )
    .addHelpText(
      'after',
      `
The new slot's instances are stopped; the live slot was never touched. After the switch there is
nothing to abort: use teal rollback.

Examples:
  teal abort web
  teal abort web --json`,
    )
    .action((service: string, opts: GateOptions) => decide('abort', service, opts));
}

async function decide(action: 'promote' | 'abort', service: string, opts: GateOptions): Promise<void> {
  const { clientFor } = await import('./context.js');
  const { printJson } = await import('./output.js');
  const { client } = clientFor(opts);
  const record = await client.request<DeploymentRecord>(
    'POST',
    `/v1/services/${encodeURIComponent(service)}/${action}`,
    {},
  );
  if (opts.detach) {
    if (opts.json) printJson(record);
    else process.stderr.write(`${action === 'promote' ? 'promoted' : 'aborting'} deployment #${record.n}\n`);
    return;
  }
  const code = await followDeployment(client, record, Boolean(opts.json));
  // An abort that ended the deployment is the command succeeding.
  process.exitCode = action === 'abort' ? 0 : code;
}
