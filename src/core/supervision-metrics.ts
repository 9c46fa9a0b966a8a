import { labelValue } from '../prometheus.js';
import type { Store } from '../stores/store.js';
import { SLOTS } from './model.js';
import { readServiceState } from './records.js';

/**
 * teal's supervision in Prometheus text, from the slot records (heal.ts writes them) at scrape
 * time, like the deployment metrics: restarts of each live or warm slot's instances and whether it
 * is in a crash loop. The restart count belongs to the slot's release, so it starts over at 0 when
 * a deploy puts a new one in the slot, which Prometheus' rate() reads as a counter reset.
 */
export async function supervisionMetrics(store: Store, services: string[]): Promise<string> {
  const restarts: string[] = [];
  const degraded: string[] = [];
  for (const svc of services) {
    const state = await readServiceState(store, svc);
    for (const s of SLOTS) {
      const slot = state.slots[s];
      if (slot.state !== 'live' && slot.state !== 'warm') continue;
      const labels = `service="${labelValue(svc)}",slot="${s}",state="${slot.state}"`;
      restarts.push(`teal_instance_restarts_total{${labels}} ${slot.supervision?.restarts ?? 0}`);
      degraded.push(`teal_slot_degraded{${labels}} ${slot.supervision?.degraded ? 1 : 0}`);
    }
  }
  return `${[
    "# HELP teal_instance_restarts_total Restarts by teal's supervision of the instances of a live or warm slot's release.",
    '# TYPE teal_instance_restarts_total counter',
    ...restarts,
    '# HELP teal_slot_degraded 1 while the slot is in a crash loop (restarted at the longest backoff).',
    '# TYPE teal_slot_degraded gauge',
    ...degraded,
  ].join('\n')}\n`;
}
