import type { InstanceImage, Runtime } from '../runtimes/runtime.js';
import type { Json, Store } from '../stores/store.js';
import type { Slot } from './model.js';
import {
  type DeploymentRecord,
  listDeployments,
  lockName,
  readServiceState,
  type SlotRecord,
  type SlotSupervision,
} from './records.js';
import { slotInstances } from './slots.js';

export interface InstanceStatusView {
  id: string;
  host: string;
  port: number;
  pid?: number;
  /** The image a container instance runs: ref, ID and registry digest. */
  image?: InstanceImage;
  /** What the runtime says now: running, exited or unknown. */
  status: string;
}

export interface SlotView {
  state: SlotRecord['state'];
  version: string | null;
  release: number | null;
  deployment: number | null;
  since: string;
  warmUntil?: string;
  instances: InstanceStatusView[];
  /** Restarts by teal's supervision, `degraded` in a crash loop, with the last exit and log lines. */
  supervision?: SlotSupervision;
}

export type DeploymentSummary = Omit<DeploymentRecord, 'events'> & { steps: number };

export interface ServiceStatus {
  service: string;
  live: Slot | null;
  slots: Record<Slot, SlotView>;
  /** The latest deployment, without its events. */
  lastDeployment: DeploymentSummary | null;
  /** Who holds the deploy lock, if anyone. */
  lock: Json | null;
  /** A release starting beside the warm slot's (its slot stays warm until the switch). */
  candidate?: {
    slot: Slot;
    state: string;
    release: number;
    version: string;
    deployment: number;
    instances: InstanceStatusView[];
  };
}

export function summarize(d: DeploymentRecord): DeploymentSummary {
  const { events, ...rest } = d;
  return { ...rest, steps: events.length };
}

/** `teal status <svc>`: the store's view, with each instance checked against the runtime. */
export async function serviceStatus(store: Store, runtime: Runtime, svc: string): Promise<ServiceStatus> {
  const [state, deployments, lock] = await Promise.all([
    readServiceState(store, svc),
    listDeployments(store, svc),
    store.lockHolder(lockName(svc)),
  ]);
  const view = async (slot: SlotRecord): Promise<SlotView> => {
    const instances = await Promise.all(
      slotInstances(svc, slot).map(async (i) => {
        const v: InstanceStatusView = {
          id: i.id,
          host: i.host,
          port: i.port,
          status: (await runtime.status(i)).state,
        };
        if (i.pid !== undefined) v.pid = i.pid;
        if (i.image !== undefined) v.image = i.image;
        return v;
      }),
    );
    const out: SlotView = {
      state: slot.state,
      version: slot.version,
      release: slot.release,
      deployment: slot.deployment,
      since: slot.since,
      instances,
    };
    if (slot.warmUntil) out.warmUntil = slot.warmUntil;
    if (slot.supervision) out.supervision = slot.supervision;
    return out;
  };
  const last = deployments[deployments.length - 1];
  const c = state.candidate;
  return {
    service: svc,
    live: state.live,
    slots: { blue: await view(state.slots.blue), green: await view(state.slots.green) },
    lastDeployment: last ? summarize(last) : null,
    lock: lock ?? null,
    ...(c
      ? {
          candidate: {
            slot: c.slot,
            state: c.state,
            release: c.release,
            version: c.version,
            deployment: c.deployment,
            instances: (await view({ ...c, state: 'starting' })).instances,
          },
        }
      : {}),
  };
}

/** `teal history <svc>`: deployments newest first, without their events. */
export async function serviceHistory(store: Store, svc: string, limit = 50): Promise<DeploymentSummary[]> {
  return (await listDeployments(store, svc)).reverse().slice(0, limit).map(summarize);
}
