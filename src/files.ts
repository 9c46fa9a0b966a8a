import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

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
  await mkdir(path.dirname(file), { recursive: true });
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
