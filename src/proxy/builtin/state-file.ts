import { readFile } from 'node:fs/promises';
import { writeJsonAtomic } from '../../files.js';
import type { RoutingTable } from '../switch.js';
import { parseTable } from './table-shape.js';

/**
 * The applied table on disk, so a restarted data plane serves at once, before the control plane
 * re-attaches. Written whole to a temp file beside it, synced, then renamed over it: a crash leaves
 * either the old table or the new one, never half of one.
 */
export function saveTable(file: string, table: RoutingTable): Promise<void> {
  return writeJsonAtomic(file, table);
}

/** The saved table; null when there is none yet. Throws when the file exists but is not a valid table. */
export async function loadTable(file: string): Promise<RoutingTable | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return parseTable(JSON.parse(text));
}
