import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isTealError } from '../../core/errors.js';
import { freePort } from '../../runtimes/ports.js';
import { haveBinary } from '../../testing/binaries.js';
import { type NginxInstance, startNginx } from '../../testing/nginx.js';
import {
  poolFor,
  request,
  startUpstream,
  switchContract,
  type Upstream,
  webTable,
} from '../switch.contract.js';
import { NginxSwitch, type NginxSwitchOptions } from './switch.js';

const available = haveBinary('nginx');
if (!available && process.env.CI)
  throw new Error('nginx is required under CI: run scripts/install-test-deps.sh');

interface Setup {
  nginx: NginxInstance;
  dir: string;
  options: NginxSwitchOptions;
  url: string;
  previewUrl: string;
}

/**
 * A private nginx whose http block includes the file the switch writes. The include is a glob so
 * nginx starts before the first apply; the staged and `.bak` files do not match it.
 */
async function setUp(overrides: Partial<NginxSwitchOptions> = {}): Promise<Setup> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-nginx-'));
  const nginx = await startNginx(path.join(dir, 'nginx'), `include ${dir}/nginx/teal*.conf;`);
  const port = await freePort('127.0.0.1');
  const previewPort = await freePort('127.0.0.1');
  const options: NginxSwitchOptions = {
    configFile: path.join(dir, 'nginx', 'teal.conf'),
    check: nginx.commands.check,
    reload: nginx.commands.reload,
    pidFile: nginx.pidFile,
    listen: `127.0.0.1:${port}`,
    previewListen: `127.0.0.1:${previewPort}`,
    stateDir: path.join(dir, 'state'),
    accessLog: path.join(dir, 'access.log'),
    ...overrides,
  };
  return {
    nginx,
    dir,
    options,
    url: `http://127.0.0.1:${port}`,
    previewUrl: `http://127.0.0.1:${previewPort}`,
  };
}

const measured: { switches: number; failed: number; sent: number }[] = [];

describe.skipIf(!available)('nginx', () => {
  switchContract(
    'nginx',
    {
      create: async () => {
        const s = await setUp();
        return {
          sw: await NginxSwitch.open(s.options),
          url: s.url,
          previewUrl: s.previewUrl,
          close: async () => {
            await s.nginx.stop();
            rmSync(s.dir, { recursive: true, force: true });
          },
        };
      },
    },
    {
      // Each reload: an old worker closes its idle keep-alive connections, and a request sent on
      // one at that moment fails. At most one per connection of the load (32) per reload.
      failuresPerSwitch: 32,
      countsOpenRequests: false,
      // $request_time has millisecond resolution: a loopback request under 1 ms is logged as 0.000.
      wholeMillisecondTimes: true,
      report: (m) => {
        measured.push(m);
        console.log(`nginx: ${m.failed} failed of ${m.sent} over ${m.switches} reloads`);
      },
    },
  );

  describe('NginxSwitch', () => {
    let s: Setup | undefined;
    const upstreams: Upstream[] = [];

    afterEach(async () => {
      await s?.nginx.stop();
      if (s) rmSync(s.dir, { recursive: true, force: true });
      s = undefined;
      await Promise.all(upstreams.splice(0).map((u) => u.close()));
    });

    const app = async (name: string) => {
      const u = await startUpstream(name);
      upstreams.push(u);
      return u;
    };

    it('keeps the config in force as .bak and renders no revision, so the same routes reload nothing', async () => {
      s = await setUp();
      const sw = await NginxSwitch.open(s.options);
      const a = await app('A');
      await sw.apply(webTable(1, poolFor('web', 'blue', 1, [a])));
      const first = readFileSync(s.options.configFile, 'utf8');
      expect(first).toContain(`server 127.0.0.1:${a.port};`);
      expect(first).toContain('upstream teal.web.blue.r1');

      const workers = s.nginx.workers();
      await sw.apply(webTable(2, poolFor('web', 'blue', 1, [a])));
      expect(s.nginx.workers()).toEqual(workers);
      expect((await sw.current())?.revision).toBe(2);

      const b = await app('B');
      await sw.apply(webTable(3, poolFor('web', 'green', 2, [b])));
      expect(readFileSync(`${s.options.configFile}.bak`, 'utf8')).toBe(first);
      expect((await request(`${s.url}/`)).body).toBe('B');
    });

    it('fails with nginx -t’s own message on a config it rejects, keeping the old file and traffic', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-nginx-tpl-'));
      const template = path.join(dir, 'teal.conf.mustache');
      s = await setUp({ template });
      // A template whose output nginx rejects once a second pool appears (a duplicate upstream).
      writeFileSync(
        template,
        `{{#upstreams}}upstream teal_dup { server {{servers.0.address}}; }\n{{/upstreams}}
server { listen {{listen}}; location / { proxy_pass http://teal_dup; } }\n`,
      );
      const sw = await NginxSwitch.open(s.options);
      const [a, b] = [await app('A'), await app('B')];
      await sw.apply(webTable(1, poolFor('web', 'blue', 1, [a])));
      const before = readFileSync(s.options.configFile, 'utf8');
      const err = await sw
        .apply(webTable(2, poolFor('web', 'blue', 1, [a]), poolFor('web', 'green', 2, [b])))
        .catch((e: unknown) => e);
      expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
      expect((err as Error).message).toMatch(
        /nginx check .* exited with 1: .*duplicate upstream "teal_dup"/s,
      );
      expect(readFileSync(s.options.configFile, 'utf8')).toBe(before);
      expect((await sw.current())?.revision).toBe(1);
      expect((await request(`${s.url}/`)).body).toBe('A');
      rmSync(dir, { recursive: true, force: true });
    });

    it('puts the .bak back when the reload fails, and names the command', async () => {
      s = await setUp();
      const sw = await NginxSwitch.open(s.options);
      const [a, b] = [await app('A'), await app('B')];
      await sw.apply(webTable(1, poolFor('web', 'blue', 1, [a])));
      const before = readFileSync(s.options.configFile, 'utf8');
      const broken = await NginxSwitch.open({ ...s.options, reload: 'echo "reload refused" >&2; exit 3' });
      const err = await broken.apply(webTable(2, poolFor('web', 'green', 2, [b]))).catch((e: unknown) => e);
      expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
      expect((err as Error).message).toContain('exited with 3: reload refused');
      expect(readFileSync(s.options.configFile, 'utf8')).toBe(before);
      expect((await request(`${s.url}/`)).body).toBe('A');
    });

    it('fails when nginx does not act on the reload in time, and puts the .bak back', async () => {
      s = await setUp();
      const sw = await NginxSwitch.open(s.options);
      const [a, b] = [await app('A'), await app('B')];
      await sw.apply(webTable(1, poolFor('web', 'blue', 1, [a])));
      const before = readFileSync(s.options.configFile, 'utf8');
      // A reload command that succeeds but never reaches nginx (a wrong pid file in a user's script).
      const deaf = await NginxSwitch.open({ ...s.options, reload: 'true', reloadTimeoutMs: 500 });
      const err = await deaf.apply(webTable(2, poolFor('web', 'green', 2, [b]))).catch((e: unknown) => e);
      expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
      expect((err as Error).message).toMatch(/did not load the new config within 500 ms/);
      expect(readFileSync(s.options.configFile, 'utf8')).toBe(before);
      expect((await request(`${s.url}/`)).body).toBe('A');
    });

    it('refuses a route path that would end an nginx directive, before touching the file', async () => {
      s = await setUp();
      const sw = await NginxSwitch.open(s.options);
      const a = await app('A');
      const table = webTable(1, poolFor('web', 'blue', 1, [a]));
      table.services[0]!.routes = [{ path: '/x; } server { listen 9' }];
      const err = await sw.apply(table).catch((e: unknown) => e);
      expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
      expect((err as Error).message).toContain('is not safe to write');
      expect(existsSync(s.options.configFile)).toBe(false);
    });

    it('coalesces a burst: tables arriving during a reload are rendered once, the newest', async () => {
      s = await setUp();
      const reloads = path.join(s.dir, 'reloads');
      const sw = await NginxSwitch.open({
        ...s.options,
        reload: `echo . >> ${reloads}; ${s.options.reload}`,
      });
      const apps = [await app('A'), await app('B'), await app('C'), await app('D')];
      await sw.apply(webTable(1, poolFor('web', 'blue', 1, [apps[0]!])));
      const countReloads = () => readFileSync(reloads, 'utf8').split('\n').length - 1;
      const reloadsBefore = countReloads();
      await Promise.all(
        [2, 3, 4].map((r) =>
          sw.apply(webTable(r, poolFor('web', r % 2 ? 'blue' : 'green', r, [apps[r - 1]!]))),
        ),
      );
      expect((await sw.current())?.revision).toBe(4);
      expect((await request(`${s.url}/`)).body).toBe('D');
      // The first of the burst ran alone; the two that waited behind it became one reload.
      expect(countReloads() - reloadsBefore).toBe(2);
    });

    it('keeps the applied table across a new switch object (a restarted control plane)', async () => {
      s = await setUp();
      const a = await app('A');
      const table = webTable(5, poolFor('web', 'blue', 1, [a]));
      await (await NginxSwitch.open(s.options)).apply(table);
      expect(await (await NginxSwitch.open(s.options)).current()).toEqual(table);
    });

    it('fails at open on a template that does not parse, naming it', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-nginx-tpl-'));
      const template = path.join(dir, 'broken.mustache');
      writeFileSync(template, '{{#upstreams}} never closed');
      const err = await NginxSwitch.open({
        configFile: path.join(dir, 'teal.conf'),
        template,
        check: 'true',
        reload: 'true',
        pidFile: path.join(dir, 'nginx.pid'),
        listen: '127.0.0.1:8080',
        stateDir: dir,
        accessLog: path.join(dir, 'access.log'),
      }).catch((e: unknown) => e);
      expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
      expect((err as Error).message).toContain(template);
      rmSync(dir, { recursive: true, force: true });
    });

    it('says nginx is not running when its pid file names no nginx', async () => {
      s = await setUp();
      const sw = await NginxSwitch.open({ ...s.options, pidFile: path.join(s.dir, 'missing.pid') });
      const a = await app('A');
      const err = await sw.apply(webTable(1, poolFor('web', 'blue', 1, [a]))).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/nginx is not running: cannot read its pid file .*missing\.pid/);
      expect(existsSync(s.options.configFile)).toBe(false);
    });
  });
});
