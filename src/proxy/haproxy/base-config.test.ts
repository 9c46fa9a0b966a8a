import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { isTealError } from '../../core/errors.js';
import { findBinary, haveBinary } from '../../testing/binaries.js';
import { laneBackend, laneOf, prepareStateDir, renderBaseConfig, stateFiles } from './base-config.js';

const run = promisify(execFile);
const base = { listen: '127.0.0.1:8080', socket: '/run/teal/admin.sock', stateDir: '/var/lib/teal/haproxy' };

describe('renderBaseConfig', () => {
  it('renders the lanes and server slots asked for, and nothing about services', () => {
    const text = renderBaseConfig({ ...base, lanes: 3, serversPerLane: 5 });
    expect(text.match(/^backend teal_lane_\d+$/gm)).toEqual([
      'backend teal_lane_0',
      'backend teal_lane_1',
      'backend teal_lane_2',
    ]);
    expect(text.match(/server-template s 1-5 /g)).toHaveLength(3);
    expect(text).toContain('stats socket /run/teal/admin.sock mode 600 level admin');
    expect(text).toContain('server-state-file /var/lib/teal/haproxy/servers.state');
    expect(text).toContain('map_beg(/var/lib/teal/haproxy/routes.map)');
    expect(text).toContain('bind 127.0.0.1:8080');
    expect(text).toContain('http-request del-header x-teal-slot');
    // Without a preview listener, nothing reads the slot header.
    expect(text).not.toContain('req.hdr(x-teal-slot)');
    const both = renderBaseConfig({ ...base, previewListen: '127.0.0.1:8081' });
    const [publicFrontend, previewFrontend] = both.split(/^frontend /m).slice(1);
    expect(publicFrontend).toMatch(/^teal\n {2}bind /);
    expect(publicFrontend).not.toContain('req.hdr(x-teal-slot)');
    expect(publicFrontend).toContain('http-request del-header x-teal-slot');
    expect(previewFrontend).toMatch(/^teal_preview\n {2}bind 127\.0\.0\.1:8081\n/);
    expect(previewFrontend).toContain('req.hdr(x-teal-slot)');
  });

  it('uses its defaults and the prefix for every name', () => {
    const text = renderBaseConfig({ ...base, prefix: 'edge' });
    expect(text.match(/^backend edge_lane_\d+$/gm)).toHaveLength(16);
    expect(text.match(/server-template s 1-8 /g)).toHaveLength(16);
    expect(text).toContain('frontend edge\n');
    expect(text).toContain('ring edge_requests');
    expect(text).not.toMatch(/teal_lane|txn\.teal_/);
  });

  it('binds an IPv6 listen address the way haproxy reads it', () => {
    expect(renderBaseConfig({ ...base, listen: '[::]:80' })).toContain('bind ipv6@:::80');
  });

  it('refuses values it cannot write safely, naming them', () => {
    for (const bad of [
      { socket: 'admin.sock' },
      { stateDir: '/var/lib/teal dir' },
      { prefix: 'te-al' },
      { lanes: 0 },
      { serversPerLane: 1.5 },
      { listen: '0.0.0.0:80; bind' },
      { trustedProxies: ['10.0.0.0/8', '10.0.0.0/8 # or'] },
    ]) {
      let err: unknown;
      try {
        renderBaseConfig({ ...base, ...bad });
      } catch (e) {
        err = e;
      }
      expect(isTealError(err, 'TEAL_CONFIG_INVALID'), JSON.stringify(bad)).toBe(true);
      expect((err as Error).message).toContain(Object.keys(bad)[0]!);
    }
  });

  it('trusts forwarded headers only from trustedProxies, in their normal form', () => {
    const none = renderBaseConfig(base);
    expect(none).not.toContain('acl teal_trusted');
    expect(none).toContain('  http-request del-header X-Forwarded-For\n');
    const some = renderBaseConfig({ ...base, trustedProxies: ['10.1.2.3/8', 'fd00::1/8'] });
    expect(some).toContain('  acl teal_trusted src 10.0.0.0/8 fd00::/8\n');
    expect(some).toContain('  http-request del-header X-Forwarded-For unless teal_trusted\n');
  });

  it.skipIf(!haveBinary('haproxy'))('is a config haproxy accepts', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-haproxy-cfg-'));
    try {
      await prepareStateDir(dir);
      const file = path.join(dir, 'haproxy.cfg');
      writeFileSync(
        file,
        renderBaseConfig({
          ...base,
          socket: path.join(dir, 'admin.sock'),
          stateDir: dir,
          trustedProxies: ['::1'],
        }),
      );
      const { stdout, stderr } = await run(findBinary('haproxy')!, ['-c', '-f', file]);
      expect(`${stdout}${stderr}`).toContain('Configuration file is valid');
      expect(stderr).not.toContain('WARNING');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('prepareStateDir', () => {
  it('creates an empty map and server state, and leaves existing ones alone', async () => {
    const dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'teal-haproxy-state-')), 'nested');
    try {
      await prepareStateDir(dir);
      const files = stateFiles(dir);
      expect(readFileSync(files.map, 'utf8')).toBe('');
      expect(readFileSync(files.serverState, 'utf8')).toBe('1\n');
      writeFileSync(files.map, 'T 3\n');
      await prepareStateDir(dir);
      expect(readFileSync(files.map, 'utf8')).toBe('T 3\n');
    } finally {
      rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });
});

describe('lane names', () => {
  it('reads back the lane number of its own backends only', () => {
    expect(laneOf('teal', laneBackend('teal', 12))).toBe(12);
    expect(laneOf('teal', 'teal_lane_x')).toBeUndefined();
    expect(laneOf('teal', 'teal_lane_01')).toBeUndefined();
    expect(laneOf('teal', 'other_lane_1')).toBeUndefined();
    expect(laneOf('teal', 'teal')).toBeUndefined();
  });
});
