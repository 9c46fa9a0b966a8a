import type { EnvSource } from '../child-env.js';
import type { ContainerSpec, InstanceImage } from '../runtimes/runtime.js';
import type { Json, Store } from '../stores/store.js';
import type { ConfigStamp } from './config/reload.js';
import type { ErrorCode } from './errors.js';
import type { Slot } from './model.js';
import type { DeploymentState, SlotState } from './state.js';

/**
 * The store's keys (DESIGN.md "The store's keys", relative to the store's /teal prefix) and the
 * records kept under them. The store is the source of truth: the runtime and the data plane are
 * made to match it.
 */
export const keys = {
  service: (svc: string) => `/services/${svc}/`,
  live: (svc: string) => `/services/${svc}/live`,
  url: (svc: string) => `/services/${svc}/url`,
  slot: (svc: string, slot: Slot) => `/services/${svc}/slots/${slot}`,
  candidate: (svc: string) => `/services/${svc}/candidate`,
  releases: (svc: string) => `/services/${svc}/releases/`,
  release: (svc: string, n: number) => `/services/${svc}/releases/${n}`,
  deployments: (svc: string) => `/services/${svc}/deployments/`,
  deployment: (svc: string, n: number) => `/services/${svc}/deployments/${n}`,
};

/** The deploy lock's name: the store keeps it at /locks/<svc>. */
export const lockName = (svc: string) => svc;

/** One immutable version of a service, exactly as it was started. */
export interface ReleaseRecord {
  n: number;
  service: string;
  version: string;
  runtime: string;
  command: string[];
  /** Absolute. */
  cwd: string;
  env: Record<string, string>;
  /** env values taken where an instance starts (`fromEnv`, `file` absolute): references, never the values. */
  envFrom?: Record<string, EnvSource>;
  /** Names of the control plane's environment an instance gets as they are. */
  inheritEnv?: string[];
  /** `user:`/`group:` as configured (names or ids): resolved where an instance starts. */
  user?: string;
  group?: string;
  /** For runtime docker: the container, placeholders filled (so a retained release restarts exactly). */
  container?: ContainerSpec;
  /** sha256 of what defines the release (runtime, command, cwd, env, container): same hash, same release. */
  configHash: string;
  createdAt: string;
}

export interface InstanceRef {
  id: string;
  host: string;
  port: number;
  index: number;
  pid?: number;
  /** The image a container instance runs (docker): also how the runtime that runs it is told apart. */
  image?: InstanceImage;
  /** The fleet host (`teal agent --id`) it runs on; absent for instances on the control plane's machine. */
  hostId?: string;
}

export interface SlotRecord {
  slot: Slot;
  state: SlotState;
  release: number | null;
  version: string | null;
  instances: InstanceRef[];
  /** The deployment that last changed this slot. */
  deployment: number | null;
  since: string;
  /** For a warm slot: when it will be stopped. */
  warmUntil?: string;
  /** What teal's supervision (heal.ts) did to this slot's instances; absent until it restarted one. */
  supervision?: SlotSupervision;
}

/**
 * Restarts of a live or warm slot's instances. `degraded` is a field rather than a slot state: a
 * crash-looping live slot is still the live slot (the switch, rollback and the table treat it so),
 * it only says teal keeps retrying it at the longest backoff.
 */
export interface SlotSupervision {
  /** Restarts started since the slot's release started (a new deploy into the slot clears it). */
  restarts: number;
  degraded: boolean;
  /** When degraded last changed. */
  degradedSince?: string;
  /** The latest failure: which instance, why, its exit code and the last lines of its output. */
  last?: {
    instance: string;
    index: number;
    at: string;
    reason: 'exited' | 'liveness' | 'restart-failed';
    code: number | null;
    signal: string | null;
    detail: string;
    log: string[];
  };
}

/**
 * A release starting beside the warm one in the slot it will take (candidate.ts). Its instances
 * belong to the deployment, not to the slot: the slot record still says warm with its own
 * instances (the rollback target, which the supervisor keeps running) until the switch moves these
 * into it in the same transaction. A key of its own, so the warm record is never rewritten while
 * the candidate starts, and a failure leaves it exactly as it was.
 */
export interface CandidateRecord {
  /** The slot it is starting in, beside that slot's warm release. */
  slot: Slot;
  state: 'starting' | 'verifying';
  release: number;
  version: string;
  deployment: number;
  instances: InstanceRef[];
  since: string;
}

export type StepName =
  | 'lock'
  | 'plan'
  | 'clear'
  | 'start'
  | 'health'
  | 'verify'
  | 'switch'
  | 'drain'
  | 'warm'
  | 'stop'
  | 'hook'
  | 'gate'
  | 'analysis'
  | 'done';

export interface DeploymentEvent {
  /** ISO time. */
  at: string;
  /** Milliseconds since the deployment was created. */
  t: number;
  step: StepName;
  status: 'started' | 'done' | 'failed' | 'info';
  message: string;
  /** Duration of the step, on its `done`/`failed` event. */
  ms?: number;
  data?: Json;
}

export interface DeploymentRecord {
  n: number;
  service: string;
  kind: 'deploy' | 'rollback';
  state: DeploymentState;
  /** Target version and release (release is null until planned). */
  version: string | null;
  release: number | null;
  targetSlot: Slot | null;
  fromSlot: Slot | null;
  fromRelease: number | null;
  fromVersion: string | null;
  /** "flip" only switches to a warm slot; "start" starts new instances. */
  mode: 'start' | 'flip' | null;
  /** Who asked: "alice@laptop (cli)". */
  actor: string;
  createdAt: string;
  endedAt?: string;
  /** Epoch ms of the moment traffic moved (the proxy applied the switch). */
  switchedAt?: number;
  /** Epoch ms of the moment traffic went back to the old slot after a failed analysis. */
  switchedBackAt?: number;
  /** Who promoted or aborted it at the manual gate, and when. */
  decidedBy?: { action: 'promote' | 'abort'; actor: string; at: string };
  /** The post-switch analysis's result. */
  analysis?: { ok: boolean; detail: string };
  /** For a container release: the image the instances ran, as the engine resolved it (id and digest). */
  image?: InstanceImage;
  /** The teal.yml it ran with (re-read when it was asked for): path, sha256 and mtime. */
  config?: ConfigStamp;
  error?: { code: ErrorCode; message: string; details?: Json };
  events: DeploymentEvent[];
}

export interface ServiceState {
  service: string;
  live: Slot | null;
  liveRevision: number;
  slots: Record<Slot, SlotRecord & { revision: number }>;
  /** A release starting beside the warm slot's (absent when none is). */
  candidate?: CandidateRecord & { revision: number };
}

export function emptySlot(slot: Slot): SlotRecord {
  return {
    slot,
    state: 'empty',
    release: null,
    version: null,
    instances: [],
    deployment: null,
    since: new Date(0).toISOString(),
  };
}

export async function readServiceState(store: Store, svc: string): Promise<ServiceState> {
  const [live, blue, green, candidate] = await Promise.all([
    store.get<Slot>(keys.live(svc)),
    store.get<SlotRecord>(keys.slot(svc, 'blue')),
    store.get<SlotRecord>(keys.slot(svc, 'green')),
    store.get<CandidateRecord>(keys.candidate(svc)),
  ]);
  return {
    ...(candidate ? { candidate: { ...candidate.value, revision: candidate.revision } } : {}),
    service: svc,
    live: live?.value ?? null,
    liveRevision: live?.revision ?? 0,
    slots: {
      blue: { ...(blue?.value ?? emptySlot('blue')), revision: blue?.revision ?? 0 },
      green: { ...(green?.value ?? emptySlot('green')), revision: green?.revision ?? 0 },
    },
  };
}

function numbered<T>(entries: { key: string; value: T }[]): T[] {
  return entries
    .map((e) => ({ n: Number(e.key.slice(e.key.lastIndexOf('/') + 1)), value: e.value }))
    .filter((e) => Number.isInteger(e.n))
    .sort((a, b) => a.n - b.n)
    .map((e) => e.value);
}

export async function listReleases(store: Store, svc: string): Promise<ReleaseRecord[]> {
  return numbered(await store.list<ReleaseRecord>(keys.releases(svc)));
}

export async function listDeployments(store: Store, svc: string): Promise<DeploymentRecord[]> {
  return numbered(await store.list<DeploymentRecord>(keys.deployments(svc)));
}

export async function readDeployment(
  store: Store,
  svc: string,
  n: number,
): Promise<DeploymentRecord | undefined> {
  return (await store.get<DeploymentRecord>(keys.deployment(svc, n)))?.value;
}

export async function readRelease(store: Store, svc: string, n: number): Promise<ReleaseRecord | undefined> {
  return (await store.get<ReleaseRecord>(keys.release(svc, n)))?.value;
}

/**
 * Creates a numbered record (the next n after the highest) with compare-and-swap, retrying when a
 * concurrent writer took the number first.
 */
export async function createNumbered<T extends { n: number }>(
  store: Store,
  prefix: string,
  build: (n: number) => T,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const existing = await store.list(prefix);
    const highest = existing.reduce((max, e) => Math.max(max, Number(e.key.slice(prefix.length)) || 0), 0);
    const record = build(highest + 1);
    try {
      await store.put(`${prefix}${record.n}`, record as unknown as Json, { ifRevision: 0 });
      return record;
    } catch (err) {
      if ((err as { code?: string }).code !== 'TEAL_STORE_CONFLICT' || attempt > 20) throw err;
    }
  }
}
