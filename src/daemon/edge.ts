import { hostname } from 'node:os';
import type { Logger } from '../core/deps.js';
import { appliedKey, compactStats, type EdgeReport, statsKey, TABLE_KEY } from '../core/edges.js';
import { toTealError } from '../core/errors.js';
import type { RoutingTable, TrafficSwitch } from '../proxy/switch.js';
import type { Lease, Store } from '../stores/store.js';

export interface EdgeOptions {
  store: Store;
  /** The data plane this edge drives: the builtin one beside it, or nginx / haproxy. */
  traffic: TrafficSwitch;
  id: string;
  /** Where users reach this edge, for the report. */
  listen: string;
  log: Logger;
  signal: AbortSignal;
  leaseTtlMs?: number;
  /** How often the data plane's counters are published at /proxies/<id>/stats (default 1 s). */
  statsIntervalMs?: number;
}

/**
 * `teal edge`: keeps a data plane serving the table the control plane publishes in the store, and
 * reports the revision it serves under a lease (a dead edge drops out of the control plane's wait).
 * About every second it also publishes its data plane's counters for the pools of that table under
 * the same lease, for the control plane's post-switch analysis.
 * Applies are coalesced: a burst of tables ends with the newest applied, never an older one last.
 * When the store goes away the data plane keeps serving the last table; the edge reconnects and
 * catches up from the store when it returns.
 */
export async function runEdge(o: EdgeOptions): Promise<void> {
  const { store, traffic, id, log, signal } = o;
  const ttl = o.leaseTtlMs ?? 10_000;
  let lease: Lease | undefined;
  let servedTable: RoutingTable | null = await traffic.current().catch(() => null);
  let served = servedTable?.revision ?? 0;
  let failed: { revision: number; error: string } | undefined;
  let wanted: RoutingTable | undefined;
  let working: Promise<void> | undefined;

  // One grant at a time: the report and the stats publisher share the lease.
  let granting: Promise<Lease> | undefined;
  const leased = async (): Promise<Lease> => {
    if (lease && !lease.lost.aborted) return lease;
    granting ??= store.grant(ttl).finally(() => {
      granting = undefined;
    });
    lease = await granting;
    return lease;
  };

  const report = async () => {
    const { id: leaseId } = await leased();
    const value: EdgeReport = {
      id,
      revision: served,
      appliedAt: new Date().toISOString(),
      host: hostname(),
      pid: process.pid,
      listen: o.listen,
    };
    if (failed && failed.revision > served)
      Object.assign(value, { failedRevision: failed.revision, error: failed.error });
    await store.put(appliedKey(id), value as never, { lease: leaseId });
  };

  // The counters, only when they changed (an idle edge writes nothing; the lease keeps the key).
  let lastStats = '';
  let publishing: Promise<void> | undefined;
  let warned = false;
  const publishStats = async () => {
    if (!lease || signal.aborted) return;
    try {
      const stats = compactStats(await traffic.stats(), servedTable, { id, pid: process.pid }, new Date());
      const { id: leaseId } = await leased();
      // A new lease (the old one ended with its keys) is a change too.
      const text = JSON.stringify({ ...stats, at: '', leaseId });
      if (text === lastStats) return;
      await store.put(statsKey(id), stats as never, { lease: leaseId });
      lastStats = text;
      warned = false;
    } catch (err) {
      if (!warned) log.warn('could not publish the data plane stats', { error: toTealError(err).message });
      warned = true;
    }
  };

  const work = async () => {
    while (wanted && wanted.revision > served) {
      const table = wanted;
      try {
        await traffic.apply(table);
        served = table.revision;
        servedTable = table;
        log.info('applied the published table', { revision: table.revision });
      } catch (err) {
        failed = { revision: table.revision, error: toTealError(err).message };
        log.error('could not apply the published table', { revision: table.revision, error: failed.error });
        if (wanted === table) wanted = undefined;
      }
      await report().catch((err: unknown) =>
        log.warn('could not report to the store', { error: toTealError(err).message }),
      );
    }
  };
  const kick = (table: RoutingTable) => {
    if (!wanted || table.revision > wanted.revision) wanted = table;
    working ??= work().finally(() => {
      working = undefined;
      if (wanted && wanted.revision > served && !signal.aborted) kick(wanted);
    });
  };

  // A lease lost while the store was away is taken again, so this edge is waited for again.
  const reRegister = setInterval(() => {
    if (lease?.lost.aborted) report().catch(() => undefined);
  }, 1_000);
  const statsTimer = setInterval(() => {
    publishing ??= publishStats().finally(() => {
      publishing = undefined;
    });
  }, o.statsIntervalMs ?? 1_000);
  let after: number | undefined;
  while (!signal.aborted) {
    try {
      if (after === undefined) {
        const entry = await store.get<RoutingTable>(TABLE_KEY);
        after = entry?.revision ?? (await store.revision());
        await report();
        if (entry) kick(entry.value);
      }
      for await (const change of store.watch<RoutingTable>(TABLE_KEY, { signal, afterRevision: after })) {
        after = change.revision;
        if (change.key === TABLE_KEY && change.value) kick(change.value);
      }
    } catch (err) {
      if (signal.aborted) break;
      // The store is away (or compacted past us): keep serving, and start over from a fresh read.
      log.warn('lost the store; the data plane keeps serving the last table', {
        error: toTealError(err).message,
      });
      after = undefined;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
  clearInterval(reRegister);
  clearInterval(statsTimer);
  await working;
  await publishing;
  await lease?.revoke().catch(() => undefined);
}
