/**
 * Reading an instance's log file while the app may still be writing it and logfile.ts may rotate
 * it under us: the last lines without reading the whole file, and a follow that survives
 * copy-truncate rotation.
 */
import { type FileHandle, open, stat } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { isErrno } from './liveness.js';
import { offsetSince, readMarks, timeAt } from './log-times.js';
import { rotatedPath } from './logfile.js';
import type { LogLine } from './runtime.js';

const CHUNK = 64 * 1024;

/** A line and the byte offset just past it (past its newline; the file's end for an unfinished line). */
interface Located {
  line: string;
  end: number;
  /** Not ended by a newline yet. */
  partial?: boolean;
}

/**
 * The last `n` lines of the log, taking the older ones from the most recent rotated copy when the
 * current file (just truncated by a rotation) holds fewer.
 */
export async function tailLines(file: string, n: number, end?: number): Promise<string[]> {
  if (n <= 0) return [];
  const current = await lastLines(file, n, end);
  const older = current.length >= n ? [] : await lastLines(rotatedPath(file, 1), n - current.length);
  return [...older, ...current].map((l) => l.line);
}

/** The last `n` lines of one file (of its first `end` bytes when given), reading backwards in chunks. */
async function lastLines(file: string, n: number, end?: number): Promise<Located[]> {
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
    const lines = locate(Buffer.concat(chunks), pos);
    if (pos > 0) lines.shift(); // started mid-line
    return lines.slice(-n);
  } finally {
    await handle.close();
  }
}

/** The lines of `buffer`, which starts at byte `base` of its file; an unfinished last one included. */
function locate(buffer: Buffer, base: number): Located[] {
  const lines: Located[] = [];
  let from = 0;
  for (let nl = buffer.indexOf(0x0a); nl !== -1; nl = buffer.indexOf(0x0a, from)) {
    lines.push({ line: buffer.subarray(from, nl).toString('utf8'), end: base + nl + 1 });
    from = nl + 1;
  }
  if (from < buffer.length)
    lines.push({ line: buffer.subarray(from).toString('utf8'), end: base + buffer.length, partial: true });
  return lines;
}

export interface ReadOptions {
  follow: boolean;
  signal: AbortSignal;
  /** Start with the last `tail` lines instead of the whole current file. */
  tail?: number;
  /** Only lines written at or after this epoch ms (their time from the log's index, log-times.ts). */
  since?: number;
  pollMs?: number;
}

/** What `since` without `tail` returns at most: the most recent lines, so one request stays bounded. */
export const SINCE_MAX_LINES = 10_000;

/** The rotated copies a `since` looks through, beyond the current file. */
const SINCE_MAX_COPIES = 9;

/**
 * The log line by line, each with its time (from the log's index, log-times.ts). Without follow: the
 * current file (or its last `tail` lines, or those from `since` on, reaching into rotated copies)
 * and done. With follow: then every
 * line appended later, until the signal aborts (which ends the iteration quietly), timed by the
 * file's mtime when it is read. A file that shrinks was truncated by a rotation: the part we had
 * not read yet is in `.1`, so it is read from there before starting again at the top of the fresh
 * file.
 */
export async function* readLines(file: string, options: ReadOptions): AsyncGenerator<LogLine> {
  const { follow, signal, pollMs = 150 } = options;
  const st = await statIfExists(file);
  let offset = st?.size ?? 0;
  let inode = st?.ino;
  const last = await history(file, offset, options.tail, options.since);
  // A line still being written is left for the follow to read whole.
  if (follow && last.length > 0 && last.at(-1)!.partial) offset -= Buffer.byteLength(last.pop()!.line);
  yield* last.map((l) => l.timed);
  if (!follow) return;
  const lines = new LineSplitter();
  let time = Date.now();
  const stamp = (text: string): LogLine => ({ line: text, time });
  while (!signal.aborted) {
    const st = await statIfExists(file);
    if (st && inode !== undefined && st.ino !== inode) {
      offset = 0; // replaced by another file: read the new one from its start
    } else if (st && st.size < offset) {
      const rotated = rotatedPath(file, 1);
      time = Math.round((await statIfExists(rotated))?.mtimeMs ?? Date.now());
      yield* lines.push(await readRange(rotated, offset)).map(stamp);
      offset = 0;
    }
    inode = st?.ino ?? inode;
    if (st && st.size > offset) {
      // Read in bounded pieces so a large file is never held in memory at once. Everything up to
      // st.size was written by st.mtimeMs: the time of the lines this read completes.
      const end = Math.min(st.size, offset + 16 * CHUNK);
      time = Math.round(st.mtimeMs);
      yield* lines.push(await readRange(file, offset, end)).map(stamp);
      offset = end;
      continue;
    }
    try {
      await sleep(pollMs, undefined, { signal });
    } catch (err) {
      if (signal.aborted) return;
      throw err;
    }
  }
}

interface HistoryLine {
  timed: LogLine;
  line: string;
  partial: boolean;
}

/**
 * The lines already written (the current file up to `size`): the last `tail`, or those timed at
 * or after `since` (through the rotated copies, oldest first), or both.
 */
async function history(
  file: string,
  size: number,
  tail: number | undefined,
  since: number | undefined,
): Promise<HistoryLine[]> {
  if (tail !== undefined && tail <= 0) return [];
  if (tail === undefined && since === undefined) {
    // The whole current file (bounded by its rotation size).
    return timed(file, locate(await readRange(file, 0, size), 0));
  }
  const limit = tail ?? SINCE_MAX_LINES;
  const out: HistoryLine[] = [];
  const copies: string[] = [];
  if (since === undefined) {
    const current = await lastLines(file, limit, size);
    if (current.length < limit) copies.push(rotatedPath(file, 1));
    for (const copy of copies)
      out.push(...(await timed(copy, await lastLines(copy, limit - current.length))));
    out.push(...(await timed(file, current)));
    return out;
  }
  for (let n = SINCE_MAX_COPIES; n >= 1; n--) copies.push(rotatedPath(file, n));
  for (const f of [...copies, file]) {
    const st = await statIfExists(f);
    if (!st || st.mtimeMs < since) continue; // all of it written before `since`
    const end = f === file ? size : st.size;
    const start = offsetSince(await readMarks(f), since);
    // Back up a little, so the line that spans `start` comes whole.
    const from = Math.max(0, start - CHUNK);
    const lines = locate(await readRange(f, from, end), from);
    if (from > 0) lines.shift();
    for (const l of await timed(f, lines)) {
      if (l.timed.time < since) continue;
      out.push(l);
      if (out.length > limit) out.shift();
    }
  }
  return out;
}

/** Times lines of `file` from its index; past the index's end, by the file's mtime. */
async function timed(file: string, lines: Located[]): Promise<HistoryLine[]> {
  if (lines.length === 0) return [];
  const [marks, st] = await Promise.all([readMarks(file), statIfExists(file)]);
  const fallback = { time: Math.round(st?.mtimeMs ?? Date.now()), approx: false };
  return lines.map((l) => {
    const { time, approx } = timeAt(marks, l.end, fallback);
    const line: LogLine = { line: l.line, time };
    if (approx) line.approx = true;
    return { timed: line, line: l.line, partial: l.partial === true };
  });
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
