import { domainToASCII } from 'node:url';

/**
 * What a route's host and path prefix may be: one set of rules for every proxy kind. teal.yml's
 * schema applies them (so `teal validate` refuses what any data plane would), and the builtin
 * router, the nginx renderer and the haproxy map all receive the same normal form. The renderers
 * call these again before writing a value into a config, beside their own escaping checks.
 *
 * Host: a DNS name (RFC 1123 labels: letters, digits and inner "-", 63 per label, 253 in all) or
 * an IPv4 address. Matched case-insensitively and without a trailing dot (RFC 3986 3.2.2, and what
 * all three data planes do to a request's Host), so both are normalised away here. An
 * internationalised name is turned into its punycode (xn--) form, which is what clients send.
 * No port (routes match the Host without its port), no wildcard (no data plane here matches one),
 * no IPv6 literal (nginx's server_name and the haproxy map would each need their own form).
 *
 * Path: a prefix starting with "/", at most 1024 characters of the RFC 3986 path characters that
 * are never syntax in an nginx or haproxy config: letters, digits and ._~!*+,:@=&/-. No "%": nginx
 * matches the decoded path while haproxy and the builtin router match the raw one, so an encoded
 * prefix would route differently per kind. No empty, "." or ".." segment: nginx normalises the
 * request's path first, so such a prefix would never match there. Trailing slashes are dropped
 * (`/api/` and `/api` are one prefix).
 */

export const ROUTE_LIMITS = { host: 253, label: 63, path: 1024 } as const;

export type Checked = { ok: true; value: string } | { ok: false; rule: string };

const LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const PATH_CHARS = /^[A-Za-z0-9._~!*+,:@=&/-]*$/;

const refused = (rule: string): Checked => ({ ok: false, rule });

/** The normal form of a route's host, or the rule it breaks. */
export function checkRouteHost(value: string): Checked {
  if (value.length === 0) return refused('a host name, not an empty string');
  if (value.includes('*')) return refused('a host name without wildcards (list each host)');
  if (value.startsWith('[') || (value.match(/:/g)?.length ?? 0) > 1)
    return refused('a DNS name or an IPv4 address (not an IPv6 address)');
  if (value.includes(':'))
    return refused('a host name without a port (routes match the Host header without its port)');
  let host = /^[\x00-\x7f]*$/.test(value) ? value : domainToASCII(value);
  if (host === '') return refused('a host name whose internationalised form has a punycode (xn--) form');
  host = host.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.length > ROUTE_LIMITS.host)
    return refused(`a host name of at most ${ROUTE_LIMITS.host} characters`);
  for (const label of host.split('.')) {
    if (label.length === 0) return refused('a host name without empty labels (no "..", no leading ".")');
    if (label.length > ROUTE_LIMITS.label)
      return refused(`a host name whose labels have at most ${ROUTE_LIMITS.label} characters`);
    if (!LABEL.test(label))
      return refused(
        'a host name of letters, digits, "-" and "." (a label neither starts nor ends with "-")',
      );
  }
  return { ok: true, value: host };
}

/** The normal form of a route's path prefix, or the rule it breaks. */
export function checkRoutePath(value: string): Checked {
  if (!value.startsWith('/')) return refused('a path prefix starting with "/"');
  if (value.length > ROUTE_LIMITS.path)
    return refused(`a path prefix of at most ${ROUTE_LIMITS.path} characters`);
  if (value.includes('%'))
    return refused(
      'a path prefix without percent-encoding (write the characters; data planes match encoded paths differently)',
    );
  if (!PATH_CHARS.test(value))
    return refused('a path prefix of letters, digits and ._~!*+,:@=&/- (no spaces, quotes, ; $ ? # or %)');
  let path = value;
  while (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  if (path.includes('//') || path.split('/').some((segment) => segment === '.' || segment === '..'))
    return refused('a path prefix without empty, "." or ".." segments (nginx normalises them away)');
  return { ok: true, value: path };
}
