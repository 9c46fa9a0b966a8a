import type { Command } from 'commander';
import type { PreviewGrantRecord } from '../core/previews.js';
import { type ConfigOption, withConfig } from './options.js';
import { paint, printJson } from './output.js';

type PreviewOptions = ConfigOption & {
  slot?: string;
  ttl?: string;
  base?: string;
  revoke?: boolean | string;
  list?: boolean;
  json?: boolean;
};

export function previewCommand(program: Command): void {
  withConfig(
    program
      .command('preview')
      .description(
        'print a link that opens the idle slot of a service through the public port, for a tester elsewhere',
      )
      .argument('<service>', 'the service, as named in teal.yml')
      .option(
        '--slot <slot>',
        'blue or green (default: the idle slot being verified, at the gate or kept warm)',
      )
      .option('--ttl <duration>', 'how long the link works, up to 168h (7 days)', '1h')
      .option(
        '--base <url>',
        "the link's scheme and host (default: the service's route host, or the data plane URL)",
      )
      .option('--list', 'list the links still in force instead')
      .option('--revoke [grant]', 'end every link of the service (or the one whose grant id is given)')
      .option('--json', 'print the grant (with its link) as JSON'),
  )
    .addHelpText(
      'after',
      `
Opening the link sets a cookie (HttpOnly, SameSite=Lax, for the remaining time) and redirects into
the service; that browser then reaches the slot the link names, until the link expires, is revoked,
or the slot is stopped or gets another release. A bare X-Teal-Slot header on the public port is
ignored; on this host, the preview listener (127.0.0.1, public port + 1 by default) takes it.

Examples:
  teal preview web                        the release at the gate, for an hour
  teal preview web --slot blue --ttl 30m  the warm previous release
  teal preview web --base https://web.example.com
  teal preview web --list
  teal preview web --revoke`,
    )
    .action(async (service: string, opts: PreviewOptions) => {
      const { clientFor } = await import('./context.js');
      const { client } = clientFor(opts);
      const path = `/v1/services/${encodeURIComponent(service)}/previews`;
      if (opts.revoke !== undefined) {
        const one = typeof opts.revoke === 'string' ? `/${encodeURIComponent(opts.revoke)}` : '';
        const { revoked } = await client.request<{ revoked: number }>('DELETE', `${path}${one}`);
        if (opts.json) printJson({ revoked });
        else process.stdout.write(`revoked ${revoked} preview link(s) of ${service}\n`);
        return;
      }
      if (opts.list) {
        const grants = await client.request<PreviewGrantRecord[]>('GET', path);
        if (opts.json) printJson(grants);
        else if (grants.length === 0) process.stdout.write(`${service} has no preview links in force\n`);
        else
          for (const g of grants)
            process.stdout.write(
              `${g.id.slice(0, 12)}…  ${g.slot} ${g.version} (release ${g.release})  until ${g.expiresAt}  by ${g.actor}\n`,
            );
        return;
      }
      const grant = await client.request<PreviewGrantRecord & { link: string }>('POST', path, {
        ...(opts.slot === undefined ? {} : { slot: opts.slot }),
        ...(opts.ttl === undefined ? {} : { ttl: opts.ttl }),
        ...(opts.base === undefined ? {} : { base: opts.base }),
      });
      if (opts.json) {
        printJson(grant);
        return;
      }
      const c = paint(process.stderr);
      process.stdout.write(`${grant.link}\n`);
      process.stderr.write(
        `${c.cyan('→')} opens ${service} ${grant.version} (${grant.slot}, release ${grant.release}) until ${grant.expiresAt}; \`teal preview ${service} --revoke\` ends it\n`,
      );
    });
}
