import { copyFile, open, readFile, rename, unlink } from 'node:fs/promises';
import { isErrno } from '../../proc.js';

/**
 * The file teal writes and nginx includes, replaced the way confd and CapRover do it: render to a
 * staged file in the same folder (so the rename is atomic), keep the file in force as `.bak`,
 * rename the staged file into place. nginx only reads it on a check or reload, and if either fails
 * the `.bak` goes back, so what nginx serves and what the file says never part.
 */
export class ConfigFile {
  readonly bak: string;
  readonly staged: string;

  constructor(readonly path: string) {
    this.bak = `${path}.bak`;
    this.staged = `${path}.staged-${process.pid}`;
  }

  /** The file's text, or null when there is none yet. */
  async read(): Promise<string | null> {
    try {
      return await readFile(this.path, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return null;
      throw err;
    }
  }

  /** Puts `text` in place; returns what undoes it (the `.bak` back, or no file if there was none). */
  async replace(text: string): Promise<() => Promise<void>> {
    await this.writeStaged(text);
    let hadFile = true;
    try {
      await copyFile(this.path, this.bak);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) {
        await unlink(this.staged).catch(() => undefined);
        throw err;
      }
      hadFile = false;
    }
    try {
      await rename(this.staged, this.path);
    } catch (err) {
      await unlink(this.staged).catch(() => undefined);
      throw err;
    }
    return async () => {
      if (!hadFile) {
        await unlink(this.path).catch((err: unknown) => {
          if (!isErrno(err, 'ENOENT')) throw err;
        });
        return;
      }
      await copyFile(this.bak, this.staged);
      await rename(this.staged, this.path);
    };
  }

  private async writeStaged(text: string): Promise<void> {
    const handle = await open(this.staged, 'w', 0o644);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}
