import path from 'node:path';
import type { TealConfig } from '../core/config/schema.js';
import type { Logger } from '../core/deps.js';
import { endpointText } from '../core/model.js';
import { packageVersion } from '../version.js';
import type { EnsureDataPlaneOptions } from './builtin/launcher.js';

/** The URL a user on this host reaches a listen address at (a wildcard means loopback). */
function localUrl(listen: string): string {
  return `http://${listen.replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '127.0.0.1:')}`;
}

import type { TrafficSwitch } from './switch.js';

/**
 * The preview listener's address: as configured, else loopback on the public port + 1 (port 0, any
 * free port, when the public port is 0). Loopback so that only this host reaches idle slots with
 * X-Teal-Slot; on by default because verify steps `through: preview` and the gate need it.
 */
export function previewAddress(config: TealConfig['proxy']): string {
  if (config.preview.listen !== undefined) return endpointText(config.preview.listen);
  const port = config.listen.port;
  return endpointText({ host: '127.0.0.1', port: port === 0 ? 0 : port === 65535 ? 65534 : port + 1 });
}

export interface SwitchPaths {
  /** The state dir: the data plane's admin socket, saved table and log live here. */
  dir: string;
  proxySocket: string;
  proxyState: string;
  proxyLog: string;
  /** The folder of teal.yml: relative paths in the proxy config resolve from here (default: dir's parent). */
  configDir?: string;
}

export interface OpenedSwitch {
  traffic: TrafficSwitch;
  /** Where users reach it: http://host:port */
  url: string;
  /** The preview listener, where X-Teal-Slot chooses the slot: http://127.0.0.1:8081 */
  previewUrl: string;
  /**
   * Applies changed proxy settings (limits, timeouts, trusted proxies) without a restart of teal up;
   * absent where the switch cannot (nginx and haproxy were set up from them at start).
   */
  reconfigure?: (config: TealConfig['proxy']) => Promise<void>;
  /** The builtin data plane's pid and how to start it again (proxy/builtin/watchdog.ts); absent for nginx and haproxy. */
  builtin?: { pid: number; launch: EnsureDataPlaneOptions };
}

type BuiltinConfig = Extract<TealConfig['proxy'], { kind: 'builtin' }>;

/** The builtin data plane's settings (`teal proxy` flags) as teal.yml's proxy section gives them. */
export function builtinSettings(config: BuiltinConfig) {
  return {
    maxBodyBytes: config.maxBodySize,
    connectTimeoutMs: config.timeouts.connect,
    responseTimeoutMs: config.timeouts.response,
    idleTimeoutMs: config.timeouts.idle,
    headersTimeoutMs: config.timeouts.headers,
    sendTimeoutMs: config.timeouts.send,
    maxConnections: config.limits.maxConnections,
    trustedProxies: config.trustedProxies,
  };
}

/** How `teal up` starts the builtin data plane: the addresses, files and settings teal.yml gives it. */
function builtinLaunch(config: BuiltinConfig, paths: SwitchPaths): EnsureDataPlaneOptions {
  return {
    listen: endpointText(config.listen),
    previewListen: previewAddress(config),
    adminSocket: paths.proxySocket,
    stateFile: paths.proxyState,
    logFile: paths.proxyLog,
    settings: builtinSettings(config),
  };
}

/**
 * The traffic switch a config names, ready to apply tables. For the builtin data plane that means
 * starting `teal proxy` or re-attaching to the one running. Each kind is loaded only when used.
 */
export async function openTrafficSwitch(
  config: TealConfig['proxy'],
  paths: SwitchPaths,
  log: Logger,
): Promise<OpenedSwitch> {
  switch (config.kind) {
    case 'builtin': {
      const { dataPlaneInfo, ensureDataPlane, restartDataPlane } = await import('./builtin/launcher.js');
      const { BuiltinSwitch } = await import('./builtin/switch.js');
      const launch = builtinLaunch(config, paths);
      const plane = await ensureDataPlane(launch);
      log.info(plane.started ? 'started the data plane' : 're-attached to the running data plane', {
        pid: plane.pid,
        listen: plane.listen,
        preview: plane.preview,
      });
      if (!plane.started) {
        const running = await dataPlaneInfo(paths.proxySocket);
        if (running && running.version !== packageVersion()) {
          // teal was upgraded while the old data plane kept serving: move it to this version, without a gap.
          const moved = await restartDataPlane(paths.proxySocket);
          log.info('moved the data plane to this teal version', {
            from: running.version,
            to: packageVersion(),
            pid: moved.to,
          });
          plane.pid = moved.to;
        }
      }
      const restart: EnsureDataPlaneOptions = {
        ...launch,
        listen: plane.listen,
        ...(plane.preview === null ? {} : { previewListen: plane.preview }),
      };
      return {
        traffic: new BuiltinSwitch({ adminSocket: paths.proxySocket }),
        url: localUrl(plane.listen),
        previewUrl: localUrl(plane.preview ?? previewAddress(config)),
        // The data plane reads its settings once, at start: a successor started with the new ones
        // takes the sockets over (the restart without a gap), so no connection is refused.
        reconfigure: async (next) => {
          if (next.kind !== 'builtin') throw new Error('the builtin data plane takes only builtin settings');
          const moved = await restartDataPlane(paths.proxySocket, builtinSettings(next));
          // One started again after a crash takes them too.
          restart.settings = builtinSettings(next);
          log.info('the data plane took the new proxy settings', { from: moved.from, to: moved.to });
        },
        // A data plane started again after a crash binds what this one bound: with port 0 in
        // teal.yml, the port users were given, not another free one.
        builtin: { pid: plane.pid, launch: restart },
      };
    }
    case 'nginx': {
      const { NginxSwitch } = await import('./nginx/switch.js');
      const from = (p: string) => path.resolve(paths.configDir ?? path.dirname(paths.dir), p);
      const listen = endpointText(config.listen);
      const traffic = await NginxSwitch.open({
        configFile: from(config.config),
        template: config.template === undefined ? undefined : from(config.template),
        check: config.check,
        reload: config.reload,
        pidFile: from(config.pidFile),
        listen,
        previewListen: previewAddress(config),
        stateDir: paths.dir,
        accessLog:
          config.accessLog === undefined ? path.join(paths.dir, 'nginx-access.log') : from(config.accessLog),
        trustedProxies: config.trustedProxies,
      });
      log.info('driving nginx', {
        config: traffic.configFile,
        pidFile: config.pidFile,
        listen,
        preview: previewAddress(config),
      });
      return { traffic, url: localUrl(listen), previewUrl: localUrl(previewAddress(config)) };
    }
    case 'haproxy': {
      const { HaproxySwitch } = await import('./haproxy/switch.js');
      const o = haproxyOptions(config, paths);
      log.info('driving haproxy', { socket: o.socket, stateDir: o.stateDir });
      return {
        traffic: new HaproxySwitch({ socket: o.socket, stateDir: o.stateDir, prefix: o.prefix }),
        url: localUrl(o.listen),
        previewUrl: localUrl(o.previewListen),
      };
    }
  }
}

type HaproxyConfig = Extract<TealConfig['proxy'], { kind: 'haproxy' }>;

/** The haproxy switch's settings with paths resolved: what the switch and its base config share. */
export function haproxyOptions(config: HaproxyConfig, paths: Pick<SwitchPaths, 'dir' | 'configDir'>) {
  const from = (p: string) => path.resolve(paths.configDir ?? path.dirname(paths.dir), p);
  return {
    socket: from(config.socket),
    stateDir: config.stateDir === undefined ? path.join(paths.dir, 'haproxy') : from(config.stateDir),
    listen: endpointText(config.listen),
    previewListen: previewAddress(config),
    prefix: config.prefix,
    lanes: config.lanes,
    serversPerLane: config.serversPerLane,
    trustedProxies: config.trustedProxies,
  };
}
