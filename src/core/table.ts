import type { Pool, RoutingTable, ServiceRoutes, TrafficSwitch } from '../proxy/switch.js';
import { poolId } from '../proxy/switch.js';
import type { Store } from '../stores/store.js';
import type { TealConfig } from './config/schema.js';
import { publishTable, waitForEdges } from './edges.js';
import { SLOTS } from './model.js';
import {
  deadGrants,
  grantsByService,
  nextExpiry,
  type PreviewGrantRecord,
  previewKeys,
  tableGrants,
} from './previews.js';
import { readServiceState, type ServiceState, type SlotRecord } from './records.js';

/** Slot states whose instances may be reached on the preview route. */
const PREVIEWABLE = new Set(['verifying', 'warm']);

export function poolOf(service: string, slot: SlotRecord): Pool | null {
  if (slot.release === null || slot.instances.length === 0) return null;
  return {
    id: poolId(service, slot.slot, slot.release),
    service,
    slot: slot.slot,
    release: slot.release,
    version: slot.version ?? '',
    endpoints: slot.instances.map((i) => ({ host: i.host, port: i.port })),
  };
}

/** The routing table the store describes: pure, so a test can check it without a proxy. */
export function buildTable(
  config: TealConfig,
  states: ServiceState[],
  revision: number,
  grants: Map<string, PreviewGrantRecord[]> = new Map(),
  now = Date.now(),
): RoutingTable {
  const services: ServiceRoutes[] = states.map((state) => {
    const routes = (config.services[state.service]?.routes ?? []).map((r) =>
      r.host ? { host: r.host, path: r.path } : { path: r.path },
    );
    const live = state.live ? poolOf(state.service, state.slots[state.live]) : null;
    const idle = SLOTS.filter((s) => s !== state.live).map((s) => state.slots[s]);
    const previewSlot = idle.find((s) => PREVIEWABLE.has(s.state));
    // A release verifying beside a warm one (candidate.ts) is what the preview route is for then.
    const candidate = state.candidate?.state === 'verifying' ? state.candidate : undefined;
    const preview = candidate
      ? poolOf(state.service, { ...candidate, state: 'verifying' })
      : previewSlot
        ? poolOf(state.service, previewSlot)
        : null;
    const routed = [live, preview].filter((p) => p !== null);
    const granted = tableGrants(grants.get(state.service) ?? [], routed, now);
    return {
      service: state.service,
      routes,
      live,
      preview,
      ...(granted.length > 0 ? { grants: granted } : {}),
    };
  });
  return { revision, services };
}

/**
 * Applies the table the store describes to the data plane, one apply at a time. Each call reads the
 * store afresh inside the queue, so when two deployments race the later apply always carries both
 * changes: a stale table can never overwrite a newer one. The table is also published to the
 * store for edges (edges.ts), and a sync resolves only once every registered edge serves it.
 */
export class TableSync {
  readonly #store: Store;
  readonly #traffic: TrafficSwitch;
  readonly #config: () => TealConfig;
  readonly #edgeTimeoutMs: number;
  #queue: Promise<unknown> = Promise.resolve();
  /** Applies the table again when its next preview grant expires, so nginx and haproxy drop it too. */
  #expiry: NodeJS.Timeout | undefined;

  constructor(
    store: Store,
    traffic: TrafficSwitch,
    config: () => TealConfig,
    options: { edgeTimeoutMs?: number } = {},
  ) {
    this.#store = store;
    this.#traffic = traffic;
    this.#config = config;
    this.#edgeTimeoutMs = options.edgeTimeoutMs ?? 10_000;
  }

  /** Builds the table from the store now and applies it; resolves once every data plane serves it. */
  sync(signal?: AbortSignal): Promise<RoutingTable> {
    const next = this.#queue.then(async () => {
      const table = await this.current();
      await this.#traffic.apply(table, signal ? { signal } : undefined);
      await publishTable(this.#store, table);
      await waitForEdges(this.#store, table.revision, this.#edgeTimeoutMs);
      await this.#forgetGrants(table);
      return table;
    });
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** The table the store describes right now, without applying it. */
  async current(): Promise<RoutingTable> {
    const config = this.#config();
    const revision = await this.#store.revision();
    const services = Object.keys(config.services);
    const states = await Promise.all(services.map((svc) => readServiceState(this.#store, svc)));
    return buildTable(config, states, revision, await grantsByService(this.#store, services));
  }

  /** Deletes grants that can never work again and arms a sync for the next one to expire. */
  async #forgetGrants(table: RoutingTable): Promise<void> {
    const now = Date.now();
    const records = await grantsByService(this.#store, Object.keys(this.#config().services));
    for (const g of deadGrants([...records.values()].flat(), table, now))
      await this.#store.delete(previewKeys.grant(g.service, g.id));
    clearTimeout(this.#expiry);
    const next = nextExpiry(table);
    if (next === undefined) return;
    this.#expiry = setTimeout(
      () => this.sync().catch(() => undefined),
      Math.min(Math.max(next - now + 5, 0), 2 ** 31 - 1),
    ).unref();
  }

  /** Stops the expiry timer (the daemon is stopping). */
  close(): void {
    clearTimeout(this.#expiry);
  }
}
