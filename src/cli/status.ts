import type { Command } from 'commander';
import { toTealError } from '../core/errors.js';
import { SLOTS } from '../core/model.js';
import type { ServiceStatus } from '../core/status.js';
import type { ConfigState } from '../daemon/config-source.js';
import type { DataPlaneStatus } from '../proxy/builtin/watchdog.js';
import { type ConfigOption, withConfig } from './options.js';
import { ago, outcome, paint, printJson, table } from './output.js';

export function statusCommand(program: Command): void {
  withConfig(
    program
      .command('status')
      .description('show which slot is live, what runs in each slot, and the last deployment')
      .argument('[service]', 'one service (default: all)')
      .option(
        '--json',
        'print JSON: {service, live, slots: {blue: {version, state}, green: {...}}, config: {differs, ...}, ...}',
      ),
  )
    .addHelpText(
      'after',
      `
When teal.yml on disk is not the file teal up applied, status says so (and whether the file
validates); \`teal reload\` applies it, and so does the next deploy.

Examples:
  teal status
  teal status web --json | jq -r .live
  teal status web --json | jq .config.differs`,
    )
    .action(async (service: string | undefined, opts: ConfigOption & { json?: boolean }) => {
      const { clientFor } = await import('./context.js');
      const { client } = clientFor(opts);
      const statuses = service
        ? [await client.request<ServiceStatus>('GET', `/v1/services/${encodeURIComponent(service)}`)]
        : await client.request<ServiceStatus[]>('GET', '/v1/services');
      // A teal up from before `teal reload` existed has no /v1/config: status without the drift line.
      const config = await client.request<ConfigState>('GET', '/v1/config').catch((err: unknown) => {
        if (toTealError(err).code === 'TEAL_NOT_FOUND') return undefined;
        throw err;
      });
      if (opts.json) {
        const withConfig = statuses.map((s) => (config ? { ...s, config } : s));
        printJson(service ? withConfig[0] : withConfig);
        return;
      }
      const c = paint(process.stdout);
      const plane = await client
        .request<DataPlaneStatus | { kind: string }>('GET', '/v1/dataplane')
        .catch(() => undefined);
      if (plane && 'state' in plane) process.stdout.write(`${dataPlaneLine(c, plane)}\n\n`);
      for (const s of statuses) {
        process.stdout.write(`${c.bold(s.service)}  live: ${s.live ? c.green(s.live) : c.yellow('none')}\n`);
        const rows = [['', 'slot', 'state', 'version', 'release', 'instances', 'since']];
        for (const slot of SLOTS) {
          const v = s.slots[slot];
          const running = v.instances.filter((i) => i.status === 'running').length;
          const inst =
            v.instances.length === 0
              ? '-'
              : `${running}/${v.instances.length} up (${v.instances.map((i) => i.port).join(', ')})`;
          const shownState =
            v.state === 'warm' && v.warmUntil ? `warm until ${v.warmUntil.slice(11, 19)}` : v.state;
          const state = v.supervision?.degraded ? `${shownState} ${c.red('degraded')}` : shownState;
          rows.push([
            s.live === slot ? c.green('●') : ' ',
            slot,
            state,
            v.version ?? '-',
            v.release === null ? '-' : String(v.release),
            inst,
            ago(v.since === new Date(0).toISOString() ? undefined : v.since),
          ]);
        }
        process.stdout.write(`${table(rows)}\n`);
        for (const slot of SLOTS) {
          const sup = s.slots[slot].supervision;
          if (!sup || (s.slots[slot].state !== 'live' && s.slots[slot].state !== 'warm')) continue;
          const last = sup.last;
          const why = last
            ? `; last: #${last.index} ${last.detail} ${ago(last.at)}${last.code === null ? '' : ` (exit code ${last.code})`}`
            : '';
          const head = sup.degraded
            ? c.red(`${slot} is degraded (crash loop): restarted ${sup.restarts} time(s)${why}`)
            : `${slot}: restarted ${sup.restarts} time(s)${why}`;
          process.stdout.write(`${head}\n`);
          if (sup.degraded && last && last.log.length > 0)
            process.stdout.write(`  last log lines:\n    ${last.log.slice(-10).join('\n    ')}\n`);
        }
        if (s.candidate) {
          // A release starting beside the warm one: the slot row above is still the rollback target.
          const k = s.candidate;
          const up = k.instances.filter((i) => i.status === 'running').length;
          process.stdout.write(
            `${k.slot}: ${k.version} (release ${k.release}, deployment #${k.deployment}) ${k.state} beside the warm release, ${up}/${k.instances.length} up\n`,
          );
        }
        const d = s.lastDeployment;
        if (d) {
          const shown = outcome(c, d.state);
          process.stdout.write(
            `last deployment: #${d.n} ${d.kind} ${d.version ?? ''} ${shown} ${ago(d.createdAt)} by ${d.actor}\n`,
          );
        }
        if (s.lock)
          process.stdout.write(
            `locked by ${(s.lock as { description?: string }).description ?? JSON.stringify(s.lock)}\n`,
          );
        process.stdout.write('\n');
      }
      if (config) process.stdout.write(driftText(config, c));
    });
}

/** The lines saying the file on disk is not what runs (nothing when it is). */
export function driftText(config: ConfigState, c: ReturnType<typeof paint>): string {
  const lines: string[] = [];
  if (config.differs) {
    lines.push(
      c.yellow(
        `${config.file} has changed since it was applied (${ago(config.applied.appliedAt)}): run \`teal reload\` to apply it (the next deploy also does)`,
      ),
    );
    if (config.onDisk.error)
      lines.push(c.red(`  and it would be refused as it is: ${config.onDisk.error.replace(/\n/g, '\n  ')}`));
  }
  if (config.needsRestart.length > 0)
    lines.push(
      c.yellow(
        `needs a restart of teal up to take effect: ${config.needsRestart.join(', ')} (running values kept)`,
      ),
    );
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

/** "data plane: up (pid 4242), restarted 2 times, last 12s ago after 640 ms down" or why it is down. */
function dataPlaneLine(c: ReturnType<typeof paint>, p: DataPlaneStatus): string {
  const restarts =
    p.restarts === 0
      ? 'never restarted'
      : `restarted ${p.restarts} time${p.restarts === 1 ? '' : 's'}${p.lastRestart ? `, last ${ago(p.lastRestart.at)} after ${p.lastRestart.downMs} ms down` : ''}`;
  if (p.state === 'up') return `data plane: ${c.green('up')} (pid ${p.pid}), ${restarts}`;
  const why = p.lastError ? `: ${p.lastError.message.split('\n')[0]}` : '';
  const next = p.nextAttemptAt ? `; next attempt ${p.nextAttemptAt.slice(11, 19)}` : '';
  return `data plane: ${c.red(p.state)} since ${ago(p.since)}${why}${next}; ${restarts}`;
}
