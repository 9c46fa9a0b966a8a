import { TealError } from '../../core/errors.js';
import type { MapEntry } from './routing-map.js';

/**
 * Parsers for the answers of haproxy's `show ...` commands. Each takes the text haproxy sent and
 * returns plain data; an answer not in the expected shape throws TEAL_PROXY_FAILED quoting it.
 */

function malformed(command: string, text: string): never {
  throw new TealError(
    'TEAL_PROXY_FAILED',
    `haproxy answered "${command}" with something teal cannot read: ${text.slice(0, 200)}`,
    { command, answer: text.slice(0, 2000) },
  );
}

export interface HaproxyInfo {
  pid: number;
  /** Epoch seconds the process started: with the pid, tells a restarted haproxy (counters at zero). */
  startedAt: number;
  /** Requests and sessions created so far (the next one's `%rt` is at least this). */
  cumulativeRequests: number;
}

/** `show info`: `Name: value` lines. */
export function parseInfo(text: string): HaproxyInfo {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const num = (name: string) => {
    const v = Number(fields.get(name));
    if (fields.get(name) === undefined || !Number.isFinite(v)) malformed('show info', text);
    return v;
  };
  return { pid: num('Pid'), startedAt: num('Start_time_sec'), cumulativeRequests: num('CumReq') };
}

/** `show stat`: CSV under a `# pxname,svname,...` header; one record per proxy and server row. */
export function parseStat(text: string): Record<string, string>[] {
  const lines = text.split('\n').filter((l) => l.length > 0);
  const header = lines[0];
  if (!header?.startsWith('# pxname,')) malformed('show stat', text);
  const names = header.slice(2).split(',');
  return lines.slice(1).map((line) => {
    const values = line.split(',');
    const row: Record<string, string> = {};
    names.forEach((n, i) => {
      if (n !== '') row[n] = values[i] ?? '';
    });
    return row;
  });
}

export interface ServerState {
  backend: string;
  server: string;
  addr: string;
  port: number;
  /** srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping. */
  op: number;
  /** srv_admin_state flags: 0x01 forced maint, 0x02 inherited maint, 0x20 resolution maint, 0x08/0x10 drain. */
  admin: number;
}

export const ADMIN_MAINT = 0x01 | 0x02 | 0x20;
export const ADMIN_DRAIN = 0x08 | 0x10;

/** `show servers state`: a version line, a `# be_id be_name srv_id ...` header, space-separated rows. */
export function parseServersState(text: string): ServerState[] {
  const lines = text.split('\n').filter((l) => l.trim().length > 0);
  const header = lines.find((l) => l.startsWith('# '));
  if (lines[0]?.trim() !== '1' || !header) malformed('show servers state', text);
  const names = header.slice(2).trim().split(/\s+/);
  const col = (n: string) => {
    const i = names.indexOf(n);
    if (i < 0) malformed('show servers state', text);
    return i;
  };
  const [be, srv, addr, op, admin, port] = [
    col('be_name'),
    col('srv_name'),
    col('srv_addr'),
    col('srv_op_state'),
    col('srv_admin_state'),
    col('srv_port'),
  ];
  return lines
    .filter((l) => !l.startsWith('#') && l.trim() !== '1')
    .map((l) => {
      const f = l.trim().split(/\s+/);
      return {
        backend: f[be]!,
        server: f[srv]!,
        addr: f[addr]!,
        port: Number(f[port]),
        op: Number(f[op]),
        admin: Number(f[admin]),
      };
    });
}

/** `show map <map>`: `0x<ref> <key> <value>` lines. */
export function parseMap(text: string): MapEntry[] {
  const out: MapEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^0x[0-9a-f]+ (\S+) (.*)$/.exec(line);
    if (m) out.push({ key: m[1]!, value: m[2]! });
  }
  return out;
}

export interface RequestLine {
  /** haproxy's request counter (`%rt`): unique per process, in the order requests arrived. */
  rt: number;
  backend: string;
  status: number;
  /** From the request's head being read to its end, ms (microsecond resolution when known). */
  ms: number;
}

/**
 * `show events <ring>`: the base config's log lines, `%rt %b %ST %Ta <start us> <end us>`; the two
 * clocks are `-` for a request that ended before the frontend's rules ran, and `%Ta` (whole ms)
 * stands in. Anything else is skipped.
 */
export function parseRequestLines(text: string): RequestLine[] {
  const out: RequestLine[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+) (\S+) (-?\d+) (-?\d+)(?: (\d+|-) (\d+|-))?$/.exec(line.trim());
    if (!m) continue;
    const [start, end] = [Number(m[5]), Number(m[6])];
    const ms =
      Number.isFinite(start) && Number.isFinite(end) && end >= start ? (end - start) / 1000 : Number(m[4]);
    out.push({ rt: Number(m[1]), backend: m[2]!, status: Number(m[3]), ms });
  }
  return out;
}

/**
 * `show sess all`: per backend, the streams that are tunnels (an upgraded connection, a websocket
 * after its 101), which teal reports as open streams rather than requests in flight.
 */
export function tunnelsPerBackend(text: string): Map<string, number> {
  const out = new Map<string, number>();
  let backend: string | undefined;
  for (const line of text.split('\n')) {
    if (/^0x[0-9a-f]+: /.test(line)) backend = undefined;
    const be = /^\s+backend=(\S+) /.exec(line);
    if (be) backend = be[1];
    if (backend !== undefined && /^\s+txn=/.test(line) && /\b(req|rsp)\.st=MSG_TUNNEL\b/.test(line)) {
      out.set(backend, (out.get(backend) ?? 0) + 1);
      backend = undefined;
    }
  }
  return out;
}
