import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The folder holding teal's package.json, found from this file whether it runs from src/ or dist/. */
export function packageRoot(): string {
  if (root) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir)
      throw new Error(`cannot find teal's package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  root = dir;
  return dir;
}

/** A compiled file under dist/: the entry other processes (data plane, tests) are started from. */
export function distEntry(relative: string): string {
  return path.join(packageRoot(), 'dist', relative);
}

/** The `teal` command, as node runs it: spawn(process.execPath, [cliEntry(), ...args]). */
export function cliEntry(): string {
  return distEntry('cli/main.js');
}
