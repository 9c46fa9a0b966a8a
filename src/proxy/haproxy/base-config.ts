import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseCidr } from '../../core/config/cidr.js';
import { TealError } from '../../core/errors.js';

/**
 * The haproxy config teal needs for haproxy's first start. Nothing in it names a service, a route
 * or an address: routing lives in one map and upstream addresses in server slots, both changed at
 * runtime over the admin socket (switch.ts). So the same file serves any teal.yml, and a new
 * service, route or release never needs a reload; only outgrowing the lanes or server slots does.
 *
 * A request is routed in a frontend, in order:
 *   1. no table applied yet (the map has no `T` entry)           -> 503
 *   2. host + longest path prefix -> service (`R<host><path>/`)   -> 404 when none
 *   (on the public frontend, first: `/.teal/preview?grant=<id>` with a grant in the map (`G<id>`)
 *    sets the preview cookie and redirects, else 403; and a `teal_preview` cookie naming an
 *    unexpired grant of the request's own service routes to that slot, see step 3)
 *   3. on the preview frontend (`<prefix>_preview`, loopback by default) only:
 *      `X-Teal-Slot: blue|green` -> that slot's lane (`P<svc>/<slot>`) -> 404 when none;
 *      otherwise, and always on the public frontend, the live lane (`L<svc>`) -> 503 when none
 *   4. the lane backend (`<prefix>_lane_<n>`), whose servers teal set to the pool's endpoints.
 * Both frontends delete X-Teal-Slot before the request goes on.
 */

export interface BaseConfigOptions {
  /** Where users connect: `0.0.0.0:8080`, `127.0.0.1:8080`, `[::]:8080`. X-Teal-Slot is ignored there. */
  listen: string;
  /** The preview frontend's address, where X-Teal-Slot chooses the slot; none rendered when absent. */
  previewListen?: string;
  /** The admin socket (runtime API) the switch drives; rendered `level admin`, mode 600. */
  socket: string;
  /** The switch's state dir: haproxy loads the routes map and the server state from it at start. */
  stateDir: string;
  /** Backends ("lanes") to render; each holds one pool at a time. Default 16. */
  lanes?: number;
  /** Server slots per lane: the most endpoints one pool may have. Default 8. */
  serversPerLane?: number;
  /** Names every haproxy object teal renders and drives (frontend, `<prefix>_lane_<n>`, ring). Default `teal`. */
  prefix?: string;
  /** `proxy.trustedProxies`: peers (CIDRs) whose forwarded headers are kept. Default none. */
  trustedProxies?: readonly string[];
  /** Size of the in-memory ring the per-request log lines go to (latency source). Default 1 MiB. */
  ringBytes?: number;
  timeouts?: {
    connectMs?: number;
    /** Client and server inactivity. */
    idleMs?: number;
    /** Websockets and other upgraded connections, once established. */
    tunnelMs?: number;
    /** A client's whole request head. */
    requestMs?: number;
  };
}

export const DEFAULT_LANES = 16;
export const DEFAULT_SERVERS_PER_LANE = 8;
export const DEFAULT_PREFIX = 'teal';

/** The files in the state dir: haproxy reads the first two at start, teal owns the third. */
export function stateFiles(stateDir: string): { map: string; serverState: string; applied: string } {
  return {
    map: path.join(stateDir, 'routes.map'),
    serverState: path.join(stateDir, 'servers.state'),
    applied: path.join(stateDir, 'applied.json'),
  };
}

export function laneBackend(prefix: string, lane: number): string {
  return `${prefix}_lane_${lane}`;
}

/** 1-based, as `server-template` numbers its servers. */
export function serverName(slot: number): string {
  return `s${slot}`;
}

export function ringName(prefix: string): string {
  return `${prefix}_requests`;
}

/** The lane number of a backend name, or undefined when it is not one of this prefix's lanes. */
export function laneOf(prefix: string, backend: string): number | undefined {
  const head = `${prefix}_lane_`;
  if (!backend.startsWith(head)) return undefined;
  const n = Number(backend.slice(head.length));
  return Number.isInteger(n) && n >= 0 && String(n) === backend.slice(head.length) ? n : undefined;
}

const PREFIX = /^[A-Za-z][A-Za-z0-9_]{0,30}$/;
/** A path haproxy reads as one word: no whitespace, quotes, `#` or backslash. */
const CONFIG_WORD = /^[^\s"'#\\]+$/;

function refuse(what: string, value: unknown, expected: string): never {
  throw new TealError(
    'TEAL_CONFIG_INVALID',
    `haproxy base config: ${what} ${JSON.stringify(value)} cannot be rendered (expected ${expected})`,
    { field: what, value },
  );
}

function count(what: string, value: number | undefined, fallback: number, max: number): number {
  const n = value ?? fallback;
  if (!Number.isInteger(n) || n < 1 || n > max) refuse(what, value, `an integer from 1 to ${max}`);
  return n;
}

/** `host:port` as haproxy's `bind` reads it (IPv6 in brackets becomes `ipv6@addr:port`). */
function bindAddress(listen: string): string {
  const v6 = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(listen);
  if (v6) return `ipv6@${v6[1]}:${v6[2]}`;
  if (!/^[A-Za-z0-9.-]*:\d{1,5}$/.test(listen)) refuse('listen', listen, 'host:port or [ipv6]:port');
  return listen;
}

const ms = (value: number | undefined, fallback: number) => `${Math.max(1, Math.round(value ?? fallback))}ms`;

/**
 * The base config: global (admin socket, server state file), a ring for per-request log lines, one
 * frontend that routes through the map, and `lanes` backends of `serversPerLane` disabled server
 * slots each. Print it once, start haproxy with it; teal drives everything else at runtime.
 *
 * @example
 *   writeFileSync('/etc/haproxy/haproxy.cfg', renderBaseConfig({
 *     listen: '0.0.0.0:80', socket: '/run/haproxy/admin.sock', stateDir: '/var/lib/teal/haproxy' }));
 */
export function renderBaseConfig(options: BaseConfigOptions): string {
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (!PREFIX.test(prefix)) refuse('prefix', prefix, 'a letter then letters, digits or "_"');
  for (const [what, value] of [
    ['socket', options.socket],
    ['stateDir', options.stateDir],
  ] as const)
    if (!path.isAbsolute(value) || !CONFIG_WORD.test(value))
      refuse(what, value, 'an absolute path without spaces, quotes, "#" or "\\"');
  const lanes = count('lanes', options.lanes, DEFAULT_LANES, 1000);
  const servers = count('serversPerLane', options.serversPerLane, DEFAULT_SERVERS_PER_LANE, 1000);
  const ringBytes = count('ringBytes', options.ringBytes, 1 << 20, 1 << 30);
  const files = stateFiles(options.stateDir);
  const t = options.timeouts ?? {};
  const map = files.map;
  const found = (v: string) => `{ var(txn.${prefix}_${v}) -m found }`;
  const missing = (v: string) => `!${found(v)}`;
  const v = (name: string) => `txn.${prefix}_${name}`;
  const trusted = (options.trustedProxies ?? []).map((r, i) => {
    try {
      return parseCidr(r).text;
    } catch (err) {
      return refuse(
        `trustedProxies.${i}`,
        r,
        (err as Error).message.replace(/^expected /, '').replace(/, got .*$/, ''),
      );
    }
  });
  const unlessTrusted = trusted.length > 0 ? ` unless ${prefix}_trusted` : '';
  const absent = (h: string) => `!{ req.hdr(${h}) -m found }`;

  // Server slots are named by a host name only so that haproxy takes their address from the server
  // state file at start (`init-addr last`; a literal address would win over it); `.invalid` never
  // resolves, and without `libc` in init-addr haproxy never tries. 0.0.0.0 until teal sets one; the
  // placeholder port is not 0, which would make haproxy ignore the port the state file restores.
  const backends: string[] = [];
  for (let lane = 0; lane < lanes; lane++)
    backends.push(`backend ${laneBackend(prefix, lane)}
  # Empty: a request cut off before its response (a drain's timeout) closes without an answer.
  errorfile 502 /dev/null
  server-template s 1-${servers} unset.teal.invalid:1 disabled init-addr last,0.0.0.0
`);

  // The public frontend never reads X-Teal-Slot: any internet client could send it and reach the
  // release waiting at a gate, or the one a fix just replaced. The preview one (loopback) does.
  const frontend = (name: string, bind: string, preview: boolean) => {
    const slotRules = preview
      ? `  http-request set-var(${v('slot')}) req.hdr(x-teal-slot),lower if { req.hdr(x-teal-slot) -m found }
  http-request del-header x-teal-slot
  http-request set-var-fmt(${v('key')}) "P%[var(${v('svc')})]/%[var(${v('slot')})]" if ${found('slot')}
  http-request set-var-fmt(${v('key')}) "L%[var(${v('svc')})]" if ${missing('slot')}
  http-request set-var(${v('lane')}) var(${v('key')}),map_str(${map})
  http-request return status 404 content-type text/plain string "nothing running in that slot to preview" if ${found('slot')} ${missing('lane')}
`
      : `  # X-Teal-Slot means nothing here (the preview frontend honours it); it never reaches an app.
  http-request del-header x-teal-slot
  # A preview link's cookie: a grant in the map ("<svc>/<slot>/<expiry>"), unexpired, of this service.
  http-request set-var-fmt(${v('key')}) "G%[req.cook(teal_preview)]" if { req.cook(teal_preview) -m found }
  http-request set-var(${v('grant')}) var(${v('key')}),map_str(${map}) if { req.cook(teal_preview) -m found }
  http-request set-var(${v('gsvc')}) var(${v('grant')}),field(1,/) if ${found('grant')}
  http-request set-var(${v('gleft')}) var(${v('grant')}),field(3,/),sub(${v('now')}) if ${found('grant')}
  http-request unset-var(${v('grant')}) if ${found('grant')} !{ var(${v('gsvc')}),strcmp(${v('svc')}) eq 0 }
  http-request unset-var(${v('grant')}) if ${found('grant')} !{ var(${v('gleft')}) -m int gt 0 }
  http-request set-var-fmt(${v('key')}) "P%[var(${v('grant')}),field(1,/)]/%[var(${v('grant')}),field(2,/)]" if ${found('grant')}
  http-request set-var-fmt(${v('key')}) "L%[var(${v('svc')})]" if ${missing('grant')}
  http-request set-var(${v('lane')}) var(${v('key')}),map_str(${map})
`;
    // Preview links, answered by haproxy itself before routing; the grant id is echoed only once
    // it matched a map key exactly, so nothing a client sends reaches the header unchecked.
    const linkRules = preview
      ? ''
      : `  http-request set-var(${v('now')}) date
  http-request set-var-fmt(${v('key')}) "G%[url_param(grant)]" if { path /.teal/preview }
  http-request set-var(${v('link')}) var(${v('key')}),map_str(${map}) if { path /.teal/preview }
  http-request set-var(${v('lleft')}) var(${v('link')}),field(3,/),sub(${v('now')}) if ${found('link')}
  http-request return status 403 content-type text/plain string "this preview link is not valid, or has expired" hdr Cache-Control no-store if { path /.teal/preview } !{ var(${v('lleft')}) -m int gt 0 }
  http-request return status 302 hdr Location / hdr Set-Cookie "teal_preview=%[url_param(grant)]; Path=/; Max-Age=%[var(${v('lleft')})]; HttpOnly; SameSite=Lax" hdr Cache-Control no-store if { path /.teal/preview }
`;
    return `frontend ${name}
  bind ${bindAddress(bind)}
  log ring@${ringName(prefix)} format raw local0 info
  # One line per request for teal's latency numbers: counter, lane, status, and the time from its
  # head being read to its end in microseconds (%Ta has whole milliseconds only).
  log-format "%rt %b %ST %Ta %[var(${v('t0')})] %[date(0,us)]"
  http-request set-var(${v('t0')}) date(0,us)
  # Forwarded headers are believed only from trustedProxies; from anyone else they are replaced
  # with what haproxy saw (option forwardfor then appends the peer to what is left).
${trusted.length > 0 ? `  acl ${prefix}_trusted src ${trusted.join(' ')}\n` : ''}  http-request del-header X-Forwarded-For${unlessTrusted}
  http-request del-header X-Forwarded-Proto${unlessTrusted}
  http-request del-header X-Forwarded-Host${unlessTrusted}
  http-request del-header X-Real-IP${unlessTrusted}
  http-request del-header Forwarded${unlessTrusted}
  option forwardfor
  http-request set-header X-Real-IP %[src] if ${absent('x-real-ip')}
  http-request set-header X-Forwarded-Proto http if ${absent('x-forwarded-proto')}
  http-request set-header X-Forwarded-Host %[req.hdr(host)] if { req.hdr(host) -m found } ${absent('x-forwarded-host')}
  http-request set-header X-Request-Id %[uuid] unless { req.hdr(x-request-id) -m found }
  http-request set-var(${v('rev')}) str(T),map_str(${map})
  http-request return status 503 content-type text/plain string "no routing table has been applied yet" if ${missing('rev')}
${linkRules}  # Host without port or trailing dot, lower-cased; then the longest "<host><path>/" prefix wins.
  http-request set-var(${v('host')}) req.hdr(host),lower,regsub(:[0-9]*$,),regsub([.]$,)
  http-request set-var-fmt(${v('key')}) "R%[var(${v('host')})]%[path]/"
  http-request set-var(${v('svc')}) var(${v('key')}),map_beg(${map})
  http-request set-var-fmt(${v('key')}) "R*%[path]/" if ${missing('svc')}
  http-request set-var(${v('svc')}) var(${v('key')}),map_beg(${map}) if ${missing('svc')}
  http-request return status 404 content-type text/plain string "no route" if ${missing('svc')}
${slotRules}  http-request return status 503 content-type text/plain string "the service has no live release" if ${missing('lane')}
  use_backend %[var(${v('lane')})]
`;
  };
  const frontends = [frontend(prefix, options.listen, false)];
  if (options.previewListen !== undefined) {
    if (options.previewListen === options.listen)
      refuse('previewListen', options.previewListen, 'an address other than listen');
    frontends.push(frontend(`${prefix}_preview`, options.previewListen, true));
  }

  return `# haproxy base config rendered by teal. Routing (${map}) and server addresses are set at
# runtime over the admin socket; edit nothing below by hand, re-render it instead.
global
  stats socket ${options.socket} mode 600 level admin expose-fd listeners
  stats timeout 2m
  # Written by teal after every change, so a restarted haproxy serves the last applied table.
  server-state-file ${files.serverState}

ring ${ringName(prefix)}
  description "teal: one line per request (latency per pool)"
  format raw
  maxlen 256
  size ${ringBytes}

defaults
  mode http
  load-server-state-from-file global
  balance leastconn
  timeout connect ${ms(t.connectMs, 5_000)}
  timeout client ${ms(t.idleMs, 60_000)}
  timeout server ${ms(t.idleMs, 60_000)}
  timeout tunnel ${ms(t.tunnelMs, 3_600_000)}
  timeout http-request ${ms(t.requestMs, 10_000)}
  timeout http-keep-alive ${ms(t.idleMs, 60_000)}
  timeout client-fin 5s
  # A connection refused by one endpoint is retried once, on another (after a 1 s pause when the
  # pool has only that one). Only connection failures: a request retried after part of it reached
  # the app could run twice, and one a drain cut off must stay cut off.
  retries 1
  option redispatch 1

${frontends.join('\n')}
${backends.join('\n')}`;
}

/**
 * Creates the state dir, an empty routes map and an empty server state file where there are none:
 * haproxy refuses to start when a map file its config names is missing. Existing files are left
 * alone (they hold the last applied table).
 */
export async function prepareStateDir(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  const files = stateFiles(stateDir);
  for (const [file, empty] of [
    [files.map, ''],
    [files.serverState, '1\n'],
  ] as const) {
    try {
      await writeFile(file, empty, { flag: 'wx', mode: 0o644 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}
