import type { Command } from 'commander';
import { type ConfigOption, withConfig } from './options.js';

interface LockOptions extends ConfigOption {
  json?: boolean;
}

/** `teal lock status|release`: the deploy lock of a service, which lives on a store lease. */
export function lockCommand(program: Command): void {
  const lock = program
    .command('lock')
    .description("show or free a service's deploy lock")
    .addHelpText(
      'after',
      `
A deploy takes the service's lock on a store lease: if its control plane dies, the lease ends and the
lock frees itself (at once on this host, within the lease TTL on etcd). \`release\` frees a lock only
when its holder is provably gone; it never takes a lock from under a running deployment.

Examples:
  teal lock status web
  teal lock release web`,
    );

  withConfig(
    lock
      .command('status')
      .description('who holds the deploy lock, since when')
      .argument('<service>', 'the service, as named in teal.yml')
      .option('--json', 'print {service, held, holder, since} as JSON'),
  ).action(async (service: string, opts: LockOptions) => {
    const { clientFor } = await import('./context.js');
    const { printJson } = await import('./output.js');
    const { client } = clientFor(opts);
    const status = await client.request<{ held: boolean; holder?: { description?: string }; since?: string }>(
      'GET',
      `/v1/services/${encodeURIComponent(service)}/lock`,
    );
    if (opts.json) {
      printJson(status);
      return;
    }
    process.stdout.write(
      status.held
        ? `${service} is locked by ${status.holder?.description ?? JSON.stringify(status.holder)}${status.since ? ` since ${status.since}` : ''}\n`
        : `${service} is not locked\n`,
    );
  });

  withConfig(
    lock
      .command('release')
      .description('free a deploy lock whose holder is gone (never one a running deployment holds)')
      .argument('<service>', 'the service, as named in teal.yml')
      .option('--json', 'print the result as JSON'),
  ).action(async (service: string, opts: LockOptions) => {
    const { clientFor } = await import('./context.js');
    const { printJson } = await import('./output.js');
    const { client } = clientFor(opts);
    const result = await client.request<{ holder: { description?: string } }>(
      'DELETE',
      `/v1/services/${encodeURIComponent(service)}/lock`,
    );
    if (opts.json) printJson(result);
    else
      process.stdout.write(
        `released ${service}'s lock, held by ${result.holder?.description ?? JSON.stringify(result.holder)}\n`,
      );
  });
}
