import path from 'node:path';
import type { TealConfig } from '../core/config/schema.js';
import { execLine, lineValue, listWord, textValue } from './systemd-quote.js';

/**
 * The systemd units `teal service install` writes, rendered without any IO (plan, then apply:
 * install.ts writes them). One unit per long-running verb: `teal up` (the control plane), `teal
 * agent` (a fleet host), `teal edge` (a data plane fed from the store).
 */

export type ServiceVerb = 'up' | 'agent' | 'edge';
export type UnitScope = 'system' | 'user';

/** What the verb's config makes it depend on, on this host. */
export interface UnitNeeds {
  /** etcd on this host (a loopback endpoint): etcd.service is started first. */
  etcd: boolean;
  /** The local Docker engine (its default socket): docker.service is started first. */
  docker: boolean;
  /** nginx or haproxy run by their own units, which teal drives. */
  proxy?: 'nginx' | 'haproxy';
}

export interface UnitSpec {
  verb: ServiceVerb;
  /** The unit's name without `.service`. */
  name: string;
  scope: UnitScope;
  /** The node binary (process.execPath) and teal's entry script, both absolute. */
  node: string;
  entry: string;
  /** The verb's arguments, every path in them absolute. */
  args: string[];
  /** ExecReload='s `teal reload` arguments (teal up only: it re-reads teal.yml on reload). */
  reloadArgs?: string[];
  workingDirectory: string;
  /** User= (system units only; absent runs as root). */
  user?: string;
  /** EnvironmentFile=: TEAL_TOKEN and the secrets the config names, 0600, never in the unit. */
  envFile: string;
  needs: UnitNeeds;
  /** Folders that must be mounted before the verb starts (its config, its state). */
  mounts: string[];
  /** The builtin data plane's connection cap, which the open-file limit must allow. */
  maxConnections?: number;
  /** What it serves, for Description= (the config file, the agent's id). */
  about: string;
  /** The teal version writing it. */
  teal: string;
}

/** The first line of every unit teal writes: uninstall removes only files that carry it. */
export const MARKER = '# Written by `teal service install`.';

/** systemd's PATH for services, with node's own folder first so stages find the same node and npm. */
const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** Unit names systemd accepts (systemd.unit(5)), kept to what a shell needs no quoting for. */
export const UNIT_NAME = /^[A-Za-z0-9][A-Za-z0-9:_.@-]{0,200}$/;

export const DEFAULT_NAMES: Record<ServiceVerb, string> = {
  up: 'teal',
  agent: 'teal-agent',
  edge: 'teal-edge',
};

const WHAT: Record<ServiceVerb, string> = {
  up: 'teal control plane',
  agent: 'teal fleet agent',
  edge: 'teal edge',
};

/**
 * The open-file limit the data plane needs to honour its cap: it keeps half the soft limit, less
 * 128, for client connections (proxy/builtin/settings.ts connectionCap); never below 65536, since
 * the app instances and the data plane inherit it from teal up.
 */
export function openFileLimit(maxConnections: number | undefined): number {
  return Math.max(65_536, maxConnections === undefined ? 0 : 2 * (maxConnections + 128));
}

export function renderUnit(spec: UnitSpec): string {
  const system = spec.scope === 'system';
  const deps: string[] = [];
  if (spec.needs.etcd) deps.push('etcd.service');
  if (spec.needs.docker) deps.push('docker.service');
  if (spec.needs.proxy) deps.push(`${spec.needs.proxy}.service`);
  // A user manager cannot order itself after system units: only the system unit names them.
  const wants = system ? ['network-online.target', ...deps] : [];
  const unitPath = [path.dirname(spec.node), ...SYSTEM_PATH.filter((p) => p !== path.dirname(spec.node))];
  const command = execLine([
    { value: spec.node, what: 'the node binary' },
    { value: spec.entry, what: "teal's entry" },
    { value: spec.verb, what: 'the verb' },
    ...spec.args.map((value) => ({ value, what: `the argument` })),
  ]);
  const mounts = [...new Set(spec.mounts)].map((m) => listWord(m, 'the folder')).join(' ');
  const lines = [
    MARKER,
    `# teal ${textValue(spec.teal)}; \`teal service install --force\` rewrites this file, so change it`,
    `# with a drop-in instead: systemctl${system ? '' : ' --user'} edit ${spec.name}.service`,
    '[Unit]',
    `Description=${textValue(`${WHAT[spec.verb]}: ${spec.about}`)}`,
    ...(wants.length ? [`Wants=${wants.join(' ')}`, `After=${wants.join(' ')}`] : []),
    ...(mounts ? [`RequiresMountsFor=${mounts}`] : []),
    // Unattended: keep retrying (etcd or the network may come late at boot) rather than give up
    // after five starts in ten seconds.
    'StartLimitIntervalSec=0',
    '',
    '[Service]',
    'Type=exec',
    `ExecStart=${command}`,
    // `teal reload` rather than a bare SIGHUP: systemctl reload then fails, with the problems in
    // the journal, when the edited teal.yml does not validate (caddy's unit does the same).
    ...(spec.reloadArgs
      ? [
          `ExecReload=${execLine([
            { value: spec.node, what: 'the node binary' },
            { value: spec.entry, what: "teal's entry" },
            { value: 'reload', what: 'the verb' },
            ...spec.reloadArgs.map((value) => ({ value, what: 'the argument' })),
          ])}`,
        ]
      : []),
    `WorkingDirectory=${lineValue(spec.workingDirectory, 'the working directory')}`,
    ...(system && spec.user ? [`User=${lineValue(spec.user, 'the user')}`] : []),
    `Environment=${listWord(`PATH=${unitPath.join(':')}`, 'PATH')}`,
    `EnvironmentFile=-${lineValue(spec.envFile, 'the environment file')}`,
    // The data plane and the app instances are detached children of this unit that must outlive a
    // restart of the verb (it re-attaches to them): stop and restart signal the main process only.
    // `teal down` stops the rest.
    'KillMode=process',
    'Restart=always',
    // Also after exit 2 (teal.yml does not validate): the data plane keeps serving meanwhile, and
    // the control plane comes back by itself once the file is fixed, its problems in the journal.
    'RestartSec=1s',
    `LimitNOFILE=${openFileLimit(spec.maxConnections)}`,
    '',
    '[Install]',
    `WantedBy=${system ? 'multi-user.target' : 'default.target'}`,
    '',
  ];
  return lines.join('\n');
}

const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/;

/** Whether any of these etcd endpoints is on this host. */
export function etcdIsLocal(endpoints: readonly string[]): boolean {
  return endpoints.some((url) => {
    try {
      return LOOPBACK.test(new URL(url).hostname);
    } catch {
      return false;
    }
  });
}

/** Whether a Docker engine address is the local docker.service's socket (unset: the default). */
export function dockerIsLocal(host: string | undefined): boolean {
  return host === undefined || host === 'unix:///var/run/docker.sock' || host === 'unix:///run/docker.sock';
}

/**
 * What `teal up` or `teal edge` with this config depends on. The unit's environment has no
 * DOCKER_HOST unless its environment file sets one, so only the config's docker.host counts.
 */
export function needsOf(config: TealConfig): UnitNeeds {
  const docker = Object.values(config.services).some((s) => s.runtime === 'docker');
  return {
    etcd: config.store.kind === 'etcd' && etcdIsLocal(config.store.endpoints),
    docker: docker && dockerIsLocal(config.docker?.host),
    ...(config.proxy.kind === 'builtin' ? {} : { proxy: config.proxy.kind }),
  };
}
