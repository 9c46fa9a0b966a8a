import type { DrainResult, RoutingTable, TrafficStats, TrafficSwitch } from '../proxy/switch.js';

/**
 * A TrafficSwitch that keeps the applied tables in memory, for engine tests that are about the
 * engine, not the data plane. `refuse` makes the applies it picks throw, as an unreachable data
 * plane would. Real data planes are tested by switch.contract.ts.
 */
export class FakeSwitch implements TrafficSwitch {
  readonly kind = 'fake';
  readonly applied: RoutingTable[] = [];
  readonly drained: string[] = [];
  /** Returns an error for a table this data plane should refuse, or undefined to take it. */
  refuse: ((table: RoutingTable) => Error | undefined) | undefined;

  async apply(table: RoutingTable): Promise<void> {
    const err = this.refuse?.(table);
    if (err) throw err;
    this.applied.push(structuredClone(table));
  }

  async current(): Promise<RoutingTable | null> {
    return this.applied[this.applied.length - 1] ?? null;
  }

  /** The live pool's id of a service in the last applied table. */
  live(service: string): string | null {
    const table = this.applied[this.applied.length - 1];
    return table?.services.find((s) => s.service === service)?.live?.id ?? null;
  }

  async stats(): Promise<TrafficStats> {
    return { revision: this.applied[this.applied.length - 1]?.revision ?? 0, pools: [] };
  }

  async drain(poolId: string): Promise<DrainResult> {
    this.drained.push(poolId);
    return { drained: true, remaining: 0, waitedMs: 0 };
  }

  async close(): Promise<void> {}
}
