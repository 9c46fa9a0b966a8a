import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { TealError } from './core/errors.js';

/**
 * The environment of the code teal runs for users (apps, pipeline stages, verify `run` steps,
 * hooks): only what its config declares, never teal's own environment wholesale. teal up's shell
 * may hold the API token, webhook secrets, the etcd password and whatever else its operator
 * exported; a commit pushed to a followed branch must not be able to print them.
 *
 * What a child gets, in this order (later wins):
 *   1. PATH (teal's own, else a standard one), LANG, LC_ALL and TZ when teal has them: nothing
 *      secret, and without them programs misbehave in ways that look like bugs;
 *   2. HOME, USER and LOGNAME of the user it runs as;
 *   3. each name of its `inheritEnv` that teal's environment has;
 *   4. its `env:` values, with `{ fromEnv: NAME }` and `{ file: path }` resolved here, at start,
 *      so the store and the deployment records only ever hold the reference;
 *   5. what the caller adds (TEAL_*, PORT, HOST).
 */

/** A value taken where the child starts, so a secret is named once and never stored. */
export type EnvSource = { fromEnv: string } | { file: string };

export const PASSED_THROUGH = ['PATH', 'LANG', 'LC_ALL', 'TZ'] as const;

const STANDARD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Who a child runs as, for HOME/USER/LOGNAME (users.ts resolves it). */
export interface EnvUser {
  name: string;
  home: string;
}

export interface ChildEnvOptions {
  /** Where the values are configured, for errors: "services.web" or "pipelines.web". */
  where: string;
  /** Plain values, already interpolated. */
  env?: Record<string, string>;
  /** Values resolved now: from teal's environment or from a file. */
  envFrom?: Record<string, EnvSource>;
  /** Names copied from teal's environment when it has them (absent ones are simply not set). */
  inheritEnv?: readonly string[];
  /** The user it runs as; teal's own when absent. */
  user?: EnvUser;
  /** teal's environment (process.env; tests hand in their own). */
  from?: NodeJS.ProcessEnv;
}

export function childEnv(options: ChildEnvOptions): Record<string, string> {
  const from = options.from ?? process.env;
  const env: Record<string, string> = {};
  for (const name of PASSED_THROUGH) {
    const value = from[name];
    if (value !== undefined) env[name] = value;
  }
  env.PATH ??= STANDARD_PATH;
  const user = options.user ?? ownUser();
  env.HOME = user.home;
  env.USER = user.name;
  env.LOGNAME = user.name;
  return { ...env, ...declaredEnv(options) };
}

/**
 * Only what the config declares (3 and 4 above), for a container: its image brings its own PATH
 * and HOME.
 */
export function declaredEnv(options: ChildEnvOptions): Record<string, string> {
  const from = options.from ?? process.env;
  const env: Record<string, string> = {};
  for (const name of options.inheritEnv ?? []) {
    const value = from[name];
    if (value !== undefined) env[name] = value;
  }
  Object.assign(env, options.env);
  for (const [key, source] of Object.entries(options.envFrom ?? {})) {
    env[key] = resolveSource(source, `${options.where}.env.${key}`, from);
  }
  return env;
}

/**
 * One `fromEnv`/`file` value. A missing variable or unreadable file is an error naming where it
 * is configured and what is missing, never the value.
 */
export function resolveSource(
  source: EnvSource,
  where: string,
  from: NodeJS.ProcessEnv = process.env,
): string {
  if ('fromEnv' in source) {
    const value = from[source.fromEnv];
    if (value === undefined) {
      throw new TealError(
        'TEAL_SECRET_UNAVAILABLE',
        `${where}: fromEnv ${source.fromEnv} is not set in the environment of teal (export it before teal up, or set it in its service unit)`,
        { where, fromEnv: source.fromEnv },
      );
    }
    return value;
  }
  let text: string;
  try {
    text = readFileSync(source.file, 'utf8');
  } catch (err) {
    throw new TealError(
      'TEAL_SECRET_UNAVAILABLE',
      `${where}: cannot read file ${source.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { where, file: source.file },
    );
  }
  // Files written by editors and `echo` end in a newline the secret does not contain.
  return text.endsWith('\r\n') ? text.slice(0, -2) : text.endsWith('\n') ? text.slice(0, -1) : text;
}

function ownUser(): EnvUser {
  const info = userInfo();
  return { name: info.username, home: info.homedir };
}
