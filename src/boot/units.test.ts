import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../core/config/load.js';
import { isTealError } from '../core/errors.js';
import { connectionCap } from '../proxy/builtin/settings.js';
import { cliEntry } from '../testing/paths.js';
import { execWords, verifyUnit } from '../testing/systemd-verify.js';
import { envNamesOf, planService, type ServiceRequest } from './spec.js';
import { needsOf, openFileLimit, renderUnit } from './units.js';

const root = mkdtempSync(path.join(tmpdir(), 'teal-units-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const HELLO = `services:\n  web:\n    command: [node, server.js]\n    ports: { blue: 9001, green: 9002 }\n`;

/** A teal.yml in a folder of its own under `root`; returns its path. */
function config(folder: string, text = HELLO): string {
  const dir = path.join(root, folder);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'teal.yml');
  writeFileSync(file, text);
  return file;
}

function request(overrides: Partial<ServiceRequest>): ServiceRequest {
  return {
    verb: 'up',
    scope: 'system',
    config: 'teal.yml',
    verbArgs: [],
    verbOptions: {},
    runAs: 'root',
    envFile: path.join(root, 'teal.env'),
    dir: path.join(root, 'units'),
    node: process.execPath,
    entry: cliEntry(),
    teal: '0.1.0',
    cwd: root,
    env: {},
    ...overrides,
  };
}

/** Renders the request's unit into its own folder and returns the file and its text. */
function written(req: ServiceRequest): { file: string; text: string } {
  const plan = planService(req);
  const text = renderUnit(plan.spec);
  const dir = mkdtempSync(path.join(root, 'u-'));
  const file = path.join(dir, path.basename(plan.file));
  writeFileSync(file, text);
  return { file, text };
}

const setting = (text: string, key: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));

describe('systemd units for teal up, agent and edge', () => {
  it('a unit for a config and a node under paths with spaces, % and $ verifies, and ExecStart reads back as the arguments', async () => {
    const file = config('app 100% $HOME');
    // systemd checks ExecStart's binary exists: a quoting mistake in the first word fails verify.
    const nodeDir = path.join(root, 'node 5% $x');
    mkdirSync(nodeDir, { recursive: true });
    const node = path.join(nodeDir, 'node');
    symlinkSync(process.execPath, node);
    const { file: unit, text } = written(request({ config: file, node }));
    expect(await verifyUnit(unit)).toEqual([]);
    expect(execWords(setting(text, 'ExecStart')[0]!)).toEqual([node, cliEntry(), 'up', '-c', file]);
    expect(execWords(setting(text, 'ExecReload')[0]!)).toEqual([node, cliEntry(), 'reload', '-c', file]);
    expect(setting(text, 'WorkingDirectory')).toEqual([path.dirname(file).replaceAll('%', '%%')]);
    expect(text).toContain('KillMode=process\n');
    expect(text).toContain('Restart=always\n');
    expect(text).not.toContain('User=');
  });

  it('runs as a named user, after etcd and docker when the config uses them on this host', async () => {
    const file = config(
      'etcd-docker',
      `store: { kind: etcd, endpoints: [http://127.0.0.1:2379] }\nservices:\n  web:\n    runtime: docker\n    image: "web:{{version}}"\n    port: 8080\n`,
    );
    const { file: unit, text } = written(request({ config: file, runAs: 'www-data' }));
    expect(await verifyUnit(unit)).toEqual([]);
    expect(setting(text, 'User')).toEqual(['www-data']);
    expect(setting(text, 'Wants')).toEqual(['network-online.target etcd.service docker.service']);
    expect(setting(text, 'After')).toEqual(['network-online.target etcd.service docker.service']);
  });

  it('asks for no local etcd or docker unit when they are elsewhere, and for nginx when teal drives it', () => {
    const remote = parseConfig(
      `store: { kind: etcd, endpoints: [http://10.0.0.5:2379] }\ndocker: { host: "tcp://10.0.0.6:2375" }\nproxy: { kind: nginx, config: /etc/nginx/conf.d/teal.conf }\nservices:\n  web:\n    runtime: docker\n    image: web\n    port: 8080\n`,
      '/srv/teal.yml',
    ).config;
    expect(needsOf(remote)).toEqual({ etcd: false, docker: false, proxy: 'nginx' });
    const local = parseConfig(HELLO, '/srv/teal.yml').config;
    expect(needsOf(local)).toEqual({ etcd: false, docker: false });
  });

  it('an agent unit checks its store and state dir, and an edge unit its config, both verify', async () => {
    const agent = written(
      request({
        verb: 'agent',
        verbArgs: ['--id', 'web-1', '--address', '10.0.1.2', '--etcd', 'http://localhost:2379'],
        verbOptions: { id: 'web-1', etcd: 'http://localhost:2379' },
      }),
    );
    expect(await verifyUnit(agent.file)).toEqual([]);
    expect(setting(agent.text, 'ExecReload')).toEqual([]);
    expect(execWords(setting(agent.text, 'ExecStart')[0]!).slice(2)).toEqual([
      'agent',
      '--id',
      'web-1',
      '--address',
      '10.0.1.2',
      '--etcd',
      'http://localhost:2379',
      '--state-dir',
      path.join(root, '.teal-agent'),
    ]);
    expect(setting(agent.text, 'Wants')[0]).toContain('etcd.service');

    const file = config('edge');
    const edge = written(
      request({ verb: 'edge', config: file, verbArgs: ['--state-dir', 'edge-state'], verbOptions: {} }),
    );
    expect(await verifyUnit(edge.file)).toEqual([]);
    expect(execWords(setting(edge.text, 'ExecStart')[0]!).slice(2)).toEqual([
      'edge',
      '-c',
      file,
      '--state-dir',
      path.join(root, 'edge-state'),
    ]);
  });

  it('a --user unit has no User= and no system dependencies, and verifies as a user unit', async () => {
    const file = config('user-scope');
    const { file: unit, text } = written(request({ config: file, scope: 'user' }));
    expect(await verifyUnit(unit, { user: true })).toEqual([]);
    expect(text).not.toMatch(/^(User|Wants|After)=/m);
    expect(setting(text, 'WantedBy')).toEqual(['default.target']);
  });

  it('the check fails on a broken unit: an unknown value, an unescaped %, a missing binary', async () => {
    const file = config('broken 100%');
    const good = written(request({ config: file }));
    expect(await verifyUnit(good.file)).toEqual([]);
    const broken = (from: string, to: string) => {
      const f = path.join(path.dirname(good.file), `broken-${Math.random().toString(36).slice(2)}.service`);
      expect(good.text).toContain(from);
      writeFileSync(f, good.text.replace(from, to));
      return f;
    };
    // systemd ignores a setting it cannot parse and exits 0: only its output says so.
    expect((await verifyUnit(broken('KillMode=process', 'KillMode=proces'))).join('\n')).toMatch(
      /kill mode/i,
    );
    expect(await verifyUnit(broken('Restart=always', 'Restart=sometimes'))).not.toEqual([]);
    expect(
      await verifyUnit(broken(`ExecStart=${process.execPath}`, 'ExecStart=/nonexistent/node')),
    ).not.toEqual([]);
    // The same unit with a lone % in ExecStart's binary names another path, which does not exist.
    const nodeDir = path.join(root, 'bin 9%d');
    mkdirSync(nodeDir, { recursive: true });
    symlinkSync(process.execPath, path.join(nodeDir, 'node'));
    const withNode = written(request({ config: file, node: path.join(nodeDir, 'node') }));
    expect(await verifyUnit(withNode.file)).toEqual([]);
    const f = path.join(path.dirname(withNode.file), 'lone-percent.service');
    writeFileSync(f, withNode.text.replace('9%%d', '9%d'));
    expect(await verifyUnit(f)).not.toEqual([]);
  });

  it('the open-file limit lets the data plane keep its configured connection cap', () => {
    for (const max of [64, 10_000, 50_000, 200_000]) {
      const limit = openFileLimit(max);
      expect(
        connectionCap(
          max,
          `Max open files            ${limit}                ${limit}                files\n`,
        ),
      ).toBe(max);
    }
    const file = config('many', `proxy: { kind: builtin, limits: { maxConnections: 100000 } }\n${HELLO}`);
    expect(setting(written(request({ config: file })).text, 'LimitNOFILE')).toEqual(['200256']);
  });

  it('refuses paths a unit cannot hold and an invalid config, naming what is wrong', () => {
    const quoted = config('say "hi"');
    expect(() => renderUnit(planService(request({ config: quoted })).spec)).toThrow(
      /quote, a backslash or a control character/,
    );
    const bad = config('bad', 'services:\n  web:\n    command: 3\n');
    try {
      planService(request({ config: bad }));
      expect.unreachable();
    } catch (err) {
      expect(isTealError(err, 'TEAL_CONFIG_INVALID')).toBe(true);
      expect((err as Error).message).toContain('services.web.command');
    }
    expect(() => planService(request({ config: config('n'), name: 'a b' }))).toThrow(/--name/);
  });

  it('lists the variables the config reads from teal up, for the environment file', () => {
    const c = parseConfig(
      `store: { kind: etcd, endpoints: [http://127.0.0.1:2379], auth: { username: teal, passwordEnv: ETCD_PW } }\nwebhooks: { github: { secretEnv: GH_SECRET } }\nservices:\n  web:\n    command: [node, server.js]\n    env: { DB: { fromEnv: DATABASE_URL } }\n    inheritEnv: [NODE_OPTIONS]\n`,
      '/srv/teal.yml',
    ).config;
    expect(envNamesOf(c)).toEqual(['DATABASE_URL', 'ETCD_PW', 'GH_SECRET', 'NODE_OPTIONS']);
  });
});
