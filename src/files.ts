import { randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { TealError } from './core/errors.js';

/**
 * Writes JSON to a temp file beside `file`, syncs it, then renames it over `file`: a crash leaves the
 * old content or the new, never half of either. Used for every state file teal keeps (instance
 * records, the data plane's table, daemon.json).
 */
export function writeJsonAtomic(file: string, value: unknown, mode = 0o600): Promise<void> {
  return writeTextAtomic(file, `${JSON.stringify(value, null, 2)}\n`, mode);
}

/** The same for text (the haproxy switch's map and server-state files). */
export async function writeTextAtomic(file: string, text: string, mode = 0o600): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temp, 'w', mode);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}

/**
 * Makes `dir` (creating it 0700 if missing) a directory only this process's user can enter, or
 * refuses: anything another user can write to or swap (a directory of theirs, a symlink of theirs,
 * a directory open to group or others) could hold a socket or file they planted. Like tmux's
 * /tmp/tmux-<uid>, a directory that is ours but too open is refused, not repaired, unless `tighten`
 * says it is ours to fix (the state dir, which `teal up` owns).
 */
export function ensurePrivateDir(dir: string, options: { tighten?: boolean } = {}): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const uid = process.getuid?.();
  if (uid === undefined) return;
  const link = lstatSync(dir);
  const unsafe = (why: string) =>
    new TealError(
      'TEAL_UNSAFE_PATH',
      `${dir} ${why}; teal keeps its sockets and state only where no other user can reach them`,
      {
        path: dir,
      },
    );
  // A symlink we made ourselves is followed; one another user made could be re-pointed at any time.
  if (link.isSymbolicLink() && link.uid !== uid) throw unsafe(`is a symbolic link owned by uid ${link.uid}`);
  const st = statSync(dir);
  if (!st.isDirectory()) throw unsafe('is not a directory');
  if (st.uid !== uid) throw unsafe(`is owned by uid ${st.uid}, not by this user (uid ${uid})`);
  if ((st.mode & 0o077) !== 0) {
    if (!options.tighten)
      throw unsafe(
        `has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, open to other users (want 0700)`,
      );
    chmodSync(dir, st.mode & 0o700);
  }
}

/**
 * Takes group and other permissions off everything under `dir` (not following symlinks): folders
 * end 0700, files 0600 (0700 if the owner could run them). Used on a state dir that existed before
 * `teal up`, whose files may have been made under a looser umask.
 */
export function tightenTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    const st = lstatSync(file, { throwIfNoEntry: false });
    // Another user's file (a stage's output, say) is not ours to change; the 0700 folder above
    // already keeps everyone else from it.
    if (st === undefined || st.uid !== process.getuid?.()) continue;
    if ((st.mode & 0o077) !== 0) chmodSync(file, st.mode & 0o700);
    if (entry.isDirectory()) tightenTree(file);
  }
}
