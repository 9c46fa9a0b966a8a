import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { isTealError } from '../core/errors.js';
import { distEntry } from '../paths.js';
import { HELLO_DIR } from '../testing/paths.js';
import { leaderState, procStat } from './liveness.js';
import { ProcessRuntime } from './process.js';
import { type InstanceRecord, RecordStore } from './records.js';
import { answers, get, runtimeContract, testLabels, waitFor } from './runtime.contract.js';
import type { Instance, InstanceSpec, LogLine } from './runtime.js';

const hello = path.join(HELLO_DIR, 'server.js');

function appSpec(overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  return {
    labels: testLabels(),
    index: 0,
    command: [process.execPath, hello],
    cwd: path.dirname(hello),
    env: { APP_VERSION: '1.2.3' },
    host: '127.0.0.1',
    ...overrides,
  };
}

function scriptSpec(source: string, overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  return appSpec({ command: [process.execPath, '--input-type=module', '-e', source], ...overrides });
}

runtimeContract('process', {
  create: async (stateDir) => new ProcessRuntime({ stateDir }),
  appSpec,
  scriptSpec,
});

describe('ProcessRuntime', () => {
  const dirs: string[] = [];
  /** Process groups and pids a test started outside the runtime's records, killed after it. */
  const strays: number[] = [];
  const helpers: ChildProcess[] = [];

  function tempDir(): string {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-rt-'));
    dirs.push(dir);
    return dir;
  }

  afterEach(async () => {
    for (const helper of helpers.splice(0)) if (helper.exitCode === null) helper.kill('SIGKILL');
    for (const dir of dirs.splice(0)) {
      const janitor = new ProcessRuntime({ stateDir: dir });
      for (const instance of await janitor.list()) {
        strays.push(instance.pid!);
        await janitor.stop(instance, { timeoutMs: 2_000 });
      }
      await janitor.close();
      rmSync(dir, { recursive: true, force: true });
    }
    for (const pid of strays.splice(0)) {
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
        }
      }
    }
  });

  it("passes the app only its declared environment: env, fromEnv, file and inheritEnv, never the rest of teal's", async () => {
    const runtime = new ProcessRuntime({ stateDir: tempDir() });
    const secretFile = path.join(tempDir(), 'secret');
    writeFileSync(secretFile, 'from-a-file\n');
    process.env.TEAL_TOKEN = 'secret-token';
    process.env.TEAL_TEST_SECRET = 'shell-secret';
    process.env.TEAL_TEST_INHERITED = 'inherited';
    process.env.TEAL_TEST_NAMED = 'named';
    try {
      const keys = ['TEAL_TOKEN', 'TEAL_TEST_SECRET', 'TEAL_TEST_INHERITED', 'NAMED', 'FILE', 'PORT'];
      const instance = await runtime.start(
        scriptSpec(
          `console.log(${JSON.stringify(keys)}.map((k) => k + '=' + process.env[k]).join(' ')); console.log('count=' + Object.keys(process.env).length)`,
          {
            envFrom: { NAMED: { fromEnv: 'TEAL_TEST_NAMED' }, FILE: { file: secretFile } },
            inheritEnv: ['TEAL_TEST_INHERITED', 'TEAL_TEST_ABSENT'],
          },
        ),
        { signal: AbortSignal.timeout(10_000) },
      );
      await runtime.exited(instance, { signal: AbortSignal.timeout(10_000) });
      const out = (await runtime.logTail(instance, 5)).join('\n');
      expect(out).toContain(
        `TEAL_TOKEN=undefined TEAL_TEST_SECRET=undefined TEAL_TEST_INHERITED=inherited NAMED=named FILE=from-a-file PORT=${instance.port}`,
      );
      // PATH, HOME, USER, LOGNAME (LANG, LC_ALL, TZ when set), APP_VERSION, the three declared, PORT, HOST.
      const count = Number(/count=(\d+)/.exec(out)?.[1]);
      expect(count).toBeLessThanOrEqual(13);
      await runtime.stop(instance, { timeoutMs: 1_000 });
    } finally {
      for (const k of ['TEAL_TOKEN', 'TEAL_TEST_SECRET', 'TEAL_TEST_INHERITED', 'TEAL_TEST_NAMED'])
        delete process.env[k];
      await runtime.close();
    }
  });

  it.runIf(process.getuid?.() === 0)(
    'as root, runs the app as nobody (no supplementary groups) unless user:/group: say otherwise',
    async () => {
      const runtime = new ProcessRuntime({ stateDir: tempDir() });
      // Supplementary groups of teal itself must not leak into the app.
      const groups = process.getgroups?.() ?? [];
      process.setgroups?.([0, 4, 27]);
      try {
        const ids = (pid: number) =>
          readFileSync(`/proc/${pid}/status`, 'utf8')
            .split('\n')
            .filter((l) => /^(Uid|Gid|Groups):/.test(l))
            .map((l) => l.replace(/\s+/g, ' ').trim());
        const byDefault = await runtime.start(appSpec(), { signal: AbortSignal.timeout(10_000) });
        expect(ids(byDefault.pid!)).toEqual([
          'Uid: 65534 65534 65534 65534',
          'Gid: 65534 65534 65534 65534',
          'Groups:',
        ]);
        const named = await runtime.start(appSpec({ index: 1, user: '4242', group: 'nogroup' }), {
          signal: AbortSignal.timeout(10_000),
        });
        expect(ids(named.pid!)).toEqual([
          'Uid: 4242 4242 4242 4242',
          'Gid: 65534 65534 65534 65534',
          'Groups:',
        ]);
        await runtime.stop(byDefault, { timeoutMs: 2_000 });
        await runtime.stop(named, { timeoutMs: 2_000 });
      } finally {
        process.setgroups?.(groups);
        await runtime.close();
      }
    },
  );

  it.runIf(process.getuid?.() === 0)(
    'an app whose cwd its user cannot reach fails to start, naming the user, the folder and the fix',
    async () => {
      const runtime = new ProcessRuntime({ stateDir: tempDir() });
      const locked = tempDir();
      try {
        await expect(
          runtime.start(appSpec({ cwd: locked }), { signal: AbortSignal.timeout(10_000) }),
        ).rejects.toMatchObject({
          code: 'TEAL_START_FAILED',
          message: expect.stringContaining(
            `services.web: nobody (uid 65534) cannot reach ${locked}: ${locked} is mode 700, owner 0:0. Make it searchable`,
          ),
        });
        expect(await runtime.list()).toEqual([]);
      } finally {
        await runtime.close();
      }
    },
  );

  it('refuses to start an app whose fromEnv is not set, naming the service and key', async () => {
    const runtime = new ProcessRuntime({ stateDir: tempDir() });
    try {
      await expect(
        runtime.start(appSpec({ envFrom: { DB_URL: { fromEnv: 'TEAL_TEST_NOT_SET' } } }), {
          signal: AbortSignal.timeout(10_000),
        }),
      ).rejects.toMatchObject({
        code: 'TEAL_SECRET_UNAVAILABLE',
        message: expect.stringContaining(
          `services.${testLabels().service}.env.DB_URL: fromEnv TEAL_TEST_NOT_SET`,
        ),
      });
      expect(await runtime.list()).toEqual([]);
    } finally {
      await runtime.close();
    }
  });

  it('records the instance (pid, process group, /proc start time) and logs to <stateDir>/logs/<service>/<id>.log', async () => {
    const stateDir = tempDir();
    const runtime = new ProcessRuntime({ stateDir });
    const instance = await runtime.start(appSpec(), { signal: AbortSignal.timeout(30_000) });
    await answers(instance);
    expect(instance.id).toMatch(/^web-blue-r3-0-[0-9a-z]{6}$/);
    const record = JSON.parse(
      readFileSync(path.join(stateDir, 'instances', `${instance.id}.json`), 'utf8'),
    ) as InstanceRecord;
    const logFile = path.join(stateDir, 'logs', 'web', `${instance.id}.log`);
    expect(record).toEqual({
      id: instance.id,
      labels: testLabels(),
      index: 0,
      host: '127.0.0.1',
      port: instance.port,
      pid: instance.pid,
      pgid: instance.pid,
      startedAt: instance.startedAt,
      command: [process.execPath, hello],
      cwd: path.dirname(hello),
      logFile,
      procStartTime: procStat(instance.pid!)?.startTime,
    });
    expect(readFileSync(logFile, 'utf8')).toContain(`listening on http://127.0.0.1:${instance.port}`);
    await runtime.close();
  });

  it('runs the instance in its own session and process group, not the control plane’s', async () => {
    const runtime = new ProcessRuntime({ stateDir: tempDir() });
    const instance = await runtime.start(appSpec(), { signal: AbortSignal.timeout(30_000) });
    const stat = procStat(instance.pid!);
    const ours = procStat(process.pid);
    expect(stat).toMatchObject({ pgrp: instance.pid, session: instance.pid });
    expect(stat?.session).not.toBe(ours?.session);
    expect(stat?.pgrp).not.toBe(ours?.pgrp);
    await runtime.close();
  });

  it('stop kills the whole process group, a child that ignores SIGTERM included', async () => {
    const runtime = new ProcessRuntime({ stateDir: tempDir() });
    const script = `import { spawn } from 'node:child_process';
const child = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); console.log('child ready'); setInterval(() => {}, 60000)"], { stdio: 'inherit' });
console.log('child ' + child.pid);
setInterval(() => {}, 60000);`;
    const instance = await runtime.start(scriptSpec(script), { signal: AbortSignal.timeout(30_000) });
    const lines = await waitFor(async () => {
      const tail = await runtime.logTail(instance, 10);
      return tail.includes('child ready') && tail;
    }, 'the app and its child to start');
    const childPid = Number(lines.find((l) => l.startsWith('child '))?.slice('child '.length));
    strays.push(childPid);
    const childStart = procStat(childPid)!.startTime;
    expect(procStat(childPid)?.pgrp).toBe(instance.pid);
    await runtime.stop(instance, { timeoutMs: 1_000 });
    expect(leaderState(childPid, childStart)).not.toBe('running');
    expect(leaderState(instance.pid!, null)).not.toBe('running');
    await runtime.close();
  });

  it('the instance outlives a control plane killed with SIGKILL; a new one adopts and stops it', async () => {
    const stateDir = tempDir();
    const helperFile = path.join(stateDir, 'start-and-die.mjs');
    writeFileSync(
      helperFile,
      `import { ProcessRuntime } from ${JSON.stringify(pathToFileURL(distEntry('runtimes/process.js')).href)};
const [stateDir, spec] = process.argv.slice(2);
const runtime = new ProcessRuntime({ stateDir });
const instance = await runtime.start(JSON.parse(spec), { signal: AbortSignal.timeout(30000) });
process.stdout.write(JSON.stringify(instance) + '\\n');
setInterval(() => {}, 60000);
`,
    );
    const helper = spawn(process.execPath, [helperFile, stateDir, JSON.stringify(appSpec())], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    helpers.push(helper);
    let out = '';
    helper.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
    });
    const line = await waitFor(() => out.includes('\n') && out.split('\n')[0], 'the helper to start the app');
    const instance = JSON.parse(line) as Instance;
    strays.push(instance.pid!);
    helper.kill('SIGKILL');
    await once(helper, 'exit');

    expect(await answers(instance)).toEqual({ status: 200, body: 'hello 1.2.3\n' });
    const restarted = new ProcessRuntime({ stateDir });
    const [adopted, ...rest] = await restarted.list();
    expect(rest).toEqual([]);
    expect(adopted).toMatchObject({ id: instance.id, pid: instance.pid, status: { state: 'running' } });
    await restarted.stop(adopted!, { timeoutMs: 10_000 });
    await expect(get(instance.host, instance.port)).rejects.toThrow();
    expect(await restarted.list()).toEqual([]);
    await restarted.close();
  });

  it('rotates a growing log by copy-truncate while the app keeps writing to it', async () => {
    const stateDir = tempDir();
    const runtime = new ProcessRuntime({ stateDir, logMaxBytes: 4_000, logKeep: 2, rotateEveryMs: 100 });
    const script = `let n = 0; setInterval(() => console.log('line ' + n++ + ' ' + 'x'.repeat(60)), 5);`;
    const instance = await runtime.start(scriptSpec(script), { signal: AbortSignal.timeout(30_000) });
    const log = path.join(stateDir, 'logs', 'web', `${instance.id}.log`);
    await waitFor(() => existsSync(`${log}.2`), 'a second rotation');
    await runtime.close(); // stops rotating, so the files hold still while we look; the app runs on

    expect(existsSync(`${log}.3`)).toBe(false);
    const older = numbers(readFileSync(`${log}.2`, 'utf8'));
    const recent = numbers(readFileSync(`${log}.1`, 'utf8'));
    const current = await waitFor(() => {
      const text = readFileSync(log, 'utf8');
      return numbers(text).length >= 3 && text;
    }, 'lines in the truncated file');
    // O_APPEND: after the truncate the app writes at the new end, leaving no hole of NULs.
    expect(current).not.toContain('\0');
    expect(older.at(-1)!).toBeLessThan(recent[0]!);
    expect(recent.at(-1)!).toBeLessThan(numbers(current)[0]!);

    const reader = new ProcessRuntime({ stateDir });
    expect(await reader.status(instance)).toEqual({ state: 'running' });
    const size = statSync(log).size;
    await waitFor(() => statSync(log).size > size, 'the app to keep logging');
    const tail = numbers((await reader.logTail(instance, 1_000)).join('\n'));
    expect(tail.length).toBeGreaterThan(numbers(current).length);
    expect(tail).toEqual([...tail].sort((a, b) => a - b));
    expect(tail.slice(0, recent.length)).toEqual(recent);
    await reader.close();
  });

  it('times log lines by their index; lines written while no runtime watched are marked approximate once adopted', async () => {
    const stateDir = tempDir();
    const runtime = new ProcessRuntime({ stateDir, rotateEveryMs: 100 });
    const script = `console.log('first');
setTimeout(() => console.log('unwatched'), 1000);
setTimeout(() => console.log('watched'), 2500);
setInterval(() => {}, 60_000);`;
    const instance = await runtime.start(scriptSpec(script), { signal: AbortSignal.timeout(30_000) });
    const log = path.join(stateDir, 'logs', 'web', `${instance.id}.log`);
    await waitFor(() => existsSync(`${log}.times`), 'the first line to be timed');
    await runtime.close(); // the control plane goes away; the app keeps writing
    await waitFor(() => readFileSync(log, 'utf8').includes('unwatched'), 'the line written meanwhile');
    const adopter = new ProcessRuntime({ stateDir, rotateEveryMs: 100 });
    expect((await adopter.list()).map((i) => i.id)).toEqual([instance.id]);
    await waitFor(() => readFileSync(log, 'utf8').includes('\nwatched\n'), 'the line written after adoption');
    await new Promise((r) => setTimeout(r, 300)); // a tick of the adopter's clock
    const lines: LogLine[] = [];
    for await (const l of adopter.logs(instance, { follow: false, signal: AbortSignal.timeout(10_000) }))
      lines.push(l);
    expect(lines.map((l) => [l.line, l.approx === true])).toEqual([
      ['first', false],
      ['unwatched', true],
      ['watched', false],
    ]);
    // Upper bounds, in order: a mark's time is the file's mtime when it was seen.
    expect(lines[1]!.time - lines[0]!.time).toBeGreaterThanOrEqual(900);
    expect(lines[2]!.time - lines[1]!.time).toBeGreaterThan(0);
    await adopter.stop(instance, { timeoutMs: 3_000 });
    await adopter.close();
  });

  it('follows the log across copy-truncate rotations, in order', async () => {
    const stateDir = tempDir();
    const runtime = new ProcessRuntime({ stateDir, logMaxBytes: 4_000, logKeep: 1, rotateEveryMs: 100 });
    const script = `let n = 0; setInterval(() => console.log('line ' + n++ + ' ' + 'x'.repeat(60)), 10);`;
    const instance = await runtime.start(scriptSpec(script), { signal: AbortSignal.timeout(30_000) });
    const log = path.join(stateDir, 'logs', 'web', `${instance.id}.log`);
    const controller = new AbortController();
    const followed: number[] = [];
    const done = (async () => {
      for await (const { line } of runtime.logs(instance, { follow: true, signal: controller.signal })) {
        followed.push(...numbers(line));
      }
    })();
    await waitFor(() => existsSync(`${log}.1`), 'a rotation');
    const rotatedUpTo = numbers(readFileSync(`${log}.1`, 'utf8')).at(-1)!;
    await waitFor(() => followed.some((n) => n > rotatedUpTo + 100), 'lines written after the rotation');
    controller.abort();
    await done;
    await runtime.close();
    expect(followed[0]).toBe(0);
    expect(followed).toEqual([...new Set(followed)].sort((a, b) => a - b));
    // Only the few lines written between a copy and its truncate may be missing.
    expect(followed.length).toBeGreaterThan(followed.at(-1)! * 0.9);
  });

  it('does not mistake a recycled pid for the instance', async () => {
    const stateDir = tempDir();
    // A stranger that happens to have the recorded pid: alive, its own group, another start time.
    const stranger = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60000)'], {
      detached: true,
      stdio: 'ignore',
    });
    await once(stranger, 'spawn');
    const pid = stranger.pid!;
    strays.push(pid);
    const record: InstanceRecord = {
      id: 'web-blue-r3-0-old000',
      labels: testLabels(),
      index: 0,
      host: '127.0.0.1',
      port: 1,
      pid,
      pgid: pid,
      startedAt: Date.now() - 60_000,
      command: ['node', 'server.js'],
      cwd: stateDir,
      logFile: path.join(stateDir, 'logs', 'web', 'web-blue-r3-0-old000.log'),
      procStartTime: procStat(pid)!.startTime - 1,
    };
    await new RecordStore(path.join(stateDir, 'instances')).write(record);

    const runtime = new ProcessRuntime({ stateDir });
    const [listed] = await runtime.list();
    expect(listed?.status).toEqual({ state: 'exited', code: null, signal: null });
    expect(await runtime.exited(listed!, { signal: AbortSignal.timeout(5_000) })).toEqual({
      code: null,
      signal: null,
    });
    await runtime.stop(listed!, { timeoutMs: 1_000 });
    expect(leaderState(pid, null)).toBe('running');
    expect(await runtime.list()).toEqual([]);
    await runtime.close();
  });

  it('says when the working directory does not exist', async () => {
    const runtime = new ProcessRuntime({ stateDir: tempDir() });
    const cwd = path.join(os.tmpdir(), 'teal-no-such-dir');
    const err = await runtime
      .start(appSpec({ cwd }), { signal: AbortSignal.timeout(10_000) })
      .catch((e) => e);
    expect(isTealError(err, 'TEAL_START_FAILED')).toBe(true);
    expect(err.message).toContain(`working directory "${cwd}" does not exist`);
    expect(err.details).toEqual({ command: [process.execPath, hello], cwd });
    await runtime.close();
  });

  it('says when the program is not executable', async () => {
    const stateDir = tempDir();
    const program = path.join(stateDir, 'not-executable.sh');
    writeFileSync(program, '#!/bin/sh\necho hi\n');
    chmodSync(program, 0o644);
    const runtime = new ProcessRuntime({ stateDir });
    const err = await runtime
      .start(appSpec({ command: [program] }), { signal: AbortSignal.timeout(10_000) })
      .catch((e) => e);
    expect(isTealError(err, 'TEAL_START_FAILED')).toBe(true);
    expect(err.message).toBe(
      `cannot start services.web: program "${program}" is not executable (command: ${JSON.stringify([program])}, cwd: ${path.dirname(hello)})`,
    );
    expect(await runtime.list()).toEqual([]);
    await runtime.close();
  });
});

/** The n of each complete `line <n> xxx…` line. */
function numbers(text: string): number[] {
  return [...text.matchAll(/^line (\d+) x{60}$/gm)].map((m) => Number(m[1]));
}
