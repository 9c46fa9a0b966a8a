import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../src/paths.js';

/** The machine a benchmark ran on, for the report: results only compare within one run. */
export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} x ${cpu.trim()}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.type()} ${os.release()}`;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Replaces one benchmark's section of docs/benchmarks.md (between its markers), leaving the other
 * benchmarks' sections as they were.
 */
export function writeSection(name: string, markdown: string): string {
  const file = path.join(packageRoot(), 'docs', 'benchmarks.md');
  mkdirSync(path.dirname(file), { recursive: true });
  const begin = `<!-- bench:${name}:begin -->`;
  const end = `<!-- bench:${name}:end -->`;
  const block = `${begin}\n${markdown.trim()}\n${end}`;
  let text = existsSync(file)
    ? readFileSync(file, 'utf8')
    : '# Benchmarks\n\nWritten by `npm run bench`; each section by its own benchmark. Figures compare only within one run.\n';
  const at = text.indexOf(begin);
  const stop = text.indexOf(end);
  text =
    at >= 0 && stop > at
      ? text.slice(0, at) + block + text.slice(stop + end.length)
      : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, text);
  return file;
}

/** One GET /health on the loopback port: true when it answers 200 (a process or container ready). */
export function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/health', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
  });
}
