import { describe, expect, it } from 'vitest';
import { jsonText, visible, visibleDeep } from './visible.js';

describe('visible', () => {
  it('escapes every control a terminal acts on, and keeps newline, tab and ordinary text', () => {
    expect(visible('a\x1b]0;t\x07b\x1b[2Jc')).toBe('a\\x1b]0;t\\x07b\\x1b[2Jc');
    expect(visible('over\rwrite\b\0')).toBe('over\\rwrite\\b\\0');
    expect(visible('\u009b31m \u202eevil \x7f')).toBe('\\x9b31m \\u202eevil \\x7f');
    expect(visible('line 1\n\tline 2 é ✓ 日本')).toBe('line 1\n\tline 2 é ✓ 日本');
    for (let code = 0; code < 0x20; code++) {
      const ch = String.fromCharCode(code);
      if (ch !== '\n' && ch !== '\t') expect(visible(ch)).not.toContain(ch);
    }
  });

  it('reaches every string of a decoded value, keys too', () => {
    expect(visibleDeep({ 'k\x1b': ['\x07', 1, null, { m: 'x\x1b[2J' }] })).toEqual({
      'k\\x1b': ['\\x07', 1, null, { m: 'x\\x1b[2J' }],
    });
  });

  it('jsonText is the same JSON, with C1 and bidi controls escaped too', () => {
    const value = { m: '\x1b\u009b\u202e ok' };
    const text = jsonText(value);
    expect(text).toBe('{"m":"\\u001b\\u009b\\u202e ok"}');
    expect(JSON.parse(text)).toEqual(value);
  });
});
