import type { Command } from 'commander';
import type { ReloadReport } from '../daemon/config-source.js';
import { type ConfigOption, withConfig } from './options.js';

export function reloadCommand(program: Command): void {
  withConfig(
    program
      .command('reload')
      .description(
        'make the running teal up re-read teal.yml and apply it, without a restart (as SIGHUP does)',
      )
      .option('--json', 'print {file, sha256, changed, live, nextDeploy, needsRestart} as JSON'),
  )
    .addHelpText(
      'after',
      `
Applied at once: routes, services added (and removed, when nothing of theirs runs), pipelines,
webhooks, and the builtin data plane's maxBodySize, timeouts, limits and trustedProxies (a fresh
data plane takes the sockets over, as with restart-proxy: no connection is refused). Everything
else about a service (health, verify, env, command...) is taken by its next deploy; each deploy
re-reads the file anyway. stateDir, workDir, store, api, docker, proxy.listen and preview, and any
nginx or haproxy setting need a restart of teal up: they are named, and keep their running values.
A file that does not validate is refused with its problems, exit 2; the running config stays.

Examples:
  teal reload
  teal reload --json | jq .needsRestart
  kill -HUP "$(jq .pid .teal/daemon.json)"    # the same, by signal`,
    )
    .action(async (opts: ConfigOption & { json?: boolean }) => {
      const { clientFor } = await import('./context.js');
      const { printJson } = await import('./output.js');
      const { client } = clientFor(opts);
      const report = await client.request<ReloadReport>('POST', '/v1/config/reload', {});
      if (opts.json) {
        printJson(report);
        return;
      }
      const out: string[] = [];
      if (!report.changed)
        out.push(`${report.file} is already applied (sha256 ${report.sha256.slice(0, 12)})`);
      else {
        out.push(`applied ${report.file} (sha256 ${report.sha256.slice(0, 12)})`);
        out.push(`  now:          ${report.live.join(', ') || 'nothing'}`);
        out.push(`  next deploy:  ${report.nextDeploy.join(', ') || 'nothing'}`);
      }
      if (report.needsRestart.length > 0)
        out.push(`  needs a restart of teal up (running values kept): ${report.needsRestart.join(', ')}`);
      process.stdout.write(`${out.join('\n')}\n`);
    });
}
