import { readFileSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import { TealError } from './core/errors.js';

/**
 * Who the code teal runs for users runs as. When teal runs as root, apps, stages, verify `run`
 * steps and hooks run as `user:`/`group:` from teal.yml, or as `nobody` (and its primary group,
 * `nogroup` on Debian) when none is set: a pushed commit or an app then cannot read the state dir
 * (0700, teal's), the token, the store or teal's /proc/<pid>/environ. When teal does not run as root
 * it cannot switch users: everything runs as teal's own user, and a `user:` naming anyone else is
 * an error.
 *
 * Names and numeric ids are looked up in /etc/passwd and /etc/group (no NSS, no shelling out to
 * `id`): a user known only to LDAP must be given by number.
 */

export interface RunUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  /** spawn's uid/gid: absent when it is teal's own user (no switch asked for). */
  switchTo?: { uid: number; gid: number };
}

/** The user given to code whose config names none, when teal runs as root. */
export const DEFAULT_USER = 'nobody';

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function readTable(file: string): string[][] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => line.split(':'));
}

const numeric = (spec: string) => /^\d+$/.test(spec);

export function lookupUser(spec: string, passwd = '/etc/passwd'): PasswdEntry | undefined {
  for (const [name = '', , uid = '', gid = '', , home = ''] of readTable(passwd)) {
    if (numeric(spec) ? Number(uid) === Number(spec) : name === spec) {
      return { name, uid: Number(uid), gid: Number(gid), home };
    }
  }
  // A numeric id without an entry is still a user the kernel accepts.
  if (numeric(spec)) return { name: spec, uid: Number(spec), gid: Number(spec), home: '/' };
  return undefined;
}

export function lookupGroup(spec: string, group = '/etc/group'): number | undefined {
  if (numeric(spec)) return Number(spec);
  for (const [name = '', , gid = ''] of readTable(group)) if (name === spec) return Number(gid);
  return undefined;
}

/** What is wrong with a `user:`/`group:` pair on this host (unknown names); undefined when fine. */
export function userProblem(config: { user?: string; group?: string }): string | undefined {
  if (config.user !== undefined && !lookupUser(config.user)) {
    return `no user ${JSON.stringify(config.user)} in /etc/passwd (give a name from it or a numeric uid)`;
  }
  if (config.group !== undefined && lookupGroup(config.group) === undefined) {
    return `no group ${JSON.stringify(config.group)} in /etc/group (give a name from it or a numeric gid)`;
  }
  return undefined;
}

/**
 * The user code configured at `where` ("services.web", "pipelines.web") runs as. Throws
 * TEAL_CONFIG_INVALID when the user or group is unknown, or teal cannot switch to it.
 */
export function resolveRunUser(config: { user?: string; group?: string }, where: string): RunUser {
  const me = userInfo();
  const fail = (why: string) =>
    new TealError('TEAL_CONFIG_INVALID', `${where}: ${why}`, {
      where,
      ...(config.user === undefined ? {} : { user: config.user }),
      ...(config.group === undefined ? {} : { group: config.group }),
    });
  const problem = userProblem(config);
  if (problem) throw fail(problem);
  const root = me.uid === 0;
  const entry = lookupUser(config.user ?? (root ? DEFAULT_USER : String(me.uid)));
  if (!entry) throw fail(`no user ${DEFAULT_USER} in /etc/passwd: set user: to an unprivileged user`);
  const gid = config.group === undefined ? entry.gid : lookupGroup(config.group)!;
  if (!root) {
    if (entry.uid !== me.uid || gid !== me.gid) {
      throw fail(
        `teal runs as ${me.username} (uid ${me.uid}, gid ${me.gid}) and cannot switch to user ${entry.name} (uid ${entry.uid}), group ${gid}: start teal up as root, or remove user:/group:`,
      );
    }
    return { name: me.username, uid: me.uid, gid: me.gid, home: me.homedir };
  }
  return { name: entry.name, uid: entry.uid, gid, home: entry.home, switchTo: { uid: entry.uid, gid } };
}

/**
 * Fails with a message naming the user, the path and the fix when `user` cannot enter `dir`
 * (every folder on the way needs search permission for it): spawn itself only says EACCES.
 */
export function assertReachable(dir: string, user: RunUser, where: string): void {
  if (!user.switchTo) return;
  const abs = path.resolve(dir);
  const parts = abs.split(path.sep).filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const at = `/${parts.slice(0, i).join('/')}`;
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(at);
    } catch {
      return; // A missing folder is reported by whoever uses it, with its own words.
    }
    const bits =
      st.uid === user.uid ? (st.mode >> 6) & 7 : st.gid === user.gid ? (st.mode >> 3) & 7 : st.mode & 7;
    if ((bits & 1) === 0) {
      throw new TealError(
        'TEAL_START_FAILED',
        `${where}: ${user.name} (uid ${user.uid}) cannot reach ${abs}: ${at} is mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid}:${st.gid}. Make it searchable for that user (chmod o+x ${at}, or chown it), or set user: to one who can`,
        { where, user: user.name, path: abs, blocked: at },
      );
    }
  }
}

/** HOME for a run user: their home folder when it exists, else the folder the code runs in. */
export function homeOf(user: RunUser, cwd: string): string {
  try {
    if (statSync(user.home).isDirectory()) return user.home;
  } catch {
    // nobody's home is /nonexistent.
  }
  return cwd;
}
