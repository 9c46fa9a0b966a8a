/**
 * Config validation scales linearly: `parseConfig` on generated teal.yml files of 0.5, 1, 2 and 5 MB,
 * in two shapes (one mapping of many env keys, which yaml's own duplicate-key check made quadratic;
 * and many services), median of ROUNDS runs each, in one process so the figures compare.
 *   npm run bench:validate          (ROUNDS=3 by default)
 * Fails (exit 1) when 10x the size costs more than 25x the time, or 5 MB takes over 30 s (generous: the machine may be shared).
 * Writes its section of docs/benchmarks.md.
 */
import os from 'node:os';
import { parseConfig } from '../src/core/config/load.js';
import { machine, median, writeSection } from './report.js';

const rounds = Number(process.env.ROUNDS ?? 3);
const sizes = [0.5, 1, 2, 5];

/** One service whose env holds keys until the text is `mb` megabytes. */
function oneBigMapping(mb: number): string {
  const parts = ['services:\n  web:\n    command: [node, server.js]\n    env:\n'];
  let length = parts[0]!.length;
  for (let i = 0; length < mb * 2 ** 20; i++) {
    const line = `      KEY_${i}: value-${i}\n`;
    parts.push(line);
    length += line.length;
  }
  return parts.join('');
}

/** Services of 20 env keys each until the text is `mb` megabytes. */
function manyServices(mb: number): string {
  const parts = ['services:\n'];
  let length = parts[0]!.length;
  for (let i = 0; length < mb * 2 ** 20; i++) {
    const env = Array.from({ length: 20 }, (_, k) => `      K${k}: value-${k}\n`).join('');
    const block = `  s${i}:\n    command: [node, server.js]\n    routes: [{ path: /s${i} }]\n    env:\n${env}`;
    parts.push(block);
    length += block.length;
  }
  return parts.join('');
}

// A shared machine slows every row alike; the load says how far from an idle one the figures are.
const load = os.loadavg()[0]!.toFixed(1);
const rows: string[] = [];
let failed = false;
for (const [shape, generate] of [
  ['one mapping of many keys', oneBigMapping],
  ['many services', manyServices],
] as const) {
  const times = new Map<number, number>();
  for (const mb of sizes) {
    const text = generate(mb);
    const runs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      parseConfig(text, '/bench/teal.yml');
      runs.push(performance.now() - t0);
    }
    times.set(mb, median(runs));
    rows.push(`| ${shape} | ${mb} MB | ${median(runs).toFixed(0)} ms |`);
  }
  // The widest span, so a loaded machine's noise stays far from the bound: linear is 10x,
  // quadratic (what yaml's duplicate-key check was) 100x.
  const ratio = times.get(5)! / times.get(0.5)!;
  rows.push(`| ${shape} | 5 MB / 0.5 MB | ${ratio.toFixed(1)}x (linear: 10x) |`);
  if (ratio > 25 || times.get(5)! > 30_000) failed = true;
}

const markdown = `## Config validation

\`npm run bench:validate\`: \`parseConfig\` (what \`teal validate\` runs, without the process start) on
generated files, median of ${rounds}. Linear means 10x the size costs about 10x the time.

${machine()}; load average ${load} when it started. Most of the time is the yaml
library's parse; teal's own passes (bounds, locating problems, routes) add a few percent.

| shape | size | time |
|---|---|---|
${rows.join('\n')}
`;
console.log(markdown);
console.log(`wrote ${writeSection('validate', markdown)}`);
if (failed) {
  console.error('validation time grows faster than linearly (or 5 MB took over 30 s)');
  process.exit(1);
}
