import type { ExitInfo, InstanceImage, InstanceLabels, InstanceSpec } from '../runtimes/runtime.js';
import type { Store } from '../stores/store.js';
import { TealError } from './errors.js';

/**
 * The fleet: app instances on other hosts, each run by a `teal agent`, coordinated only through the
 * store (etcd). There is no teal-to-teal protocol: the control plane writes what it wants, agents
 * write what they see, and leases say who is alive. Three key families, one writer each:
 *
 *   /hosts/<host>                      the agent's registration, under its lease
 *   /assignments/<host>/<instance>     the control plane's wish: run this spec there (no lease);
 *                                      `stop` set in it: stop it (then the control plane deletes it)
 *   /reports/<host>/<instance>         the agent's report of that instance, under its lease
 *
 * Assignments carry no lease because they are desired state: they must survive an agent's death
 * (its restart picks them up again) and a control plane's restart (reconcile finds them). Reports
 * and registrations carry the agent's lease, so a dead host drops out by itself and whoever waits
 * on it learns at once that nobody will answer.
 */

export const HOSTS_PREFIX = '/hosts/';
export const ASSIGNMENTS_PREFIX = '/assignments/';
export const REPORTS_PREFIX = '/reports/';

export const fleetKeys = {
  host: (host: string) => `${HOSTS_PREFIX}${host}`,
  assignments: (host: string) => `${ASSIGNMENTS_PREFIX}${host}/`,
  assignment: (host: string, id: string) => `${ASSIGNMENTS_PREFIX}${host}/${id}`,
  reports: (host: string) => `${REPORTS_PREFIX}${host}/`,
  report: (host: string, id: string) => `${REPORTS_PREFIX}${host}/${id}`,
};

/** A host id or an instance id: one path segment of a key. */
export const FLEET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface HostRecord {
  id: string;
  /** The address the host's instances bind on and the data planes reach them at. */
  address: string;
  labels: Record<string, string>;
  /** How many instances it takes at most (0: no limit). */
  capacity: number;
  /** The runtimes its agent runs instances with ("process,docker"). */
  runtime: string;
  pid: number;
  hostname: string;
  startedAt: string;
}

export interface Assignment {
  id: string;
  host: string;
  spec: InstanceSpec;
  assignedAt: string;
  /**
   * Set when the control plane wants it stopped: the agent stops it (SIGTERM, SIGKILL after
   * timeoutMs), removes its report, and the control plane then deletes the assignment. Carried in
   * the assignment so the service's own stopTimeout reaches the host.
   */
  stop?: { timeoutMs: number };
}

export type ReportState = 'starting' | 'running' | 'exited' | 'failed';

export interface InstanceReport {
  id: string;
  host: string;
  state: ReportState;
  labels: InstanceLabels;
  index: number;
  /** Where it serves (set once running). */
  address?: string;
  port?: number;
  pid?: number;
  /** The agent's local runtime id. */
  localId?: string;
  /** A container's image as the host's engine resolved it (ref, id, registry digest). */
  image?: InstanceImage;
  startedAt?: number;
  /** Whether its port accepts connections, as the agent last saw it. */
  listening?: boolean;
  exit?: ExitInfo;
  /** Why it could not start (state failed). */
  error?: string;
  /** The last lines of its output, as the agent last published them. */
  log: string[];
  /** Times the agent restarted it after it exited (its supervision, core/supervisor.ts). */
  restarts?: number;
  /** In a crash loop: the agent keeps restarting it at the longest backoff. */
  degraded?: boolean;
  at: string;
}

export async function listHosts(store: Store): Promise<HostRecord[]> {
  return (await store.list<HostRecord>(HOSTS_PREFIX))
    .filter((e) => !e.key.slice(HOSTS_PREFIX.length).includes('/'))
    .map((e) => e.value);
}

/** What a service's config says about where it runs. */
export interface PlacementConfig {
  hosts?: string[];
  hostLabels?: Record<string, string>;
  instancesPerHost: number;
}

/**
 * The hosts a service's instances go to, in order (pure). Named hosts are used as named, registered
 * or not: a missing one then fails the start step with a clear error, recorded on the deployment.
 * Labels select among the hosts registered now.
 */
export function placeHosts(service: string, placement: PlacementConfig, registered: HostRecord[]): string[] {
  if (placement.hosts) return placement.hosts;
  const want = Object.entries(placement.hostLabels ?? {});
  const hosts = registered
    .filter((h) => want.every(([k, v]) => h.labels[k] === v))
    .map((h) => h.id)
    .sort();
  if (hosts.length === 0) {
    const text = want.map(([k, v]) => `${k}=${v}`).join(', ');
    throw new TealError(
      'TEAL_HOST_UNAVAILABLE',
      `no registered host matches services.${service}.hostLabels (${text}); registered: ${registered.map((h) => h.id).join(', ') || 'none'} (start \`teal agent\` on them)`,
      { hostLabels: placement.hostLabels ?? {} },
    );
  }
  return hosts;
}
