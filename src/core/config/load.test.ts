import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isTealError, type TealError } from '../errors.js';
import { loadConfig, type Problem, parseConfig } from './load.js';

function problemsOf(text: string): Problem[] {
  try {
    parseConfig(text, '/srv/app/teal.yml');
  } catch (err) {
    if (isTealError(err, 'TEAL_CONFIG_INVALID')) return (err.details as { problems: Problem[] }).problems;
    throw err;
  }
  throw new Error('expected the config to be refused');
}

const tmp = mkdtempSync(path.join(tmpdir(), 'teal-cfg-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const minimal = 'services:\n  web:\n    command: [node, server.js]\n';

describe('loadConfig', () => {
  it('fills every default for a minimal service', () => {
    const { config, stateDir, dir } = parseConfig(minimal, '/srv/app/teal.yml');
    expect(dir).toBe('/srv/app');
    expect(stateDir).toBe('/srv/app/.teal');
    expect(config.store).toEqual({ kind: 'sqlite' });
    expect(config.proxy).toEqual({
      kind: 'builtin',
      listen: { host: '0.0.0.0', port: 8080 },
      preview: {},
      maxBodySize: 100 * 1024 * 1024,
      timeouts: { connect: 5_000, response: 60_000, idle: 75_000, headers: 60_000, send: 60_000 },
      limits: { maxConnections: 10_000 },
      trustedProxies: [],
    });
    expect(config.api).toEqual({
      listen: { host: '127.0.0.1', port: 7070 },
      timeouts: { headers: 10_000, request: 30_000, idle: 5_000 },
      limits: { maxConnections: 512, authFailures: 10, webhookBody: 1024 * 1024 },
    });
    expect(config.services.web).toMatchObject({
      runtime: 'process',
      cwd: '.',
      instances: 1,
      routes: [{ path: '/' }],
      health: { path: '/health', interval: 500, timeout: 2000, healthyThreshold: 2, deadline: 60_000 },
      drain: 30_000,
      keepWarm: 600_000,
      stopTimeout: 10_000,
      verify: [],
    });
  });

  it('takes env values as strings, { fromEnv } or { file }, with inheritEnv names; anything else is refused where it is', () => {
    const { config } = parseConfig(
      'services:\n  web:\n    command: [x]\n    inheritEnv: [NODE_OPTIONS]\n    env: { A: 1, DB: { fromEnv: DB_URL }, KEY: { file: /etc/hostname } }\n',
      '/t/teal.yml',
    );
    expect(config.services.web!.env).toEqual({
      A: 1,
      DB: { fromEnv: 'DB_URL' },
      KEY: { file: '/etc/hostname' },
    });
    expect(config.services.web!.inheritEnv).toEqual(['NODE_OPTIONS']);
    const problems = problemsOf(
      'services:\n  web:\n    command: [x]\n    inheritEnv: [no-dash]\n    env:\n      A: { fromEnv: 1x }\n      B: { secret: x }\n',
    );
    expect(problems.map((p) => [p.path, p.line])).toEqual([
      ['services.web.inheritEnv.0', 4],
      ['services.web.env.A.fromEnv', 6],
      ['services.web.env.B', 7],
    ]);
    expect(problems[2]!.message).toContain('{ fromEnv: NAME } or { file: path }');
  });

  it('refuses an env file it cannot read, relative to teal.yml, at the key', () => {
    const problems = problemsOf(
      'services:\n  web:\n    command: [x]\n    env:\n      KEY: { file: secrets/key }\npipelines:\n  p:\n    source: { repo: /r }\n    env: { NPM: { file: /nonexistent/npm } }\n',
    );
    expect(problems).toEqual([
      expect.objectContaining({
        path: 'services.web.env.KEY.file',
        line: 5,
        message: 'cannot read /srv/app/secrets/key (ENOENT)',
      }),
      expect.objectContaining({ path: 'pipelines.p.env.NPM.file', line: 9 }),
    ]);
  });

  it('names an unknown user or group at its line, and refuses user: on a docker service', () => {
    const problems = problemsOf(
      'services:\n  web:\n    command: [x]\n    user: no-such-user-teal\n  api:\n    command: [x]\n    routes: [{ path: /api }]\n    user: nobody\n    group: no-such-group-teal\npipelines:\n  p:\n    source: { repo: /r }\n    user: "65534"\n    group: nogroup\n',
    );
    expect(problems.map((p) => `${p.line} ${p.path}: ${p.message}`)).toEqual([
      '4 services.web.user: no user "no-such-user-teal" in /etc/passwd (give a name from it or a numeric uid)',
      '9 services.api.group: no group "no-such-group-teal" in /etc/group (give a name from it or a numeric gid)',
    ]);
    const docker = problemsOf(
      'services:\n  box:\n    runtime: docker\n    image: x\n    port: 3000\n    user: nobody\n',
    );
    expect(docker.map((p) => `${p.line} ${p.path}: ${p.message}`)).toEqual([
      "6 services.box.user: only for runtime: process (a container runs as its image's USER)",
    ]);
  });

  it('keeps the work dir out of the state dir', () => {
    expect(parseConfig(minimal, '/srv/app/teal.yml').workDir).toBe('/srv/app/.teal-work');
    expect(parseConfig(`workDir: /var/tmp/w\n${minimal}`, '/srv/app/teal.yml').workDir).toBe('/var/tmp/w');
    for (const workDir of ['.teal/work', '.teal', '.']) {
      expect(problemsOf(`workDir: ${workDir}\n${minimal}`)).toEqual([
        expect.objectContaining({
          path: 'workDir',
          line: 1,
          message: expect.stringContaining('must be outside the state dir'),
        }),
      ]);
    }
  });

  it('turns durations into milliseconds', () => {
    const { config } = parseConfig(
      'services:\n  web:\n    command: [x]\n    drain: 1m30s\n    keepWarm: 1h\n    health: { interval: 250ms, deadline: 1.5s }\n',
      '/t/teal.yml',
    );
    expect(config.services.web!.drain).toBe(90_000);
    expect(config.services.web!.keepWarm).toBe(3_600_000);
    expect(config.services.web!.health.interval).toBe(250);
    expect(config.services.web!.health.deadline).toBe(1_500);
  });

  it('names the file, line, path and expectation of a bad duration', () => {
    const problems = problemsOf(`${minimal}    health:\n      timeout: fast\n`);
    expect(problems).toEqual([
      {
        file: '/srv/app/teal.yml',
        line: 5,
        column: 16,
        path: 'services.web.health.timeout',
        message: 'expected a duration like "2s", got "fast"',
      },
    ]);
  });

  it('the error message lists every problem, one per line', () => {
    let err: TealError | undefined;
    try {
      parseConfig(`${minimal}    helth: {}\n    instances: two\n    drain: 30\n`, '/srv/app/teal.yml');
    } catch (e) {
      err = e as TealError;
    }
    expect(err?.code).toBe('TEAL_CONFIG_INVALID');
    expect(err?.exitCode).toBe(2);
    expect(err?.message.split('\n')).toEqual([
      '/srv/app/teal.yml has 3 problems:',
      expect.stringMatching(
        /^ {2}\/srv\/app\/teal.yml:4:5 services.web.helth: unknown key \(expected one of: runtime, command, .*health.*\)$/,
      ),
      '  /srv/app/teal.yml:5:16 services.web.instances: expected number, got "two"',
      '  /srv/app/teal.yml:6:12 services.web.drain: expected a duration like "30s", got 30',
    ]);
  });

  it('reports malformed YAML with its position', () => {
    const problems = problemsOf('services:\n  web:\n    command: [node, server.js\n');
    expect(problems[0]).toMatchObject({ file: '/srv/app/teal.yml', line: expect.any(Number) });
    expect(problems[0]!.message).toMatch(/^YAML syntax: /);
  });

  it('refuses duplicate keys', () => {
    const problems = problemsOf(`${minimal}services:\n  api:\n    command: [x]\n`);
    expect(problems[0]!.message).toMatch(/YAML syntax: .*[Uu]nique/);
  });

  it('refuses a command given as one string, since teal runs it without a shell', () => {
    const problems = problemsOf('services:\n  web:\n    command: node server.js\n');
    expect(problems).toMatchObject([
      {
        path: 'services.web.command',
        message: 'expected a list of arguments like [node, server.js], got "node server.js"',
      },
    ]);
  });

  it('refuses a missing command, bad ports, bad names and unknown placeholders', () => {
    const problems = problemsOf(
      'services:\n  Web_1:\n    command: [x]\n  api:\n    ports: { blue: 9001, green: 70000 }\n    env: { V: "{{vresion}}" }\n',
    );
    expect(problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'services.Web_1: expected a service name of lower-case letters, digits and dashes, got "Web_1"',
      'services.api.command: required for runtime: process (like [node, server.js])',
      'services.api.ports.green: expected a port number (1-65535), got 70000',
      'services.api.env.V: unknown placeholder {{vresion}} (known: {{version}}, {{service}}, {{slot}})',
    ]);
  });

  it('accepts a docker service, filling its defaults and turning memory into bytes', () => {
    const { config } = parseConfig(
      'docker: { host: "tcp://10.0.0.5:2375" }\nservices:\n  web:\n    runtime: docker\n    image: "registry.local/web:{{version}}"\n    port: 3000\n    memory: 512MB\n    cpus: 0.5\n    labels: { team: web }\n    volumes: ["data:/var/lib/web"]\n',
      '/srv/app/teal.yml',
    );
    expect(config.docker).toEqual({ host: 'tcp://10.0.0.5:2375', timeout: 30_000 });
    expect(config.services.web).toMatchObject({
      runtime: 'docker',
      image: 'registry.local/web:{{version}}',
      port: 3000,
      memory: 512 * 1024 * 1024,
      cpus: 0.5,
      bindAddress: '127.0.0.1',
      retain: 5,
    });
    expect(config.services.web!.command).toBeUndefined();
    expect(parseConfig(minimal, '/srv/app/teal.yml').config.docker).toBeUndefined();
  });

  it('says which fields runtime docker needs, and which only it takes', () => {
    const problems = problemsOf(
      'services:\n  web:\n    runtime: docker\n    labels: { teal.id: x }\n  api:\n    command: [x]\n    image: api:1\n    pull: never\n  job:\n    runtime: podman\n    command: [x]\n',
    );
    expect(problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'services.web.image: required for runtime: docker',
      'services.web.port: required for runtime: docker (the port the app listens on inside the container)',
      'services.web.labels.teal.id: labels starting with "teal." are reserved',
      'services.api.image: only for runtime: docker (add runtime: docker)',
      'services.api.pull: only for runtime: docker (add runtime: docker)',
      'services.job.runtime: expected runtime: process or docker',
    ]);
    expect(problems[0]).toMatchObject({ line: 3, column: 5 });
  });

  it('names a bad pull policy, memory size, engine address and image placeholder', () => {
    const problems = problemsOf(
      'docker: { host: "http://x" }\nservices:\n  web:\n    runtime: docker\n    image: "web:{{tag}}"\n    port: 3000\n    pull: sometimes\n    memory: lots\n',
    );
    expect(problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'docker.host: expected an engine address like "unix:///var/run/docker.sock" or "tcp://127.0.0.1:2375", got "http://x"',
      'services.web.image: unknown placeholder {{tag}} (known: {{version}}, {{service}}, {{slot}})',
      'services.web.pull: expected pull: always, missing or never',
      'services.web.memory: expected a size like "512MB", got "lots"',
    ]);
  });

  it('points at the branch of a verify step the user meant', () => {
    const problems = problemsOf(
      `${minimal}    verify:\n      - http: { status: ok }\n      - { script: x }\n      - load: { maxErrorRate: 5 }\n`,
    );
    expect(problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'services.web.verify.0.http.status: expected number, got "ok"',
      'services.web.verify.1: expected a step with "run: <command>", "http: {path, status, body}" or "load: {connections, requests}"',
      'services.web.verify.2.load.maxErrorRate: expected a share from 0 to 1 (0.01 is 1%), got 5',
    ]);
  });

  it('refuses two services on the same host and path', () => {
    const problems = problemsOf(
      'services:\n  a:\n    command: [x]\n  b:\n    command: [x]\n    routes: [{ path: /api }, { path: / }]\n',
    );
    expect(problems).toMatchObject([
      { path: 'services.b.routes.1', line: 6, message: 'path / on any host is already routed to service a' },
    ]);
  });

  it('refuses placeholders in shell commands, where they would be spliced into the shell line', () => {
    const problems = problemsOf(`${minimal}    verify: [{ run: "curl $TEAL_URL/{{version}}" }]\n`);
    expect(problems.map((p) => p.path)).toEqual(['services.web.verify.0.run']);
    expect(problems[0]!.message).toContain('use $TEAL_VERSION');
  });

  it('accepts an etcd store, filling in the prefix', () => {
    const { config } = parseConfig(
      `store:\n  kind: etcd\n  endpoints: [http://127.0.0.1:2379, http://10.0.0.2:2379]\n  auth: { username: teal, passwordEnv: TEAL_ETCD_PASSWORD }\n${minimal}`,
      '/srv/app/teal.yml',
    );
    expect(config.store).toEqual({
      kind: 'etcd',
      endpoints: ['http://127.0.0.1:2379', 'http://10.0.0.2:2379'],
      prefix: '/teal',
      auth: { username: 'teal', passwordEnv: 'TEAL_ETCD_PASSWORD' },
    });
  });

  it('names a bad etcd endpoint, and an unknown store kind', () => {
    expect(problemsOf(`store: { kind: etcd, endpoints: [foo] }\n${minimal}`)).toEqual([
      {
        file: '/srv/app/teal.yml',
        line: 1,
        column: 34,
        path: 'store.endpoints.0',
        message: 'expected a URL like "http://127.0.0.1:2379", got "foo"',
      },
    ]);
    expect(problemsOf(`store: { kind: consul }\n${minimal}`).map((p) => `${p.path}: ${p.message}`)).toEqual([
      'store.kind: expected kind: sqlite or etcd',
    ]);
  });

  it('takes proxy.trustedProxies as IPv4 and IPv6 addresses and CIDRs, in normal form, for every proxy kind', () => {
    for (const kind of ['builtin', 'nginx, config: n.conf', 'haproxy, socket: h.sock']) {
      const { config } = parseConfig(
        `proxy: { kind: ${kind}, trustedProxies: [10.1.2.3/8, 192.168.0.7, "fd00::1/8", "::1"] }\n${minimal}`,
        '/t/teal.yml',
      );
      expect((config.proxy as { trustedProxies: string[] }).trustedProxies).toEqual([
        '10.0.0.0/8',
        '192.168.0.7/32',
        'fd00::/8',
        '::1/128',
      ]);
    }
  });

  it('refuses a trustedProxies entry that is not an address or a range, naming it and its place', () => {
    const problems = problemsOf(
      `proxy: { kind: builtin, trustedProxies: [10.0.0.0/33, example.com, "fe80::1%eth0", 7] }\n${minimal}`,
    ).map((p) => `${p.path}: ${p.message}`);
    expect(problems).toEqual([
      'proxy.trustedProxies.0: expected an IP address or a CIDR range like "10.0.0.0/8" or "fd00::/8", got "10.0.0.0/33" (the prefix must be 0 to 32)',
      'proxy.trustedProxies.1: expected an IP address or a CIDR range like "10.0.0.0/8" or "fd00::/8", got "example.com" (not an IP address)',
      'proxy.trustedProxies.2: expected an IP address or a CIDR range like "10.0.0.0/8" or "fd00::/8", got "fe80::1%eth0" (a zone id cannot be matched)',
      'proxy.trustedProxies.3: expected an IP address or a CIDR range like "10.0.0.0/8", got 7',
    ]);
    expect(
      problemsOf(`proxy: { kind: haproxy, socket: h.sock, trustedProxies: 10.0.0.0/8 }\n${minimal}`).map(
        (p) => `${p.path}: ${p.message}`,
      ),
    ).toEqual(['proxy.trustedProxies: expected a list of IP addresses or CIDR ranges, got "10.0.0.0/8"']);
  });

  it('fills the nginx switch defaults and names what is missing or unknown', () => {
    const { config } = parseConfig(
      `proxy: { kind: nginx, config: nginx/teal.conf }\n${minimal}`,
      '/t/teal.yml',
    );
    expect(config.proxy).toEqual({
      kind: 'nginx',
      config: 'nginx/teal.conf',
      listen: { host: '0.0.0.0', port: 80 },
      check: 'nginx -t -q',
      reload: 'nginx -s reload',
      pidFile: '/run/nginx.pid',
      preview: {},
      trustedProxies: [],
    });
    expect(problemsOf(`proxy: { kind: nginx }\n${minimal}`).map((p) => `${p.path}: ${p.message}`)).toEqual([
      'proxy.config: required: expected a file path like "/etc/nginx/conf.d/teal.conf"',
    ]);
    expect(problemsOf(`proxy: { kind: traefik }\n${minimal}`).map((p) => `${p.path}: ${p.message}`)).toEqual([
      'proxy.kind: expected kind: builtin, nginx or haproxy',
    ]);
  });

  it('refuses a config without services', () => {
    expect(problemsOf('services: {}\n').map((p) => p.message)).toEqual(['expected at least one service']);
    expect(problemsOf('proxy: { kind: builtin }\n').map((p) => p.message)).toEqual([
      'required (expected record)',
    ]);
  });

  it('says where to create the file when it does not exist', () => {
    const dir = mkdtempSync(path.join(tmp, 'none-'));
    expect(() => loadConfig(path.join(dir, 'teal.yml'))).toThrow(
      /no configuration at .*teal.yml; create a teal.yml/,
    );
  });

  it('loads the example app config', () => {
    const dir = mkdtempSync(path.join(tmp, 'ok-'));
    writeFileSync(path.join(dir, 'teal.yml'), minimal);
    expect(loadConfig(path.join(dir, 'teal.yml')).config.services.web?.command).toEqual([
      'node',
      'server.js',
    ]);
  });
});
