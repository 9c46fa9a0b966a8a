/** Output helpers shared by the verbs: colour only on a terminal (and never with NO_COLOR). */

import { jsonText } from '../core/visible.js';

const useColor = (stream: NodeJS.WriteStream) =>
  Boolean(stream.isTTY) && !process.env.NO_COLOR && process.env.TERM !== 'dumb';

export function paint(stream: NodeJS.WriteStream) {
  const on = useColor(stream);
  const wrap = (code: number) => (text: string) => (on ? `\x1b[${code}m${text}\x1b[0m` : text);
  return {
    green: wrap(32),
    red: wrap(31),
    yellow: wrap(33),
    blue: wrap(34),
    cyan: wrap(36),
    dim: wrap(2),
    bold: wrap(1),
  };
}

/** `--json` prints one document and nothing else on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${jsonText(value, 2)}\n`);
}

/** Left-aligned columns, two spaces apart. */
export function table(rows: string[][]): string {
  const width = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '').length;
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, width(cell));
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat(widths[i]! - width(cell))))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A deployment's state, coloured by outcome: done green, failed or interrupted red, running cyan. */
export function outcome(c: ReturnType<typeof paint>, state: string): string {
  if (state === 'done') return c.green(state);
  return state === 'failed' || state === 'interrupted' || state === 'rolled_back'
    ? c.red(state)
    : c.cyan(state);
}

export function ago(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const s = Math.round((now - Date.parse(iso)) / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86_400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86_400)}d ago`;
}
