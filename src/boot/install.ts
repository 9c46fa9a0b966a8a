import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { TealError } from '../core/errors.js';
import { MARKER } from './units.js';

/**
 * Applies what units.ts rendered: unit files written whole (staged beside the target, synced,
 * renamed, 0644 as systemd's own are), a changed unit never overwritten without --force, and the
 * environment file created once, 0600, and never rewritten (it holds the secrets).
 */

export type UnitAction = 'created' | 'updated' | 'unchanged';

export function writeUnit(file: string, text: string, force: boolean): UnitAction {
  let before: string | undefined;
  if (existsSync(file)) before = readFileSync(file, 'utf8');
  if (before === text) {
    // The content is right; the mode may have been changed by hand.
    chmodSync(file, 0o644);
    return 'unchanged';
  }
  if (before !== undefined && !force) {
    throw new TealError(
      'TEAL_UNIT_CHANGED',
      `${file} exists and differs from the unit teal would write now (edited, or written for another config or teal); see the new one with --print, then overwrite it with --force`,
      { file },
    );
  }
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  writeWhole(file, text, 0o644);
  return before === undefined ? 'created' : 'updated';
}

/**
 * Creates the environment file systemd reads for the unit (as root, before dropping to User=), with
 * a commented line per variable the config reads, or checks the existing one is private.
 */
export function ensureEnvFile(file: string, names: readonly string[]): 'created' | 'kept' {
  if (existsSync(file)) {
    const mode = statSync(file).mode & 0o777;
    if (mode & 0o077) {
      throw new TealError(
        'TEAL_UNSAFE_PATH',
        `${file} holds TEAL_TOKEN and secrets but other users can read it (mode ${mode.toString(8).padStart(4, '0')}); chmod 600 ${file}`,
        { file },
      );
    }
    return 'kept';
  }
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const lines = [
    '# Environment of the teal unit: KEY=value lines, read by systemd when the unit starts.',
    '# Keep this file 0600: it holds the API token and the secrets teal.yml names.',
    '#TEAL_TOKEN=',
    ...names.filter((n) => n !== 'TEAL_TOKEN').map((n) => `#${n}=`),
    '',
  ];
  writeWhole(file, lines.join('\n'), 0o600, 'wx');
  return 'created';
}

/** Removes a unit teal wrote; refuses one it did not write (without --force) or one still enabled. */
export function removeUnit(file: string, force: boolean): 'removed' | 'absent' {
  if (!existsSync(file)) return 'absent';
  const name = path.basename(file);
  const links = enabledLinks(path.dirname(file), name);
  if (links.length) {
    throw new TealError(
      'TEAL_UNIT_ENABLED',
      `${name} is still enabled (${links.join(', ')}); disable it first: systemctl disable --now ${name}`,
      { file, links },
    );
  }
  if (!force && !readFileSync(file, 'utf8').startsWith(MARKER)) {
    throw new TealError(
      'TEAL_UNIT_CHANGED',
      `${file} was not written by teal service install (its first line is not teal's); remove it yourself, or with --force`,
      { file },
    );
  }
  unlinkSync(file);
  return 'removed';
}

/** The `<target>.wants/<name>` and `.requires/` links `systemctl enable` made in the same folder. */
function enabledLinks(dir: string, name: string): string[] {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of readdirSync(dir)) {
    if (!entry.endsWith('.wants') && !entry.endsWith('.requires')) continue;
    const link = path.join(dir, entry, name);
    try {
      lstatSync(link);
      found.push(link);
    } catch {
      // Not linked from this target.
    }
  }
  return found;
}

function writeWhole(file: string, text: string, mode: number, flag: 'w' | 'wx' = 'w'): void {
  const temp = flag === 'wx' ? file : `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(temp, flag, mode);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  // The umask may have taken bits the mode asked for (or the temp name kept old ones).
  chmodSync(temp, mode);
  if (temp !== file) {
    try {
      renameSync(temp, file);
    } catch (err) {
      unlinkSync(temp);
      throw err;
    }
  }
}
