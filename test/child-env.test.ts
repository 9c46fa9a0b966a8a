import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HELLO, helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait } from './helpers.js';

let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
});

/** What teal up's shell holds and no code it runs may see unless its config names it. */
const SHELL_SECRETS = {
  TEAL_TEST_SECRET: 'shell-secret-4f9a',
  TEAL_GITHUB_SECRET: 'webhook-secret-77c1',
  TEAL_ETCD_PASSWORD: 'etcd-password-0d2e',
  AWS_SECRET_ACCESS_KEY: 'aws-secret-9b3f',
};

function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

describe('the environment of the code teal runs', () => {
  it('apps, verify run steps and hooks get only what their config declares: env (values, fromEnv, file), inheritEnv, PATH/HOME, TEAL_*', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-env-'));
    const dump = path.join(dir, 'dump');
    mkdirSync(dump);
    // Whoever the code runs as must be able to write its dump.
    chmodSync(dump, 0o777);
    writeFileSync(path.join(dir, 'db-password'), 'file-secret-5e8d\n');
    // The app writes its whole environment, then serves as the example app does.
    writeFileSync(
      path.join(dir, 'dump-app.mjs'),
      `import { writeFileSync } from 'node:fs';\nwriteFileSync(process.env.DUMP + '/app-' + process.env.PORT + '.env', Object.entries(process.env).map(([k, v]) => k + '=' + v).join('\\n'));\nawait import(${JSON.stringify(HELLO)});\n`,
    );
    chmodSync(dir, 0o755);
    daemon = await startTestDaemon({
      dir,
      env: { ...SHELL_SECRETS, TEAL_TEST_PASSED: 'passed-by-name', TEAL_TEST_DB: 'db-url-from-env' },
      extraConfig: 'webhooks:\n  github: { secretEnv: TEAL_GITHUB_SECRET }\n',
      services: `  envdump:\n${helloService({
        command: JSON.stringify([process.execPath, path.join(dir, 'dump-app.mjs')]),
        env: `{ APP_VERSION: "{{version}}", DUMP: ${JSON.stringify(dump)}, DB_URL: { fromEnv: TEAL_TEST_DB }, DB_PASSWORD: { file: db-password } }`,
        inheritEnv: '[TEAL_TEST_PASSED]',
        verify: `[{ run: 'env > "$DUMP/verify.env"' }, { http: { path: /, body: "hello {{version}}" } }]`,
        hooks: `{ postDeploy: 'env > "$DUMP/hook.env"' }`,
      })}`,
    });
    const first = await deployAndWait(daemon.client, 'envdump', 'v1');
    expect(first.state, first.error?.message).toBe('done');
    const load = backgroundLoad(`${daemon.info.proxy}/`, 8);
    const d = await deployAndWait(daemon.client, 'envdump', 'v2');
    const { report } = await load.stop();
    expect(d.state, d.error?.message).toBe('done');
    expect(report.failed).toBe(0);

    const files = readdirSync(dump).sort();
    expect(files).toEqual(expect.arrayContaining(['hook.env', 'verify.env']));
    expect(files.filter((f) => f.startsWith('app-'))).toHaveLength(2);
    for (const file of files) {
      const text = readFileSync(path.join(dump, file), 'utf8');
      const env = parseEnv(text);
      for (const secret of [...Object.values(SHELL_SECRETS), daemon.token]) {
        expect(text, `${file} holds ${secret}`).not.toContain(secret);
      }
      // Declared: the service's env with its references resolved, and the inherited name.
      expect(env, file).toMatchObject({
        DUMP: dump,
        DB_URL: 'db-url-from-env',
        DB_PASSWORD: 'file-secret-5e8d',
        TEAL_TEST_PASSED: 'passed-by-name',
      });
      expect(['v1', 'v2'], file).toContain(env.APP_VERSION);
      expect(env.PATH, file).toBeTruthy();
      expect(env.HOME, file).toBeTruthy();
      // Nothing else of teal up's environment (vitest's own variables, for one).
      const allowed = new Set([
        'PATH',
        'HOME',
        'USER',
        'LOGNAME',
        'LANG',
        'LC_ALL',
        'TZ',
        'PWD',
        'SHLVL',
        '_',
      ]);
      const extra = Object.keys(env).filter(
        (k) =>
          !allowed.has(k) &&
          !k.startsWith('TEAL_') &&
          !['PORT', 'HOST', 'DUMP', 'DB_URL', 'DB_PASSWORD', 'APP_VERSION'].includes(k),
      );
      expect(extra, file).toEqual([]);
      expect(
        Object.keys(env).filter((k) => k.startsWith('TEAL_') && k !== 'TEAL_TEST_PASSED'),
        file,
      ).toEqual(file.startsWith('app-') ? [] : expect.arrayContaining(['TEAL_SERVICE', 'TEAL_VERSION']));
    }

    // The store holds the references, never the values; so do the API's records and status.
    const status = await daemon.cli(['status', 'envdump', '--json']);
    const history = await daemon.client.request('GET', '/v1/services/envdump/deployments/2');
    await daemon.stop();
    const stored = readdirSync(daemon.paths.dir)
      .filter((f) => f.startsWith('store.db'))
      .map((f) => readFileSync(path.join(daemon!.paths.dir, f)).toString('latin1'))
      .join('');
    expect(stored).toContain('TEAL_TEST_DB');
    for (const text of [stored, status.stdout, JSON.stringify(history)]) {
      expect(text).not.toContain('db-url-from-env');
      expect(text).not.toContain('file-secret-5e8d');
    }
  }, 90_000);

  it('a fromEnv that teal up does not have fails the deploy before anything starts, naming the service and key', async () => {
    daemon = await startTestDaemon({
      services: `  hello:\n${helloService({ env: '{ APP_VERSION: "{{version}}", DB_URL: { fromEnv: TEAL_TEST_NOT_SET } }' })}`,
    });
    const d = await deployAndWait(daemon.client, 'hello', 'v1');
    expect(d.state).toBe('failed');
    expect(d.error?.code).toBe('TEAL_SECRET_UNAVAILABLE');
    expect(d.error?.message).toContain('services.hello.env.DB_URL: fromEnv TEAL_TEST_NOT_SET is not set');
  }, 60_000);

  it('teal validate refuses an env file it cannot read, with the file, line and key', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-env-'));
    const file = path.join(dir, 'teal.yml');
    writeFileSync(
      file,
      `services:\n  web:\n    command: [node, server.js]\n    env:\n      DB_PASSWORD: { file: secrets/db }\n`,
    );
    const { runCli } = await import('../src/testing/daemon.js');
    const r = await runCli(['validate', '-c', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('teal.yml:5');
    expect(r.stderr).toContain('services.web.env.DB_PASSWORD.file: cannot read');
    expect(r.stderr).toContain(path.join(dir, 'secrets/db'));
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
