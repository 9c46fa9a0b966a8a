import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { helloService, runCli, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'teal-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe('teal validate', () => {
  it('accepts a valid file, listing its services', async () => {
    const file = write('good.yml', 'services:\n  web:\n    command: [node, server.js]\n');
    const r = await runCli(['validate', '-c', file]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toContain('is valid: 1 service(s): web');
    const json = await runCli(['validate', '-c', file, '--json']);
    expect(JSON.parse(json.stdout)).toEqual({ valid: true, file, services: ['web'] });
  });

  it('prints every problem with file, line, path and expectation, and exits 2', async () => {
    const file = write(
      'bad.yml',
      'services:\n  web:\n    command: [node]\n    health:\n      timeout: fast\n    colour: blue\n',
    );
    const r = await runCli(['validate', '-c', file]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(
      `${file}:5:16 services.web.health.timeout: expected a duration like "2s", got "fast"`,
    );
    expect(r.stderr).toMatch(/:6:5 services\.web\.colour: unknown key \(expected one of: runtime, command/);
  });

  it('with --json prints the problems as one JSON document on stdout', async () => {
    const file = write('bad2.yml', 'services:\n  web:\n    command: node\n');
    const r = await runCli(['validate', '-c', file, '--json']);
    expect(r.code).toBe(2);
    const body = JSON.parse(r.stdout);
    expect(body.error.code).toBe('TEAL_CONFIG_INVALID');
    expect(body.error.details.problems[0]).toMatchObject({ line: 3, path: 'services.web.command' });
  });

  it('reports malformed YAML with its line', async () => {
    const file = write('broken.yml', 'services:\n  web:\n    command: [node\n');
    const r = await runCli(['validate', '-c', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/broken\.yml:\d+:\d+ YAML syntax/);
  });

  it('refuses a YAML alias bomb with exit 2, the file and line, and no stack trace', async () => {
    const levels = 'abcdefghi'.split('');
    const lines = levels.map((name, i) =>
      i === 0
        ? `a: &a [${Array(9).fill('"lol"')}]`
        : `${name}: &${name} [${Array(9).fill(`*${levels[i - 1]}`)}]`,
    );
    const file = write('bomb.yml', `${lines.join('\n')}\nservices:\n  web:\n    command: [node]\n`);
    const r = await runCli(['validate', '-c', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:6:8 YAML syntax: aliases expand to more than 100000 values`);
    expect(r.stderr).not.toMatch(/\bat .*\.js:\d+/);
  });

  it.each([
    ['builtin', ''],
    ['nginx', 'proxy: { kind: nginx, config: /etc/nginx/conf.d/teal.conf }\n'],
    ['haproxy', 'proxy: { kind: haproxy, socket: /run/haproxy/teal.sock }\n'],
  ])(
    'with proxy %s, refuses route hosts and paths a data plane would, by file:line and rule, exit 2',
    async (kind, proxy) => {
      const file = write(
        `routes-${kind}.yml`,
        `${proxy}services:\n  web:\n    command: [node]\n    routes:\n      - { path: "/a;b" }\n      - { host: "*.example.com" }\n      - { path: /a/../admin }\n`,
      );
      const r = await runCli(['validate', '-c', file]);
      expect(r.code).toBe(2);
      const line = proxy ? 6 : 5;
      expect(r.stderr).toContain(
        `${file}:${line}:17 services.web.routes.0.path: expected a path prefix of letters, digits and`,
      );
      expect(r.stderr).toContain(
        `${file}:${line + 1}:17 services.web.routes.1.host: expected a host name without wildcards`,
      );
      expect(r.stderr).toContain(
        `${file}:${line + 2}:17 services.web.routes.2.path: expected a path prefix without empty, "." or ".." segments`,
      );
    },
  );

  it('says how to create the file when there is none', async () => {
    const r = await runCli(['validate'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`no configuration at ${path.join(dir, 'teal.yml')}`);
  });
});

describe('teal without a daemon', () => {
  it('exits 3 and says how to start the daemon', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const file = write(
      'down.yml',
      `api: { listen: 127.0.0.1:${port} }\nservices:\n  web:\n    command: [node]\n`,
    );
    const r = await runCli(['deploy', 'web', '--version', 'v1', '-c', file]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(
      `cannot reach the teal daemon at http://127.0.0.1:${port} (ECONNREFUSED); start it with: teal up -c`,
    );
    const json = await runCli(['status', '--json', '-c', file]);
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout).error.code).toBe('TEAL_DAEMON_UNREACHABLE');
  });

  it('--help of every verb shows examples', async () => {
    for (const verb of [
      'up',
      'deploy',
      'rollback',
      'status',
      'history',
      'logs',
      'validate',
      'down',
      'restart-proxy',
      'reload',
      'proxy',
    ]) {
      const r = await runCli([verb, '--help']);
      expect(r.code, verb).toBe(0);
      expect(r.stdout, verb).toMatch(/Examples?:/);
    }
    const top = await runCli(['--help']);
    expect(top.stdout).toContain('teal deploy web --version v2');
    expect((await runCli(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('a mistyped flag is a usage error (exit 2)', async () => {
    const r = await runCli(['deploy', 'web', '--version', 'v1', '--dryrun']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option '--dryrun'");
  });
});

describe('teal against a running daemon', () => {
  let daemon: TestDaemon;
  /** Started once v1 is live: every later deploy, rollback and restart runs under it. */
  let load: ReturnType<typeof backgroundLoad> | undefined;

  beforeAll(async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService()}` });
  }, 60_000);

  afterAll(async () => {
    try {
      const { report } = await load!.stop();
      expect(report.failures).toEqual([]);
      expect(report.sent).toBeGreaterThan(100);
    } finally {
      await daemon.cleanup();
    }
  });

  it('deploy --dry-run prints the plan and changes nothing', async () => {
    const r = await daemon.cli(['deploy', 'hello', '--version', 'v1', '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('plan: deploy hello v1 to blue; live now: nothing live yet');
    expect(r.stdout).toMatch(/wait until \/health passes 2 times in a row/);
    const json = await daemon.cli(['deploy', 'hello', '--version', 'v1', '--dry-run', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      kind: 'deploy',
      targetSlot: 'blue',
      release: { version: 'v1' },
    });
    expect((await daemon.cli(['history', 'hello', '--json'])).stdout.trim()).toBe('[]');
  });

  it('deploy prints each step as a plain line off a terminal, and --json prints only the record', async () => {
    const r = await daemon.cli(['deploy', 'hello', '--version', 'v1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    for (const step of ['lock', 'start', 'health', 'verify', 'switch'])
      expect(r.stderr).toMatch(new RegExp(`✓ ${step}`));
    expect(r.stderr).toMatch(/✓ hello v1 is live on blue in /);
    load = backgroundLoad(`${daemon.info.proxy}/`, 8);
    const json = await daemon.cli(['deploy', 'hello', '--version', 'v2', '--json']);
    expect(json.code).toBe(0);
    expect(json.stderr).toBe('');
    expect(JSON.parse(json.stdout)).toMatchObject({
      state: 'done',
      version: 'v2',
      targetSlot: 'green',
      fromVersion: 'v1',
    });
  });

  it('status --json has the documented shape', async () => {
    const r = await daemon.cli(['status', 'hello', '--json']);
    const status = JSON.parse(r.stdout);
    expect(status).toMatchObject({
      service: 'hello',
      live: 'green',
      slots: { blue: { version: 'v1', state: 'warm' }, green: { version: 'v2', state: 'live' } },
    });
    const human = await daemon.cli(['status']);
    expect(human.stdout).toMatch(/hello\s+live: green/);
  });

  it('history lists deployments newest first', async () => {
    const list = JSON.parse((await daemon.cli(['history', 'hello', '--json'])).stdout) as {
      n: number;
      version: string;
      state: string;
    }[];
    expect(list.map((d) => [d.version, d.state])).toEqual([
      ['v2', 'done'],
      ['v1', 'done'],
    ]);
    const human = await daemon.cli(['history', 'hello']);
    expect(human.stdout).toMatch(/2\s+deploy\s+v2\s+2\s+blue -> green\s+done/);
  });

  it('rollback inside the warm window flips back at once', async () => {
    const r = await daemon.cli(['rollback', 'hello', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      kind: 'rollback',
      mode: 'flip',
      state: 'done',
      version: 'v1',
      targetSlot: 'blue',
    });
    const res = await fetch(`${daemon.info.proxy}/`);
    expect(await res.text()).toBe('hello v1\n');
  });

  it('GET /metrics gives the data plane counters in Prometheus text, and they move with traffic', async () => {
    const scrape = async () => {
      const res = await fetch(`${daemon.info.api}/metrics`, {
        headers: { authorization: `Bearer ${daemon.token}` },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      const text = await res.text();
      const m =
        /teal_proxy_requests_total\{service="hello",slot="blue",release="1",pool="hello\/blue\/r1"\} (\d+)/.exec(
          text,
        );
      return Number(m?.[1] ?? Number.NaN);
    };
    const before = await scrape();
    for (let i = 0; i < 20; i++) await (await fetch(`${daemon.info.proxy}/`)).text();
    expect((await scrape()) - before).toBeGreaterThanOrEqual(20);
    // The control plane's own: deployments by outcome, step durations, the data plane is up.
    const text = await (
      await fetch(`${daemon.info.api}/metrics`, { headers: { authorization: `Bearer ${daemon.token}` } })
    ).text();
    expect(text).toContain('teal_proxy_up 1');
    expect(
      Number(/teal_deployments_total\{service="hello",kind="deploy",outcome="done"\} (\d+)/.exec(text)?.[1]),
    ).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/teal_deployment_step_seconds_count\{service="hello",step="health"\} [1-9]/);
    expect(text).toContain('teal_deployments_running{service="hello"} 0');
    expect((await fetch(`${daemon.info.api}/metrics`)).status).toBe(401);
  });

  it('down refuses while teal up runs', async () => {
    const r = await daemon.cli(['down']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/teal up is still running \(pid \d+\); stop it first/);
  });

  it('logs shows the live instances output', async () => {
    const r = await daemon.cli(['logs', 'hello', '--tail', '5']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('hello v1 listening on http://127.0.0.1:');
    const bad = await daemon.cli(['logs', 'hello', '--slot', 'purple']);
    expect(bad.code).toBe(2);
  });

  it('restart-proxy moves the data plane to a new process while the load keeps flowing', async () => {
    const r = await daemon.cli(['restart-proxy', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const { from, to } = JSON.parse(r.stdout) as { from: number; to: number };
    expect(to).not.toBe(from);
    expect(await (await fetch(`${daemon.info.proxy}/`)).text()).toMatch(/^hello v\d/);
    // The control plane drives the new data plane as it did the old one.
    const d = await daemon.cli(['deploy', 'hello', '--version', 'v7', '--json']);
    expect(JSON.parse(d.stdout)).toMatchObject({ state: 'done', version: 'v7' });
  });
});
