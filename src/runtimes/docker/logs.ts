/**
 * A container's output as lines. The engine sends the logs of a container without a TTY (teal
 * never asks for one) multiplexed: each frame is an 8-byte header (stream type: 1 stdout,
 * 2 stderr; three zero bytes; the payload length, big-endian uint32) and then the payload. A frame
 * is a write, not a line, so each stream keeps its own unfinished line: a partial stdout line is
 * never glued to a stderr one.
 */
import type { Readable } from 'node:stream';
import { LineSplitter } from '../log-reader.js';

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

/**
 * The lines of a multiplexed logs response, in the order the engine sends them. Ends quietly when
 * `signal` aborts; an unfinished last line of each stream comes out when the response ends.
 */
export async function* demuxLines(res: Readable, signal: AbortSignal): AsyncGenerator<string> {
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
      for (const frame of frames.push(chunk as Buffer)) yield* linesOf(frame.stream).push(frame.payload);
    }
  } catch (err) {
    if (signal.aborted) return;
    throw err;
  } finally {
    res.destroy();
  }
  for (const lines of streams.values()) yield* lines.end();
}
