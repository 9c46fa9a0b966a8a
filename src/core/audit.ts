import type { Store } from '../stores/store.js';
import { toTealError } from './errors.js';
import { createNumbered } from './records.js';

/**
 * The audit trail: every action someone asked for (deploy, rollback, promote, abort, lock release),
 * who asked, when, and what came of the request, refused ones included. Deployments carry their
 * own outcome; this says who moved what, in one place per service (`teal history <svc>`).
 * Kept at /audit/<svc>/<n> in the store, so every control plane sharing the store sees the same.
 */
export interface AuditEntry {
  n: number;
  at: string;
  service: string;
  action:
    | 'deploy'
    | 'rollback'
    | 'promote'
    | 'abort'
    | 'lock.release'
    | 'preview.grant'
    | 'preview.revoke'
    /** teal's supervision (heal.ts): an instance restarted, a slot in a crash loop or out of it. */
    | 'instance.restart'
    | 'slot.degraded'
    | 'slot.recovered';
  /**
   * What people read: "token", "dashboard session 1a2b3c4d", "pipeline web run #12", or a name the
   * request gave for itself, marked: "alice@laptop (cli) [claimed; auth: token]".
   */
  actor: string;
  /** How the request authenticated ("token", "dashboard session <8 hex>"); absent for teal's own actions. */
  principal?: string;
  /** The X-Teal-Actor name the request gave, which nothing verified (any token holder can send any). */
  claimed?: string;
  outcome: 'accepted' | 'refused';
  /** The deployment the action created or decided on. */
  deployment?: number;
  /** What was asked for (version, release) or why it was refused. */
  detail?: string;
}

export const auditKey = (svc: string) => `/audit/${svc}/`;

export async function recordAudit(store: Store, entry: Omit<AuditEntry, 'n' | 'at'>): Promise<AuditEntry> {
  return createNumbered<AuditEntry>(store, auditKey(entry.service), (n) => ({
    n,
    at: new Date().toISOString(),
    ...entry,
  }));
}

/**
 * Runs an action and records it: accepted with the deployment it touched, or refused with the
 * error's message; the action's own result or error is passed on unchanged.
 */
export async function audited<T>(
  store: Store,
  what: Omit<AuditEntry, 'n' | 'at' | 'outcome' | 'deployment'>,
  action: () => Promise<T>,
  deploymentOf: (result: T) => number | undefined,
): Promise<T> {
  let result: T;
  try {
    result = await action();
  } catch (err) {
    await recordAudit(store, { ...what, outcome: 'refused', detail: toTealError(err).message }).catch(
      () => undefined,
    );
    throw err;
  }
  const deployment = deploymentOf(result);
  await recordAudit(store, {
    ...what,
    outcome: 'accepted',
    ...(deployment === undefined ? {} : { deployment }),
  });
  return result;
}

export async function listAudit(store: Store, svc: string, limit = 50): Promise<AuditEntry[]> {
  const entries = await store.list<AuditEntry>(auditKey(svc));
  return entries
    .map((e) => e.value)
    .filter((e) => Number.isInteger(e?.n))
    .sort((a, b) => b.n - a.n)
    .slice(0, limit);
}
