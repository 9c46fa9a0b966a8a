import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { statePaths } from '../src/daemon/files.js';
import { ensurePrivateDir } from '../src/files.js';
import { cliEntry } from '../src/paths.js';
import { pidAlive } from '../src/proc.js';
import {
  type CliResult,
  helloService,
  runCli,
  startTestDaemon,
  type TestDaemon,
} from '../src/testing/daemon.js';

/**
 * Local users (issue 13, item 5 and the state-dir modes of item 10): another process on the host
 * must not be able to stand in for the data plane, and a state dir must not be readable by others.
 */

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
const token = 'local-users-test-token-0123456789abcdef';

const started: ChildProcess[] = [];
const dirs: string[] = [];
let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
  for (const child of started.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(name = 'teal-local-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), name));
  dirs.push(dir);
  return dir;
}

/** An innocent process whose pid an impostor reports: whatever teal does must not signal it. */
function innocent(uid?: number): ChildProcess {
  const child = spawn('sleep', ['300'], { stdio: 'ignore', ...(uid === undefined ? {} : { uid, gid: uid }) });
  started.push(child);
  return child;
}

/**
 * Something that is not a data plane, answering the admin API on `socket` as one would: reports
 * `pid` as its own and accepts every table. Run inline (-e) so that `nobody` needs no readable file.
 */
async function impostor(socket: string, pid: number, uid?: number): Promise<ChildProcess> {
  const script = `
    const http = require('node:http');
    const fs = require('node:fs');
    try { fs.unlinkSync(process.argv[1]); } catch {}
    http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const body = JSON.stringify(req.url === '/v1/info'
          ? { pid: ${pid}, listen: '127.0.0.1:1', requestedListen: '127.0.0.1:0', revision: null,
              preview: '127.0.0.1:2', requestedPreview: '127.0.0.1:0',
              startedAt: new Date().toISOString(), version: require(process.argv[2]).version }
          : { revision: 1 });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(body);
      });
    }).listen(process.argv[1], () => { fs.chmodSync(process.argv[1], 0o777); console.log('ready'); });
  `;
  const child = spawn(
    process.execPath,
    ['-e', script, socket, path.join(path.dirname(cliEntry()), '../../package.json')],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      ...(uid === undefined ? {} : { uid, gid: uid }),
    },
  );
  started.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the impostor exited (${code})`)));
  });
  return child;
}

function writeConfig(dir: string): string {
  const configFile = path.join(dir, 'teal.yml');
  writeFileSync(
    configFile,
    `proxy: { kind: builtin, listen: 127.0.0.1:0 }\napi: { listen: 127.0.0.1:0 }\nservices:\n  hello:\n${helloService()}\n`,
  );
  return configFile;
}

/** `teal up` that is expected to refuse: it must exit by itself; one still running after 20s has attached. */
function upExpectingExit(configFile: string): Promise<CliResult & { stillRunning: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliEntry(), 'up', '-c', configFile], {
      cwd: path.dirname(configFile),
      env: { ...process.env, TEAL_TOKEN: token, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    started.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c));
    child.stderr!.on('data', (c: Buffer) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGTERM'), 20_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr, stillRunning: signal !== null });
    });
  });
}

const down = (configFile: string) =>
  runCli(['down', '-c', configFile], { cwd: path.dirname(configFile), env: { TEAL_TOKEN: token } });

describe('a process answering on the admin socket in the data plane’s place', () => {
  for (const who of isRoot ? ['this user', 'nobody'] : ['this user']) {
    it(`teal up refuses to attach and teal down signals nothing (the reported pid runs as ${who})`, async () => {
      const dir = tempDir();
      const configFile = writeConfig(dir);
      const paths = statePaths(path.join(dir, '.teal'));
      mkdirSync(paths.dir, { mode: 0o700 });
      const sleeper = innocent(who === 'nobody' ? NOBODY : undefined);
      await impostor(paths.proxySocket, sleeper.pid!);

      const up = await upExpectingExit(configFile);
      expect(up.stillRunning, `teal up attached to the impostor:\n${up.stderr}`).toBe(false);
      expect(up.code).toBe(1);
      expect(up.stderr).toContain('is not a data plane this teal started');
      expect(up.stderr).toContain(`not a data plane this teal started`);
      expect(up.stderr).toMatch(who === 'nobody' ? /runs as uid 65534/ : /runs \/usr\/bin\/sleep, not /);
      expect(up.stderr).not.toMatch(/\n\s+at /); // a clear error, not a stack trace

      // restart-proxy would hand it the routing table and take its word for the new pid.
      const restarted = await runCli(['restart-proxy', '-c', configFile], {
        cwd: dir,
        env: { TEAL_TOKEN: token },
      });
      expect(restarted.code).toBe(1);
      expect(restarted.stderr).toContain('is not a data plane this teal started');

      const stopped = await down(configFile);
      expect(stopped.code, stopped.stderr).toBe(1);
      expect(stopped.stderr).toContain('is not a data plane this teal started');
      await sleep(300);
      expect(pidAlive(sleeper.pid!), 'teal down signalled the innocent process').toBe(true);
    });
  }

  it('an impostor that reports its own pid is refused too: it is not `teal proxy` on that socket', async () => {
    const dir = tempDir();
    const configFile = writeConfig(dir);
    const paths = statePaths(path.join(dir, '.teal'));
    mkdirSync(paths.dir, { mode: 0o700 });
    // Our user, our node, even "proxy --admin <socket>" among its arguments: but not `teal proxy`.
    const script = `require('node:http').createServer((q, s) => { q.resume(); s.end(JSON.stringify({ pid: process.pid,
      listen: '127.0.0.1:1', requestedListen: '127.0.0.1:0', preview: '127.0.0.1:2', requestedPreview: '127.0.0.1:0',
      revision: null, startedAt: '', version: '0' })); })
      .listen(process.argv[3], () => console.log('ready'));`;
    const own = spawn(process.execPath, ['-e', script, 'proxy', '--admin', paths.proxySocket], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    started.push(own);
    await new Promise((r) => own.stdout!.once('data', r));

    const up = await upExpectingExit(configFile);
    expect(up.stillRunning, `teal up attached to the impostor:\n${up.stderr}`).toBe(false);
    expect(up.stderr).toContain('is not a data plane this teal started');
    const stopped = await down(configFile);
    expect(stopped.stderr).toContain('is not a data plane this teal started');
    await sleep(300);
    expect(pidAlive(own.pid!)).toBe(true);
  });

  it.runIf(isRoot)(
    'a deep state dir no longer uses a name in /tmp another user can take first: their socket there is never asked',
    async () => {
      // Deep enough that <state dir>/proxy.sock is over the unix socket limit.
      const dir = path.join(tempDir(), 'a'.repeat(60), 'b'.repeat(40));
      mkdirSync(dir, { recursive: true });
      const stateDir = path.join(dir, '.teal');
      // The name the state dir's socket used to have: predictable by anyone.
      const oldName = path.join(
        tmpdir(),
        `teal-${createHash('sha256').update(stateDir).digest('hex').slice(0, 16)}.sock`,
      );
      const sleeper = innocent(NOBODY);
      await impostor(oldName, sleeper.pid!, NOBODY);

      daemon = await startTestDaemon({ services: `  hello:\n${helloService()}`, dir });
      expect(daemon.log()).toContain('started the data plane');
      await daemon.stop();
      const stopped = await daemon.cli(['down']);
      expect(stopped.code, stopped.stderr).toBe(0);
      await sleep(300);
      expect(pidAlive(sleeper.pid!), 'teal down signalled the pid the /tmp impostor reported').toBe(true);

      const socket = daemon.paths.proxySocket;
      expect(path.dirname(socket)).toBe(`/tmp/teal-${process.getuid!()}`);
      const socketDir = lstatSync(path.dirname(socket));
      expect(socketDir.uid).toBe(process.getuid!());
      expect(socketDir.mode & 0o777).toBe(0o700);
    },
  );
});

describe('the private socket folder', () => {
  it('is refused when another user owns it, when it is open to others, or when it is not a folder', () => {
    const base = tempDir();
    const open = path.join(base, 'open');
    mkdirSync(open, { mode: 0o700 });
    chmodSync(open, 0o777);
    expect(() => ensurePrivateDir(open)).toThrow(/has mode 0777, open to other users/);
    const file = path.join(base, 'file');
    writeFileSync(file, '');
    expect(() => ensurePrivateDir(file)).toThrow();
    if (isRoot) {
      const theirs = path.join(base, 'theirs');
      mkdirSync(theirs, { mode: 0o700 });
      chownSync(theirs, NOBODY, NOBODY);
      expect(() => ensurePrivateDir(theirs)).toThrow(/owned by uid 65534/);
    }
    const fresh = path.join(base, 'fresh');
    ensurePrivateDir(fresh);
    expect(lstatSync(fresh).mode & 0o777).toBe(0o700);
  });
});

describe('a state dir that existed before teal up', () => {
  it('is taken back to 0700 folders and 0600 files, and what teal creates in it is made so', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const state = path.join(dir, '.teal');
    mkdirSync(path.join(state, 'logs', 'hello'), { recursive: true, mode: 0o755 });
    // An empty file is an empty SQLite database: the store that existed, world-readable.
    for (const f of ['token', 'store.db', 'daemon.log', 'proxy.log', 'logs/hello/old.log']) {
      writeFileSync(path.join(state, f), f === 'token' ? `${token}\n` : '');
      chmodSync(path.join(state, f), 0o644);
    }
    for (const d of [state, path.join(state, 'logs'), path.join(state, 'logs', 'hello')]) chmodSync(d, 0o755);

    daemon = await startTestDaemon({ services: `  hello:\n${helloService()}`, dir });
    const deployed = await daemon.cli(['deploy', 'hello', '--version', 'v1']);
    expect(deployed.code, deployed.stderr).toBe(0);

    const seen: string[] = [];
    const open: string[] = [];
    const walk = (p: string) => {
      const st = lstatSync(p);
      if (st.isSymbolicLink()) return;
      seen.push(path.relative(state, p) || '.');
      if ((st.mode & 0o077) !== 0)
        open.push(`${path.relative(state, p) || '.'} ${(st.mode & 0o777).toString(8)}`);
      if (st.isDirectory()) for (const e of readdirSync(p)) walk(path.join(p, e));
    };
    walk(state);
    expect(open).toEqual([]);
    // The store with its WAL, the saved table, an instance record and its log were all checked.
    expect(seen.some((p) => p.endsWith('-wal'))).toBe(true);
    expect(seen).toContain('proxy-table.json');
    expect(seen.filter((p) => p.startsWith('logs/hello/')).length).toBeGreaterThan(1);
    expect(seen.filter((p) => p.startsWith('instances/')).length).toBeGreaterThan(0);
  });
});
