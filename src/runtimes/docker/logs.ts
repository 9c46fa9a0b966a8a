/**
 * A container's output as lines. The engine sends the logs of a container without a TTY (teal
 * never asks for one) multiplexed: each frame is an 8-byte header (stream type: 1 stdout,
 * 2 stderr; three zero bytes; the payload length, big-endian uint32) and then the payload. A frame
 * is a write, not a line, so each stream keeps its own unfinished line: a partial stdout line is
 * never glued to a stderr one. Asked with `timestamps`, the engine starts every line with the time
 * its logging driver received it (RFC 3339, nanoseconds, UTC), which `timedLine` takes off.
 */
import type { Readable } from 'node:stream';
import { LineSplitter } from '../log-reader.js';
import type { LogLine } from '../runtime.js';

const HEADER = 8;

export interface Frame {
  /** 0 stdin, 1 stdout, 2 stderr. */
  stream: number;
  payload: Buffer;
}

/** Splits a multiplexed byte stream into frames, however its chunks happen to be cut. */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Frame[] = [];
    while (this.pending.length >= HEADER) {
      const size = this.pending.readUInt32BE(4);
      if (this.pending.length < HEADER + size) break;
      frames.push({ stream: this.pending[0]!, payload: this.pending.subarray(HEADER, HEADER + size) });
      this.pending = this.pending.subarray(HEADER + size);
    }
    return frames;
  }
}

export interface StreamLine {
  /** 1 stdout, 2 stderr. */
  stream: number;
  line: string;
}

/**
 * The lines of a multiplexed logs response, in the order the engine sends them. Ends quietly when
 * `signal` aborts; an unfinished last line of each stream comes out when the response ends.
 */
export async function* demuxLines(res: Readable, signal: AbortSignal): AsyncGenerator<StreamLine> {
  const frames = new FrameReader();
  const streams = new Map<number, LineSplitter>();
  const linesOf = (stream: number) => {
    let lines = streams.get(stream);
    if (!lines) {
      lines = new LineSplitter();
      streams.set(stream, lines);
    }
    return lines;
  };
  try {
    for await (const chunk of res) {
      for (const frame of frames.push(chunk as Buffer)) {
        for (const line of linesOf(frame.stream).push(frame.payload)) yield { stream: frame.stream, line };
      }
    }
  } catch (err) {
    if (signal.aborted) return;
    throw err;
  } finally {
    res.destroy();
  }
  for (const [stream, lines] of streams) for (const line of lines.end()) yield { stream, line };
}

const STAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) /;

/** A line of a `timestamps` response as a LogLine: the engine's time taken off its start. */
export function timedLine({ stream, line }: StreamLine, now = Date.now()): LogLine {
  const out: LogLine = { line, time: now };
  const stamp = STAMP.exec(line);
  const time = stamp ? Date.parse(stamp[1]!) : Number.NaN;
  if (stamp && Number.isFinite(time)) {
    out.line = line.slice(stamp[0].length);
    out.time = time;
  } else {
    out.approx = true; // no stamp of the engine's: the time we read it
  }
  if (stream === 1) out.stream = 'stdout';
  else if (stream === 2) out.stream = 'stderr';
  return out;
}
