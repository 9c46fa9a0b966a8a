import type { Command } from 'commander';
import type { AuditEntry } from '../core/audit.js';
import { formatDuration } from '../core/config/duration.js';
import type { ReleaseView } from '../core/rollback-targets.js';
import type { DeploymentSummary } from '../core/status.js';
import { type ConfigOption, withConfig } from './options.js';
import { ago, outcome, paint, printJson, table } from './output.js';

export function historyCommand(program: Command): void {
  withConfig(
    program
      .command('history')
      .description('list deployments and rollbacks of a service, newest first, and who did what')
      .argument('<service>', 'the service, as named in teal.yml')
      .option('-n, --limit <count>', 'how many to show', '20')
      .option(
        '--audit',
        'list the audit trail instead: every deploy, rollback, promote, abort and lock release asked for, refused ones too',
      )
      .option('--json', 'print the deployments (or the audit trail) as JSON'),
  )
    .addHelpText(
      'after',
      `
Examples:
  teal history web
  teal history web --audit
  teal history web --json | jq '.[] | select(.state=="failed")'`,
    )
    .action(
      async (service: string, opts: ConfigOption & { json?: boolean; audit?: boolean; limit: string }) => {
        const { clientFor } = await import('./context.js');
        const { client } = clientFor(opts);
        if (opts.audit) {
          const entries = await client.request<AuditEntry[]>(
            'GET',
            `/v1/services/${encodeURIComponent(service)}/audit?limit=${encodeURIComponent(opts.limit)}`,
          );
          if (opts.json) printJson(entries);
          else printAudit(service, entries);
          return;
        }
        const [list, releases] = await Promise.all([
          client.request<DeploymentSummary[]>(
            'GET',
            `/v1/services/${encodeURIComponent(service)}/deployments?limit=${encodeURIComponent(opts.limit)}`,
          ),
          client.request<ReleaseView[]>('GET', `/v1/services/${encodeURIComponent(service)}/releases`),
        ]);
        if (opts.json) {
          printJson(list);
          return;
        }
        if (list.length === 0) {
          process.stdout.write(
            `${service} has no deployments yet; try: teal deploy ${service} --version v1\n`,
          );
          return;
        }
        const c = paint(process.stdout);
        const rows = [['#', 'kind', 'version', 'release', 'slots', 'outcome', 'took', 'when', 'by']];
        for (const d of list) {
          const shown = outcome(c, d.state);
          const slots = d.targetSlot ? `${d.fromSlot ?? '-'} -> ${d.targetSlot}` : '-';
          const took = d.endedAt ? formatDuration(Date.parse(d.endedAt) - Date.parse(d.createdAt)) : '-';
          rows.push([
            String(d.n),
            d.kind,
            d.version ?? '-',
            d.release === null ? '-' : String(d.release),
            slots,
            shown,
            took,
            ago(d.createdAt),
            d.actor,
          ]);
        }
        process.stdout.write(`${table(rows)}\n`);
        const failed = list.find((d) => d.error);
        if (failed?.error)
          process.stdout.write(c.dim(`#${failed.n}: ${failed.error.message.split('\n')[0]}\n`));
        // Only releases that served users are rollback targets (core/rollback-targets.ts).
        const targets = releases.filter((r) => r.target);
        process.stdout.write(
          `roll back to: ${targets.length === 0 ? 'nothing yet' : targets.map((r) => `${r.n} (${r.version}${r.running === 'warm' ? ', warm' : ''})`).join(', ')}\n`,
        );
        const never = releases.filter((r) => !r.wentLive);
        if (never.length > 0)
          process.stdout.write(
            c.dim(`never went live: ${never.map((r) => `${r.n} (${r.version})`).join(', ')}\n`),
          );
        const decided = list.filter((d) => d.decidedBy);
        for (const d of decided)
          process.stdout.write(
            c.dim(`#${d.n}: ${d.decidedBy!.action}d by ${d.decidedBy!.actor} ${ago(d.decidedBy!.at)}\n`),
          );
      },
    );
}

function printAudit(service: string, entries: AuditEntry[]): void {
  if (entries.length === 0) {
    process.stdout.write(`nothing was asked of ${service} yet\n`);
    return;
  }
  const c = paint(process.stdout);
  const rows = [['#', 'action', 'by', 'when', 'outcome', 'deployment', 'detail']];
  for (const e of entries) {
    rows.push([
      String(e.n),
      e.action,
      e.actor,
      ago(e.at),
      e.outcome === 'accepted' ? c.green(e.outcome) : c.red(e.outcome),
      e.deployment === undefined ? '-' : `#${e.deployment}`,
      (e.detail ?? '').split('\n')[0]!,
    ]);
  }
  process.stdout.write(`${table(rows)}\n`);
  if (entries.some((e) => e.claimed !== undefined))
    process.stdout.write(
      c.dim(
        '[claimed] names come from the X-Teal-Actor header, which any holder of the API token can set; auth: says how the request authenticated\n',
      ),
    );
}
