import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isTealError } from '../errors.js';
import { loadConfig, type Problem, parseConfig } from './load.js';
import { LIMITS } from './yaml-bounds.js';

function refused(read: () => unknown): Problem[] {
  try {
    read();
  } catch (err) {
    if (isTealError(err, 'TEAL_CONFIG_INVALID')) return (err.details as { problems: Problem[] }).problems;
    throw err;
  }
  throw new Error('expected the config to be refused');
}

const FILE = '/srv/app/teal.yml';
const problemsOf = (text: string) => refused(() => parseConfig(text, FILE));

const tmp = mkdtempSync(path.join(tmpdir(), 'teal-bounds-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const service = 'services:\n  web:\n    command: [node, server.js]\n';

/** The classic billion laughs: nine levels of nine aliases each, 9^9 strings once expanded. */
const billionLaughs = [
  'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
  ...'bcdefghi'.split('').map((name, i) => `${name}: &${name} [${Array(9).fill(`*${'abcdefghi'[i]}`)}]`),
  service,
].join('\n');

/** Services sharing one env block through an alias, the way anchors are meant to be used. */
function sharedEnv(count: number): string {
  const lines = ['services:'];
  for (let i = 0; i < count; i++) {
    lines.push(`  s${i}:`, '    command: [node, server.js]', `    routes: [{ path: /s${i} }]`);
    lines.push(i === 0 ? '    env: &common { NODE_ENV: production, LOG: info }' : '    env: *common');
  }
  return `${lines.join('\n')}\n`;
}

describe('reading a teal.yml costs time and memory in proportion to its size', () => {
  it('refuses a billion-laughs alias bomb at the alias that crosses the bound, with its line', () => {
    const started = Date.now();
    const problems = problemsOf(billionLaughs);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(problems).toEqual([
      {
        file: FILE,
        line: 6,
        column: 8,
        path: '',
        message: `YAML syntax: aliases expand to more than ${LIMITS.aliasNodes} values (an alias bomb?)`,
      },
    ]);
  });

  it('reads anchors and aliases used the honest way, even two hundred times over', () => {
    const { config } = parseConfig(sharedEnv(200), FILE);
    expect(Object.keys(config.services)).toHaveLength(200);
    expect(config.services.s199!.env).toEqual({ NODE_ENV: 'production', LOG: 'info' });
  });

  it('refuses more aliases than the bound, and aliases that name no anchor or their own', () => {
    expect(problemsOf(sharedEnv(LIMITS.aliases + 2))).toContainEqual(
      expect.objectContaining({ message: `YAML syntax: more than ${LIMITS.aliases} aliases (*name)` }),
    );
    expect(problemsOf(`${service}    env: *nowhere\n`)).toEqual([
      expect.objectContaining({
        line: 4,
        message: 'YAML syntax: alias *nowhere names no anchor &nowhere before it',
      }),
    ]);
    expect(problemsOf(`${service}    args: &loop [a, *loop]\n`)).toEqual([
      expect.objectContaining({
        line: 4,
        message: 'YAML syntax: alias *loop is inside its own anchor &loop',
      }),
    ]);
  });

  it('refuses nesting deeper than the bound, flow or block, without parsing the rest', () => {
    const depth = 2_000_000;
    const started = Date.now();
    const flow = problemsOf(`${service}    env: ${'['.repeat(depth)}${']'.repeat(depth)}\n`);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(flow).toEqual([
      expect.objectContaining({
        line: 4,
        column: 10 + LIMITS.depth,
        message: `YAML syntax: nested more than ${LIMITS.depth} levels deep (a teal.yml needs about 8)`,
      }),
    ]);
    const block = problemsOf(`${service}    env:\n      ${'- '.repeat(LIMITS.depth + 5)}x\n`);
    expect(block).toEqual([
      expect.objectContaining({ line: 5, message: expect.stringMatching(/nested more than/) }),
    ]);
  });

  it('finds a duplicate key in a mapping of 100k keys, in linear time', () => {
    const keys = Array.from({ length: 100_000 }, (_, i) => `      K${i}: v${i}\n`);
    keys.push('      K500: again\n');
    const started = Date.now();
    const problems = problemsOf(`${service}    env:\n${keys.join('')}`);
    // Quadratic duplicate checks took over 30 s here; the bound is generous for a loaded machine.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(problems).toEqual([
      { file: FILE, line: 100_005, column: 7, path: '', message: 'YAML syntax: Map keys must be unique' },
    ]);
  });

  it('locates each of many problems in a large file in linear time', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `    colour${i}: blue\n`);
    const started = Date.now();
    const problems = problemsOf(`${service}${keys.join('')}`);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(problems).toHaveLength(20_000);
    expect(problems[19_999]).toMatchObject({ line: 20_003, column: 5, path: 'services.web.colour19999' });
  });

  it('refuses a file over the size bound before reading it, and what is not a regular file', () => {
    const big = path.join(tmp, 'big.yml');
    writeFileSync(big, `${service}${'#'.repeat(LIMITS.bytes)}\n`);
    expect(refused(() => loadConfig(big))).toEqual([
      { file: big, path: '', message: 'is 10.0 MB, over the 10.0 MB a teal.yml may be' },
    ]);
    expect(refused(() => loadConfig('/dev/zero'))).toEqual([
      { file: '/dev/zero', path: '', message: 'is not a regular file (teal reads teal.yml whole)' },
    ]);
  });

  it('says a file holds one document only', () => {
    expect(problemsOf(`${service}---\nservices: {}\n`)).toEqual([
      expect.objectContaining({ line: 4, message: 'YAML syntax: one document only, no ---' }),
    ]);
  });
});
