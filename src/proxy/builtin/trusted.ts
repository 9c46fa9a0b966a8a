import net from 'node:net';
import { parseCidr } from '../../core/config/cidr.js';

/**
 * The peers whose forwarded headers the data plane believes (`proxy.trustedProxies`): parsed once
 * into a BlockList, asked once per client connection (a peer address does not change), so the
 * request path pays nothing. An IPv4 peer on a dual-stack listener (`::ffff:10.1.2.3`) matches
 * its IPv4 range.
 */
export class TrustedProxies {
  private readonly list: net.BlockList | null;

  constructor(ranges: readonly string[]) {
    if (ranges.length === 0) {
      this.list = null;
      return;
    }
    const list = new net.BlockList();
    for (const text of ranges) {
      const r = parseCidr(text);
      list.addSubnet(r.network, r.prefix, r.family);
    }
    this.list = list;
  }

  has(address: string | undefined): boolean {
    if (this.list === null || !address) return false;
    const family = net.isIP(address);
    if (family === 0) return false;
    return this.list.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }
}
