/**
 * Durations in teal.yml are strings with units ("250ms", "2s", "1m30s", "10m", "1h"), never bare
 * numbers: a bare 30 could mean seconds or milliseconds, and guessing wrong drains for 30 ms.
 */

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** The pattern the schema checks and the JSON Schema carries, so editors flag bad values too. */
export const DURATION_PATTERN = '^(\\d+(\\.\\d+)?(ms|s|m|h))+$';
const WHOLE = new RegExp(DURATION_PATTERN);
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;

export function isDuration(text: string): boolean {
  return WHOLE.test(text);
}

/** Milliseconds in a duration string; throws on anything `isDuration` rejects. */
export function parseDuration(text: string): number {
  if (!isDuration(text)) throw new Error(`expected a duration like "2s", got ${JSON.stringify(text)}`);
  let total = 0;
  for (const [, amount, unit] of text.matchAll(PART)) {
    total += Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS];
  }
  return Math.round(total);
}

/** A short human form for output: 850ms, 2.4s, 3m05s. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1000);
  if (minutes < 60) return `${minutes}m${String(seconds).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}
