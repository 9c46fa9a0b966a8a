import net from 'node:net';

/**
 * Address ranges in teal.yml and on command lines: `10.0.0.0/8`, `192.168.1.7`, `fd00::/8`, `::1`.
 * A bare address is a range of one. Parsed to one normal text form, so every proxy kind is given
 * the same list (nginx's `geo`, haproxy's `src` ACL and the builtin data plane's BlockList all read
 * it) and nothing printed into a config comes from the user unchecked.
 */
export interface Cidr {
  family: 'ipv4' | 'ipv6';
  /** The network address, with the host bits cleared: `10.0.0.0`. */
  network: string;
  prefix: number;
  /** `10.0.0.0/8`. */
  text: string;
}

const EXAMPLE = 'expected an IP address or a CIDR range like "10.0.0.0/8" or "fd00::/8"';

/** Parses `text`; throws an Error naming it when it is not an address or a range. */
export function parseCidr(text: string): Cidr {
  const fail = (why: string): never => {
    throw new Error(`${EXAMPLE}, got ${JSON.stringify(text)}${why ? ` (${why})` : ''}`);
  };
  if (typeof text !== 'string') fail('');
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  if (address.includes('%')) fail('a zone id cannot be matched');
  const version = net.isIP(address);
  if (version === 0) fail('not an IP address');
  const family = version === 4 ? 'ipv4' : 'ipv6';
  const max = version === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const bits = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) fail(`the prefix must be 0 to ${max}`);
    prefix = Number(bits);
  }
  const network = version === 4 ? v4Network(address, prefix) : v6Network(address, prefix);
  return { family, network, prefix, text: `${network}/${prefix}` };
}

function v4Network(address: string, prefix: number): string {
  const n = address.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
  const size = 2 ** (32 - prefix);
  const base = Math.floor(n / size) * size;
  return [24, 16, 8, 0].map((s) => Math.floor(base / 2 ** s) % 256).join('.');
}

function v6Network(address: string, prefix: number): string {
  // Host bits cleared group by group; SocketAddress prints the result in its shortest form.
  const groups = expandV6(address);
  const out = groups.map((g, i) => {
    const keep = Math.max(0, Math.min(16, prefix - i * 16));
    return keep === 16 ? g : keep === 0 ? 0 : g & (0xffff << (16 - keep)) & 0xffff;
  });
  return new net.SocketAddress({ address: out.map((g) => g.toString(16)).join(':'), family: 'ipv6' }).address;
}

/** The eight 16-bit groups of a valid IPv6 address (an embedded dotted IPv4 tail included). */
function expandV6(address: string): number[] {
  let text = address.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const b = dotted[1]!.split('.').map(Number);
    text = `${text.slice(0, -dotted[1]!.length)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail === undefined ? [] : tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right].map((g) => Number.parseInt(g, 16));
}
