import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { demuxLines, FrameReader, timedLine } from './logs.js';

function frame(stream: number, text: string): Buffer {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

async function linesOf(chunks: Buffer[], signal = new AbortController().signal): Promise<string[]> {
  const lines: string[] = [];
  for await (const { line } of demuxLines(Readable.from(chunks), signal)) lines.push(line);
  return lines;
}

describe('container log frames', () => {
  it('reads frames however the chunks cut them, headers included', () => {
    const bytes = Buffer.concat([frame(1, 'one\n'), frame(2, 'two\n'), frame(1, '')]);
    const reader = new FrameReader();
    const frames = [...bytes].flatMap((byte) => reader.push(Buffer.from([byte])));
    expect(frames.map((f) => [f.stream, f.payload.toString()])).toEqual([
      [1, 'one\n'],
      [2, 'two\n'],
      [1, ''],
    ]);
  });

  it('yields lines in order, keeping each stream’s unfinished line apart from the other’s', async () => {
    const chunks = [
      frame(1, 'out par'),
      frame(2, 'err line\n'),
      frame(1, 'tial\nnext\n'),
      frame(2, 'no newline'),
    ];
    expect(await linesOf(chunks)).toEqual(['err line', 'out partial', 'next', 'no newline']);
  });

  it('keeps a UTF-8 character split across frames whole', async () => {
    const bytes = Buffer.from('café ☕\n');
    const chunks = [bytes.subarray(0, 4), bytes.subarray(4, 6), bytes.subarray(6)].map((part) => {
      const header = Buffer.alloc(8);
      header[0] = 1;
      header.writeUInt32BE(part.length, 4);
      return Buffer.concat([header, part]);
    });
    expect(await linesOf(chunks)).toEqual(['café ☕']);
  });

  it('takes the engine’s timestamp off each line and names its stream', async () => {
    const chunks = [
      frame(1, '2026-12-04T18:12:22.123456789Z hello v1 listening\n'),
      frame(2, '2026-12-04T18:12:23.5Z oops\n'),
    ];
    const lines: ReturnType<typeof timedLine>[] = [];
    for await (const l of demuxLines(Readable.from(chunks), new AbortController().signal))
      lines.push(timedLine(l));
    expect(lines).toEqual([
      { line: 'hello v1 listening', time: Date.parse('2026-12-04T18:12:22.123Z'), stream: 'stdout' },
      { line: 'oops', time: Date.parse('2026-12-04T18:12:23.500Z'), stream: 'stderr' },
    ]);
    // A line without the engine's stamp keeps its text and gets the time it was read, marked so.
    expect(timedLine({ stream: 1, line: 'plain' }, 42)).toEqual({
      line: 'plain',
      time: 42,
      approx: true,
      stream: 'stdout',
    });
  });
});
