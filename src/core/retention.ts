import type { InstanceImage } from '../runtimes/runtime.js';
import type { EngineDeps } from './deps.js';
import { SLOTS } from './model.js';
import { listDeployments, readServiceState } from './records.js';

/**
 * Retention of container releases: the images of the last `retain` releases that ran (and of
 * whatever a slot holds) stay on the engine for `teal rollback --to`; the tags of older ones are
 * removed, and with them the images nothing else uses. A runtime without images does nothing.
 * Returns the image references removed.
 */
export async function pruneImages(
  deps: EngineDeps,
  service: string,
  retain: number,
  /** The release the running deployment just made live: retained though its deployment is not done yet. */
  current: number,
): Promise<string[]> {
  const { runtime, store } = deps;
  if (!runtime.forgetImages) return [];
  const [deployments, state] = await Promise.all([
    listDeployments(store, service),
    readServiceState(store, service),
  ]);
  const kept = new Set<number>();
  for (const s of SLOTS) {
    const release = state.slots[s].release;
    if (release !== null) kept.add(release);
  }
  const recent = new Set<number>([current]);
  for (const d of [...deployments].reverse()) {
    if (recent.size >= retain) break;
    if (d.state === 'done' && d.release !== null && d.image) recent.add(d.release);
  }
  const keep: InstanceImage[] = [];
  const drop: InstanceImage[] = [];
  for (const d of deployments) {
    if (!d.image || d.release === null) continue;
    (kept.has(d.release) || recent.has(d.release) ? keep : drop).push(d.image);
  }
  return runtime.forgetImages(drop, keep);
}
