import { formatDuration } from '../core/config/duration.js';
import { EXIT } from '../core/errors.js';
import type { DeploymentEvent, DeploymentRecord } from '../core/records.js';
import type { ApiClient } from './client.js';
import { paint, printJson } from './output.js';
import { Progress } from './progress.js';

/**
 * Follows a deployment's events until it ends, shows them (unless --json), and returns the exit
 * code: 0 done; 1 failed or interrupted. With --json, prints the final record and nothing else.
 */
export async function followDeployment(
  client: ApiClient,
  record: DeploymentRecord,
  json: boolean,
  options: { stopAtGate?: boolean } = {},
): Promise<number> {
  const path = `/v1/services/${encodeURIComponent(record.service)}/deployments/${record.n}`;
  const progress = json ? undefined : new Progress(process.stderr);
  const c = paint(process.stderr);
  if (progress) {
    const what =
      record.kind === 'rollback' ? `rollback of ${record.service}` : `${record.service} ${record.version}`;
    process.stderr.write(`${c.bold(`deployment #${record.n}`)}: ${what} ${c.dim(`(by ${record.actor})`)}\n`);
  }
  const stop = new AbortController();
  let atGate = false;
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  try {
    for await (const e of client.events(`${path}/events`, stop.signal)) {
      if (e.event === 'step') progress?.event(e.data as DeploymentEvent);
      if (e.event === 'end') break;
      const ev = e.data as DeploymentEvent | undefined;
      if (options.stopAtGate && e.event === 'step' && ev?.step === 'gate' && ev.status === 'started') {
        // promote: manual: the deployment now waits for a person; the command's job is done.
        atGate = true;
        break;
      }
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err;
  } finally {
    process.off('SIGINT', onSignal);
    progress?.stop();
  }
  if (stop.signal.aborted) {
    process.stderr.write(
      `stopped following; deployment #${record.n} goes on in the daemon (teal history ${record.service})\n`,
    );
    return EXIT.failed;
  }
  const final = await client.request<DeploymentRecord>('GET', path);
  if (atGate) {
    if (json) printJson(final);
    else
      process.stderr.write(
        `${c.cyan('⏸')} ${final.service} ${final.version} is verified on ${final.targetSlot} (preview: X-Teal-Slot: ${final.targetSlot} on the preview listener, or \`teal preview ${final.service}\` for a link); \`teal promote ${final.service}\` switches to it, \`teal abort ${final.service}\` drops it\n`,
      );
    return EXIT.ok;
  }
  if (json) printJson(final);
  else summarize(final);
  return final.state === 'done'
    ? EXIT.ok
    : final.error?.code === 'TEAL_LOCKED' || final.error?.code === 'TEAL_LOCK_TIMEOUT'
      ? EXIT.locked
      : EXIT.failed;
}

function summarize(d: DeploymentRecord): void {
  const c = paint(process.stderr);
  const took = d.endedAt ? formatDuration(Date.parse(d.endedAt) - Date.parse(d.createdAt)) : '?';
  if (d.state === 'done') {
    const from = d.fromVersion ? ` (was ${d.fromVersion} on ${d.fromSlot})` : '';
    process.stderr.write(
      `${c.green('✓')} ${d.service} ${d.version} is live on ${d.targetSlot}${from} in ${took}\n`,
    );
  } else {
    process.stderr.write(
      `${c.red('✗')} deployment #${d.n} ${d.state} after ${took}: ${d.error?.message ?? 'no reason recorded'}\n`,
    );
  }
}
