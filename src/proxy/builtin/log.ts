/** One JSON line per event on stdout (start, apply, drain, errors): never one per request. */
export type EventLog = (event: string, fields?: Record<string, unknown>) => void;

export function jsonLines(write: (line: string) => void): EventLog {
  return (event, fields) => {
    write(`${JSON.stringify({ time: new Date().toISOString(), event, ...fields })}\n`);
  };
}

export const silent: EventLog = () => undefined;
