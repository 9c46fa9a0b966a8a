import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from '../src/proxy/switch.contract.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad } from './helpers.js';
import { endedRun, makeRepo, type TestRepo, waitRun } from './pipeline-helpers.js';

let daemon: TestDaemon | undefined;
let repo: TestRepo | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
  repo?.remove();
  repo = undefined;
});

const SHELL_SECRET = 'shell-secret-4f9a';
const WEBHOOK_SECRET = 'webhook-secret-77c1';
const ETCD_PASSWORD = 'etcd-password-0d2e';
const FILE_TOKEN = 'file-token-a41c9e0b7d2f4c6a8e1b3d5f7a9c0e2b';

/**
 * What a commit pushed by an attacker would try from a stage: the token and the store by absolute
 * path and by climbing from the workspace, teal's environment through /proc, and its own env.
 * Each section ends with its exit status, so a read that failed silently still shows.
 */
const PROBE = `echo "who uid=$(id -u) gid=$(id -g) groups=$(id -G) ppid=$PPID"
echo "--- env"; env | sort
echo "--- token"; cat "$STATE/token" 2>&1; echo "status=$?"
echo "--- store"; head -c 16 "$STATE/store.db" 2>&1; echo "status=$?"
echo "--- climb"; ls -a ../.. 2>&1; cat ../../../.teal/token 2>&1; echo "status=$?"
echo "--- daemon environ"; tr '\\0' '\\n' < /proc/$PPID/environ 2>&1; echo "status=$?"
echo "--- every environ"; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c '${SHELL_SECRET}'
echo "--- daemon.log"; cat "$STATE/daemon.log" 2>&1 | head -c 200; echo "status=$?"
echo "--- end"
exit 0
`;

function section(log: string, name: string): string {
  const start = log.indexOf(`--- ${name}\n`);
  if (start < 0) throw new Error(`no section ${name} in:\n${log}`);
  const body = log.slice(start + name.length + 5);
  return body.slice(0, body.indexOf('\n--- '));
}

describe('a pipeline stage (code anyone who can push runs)', () => {
  it("cannot read the API token, the store, the daemon log or teal up's environment, and sees only its declared env", async () => {
    repo = makeRepo();
    const first = repo.commit('first', 0, PROBE);
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-it-'));
    // The test daemon authenticates with TEAL_TOKEN; a token file is there too, as on a real host.
    mkdirSync(path.join(dir, '.teal'), { mode: 0o700 });
    writeFileSync(path.join(dir, '.teal', 'token'), `${FILE_TOKEN}\n`, { mode: 0o600 });
    const d = await startTestDaemon({
      dir,
      env: {
        TEAL_TEST_SECRET: SHELL_SECRET,
        TEAL_GITHUB_SECRET: WEBHOOK_SECRET,
        TEAL_ETCD_PASSWORD: ETCD_PASSWORD,
      },
      extraConfig: `webhooks:
  github: { secretEnv: TEAL_GITHUB_SECRET }
pipelines:
  web:
    source: { repo: ${repo.bare}, branches: [main] }
    env: { STATE: ${JSON.stringify(path.join(dir, '.teal'))} }
    stages:
      - { name: probe, run: ". ./test.sh" }
      - { name: build, run: "mkdir -p dist && cp server.js dist/" }
    artifact: { path: dist }
    environments: [web]
`,
      services: `  web:\n${helloService({ command: JSON.stringify([process.execPath, 'server.js']) })}`,
    });
    daemon = d;
    // The config names the state dir literally, as an attacker who knows the layout would.
    expect(d.paths.dir).toBe(path.join(d.dir, '.teal'));

    const run1 = await d.client.request<{ n: number }>('POST', '/v1/pipelines/web/runs', { commit: first });
    const done1 = await waitRun(d, run1.n, endedRun);
    expect(done1.state, JSON.stringify(done1.error)).toBe('done');

    // The next commit deploys under keep-alive load: running stages and apps as another user
    // costs no request.
    const load = backgroundLoad(`${d.info.proxy}/`, 16);
    const second = repo.commit('second', 0, PROBE);
    const run2 = await d.client.request<{ n: number }>('POST', '/v1/pipelines/web/runs', { commit: second });
    const done2 = await waitRun(d, run2.n, endedRun);
    const { report } = await load.stop();
    expect(done2.state, JSON.stringify(done2.error)).toBe('done');
    expect(report.failed, JSON.stringify(report.failures.slice(0, 3))).toBe(0);
    expect((await request(`${d.info.proxy}/`)).body).toBe(`hello ${second.slice(0, 7)}\n`);

    const logFile = done2.steps.find((s) => s.name === 'probe')?.log;
    expect(logFile && existsSync(logFile)).toBe(true);
    const log = readFileSync(logFile!, 'utf8');
    if (process.env.TEAL_TEST_SHOW) console.log(log);
    for (const secret of [SHELL_SECRET, WEBHOOK_SECRET, ETCD_PASSWORD, d.token, FILE_TOKEN]) {
      expect(log, `the stage saw ${secret}`).not.toContain(secret);
    }
    const root = process.getuid?.() === 0;
    // The stage's parent is teal up itself: /proc/$PPID/environ is the daemon's.
    expect(log).toContain(`ppid=${d.info.pid}`);
    if (root) {
      expect(log).toMatch(/^who uid=65534 gid=65534 groups=65534 /m);
      expect(section(log, 'token')).toMatch(/Permission denied\nstatus=1/);
      expect(section(log, 'store')).toMatch(/Permission denied\nstatus=1/);
      expect(section(log, 'climb')).toMatch(/Permission denied\nstatus=1/);
      expect(section(log, 'daemon environ')).toMatch(/Permission denied\nstatus=[12]/);
      expect(section(log, 'daemon.log')).toMatch(/Permission denied/);
    }
    expect(section(log, 'every environ').trim()).toBe('0');
    // Climbing two folders from the workspace leads to the work dir, which holds no secret.
    expect(section(log, 'climb').split('\n').slice(0, 4)).toEqual(['.', '..', 'artifacts', 'workspaces']);

    const env = Object.fromEntries(
      section(log, 'env')
        .split('\n')
        .filter(Boolean)
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    const declared = [
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
      'STATE',
    ];
    expect(Object.keys(env).filter((k) => !declared.includes(k) && !k.startsWith('TEAL_'))).toEqual([]);
    expect(
      Object.keys(env)
        .filter((k) => k.startsWith('TEAL_'))
        .sort(),
    ).toEqual([
      'TEAL_ARTIFACT',
      'TEAL_BRANCH',
      'TEAL_COMMIT',
      'TEAL_COMMIT_AUTHOR',
      'TEAL_COMMIT_MESSAGE',
      'TEAL_PIPELINE',
      'TEAL_RUN',
      'TEAL_VERSION',
    ]);
    if (root) expect(env.USER).toBe('nobody');
    // Workspaces and artifacts live beside the state dir, not in it.
    expect(done2.artifact?.startsWith(`${d.paths.dir}-work${path.sep}artifacts${path.sep}`)).toBe(true);
    expect(existsSync(path.join(d.paths.dir, 'workspaces'))).toBe(false);
    expect(existsSync(path.join(d.paths.dir, 'artifacts'))).toBe(false);
  }, 180_000);
});
