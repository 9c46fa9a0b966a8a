/**
 * Reading an instance's log file while the app may still be writing it and logfile.ts may rotate
 * it under us: the last lines without reading the whole file, and a follow that survives
 * copy-truncate rotation.
 */
import { type FileHandle, open, stat } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { isErrno } from './liveness.js';
import { rotatedPath } from './logfile.js';

const CHUNK = 64 * 1024;

/**
 * The last `n` lines of the log, taking the older ones from the most recent rotated copy when the
 * current file (just truncated by a rotation) holds fewer.
 */
export async function tailLines(file: string, n: number, end?: number): Promise<string[]> {
  if (n <= 0) return [];
  const current = await lastLines(file, n, end);
  if (current.length >= n) return current;
  const older = await lastLines(rotatedPath(file, 1), n - current.length);
  return [...older, ...current];
}

/** The last `n` lines of one file (of its first `end` bytes when given), reading backwards in chunks. */
async function lastLines(file: string, n: number, end?: number): Promise<string[]> {
  const handle = await openIfExists(file);
  if (!handle) return [];
  try {
    let pos = Math.min(end ?? Number.POSITIVE_INFINITY, (await handle.stat()).size);
    const chunks: Buffer[] = [];
    let newlines = 0;
    // n lines need n+1 newlines in view (the one ending the line before them), unless we reach the start.
    while (pos > 0 && newlines <= n) {
      const length = Math.min(CHUNK, pos);
      pos -= length;
      const chunk = Buffer.alloc(length);
      await handle.read(chunk, 0, length, pos);
      chunks.unshift(chunk);
      for (const byte of chunk) if (byte === 0x0a) newlines++;
    }
    const lines = Buffer.concat(chunks).toString('utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    if (pos > 0) lines.shift(); // started mid-line
    return lines.slice(-n);
  } finally {
    await handle.close();
  }
}

export interface ReadOptions {
  follow: boolean;
  signal: AbortSignal;
  /** Start with the last `tail` lines instead of the whole current file. */
  tail?: number;
  pollMs?: number;
}

/**
 * The log line by line. Without follow: the current file (or its last `tail` lines) and done. With
 * follow: then every line appended later, until the signal aborts (which ends the iteration
 * quietly). A file that shrinks was truncated by a rotation: the part we had not read yet is in
 * `.1`, so it is read from there before starting again at the top of the fresh file.
 */
export async function* readLines(file: string, options: ReadOptions): AsyncGenerator<string> {
  const { follow, signal, pollMs = 150 } = options;
  let offset = 0;
  let inode: number | undefined;
  if (options.tail !== undefined) {
    const st = await statIfExists(file);
    offset = st?.size ?? 0;
    inode = st?.ino;
    const last = await tailLines(file, options.tail, offset);
    if (!follow) {
      yield* last;
      return;
    }
    // A line still being written is left for the follow to read whole.
    if (offset > 0 && (await readRange(file, offset - 1, offset))[0] !== 0x0a) {
      offset -= Buffer.byteLength(last.pop() ?? '');
    }
    yield* last;
  }
  const lines = new LineSplitter();
  while (!signal.aborted) {
    const st = await statIfExists(file);
    if (st && inode !== undefined && st.ino !== inode) {
      offset = 0; // replaced by another file: read the new one from its start
    } else if (st && st.size < offset) {
      yield* lines.push(await readRange(rotatedPath(file, 1), offset));
      offset = 0;
    }
    inode = st?.ino ?? inode;
    if (st && st.size > offset) {
      // Read in bounded pieces so a large file is never held in memory at once.
      const end = Math.min(st.size, offset + 16 * CHUNK);
      yield* lines.push(await readRange(file, offset, end));
      offset = end;
      continue;
    }
    if (!follow) break;
    try {
      await sleep(pollMs, undefined, { signal });
    } catch (err) {
      if (signal.aborted) return;
      throw err;
    }
  }
  if (!follow) yield* lines.end();
}

/** Bytes [start, end) of a file (to its end when end is absent); empty when the file is missing. */
async function readRange(file: string, start: number, end?: number): Promise<Buffer> {
  const handle = await openIfExists(file);
  if (!handle) return Buffer.alloc(0);
  try {
    const stop = Math.min(end ?? Number.POSITIVE_INFINITY, (await handle.stat()).size);
    if (stop <= start) return Buffer.alloc(0);
    const buffer = Buffer.alloc(stop - start);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Turns byte chunks into complete lines, keeping a partial last line (and split UTF-8) for later. */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private partial = '';

  push(chunk: Buffer): string[] {
    const lines = (this.partial + this.decoder.write(chunk)).split('\n');
    this.partial = lines.pop() ?? '';
    return lines;
  }

  end(): string[] {
    const rest = this.partial + this.decoder.end();
    this.partial = '';
    return rest === '' ? [] : [rest];
  }
}

async function openIfExists(file: string): Promise<FileHandle | undefined> {
  try {
    return await open(file, 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

async function statIfExists(file: string) {
  try {
    return await stat(file);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}
