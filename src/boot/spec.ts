import { existsSync, statSync } from 'node:fs';
import { homedir, hostname, userInfo } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../core/config/load.js';
import { TealError } from '../core/errors.js';
import { lookupUser } from '../users.js';
import {
  DEFAULT_NAMES,
  dockerIsLocal,
  etcdIsLocal,
  needsOf,
  type ServiceVerb,
  UNIT_NAME,
  type UnitNeeds,
  type UnitScope,
  type UnitSpec,
} from './units.js';

/**
 * Gathers what a unit needs from this host (the config, the user, the paths) into a UnitSpec for
 * units.ts to render. Everything relative is made absolute here, as it means where install runs:
 * systemd starts the verb in another folder, as another process.
 */

export interface ServiceRequest {
  verb: ServiceVerb;
  scope: UnitScope;
  /** -c of install: the teal.yml of `up` and `edge`. */
  config: string;
  /** The verb's own options (after `--`), already checked by the verb's parser. */
  verbArgs: string[];
  /** What that parser read from them (agent: etcd, config, dockerHost, stateDir, id). */
  verbOptions: Record<string, unknown>;
  name?: string;
  runAs?: string;
  envFile?: string;
  dir?: string;
  node: string;
  entry: string;
  teal: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

export interface ServicePlan {
  spec: UnitSpec;
  /** Where the unit file goes. */
  file: string;
  /** Variables the config reads from teal's environment: they belong in the environment file. */
  envNames: string[];
}

/** Options of the verbs that take a path, made absolute so the unit means what was typed here. */
const PATH_OPTIONS = new Set(['-c', '--config', '--state-dir']);

export function absoluteArgs(args: readonly string[], cwd: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0 && PATH_OPTIONS.has(arg.slice(0, eq))) {
      out.push(`${arg.slice(0, eq)}=${path.resolve(cwd, arg.slice(eq + 1))}`);
    } else if (PATH_OPTIONS.has(arg) && i + 1 < args.length) {
      out.push(arg, path.resolve(cwd, args[++i]!));
    } else {
      out.push(arg);
    }
  }
  return out;
}

export function configHome(env: NodeJS.ProcessEnv): string {
  return env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME)
    ? env.XDG_CONFIG_HOME
    : path.join(homedir(), '.config');
}

/** Where units go: systemd's folder for units the administrator adds, or the user manager's. */
export function unitDir(scope: UnitScope, env: NodeJS.ProcessEnv): string {
  return scope === 'system' ? '/etc/systemd/system' : path.join(configHome(env), 'systemd', 'user');
}

export function unitName(verb: ServiceVerb, name: string | undefined): string {
  const n = (name ?? DEFAULT_NAMES[verb]).replace(/\.service$/, '');
  if (!UNIT_NAME.test(n))
    throw new TealError(
      'TEAL_USAGE',
      `--name: expected a unit name of letters, digits and :_.@- like "teal-web", got ${JSON.stringify(name)}`,
    );
  return n;
}

export function planService(req: ServiceRequest): ServicePlan {
  const name = unitName(req.verb, req.name);
  const dir = path.resolve(req.cwd, req.dir ?? unitDir(req.scope, req.env));
  const envFile = path.resolve(
    req.cwd,
    req.envFile ??
      (req.scope === 'system'
        ? path.join('/etc/teal', `${name}.env`)
        : path.join(configHome(req.env), 'teal', `${name}.env`)),
  );
  const args = absoluteArgs(req.verbArgs, req.cwd);
  const facts = req.verb === 'agent' ? agentFacts(req, args) : configFacts(req, args);
  const user = req.scope === 'system' ? runAsUser(req, facts.stateDir) : undefined;
  const spec: UnitSpec = {
    verb: req.verb,
    name,
    scope: req.scope,
    node: req.node,
    entry: req.entry,
    args: facts.args,
    ...(facts.reloadArgs ? { reloadArgs: facts.reloadArgs } : {}),
    workingDirectory: facts.workingDirectory,
    ...(user ? { user } : {}),
    envFile,
    needs: facts.needs,
    mounts: facts.mounts,
    ...(facts.maxConnections === undefined ? {} : { maxConnections: facts.maxConnections }),
    about: facts.about,
    teal: req.teal,
  };
  return { spec, file: path.join(dir, `${name}.service`), envNames: facts.envNames };
}

interface Facts {
  args: string[];
  reloadArgs?: string[];
  workingDirectory: string;
  stateDir: string;
  mounts: string[];
  needs: UnitNeeds;
  maxConnections?: number;
  about: string;
  envNames: string[];
}

/** `up` and `edge`: teal.yml says what they depend on; it must validate now, not at boot. */
function configFacts(req: ServiceRequest, args: string[]): Facts {
  if (args.some((a) => a === '-c' || a === '--config' || a.startsWith('--config='))) {
    throw new TealError(
      'TEAL_USAGE',
      `give teal ${req.verb}'s config as teal service install ${req.verb} -c <file>, not after --`,
    );
  }
  const loaded = loadConfig(path.resolve(req.cwd, req.config));
  const given = req.verbOptions.stateDir;
  const stateDir =
    req.verb === 'edge' && typeof given === 'string' ? path.resolve(req.cwd, given) : loaded.stateDir;
  const needs = needsOf(loaded.config);
  return {
    args: ['-c', loaded.file, ...args],
    ...(req.verb === 'up' ? { reloadArgs: ['-c', loaded.file] } : {}),
    workingDirectory: loaded.dir,
    stateDir,
    mounts: [loaded.dir, stateDir],
    // An edge runs no instances: the Docker engine is not its concern.
    needs: req.verb === 'edge' ? { ...needs, docker: false } : needs,
    ...(loaded.config.proxy.kind === 'builtin'
      ? { maxConnections: loaded.config.proxy.limits.maxConnections }
      : {}),
    about: loaded.file,
    envNames: envNamesOf(loaded.config),
  };
}

/** `agent`: its store comes from --etcd or its own -c; its state dir is made explicit. */
function agentFacts(req: ServiceRequest, args: string[]): Facts {
  const o = req.verbOptions;
  const out = [...args];
  let stateDir = typeof o.stateDir === 'string' ? path.resolve(req.cwd, o.stateDir) : undefined;
  if (!args.some((a) => a === '--state-dir' || a.startsWith('--state-dir='))) {
    // The default (.teal-agent) is relative to where the agent starts: say which one it is.
    stateDir = path.resolve(req.cwd, '.teal-agent');
    out.push('--state-dir', stateDir);
  }
  let etcd = false;
  let envNames: string[] = [];
  const mounts = [stateDir!];
  if (typeof o.etcd === 'string') {
    etcd = etcdIsLocal(o.etcd.split(',').map((e) => e.trim()));
  } else if (typeof o.config === 'string') {
    const loaded = loadConfig(path.resolve(req.cwd, o.config));
    etcd = loaded.config.store.kind === 'etcd' && etcdIsLocal(loaded.config.store.endpoints);
    envNames = envNamesOf(loaded.config.store);
    mounts.push(loaded.dir);
  }
  return {
    args: out,
    workingDirectory: req.cwd,
    stateDir: stateDir!,
    mounts,
    needs: { etcd, docker: dockerIsLocal(typeof o.dockerHost === 'string' ? o.dockerHost : undefined) },
    about: `host ${typeof o.id === 'string' ? o.id : hostname()}`,
    envNames,
  };
}

/**
 * User= of a system unit: --run-as, else whoever asked (SUDO_USER under sudo, as the usual
 * `sudo teal service install` comes from the user who ran teal up by hand); none for root.
 */
function runAsUser(req: ServiceRequest, stateDir: string): string | undefined {
  const me = userInfo();
  const wanted =
    req.runAs ??
    (me.uid === 0 && req.env.SUDO_USER && req.env.SUDO_USER !== 'root' ? req.env.SUDO_USER : me.username);
  const entry = lookupUser(wanted);
  if (!entry)
    throw new TealError(
      'TEAL_USAGE',
      `--run-as: no user ${JSON.stringify(wanted)} in /etc/passwd (give a name from it or a numeric uid)`,
    );
  if (entry.uid === 0) return undefined;
  if (existsSync(stateDir)) {
    const owner = statSync(stateDir).uid;
    if (owner !== entry.uid) {
      throw new TealError(
        'TEAL_USAGE',
        `teal ${req.verb} would run as ${entry.name} (uid ${entry.uid}) but its state dir ${stateDir} belongs to uid ${owner} (and is private to it): chown -R ${entry.name} ${stateDir}, or choose the user with --run-as`,
        { stateDir, owner, user: entry.name },
      );
    }
  }
  return entry.name;
}

/** Every environment variable a config reads from teal's own environment, sorted. */
export function envNamesOf(config: unknown): string[] {
  const names = new Set<string>();
  const walk = (value: unknown, key?: string) => {
    if (Array.isArray(value)) {
      for (const v of value) {
        if (key === 'inheritEnv' && typeof v === 'string') names.add(v);
        else walk(v);
      }
    } else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) {
        if ((k === 'fromEnv' || k === 'secretEnv' || k === 'passwordEnv') && typeof v === 'string')
          names.add(v);
        else walk(v, k);
      }
    }
  };
  walk(config);
  return [...names].sort();
}
