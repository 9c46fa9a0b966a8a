import type { Pool, RoutingTable } from '../switch.js';
import { PoolRuntime } from './pool.js';

/** How long a pool that left the table keeps its numbers once it is quiet (or drained). */
export const RETAIN_STATS_MS = 5 * 60_000;

/**
 * Every pool the data plane knows: those in the current table and those that left it but still
 * have requests in flight, or whose final numbers the control plane may still read.
 */
export class PoolSet {
  private readonly pools = new Map<string, PoolRuntime>();
  private readonly retainMs: number;

  constructor(retainMs = RETAIN_STATS_MS) {
    this.retainMs = retainMs;
  }

  get(id: string): PoolRuntime | undefined {
    return this.pools.get(id);
  }

  all(): PoolRuntime[] {
    return [...this.pools.values()];
  }

  /** Makes the set match a table: its pools are in the table, every other pool has left it. */
  adopt(table: RoutingTable, now = Date.now()): Map<string, PoolRuntime> {
    const inTable = new Map<string, PoolRuntime>();
    const take = (meta: Pool | null) => {
      if (!meta || inTable.has(meta.id)) return;
      let pool = this.pools.get(meta.id);
      if (pool) pool.update(meta);
      else {
        pool = new PoolRuntime(meta);
        this.pools.set(meta.id, pool);
      }
      inTable.set(meta.id, pool);
    };
    for (const s of table.services) {
      take(s.live);
      take(s.preview);
    }
    for (const pool of this.pools.values()) {
      if (inTable.has(pool.meta.id) || !pool.inTable) continue;
      pool.inTable = false;
      pool.retiredAt = now;
    }
    return inTable;
  }

  /** Forgets pools out of the table that have been quiet longer than the retention time. */
  sweep(now = Date.now()): void {
    for (const [id, pool] of this.pools) {
      if (pool.inTable || pool.busy > 0) continue;
      if (now - Math.max(pool.retiredAt, pool.drainedAt) < this.retainMs) continue;
      pool.closeAgents();
      this.pools.delete(id);
    }
  }

  /** Cuts every flight and closes every agent (the data plane is stopping). */
  destroyAll(): void {
    for (const pool of this.pools.values()) {
      pool.destroyFlights();
      pool.closeAgents();
    }
  }
}
