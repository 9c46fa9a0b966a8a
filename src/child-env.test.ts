import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { childEnv, declaredEnv } from './child-env.js';

const teal = {
  PATH: '/opt/teal/bin:/usr/bin',
  LANG: 'C.UTF-8',
  TEAL_TOKEN: 'api-token',
  TEAL_GITHUB_SECRET: 'webhook',
  ETCD_PASSWORD: 'etcd',
  NODE_OPTIONS: '--max-old-space-size=512',
  DB: 'postgres://secret',
};

describe('childEnv', () => {
  it('gives PATH, LANG, HOME/USER/LOGNAME of the run user, inheritEnv names and env, nothing else', () => {
    const env = childEnv({
      where: 'services.web',
      env: { APP: 'x' },
      inheritEnv: ['NODE_OPTIONS', 'NOT_SET'],
      user: { name: 'nobody', home: '/nonexistent' },
      from: teal,
    });
    expect(env).toEqual({
      PATH: '/opt/teal/bin:/usr/bin',
      LANG: 'C.UTF-8',
      HOME: '/nonexistent',
      USER: 'nobody',
      LOGNAME: 'nobody',
      NODE_OPTIONS: '--max-old-space-size=512',
      APP: 'x',
    });
  });

  it('gives a standard PATH when teal has none', () => {
    expect(childEnv({ where: 'services.web', from: {} }).PATH).toBe(
      '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    );
  });

  it('resolves fromEnv by name and a file without its final newline', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-env-'));
    writeFileSync(path.join(dir, 'a'), 'line one\nline two\n');
    writeFileSync(path.join(dir, 'b'), 'crlf\r\n');
    writeFileSync(path.join(dir, 'c'), 'no newline');
    const env = declaredEnv({
      where: 'services.web',
      envFrom: {
        DB_URL: { fromEnv: 'DB' },
        A: { file: path.join(dir, 'a') },
        B: { file: path.join(dir, 'b') },
        C: { file: path.join(dir, 'c') },
      },
      from: teal,
    });
    expect(env).toEqual({ DB_URL: 'postgres://secret', A: 'line one\nline two', B: 'crlf', C: 'no newline' });
  });

  it('names the key and the missing variable or file, never a value', () => {
    expect(() =>
      childEnv({ where: 'pipelines.web', envFrom: { TOKEN: { fromEnv: 'NPM_TOKEN' } }, from: teal }),
    ).toThrow(/pipelines\.web\.env\.TOKEN: fromEnv NPM_TOKEN is not set in the environment of teal/);
    expect(() =>
      childEnv({ where: 'services.web', envFrom: { K: { file: '/nonexistent/teal-key' } }, from: teal }),
    ).toThrow(/services\.web\.env\.K: cannot read file \/nonexistent\/teal-key: ENOENT/);
  });
});
