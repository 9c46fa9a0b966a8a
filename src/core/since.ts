import { isDuration, parseDuration } from './config/duration.js';

/**
 * `--since` (and the logs API's `since`): a duration back from now ("10m", "1h30m") or a time
 * ("2026-05-01T12:00:00Z"; without a zone, the local time of the machine that parses it). Returns
 * epoch ms; throws a message saying what was expected.
 */
export function parseSince(text: string, now = Date.now()): number {
  if (isDuration(text)) return now - parseDuration(text);
  const time = /^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?)?$/.test(text)
    ? Date.parse(text)
    : Number.NaN;
  if (!Number.isFinite(time))
    throw new Error(
      `expected a duration like "10m" or a time like "2026-05-01T12:00:00Z", got ${JSON.stringify(text)}`,
    );
  return time;
}
