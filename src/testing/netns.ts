import { execFileSync, spawnSync } from 'node:child_process';

/**
 * Hosts for fleet tests: each a network namespace joined to the root namespace by a veth pair,
 * `10.<net>.<i>.1` on the root side and `10.<net>.<i>.2` inside. Processes started with
 * `ip netns exec` see only their own address (and loopback), as on a machine of their own, and
 * reach the root side (etcd, the control plane) through the pair.
 */
export interface NetnsHost {
  /** 1-based. */
  index: number;
  ns: string;
  /** The address inside the namespace. */
  address: string;
  /** The root side of the pair: what the namespace reaches the root namespace at. */
  gateway: string;
  /** Root-side interface name. */
  veth: string;
}

/** Whether this process may create network namespaces (root, and `ip` present). */
export function netnsAvailable(): { ok: true } | { ok: false; why: string } {
  const probe = `teal-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.error || add.status !== 0) return { ok: false, why: add.error?.message ?? add.stderr.trim() };
  spawnSync('ip', ['netns', 'del', probe]);
  return { ok: true };
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Creates `count` hosts on a /24 per host under 10.<net>.0.0/16; names carry the pid (no clash between runs). */
export function createHosts(count: number, net = 100 + (process.pid % 100)): NetnsHost[] {
  const hosts: NetnsHost[] = [];
  try {
    for (let i = 1; i <= count; i++) {
      const tag = `${process.pid % 100000}${i}`;
      const host: NetnsHost = {
        index: i,
        ns: `teal-${process.pid}-h${i}`,
        address: `10.${net}.${i}.2`,
        gateway: `10.${net}.${i}.1`,
        // Interface names are at most 15 bytes.
        veth: `tv${tag}r`,
      };
      const inner = `tv${tag}n`;
      ip('netns', 'add', host.ns);
      hosts.push(host);
      ip('link', 'add', host.veth, 'type', 'veth', 'peer', 'name', inner);
      ip('link', 'set', inner, 'netns', host.ns);
      ip('addr', 'add', `${host.gateway}/24`, 'dev', host.veth);
      ip('link', 'set', host.veth, 'up');
      ip('-n', host.ns, 'addr', 'add', `${host.address}/24`, 'dev', inner);
      ip('-n', host.ns, 'link', 'set', inner, 'up');
      ip('-n', host.ns, 'link', 'set', 'lo', 'up');
    }
  } catch (err) {
    removeHosts(hosts);
    throw err;
  }
  return hosts;
}

/** The pids running in a namespace. */
export function pidsIn(host: NetnsHost): number[] {
  const out = spawnSync('ip', ['netns', 'pids', host.ns], { encoding: 'utf8' });
  return out.stdout
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** SIGKILLs every process in the host's namespace: the host's power cord. */
export function killHost(host: NetnsHost): number[] {
  const pids = pidsIn(host);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone between the listing and the kill.
    }
  }
  return pids;
}

/** Kills what runs in each namespace, then removes the namespaces and their veth pairs; never throws. */
export function removeHosts(hosts: NetnsHost[]): void {
  for (const host of hosts) {
    killHost(host);
    // Removing the namespace removes the pair; the explicit delete covers a half-made host.
    spawnSync('ip', ['link', 'del', host.veth]);
    spawnSync('ip', ['netns', 'del', host.ns]);
  }
}
