import { checkRouteHost, checkRoutePath } from '../../core/config/route.js';
import { TealError } from '../../core/errors.js';

/**
 * Every value teal puts into nginx's config passes one of these checks first. nginx reads `;`, `{`,
 * `}`, quotes, `#`, `$` and whitespace as syntax, so a value holding one could end a directive and
 * start another (a route path `/a; } server { ...`). Rather than escape into nginx's quoting rules,
 * a value must be made only of characters that are never syntax; anything else is refused, naming
 * the value, before a file is touched.
 */

function refuse(what: string, value: unknown, expected: string): never {
  throw new TealError(
    'TEAL_PROXY_FAILED',
    `refusing to render nginx config: ${what} ${JSON.stringify(value)} is not safe to write into it (expected ${expected})`,
    { field: what, value },
  );
}

const SERVICE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const POOL_ID = /^[A-Za-z0-9][A-Za-z0-9_./-]{0,200}$/;
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** Characters a route path may hold: RFC 3986 path characters that nginx never reads as syntax. */
const PATH = /^\/[A-Za-z0-9._~!*+,:@=&/-]*$/;
const VERSION = /^[A-Za-z0-9._+:~@/-]{0,128}$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

/** A preview grant's id: exactly what teal makes (core/previews.ts), nothing nginx could read as syntax. */
export function grantId(value: unknown, what: string): string {
  if (typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value))
    refuse(what, value, '64 lower-case hex digits');
  return value;
}

export function serviceName(value: unknown, what = 'service name'): string {
  if (typeof value !== 'string' || !SERVICE.test(value))
    refuse(what, value, 'letters, digits, ".", "_" and "-", starting with a letter or digit');
  return value;
}

export function poolIdOf(value: unknown, what: string): string {
  if (typeof value !== 'string' || !POOL_ID.test(value) || value.includes('//'))
    refuse(what, value, 'a pool id like web/blue/r3');
  return value;
}

/** A DNS name or IPv4 address, lower-cased, without a trailing dot. */
export function hostName(value: unknown, what: string): string {
  const host = typeof value === 'string' ? value.toLowerCase().replace(/\.$/, '') : '';
  if (host.length === 0 || host.length > 253 || !host.split('.').every((l) => LABEL.test(l)))
    refuse(what, value, 'a host name of letters, digits, "-" and "."');
  return host;
}

/** A route's host, by the rules every proxy kind shares (core/config/route.ts), in its normal form. */
export function routeHost(value: unknown, what: string): string {
  const checked = typeof value === 'string' ? checkRouteHost(value) : undefined;
  if (!checked?.ok) refuse(what, value, checked?.rule ?? 'a host name');
  return hostName(checked.value, what);
}

/** A route's path prefix, by the shared rules: `/api/` and `/api` are the same prefix; `/` stays `/`. */
export function routePath(value: unknown, what: string): string {
  const checked = typeof value === 'string' ? checkRoutePath(value) : undefined;
  if (!checked?.ok) refuse(what, value, checked?.rule ?? 'a path prefix starting with "/"');
  // Defence in depth: the shared rules already keep nginx's syntax characters out.
  if (!PATH.test(checked.value))
    refuse(what, value, 'a path starting with "/" made of letters, digits and ._~!*+,:@=&/-');
  return checked.value;
}

export function version(value: unknown, what: string): string {
  if (typeof value !== 'string' || !VERSION.test(value))
    refuse(what, value, 'up to 128 letters, digits and ._+:~@/-');
  return value;
}

export function integer(value: unknown, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    refuse(what, value, `an integer from ${min} to ${max}`);
  return value;
}

/** `host:port` as nginx writes it in `server` and `listen`: IPv6 in brackets. */
export function address(host: unknown, port: unknown, what: string): string {
  const p = integer(port, `${what} port`, 1, 65535);
  if (typeof host === 'string' && host.includes(':')) {
    const bare = host.replace(/^\[(.*)\]$/, '$1');
    if (!IPV6.test(bare)) refuse(`${what} host`, host, 'an IPv6 address');
    return `[${bare}]:${p}`;
  }
  return `${hostName(host, `${what} host`)}:${p}`;
}

/** The `listen` option: `host:port`, `[v6]:port` or a bare port. */
export function listenAddress(value: unknown): string {
  if (typeof value === 'string') {
    if (/^\d+$/.test(value)) return String(integer(Number(value), 'listen port', 1, 65535));
    const m = /^(\[[^\]]*\]|[^:]+):(\d+)$/.exec(value);
    if (m) return address(m[1], Number(m[2]), 'listen');
  }
  return refuse('listen', value, '"host:port"');
}

/** An absolute file path nginx is given (the access log): no spaces or syntax characters. */
export function filePath(value: string, what: string): string {
  if (!/^\/[A-Za-z0-9._@+~/-]*$/.test(value))
    refuse(what, value, 'an absolute path of letters, digits and ._@+~/-');
  return value;
}
