/**
 * One JSON line per event on stdout (start, apply, drain, errors): never one per request that went
 * well. A request the data plane could not forward (the upstream refused, reset or timed out) is an
 * `upstream_error` line with its request id, at most `UPSTREAM_ERRORS_PER_SECOND` a second.
 */
export type EventLog = (event: string, fields?: Record<string, unknown>) => void;

export function jsonLines(write: (line: string) => void): EventLog {
  return (event, fields) => {
    write(`${JSON.stringify({ time: new Date().toISOString(), event, ...fields })}\n`);
  };
}

export const silent: EventLog = () => undefined;

/** A dead instance under load fails every request: the log keeps up to this many a second. */
export const UPSTREAM_ERRORS_PER_SECOND = 20;

/**
 * `log` with at most `perSecond` lines a second for `event`; the next line after a full second says
 * how many were left out (`suppressed`).
 */
export function limited(log: EventLog, perSecond: number, now: () => number = Date.now): EventLog {
  let second = 0;
  let count = 0;
  let suppressed = 0;
  return (event, fields) => {
    const t = Math.floor(now() / 1000);
    if (t !== second) {
      second = t;
      count = 0;
    }
    if (count >= perSecond) {
      suppressed++;
      return;
    }
    count++;
    log(event, suppressed > 0 ? { ...fields, suppressed } : fields);
    suppressed = 0;
  };
}
