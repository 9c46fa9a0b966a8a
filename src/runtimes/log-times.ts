/**
 * When the lines of an instance's log were written. A process instance writes straight into its
 * file (logfile.ts: no pipe of ours in between, so it keeps logging while the control plane is
 * down), so a line carries no time of its own. Instead of copying every line into a journal with a
 * time (twice the disk, and every line through the control plane), the control plane keeps a small
 * index beside the file, `<file>.times`: one mark `<size> <mtime ms>[ ~]` each time it sees the
 * file grown (every `clockEveryMs`, 1 s), saying "the first <size> bytes were written by <mtime>".
 * A line's time is the mtime of the first mark at or past its end: never earlier than the write,
 * later by at most one tick. Bytes the control plane finds already there when it starts watching a
 * file it did not start (adopted after a restart: written while nobody watched) get a mark with
 * `~`: their time is an upper bound only, and the reader says so (approximate). The index is
 * rotated with its log (logfile.ts), and a log is also rotated when its index grows past a cap, so
 * both stay bounded.
 */
import { appendFile, readFile, stat, truncate } from 'node:fs/promises';
import { isErrno } from './liveness.js';

export interface TimeMark {
  /** Bytes of the file written by `time`. */
  size: number;
  /** Epoch ms: the file's mtime when it had (at least) this size. */
  time: number;
  /** Found on adoption: the bytes since the previous mark may be much older than `time`. */
  approx: boolean;
}

export function timesPath(file: string): string {
  return `${file}.times`;
}

/** The marks of a log file, in file order; a torn or foreign line is skipped. */
export async function readMarks(file: string): Promise<TimeMark[]> {
  let text: string;
  try {
    text = await readFile(timesPath(file), 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
  const marks: TimeMark[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+) (\d+)( ~)?$/.exec(line);
    if (!m) continue;
    const size = Number(m[1]);
    // Sizes only grow within one index: anything else is a leftover from before a truncation.
    if (marks.length > 0 && size <= marks.at(-1)!.size) continue;
    marks.push({ size, time: Number(m[2]), approx: m[3] !== undefined });
  }
  return marks;
}

/**
 * The time of the line ending at byte `end`: the first mark at or past it, else `fallback` (the
 * file's mtime: bytes past the last mark were written since, by mtime at the latest).
 */
export function timeAt(
  marks: TimeMark[],
  end: number,
  fallback: { time: number; approx: boolean },
): { time: number; approx: boolean } {
  let lo = 0;
  let hi = marks.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (marks[mid]!.size >= end) hi = mid;
    else lo = mid + 1;
  }
  const mark = marks[lo];
  return mark ? { time: mark.time, approx: mark.approx } : fallback;
}

/**
 * The byte offset from which lines may be as recent as `since`: the size of the last mark older
 * than it (every line ending at or before that offset was written before `since`).
 */
export function offsetSince(marks: TimeMark[], since: number): number {
  let offset = 0;
  for (const mark of marks) {
    if (mark.time >= since) break;
    offset = mark.size;
  }
  return offset;
}

/**
 * Keeps the `.times` index of the log files it is told about. `watch(file, fresh)`: a fresh file
 * (an instance this process just started) is timed from its first byte; any other (adopted) is
 * compared with its index on the first tick, and what grew meanwhile is marked approximate.
 */
export class LogClock {
  /** Size last marked per file; absent until the first tick of an adopted file. */
  private readonly marked = new Map<string, number | undefined>();

  watch(file: string, fresh: boolean): void {
    if (!this.marked.has(file) || fresh) this.marked.set(file, fresh ? 0 : undefined);
  }

  forget(file: string): void {
    this.marked.delete(file);
  }

  /** The file was just truncated by a rotation (its index went with the copy): time it afresh. */
  rotated(file: string): void {
    if (this.marked.has(file)) this.marked.set(file, 0);
  }

  /** Marks the file's size now if it grew since the last mark. */
  async tick(file: string): Promise<void> {
    let st: { size: number; mtimeMs: number };
    try {
      st = await stat(file);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    let last = this.marked.get(file);
    let approx = false;
    if (last === undefined) {
      // Adopted: pick up where the index ends; growth since was written while nobody watched.
      last = (await readMarks(file)).at(-1)?.size ?? 0;
      approx = st.size > last;
    }
    if (st.size < last) {
      // Truncated by someone else than our rotation: the old marks describe bytes that are gone.
      await truncate(timesPath(file), 0).catch((err: unknown) => {
        if (!isErrno(err, 'ENOENT')) throw err;
      });
      last = 0;
      approx = st.size > 0;
    }
    if (st.size > last) {
      await appendFile(timesPath(file), `${st.size} ${Math.round(st.mtimeMs)}${approx ? ' ~' : ''}\n`, {
        mode: 0o600,
      });
    }
    this.marked.set(file, st.size);
  }
}

/** The size of a file's index (0 when it has none): logfile.ts rotates a log whose index is too big. */
export async function timesSize(file: string): Promise<number> {
  try {
    return (await stat(timesPath(file))).size;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return 0;
    throw err;
  }
}
