import { isDeepStrictEqual } from 'node:util';
import type { TealConfig } from './schema.js';

/** Which file a deployment (or the running control plane) used: what history and status show. */
export interface ConfigStamp {
  /** Absolute path of teal.yml. */
  file: string;
  /** sha256 of the file's bytes, hex. */
  sha256: string;
  /** The file's mtime when it was read (ISO). */
  mtime: string;
}

/** What a reload of teal.yml would do, before anything is applied: pure, so a test checks it without IO. */
export interface ReloadPlan {
  /** The config to run with from now on: the file's, except the parts that need a restart, kept as running. */
  config: TealConfig;
  /** Applied now, e.g. "services.web.routes", "proxy.timeouts". */
  live: string[];
  /** Taken by the next deploy of the service, e.g. "services.web.env". */
  nextDeploy: string[];
  /** Changed in the file but kept as running until `teal up` restarts, e.g. "api.listen". */
  needsRestart: string[];
  /** The routing table must be rebuilt (routes changed, services added or removed). */
  routes: boolean;
  /** The builtin data plane's settings changed (limits, timeouts, trusted proxies). */
  proxySettings: boolean;
  /** Why the file cannot be applied at all (then nothing is): a removed service that still runs. */
  refused: { path: string; message: string }[];
}

/** Top-level keys read once, when `teal up` starts: the store, the API's listener, the state and work dirs, Docker. */
const AT_START = ['stateDir', 'workDir', 'store', 'api', 'docker'] as const;
/** Builtin data plane settings it can take from a successor process without a gap (a handoff). */
const BUILTIN_LIVE = ['maxBodySize', 'timeouts', 'limits', 'trustedProxies'] as const;

/**
 * Plans applying `next` over the `running` config. `busy` names each service that has instances in
 * a slot (live, warm, starting...) with what runs there; such a service may not disappear from the
 * file: its routes would vanish from the table at once and nothing would ever stop or reap its
 * instances (the reaper and the reconciler go by the services the config names). `proxyLive` says
 * whether the traffic switch can take new settings without a restart (the builtin data plane can).
 */
export function planReload(
  running: TealConfig,
  next: TealConfig,
  busy: Record<string, string>,
  options: { proxyLive: boolean },
): ReloadPlan {
  const plan: ReloadPlan = {
    config: next,
    live: [],
    nextDeploy: [],
    needsRestart: [],
    routes: false,
    proxySettings: false,
    refused: [],
  };
  const kept: Partial<TealConfig> = {};
  for (const key of AT_START) {
    if (isDeepStrictEqual(running[key], next[key])) continue;
    plan.needsRestart.push(...changedKeys(key, running[key], next[key]));
    Object.assign(kept, { [key]: running[key] });
  }
  const proxy = planProxy(running.proxy, next.proxy, options.proxyLive);
  plan.needsRestart.push(...proxy.needsRestart);
  plan.live.push(...proxy.live);
  plan.proxySettings = proxy.live.length > 0;
  plan.config = { ...next, ...kept, proxy: proxy.config };

  for (const name of Object.keys(running.services)) {
    if (name in next.services) continue;
    const what = busy[name];
    if (what !== undefined) {
      plan.refused.push({
        path: `services.${name}`,
        message: `is gone from the file, but ${what}: its route would vanish while its instances kept running with nothing to stop them; put it back`,
      });
    } else {
      plan.live.push(`services.${name} (removed)`);
      plan.routes = true;
    }
  }
  for (const [name, svc] of Object.entries(next.services)) {
    const was = running.services[name];
    if (!was) {
      plan.live.push(`services.${name} (added)`);
      plan.routes = true;
      continue;
    }
    for (const key of unionKeys(was, svc)) {
      if (isDeepStrictEqual(was[key], svc[key])) continue;
      if (key === 'routes') {
        plan.live.push(`services.${name}.routes`);
        plan.routes = true;
      } else plan.nextDeploy.push(`services.${name}.${key}`);
    }
  }
  for (const key of ['pipelines', 'webhooks'] as const) {
    // Read at each run and each delivery, so they apply to the next one.
    if (!isDeepStrictEqual(running[key], next[key]))
      plan.live.push(...changedKeys(key, running[key], next[key]));
  }
  return plan;
}

function planProxy(
  running: TealConfig['proxy'],
  next: TealConfig['proxy'],
  proxyLive: boolean,
): { config: TealConfig['proxy']; live: string[]; needsRestart: string[] } {
  if (isDeepStrictEqual(running, next)) return { config: running, live: [], needsRestart: [] };
  if (running.kind !== next.kind || running.kind !== 'builtin' || next.kind !== 'builtin' || !proxyLive) {
    // nginx and haproxy were set up from these at start (rendered config, base config): all of it waits.
    return { config: running, live: [], needsRestart: changedKeys('proxy', running, next) };
  }
  const live: string[] = [];
  const needsRestart: string[] = [];
  const config = { ...running };
  for (const key of unionKeys(running, next)) {
    if (isDeepStrictEqual(running[key], next[key])) continue;
    if ((BUILTIN_LIVE as readonly string[]).includes(key)) {
      live.push(`proxy.${key}`);
      Object.assign(config, { [key]: next[key] });
    } else needsRestart.push(`proxy.${key}`);
  }
  return { config, live, needsRestart };
}

/** The dotted keys one level under `prefix` that differ (the prefix itself when either side is not an object). */
function changedKeys(prefix: string, a: unknown, b: unknown): string[] {
  if (!isObject(a) || !isObject(b)) return [prefix];
  return unionKeys(a, b)
    .filter((k) => !isDeepStrictEqual(a[k], b[k]))
    .map((k) => `${prefix}.${k}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unionKeys<T extends object>(a: T, b: T): (keyof T & string)[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])] as (keyof T & string)[];
}
