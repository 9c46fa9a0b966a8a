import type { Instance, Runtime } from '../runtimes/runtime.js';
import type { Store } from '../stores/store.js';
import { type CandidateRecord, keys } from './records.js';
import { stopAll } from './slots.js';

/**
 * The release a deployment starts beside the warm one (records.ts `CandidateRecord`). It lives at
 * its own key so that nothing about the warm slot changes while it starts: the warm release stays
 * the instant rollback until the switch's transaction moves the candidate into the slot (or the
 * candidate fails and is dropped, leaving the slot as it was). The deploy lock's holder is its only
 * writer; a restarted control plane drops a leftover one (reconcile.ts).
 */

/** Writes the candidate; `ifRevision` 0 creates it (refused if one is there already). */
export async function writeCandidate(
  store: Store,
  svc: string,
  record: CandidateRecord,
  ifRevision?: number,
): Promise<CandidateRecord & { revision: number }> {
  const { revision: _r, ...clean } = record as CandidateRecord & { revision?: number };
  const revision = await store.put(
    keys.candidate(svc),
    clean as never,
    ifRevision === undefined ? undefined : { ifRevision },
  );
  return { ...clean, revision };
}

/** The Instances a runtime needs to stop a candidate's instances. */
export function candidateInstances(svc: string, c: CandidateRecord): Instance[] {
  return c.instances.map((ref) => {
    const instance: Instance = {
      id: ref.id,
      host: ref.host,
      port: ref.port,
      index: ref.index,
      startedAt: 0,
      labels: {
        service: svc,
        slot: c.slot,
        release: c.release,
        deployment: c.deployment,
        version: c.version,
      },
    };
    if (ref.pid !== undefined) instance.pid = ref.pid;
    if (ref.image !== undefined) instance.image = ref.image;
    if (ref.hostId !== undefined) instance.hostId = ref.hostId;
    return instance;
  });
}

/**
 * Stops a candidate's instances (and `extra`: started but not yet written to it), then deletes the
 * record. In that order: a crash in between leaves a record a restart drops again, never a running
 * instance nothing refers to but its labels.
 */
export async function dropCandidate(
  store: Store,
  runtime: Runtime,
  svc: string,
  stopTimeoutMs: number,
  extra: Instance[] = [],
): Promise<string[]> {
  const found = await store.get<CandidateRecord>(keys.candidate(svc));
  const listed = found ? candidateInstances(svc, found.value) : [];
  const known = new Set(listed.map((i) => i.id));
  const all = [...listed, ...extra.filter((i) => !known.has(i.id))];
  await stopAll(runtime, all, stopTimeoutMs);
  if (found) await store.delete(keys.candidate(svc), { ifRevision: found.revision });
  return all.map((i) => i.id);
}
