import { describe, expect, it } from 'vitest';
import { limited } from './log.js';

describe('the data plane log', () => {
  it('keeps at most n lines a second of an event, and says how many it left out', () => {
    const lines: [string, Record<string, unknown> | undefined][] = [];
    let now = 10_000;
    const log = limited(
      (event, fields) => lines.push([event, fields]),
      2,
      () => now,
    );
    for (let i = 0; i < 5; i++) log('upstream_error', { requestId: `r${i}` });
    expect(lines.map(([, f]) => f?.requestId)).toEqual(['r0', 'r1']);
    now += 1000;
    log('upstream_error', { requestId: 'r5' });
    log('upstream_error', { requestId: 'r6' });
    expect(lines.slice(2).map(([, f]) => f)).toEqual([
      { requestId: 'r5', suppressed: 3 },
      { requestId: 'r6' },
    ]);
  });
});
