import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { pidAlive } from '../proc.js';
import { execWords, listWords, pathValue } from './systemd-verify.js';

/**
 * Runs a service unit the way systemd's service manager does, for hosts (like the test machines)
 * where systemd is not PID 1: the command from ExecStart= in WorkingDirectory=, with only the
 * environment the unit gives (Environment=, EnvironmentFile=, INVOCATION_ID), its LimitNOFILE=, in
 * a cgroup of its own (cgroup v2), so that every process it starts, detached or not, is the unit's,
 * as under systemd. Stop and restart signal per KillMode= (systemd.kill(5)): control-group every
 * process in the cgroup, mixed SIGTERM to the main process and SIGKILL to the rest, process the
 * main process alone; the same happens when the main process exits by itself, before Restart=
 * starts it again after RestartSec=. A [Service] setting it does not emulate is refused, so a
 * unit never passes here on a setting that was silently ignored.
 */

export interface RunningUnit {
  mainPid(): number | undefined;
  /** Every process in the unit's cgroup. */
  procs(): number[];
  /** How many times Restart= started it again after its main process exited by itself. */
  restarts(): number;
  /** `systemctl stop`. */
  stop(): Promise<void>;
  /** `systemctl restart`: stop, then start. */
  restart(): Promise<void>;
  /** `systemctl reload`: ExecReload= with the unit's environment; its exit code and output. */
  reload(): Promise<{ code: number; output: string }>;
  /** SIGKILL to the main process, as a crash: Restart= decides what follows. */
  crash(): void;
  /** Waits until a main process other than `than` runs. */
  nextMain(than: number | undefined, timeoutMs?: number): Promise<number>;
  /** The main process's output (stdout and stderr, as journald would keep it). */
  log(): string;
  /** SIGKILL to everything in the cgroup, and the cgroup removed. */
  cleanup(): Promise<void>;
}

const EMULATED = new Set([
  'Type',
  'ExecStart',
  'ExecReload',
  'WorkingDirectory',
  'Environment',
  'EnvironmentFile',
  'KillMode',
  'Restart',
  'RestartSec',
  'RestartPreventExitStatus',
  'LimitNOFILE',
]);

interface Service {
  argv: string[];
  reload?: string[];
  cwd: string;
  env: Record<string, string>;
  killMode: 'control-group' | 'mixed' | 'process';
  restart: 'always' | 'no' | 'on-failure';
  restartSecMs: number;
  preventExit: Set<number>;
  nofile?: number;
}

export function parseService(text: string): Service {
  const service = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    const at = line.indexOf('=');
    if (at < 1) throw new Error(`not a setting: ${line}`);
    if (section !== 'Service') continue;
    const key = line.slice(0, at).trim();
    if (!EMULATED.has(key)) throw new Error(`[Service] ${key}= is not emulated by this harness`);
    service.set(key, [...(service.get(key) ?? []), line.slice(at + 1).trim()]);
  }
  const one = (key: string) => service.get(key)?.at(-1);
  const env: Record<string, string> = { INVOCATION_ID: randomBytes(16).toString('hex') };
  for (const line of service.get('Environment') ?? []) {
    for (const word of listWords(line)) {
      const eq = word.indexOf('=');
      env[word.slice(0, eq)] = word.slice(eq + 1);
    }
  }
  for (const line of service.get('EnvironmentFile') ?? []) {
    const optional = line.startsWith('-');
    const file = pathValue(optional ? line.slice(1) : line);
    if (!existsSync(file)) {
      if (optional) continue;
      throw new Error(`EnvironmentFile ${file} is missing`);
    }
    for (const l of readFileSync(file, 'utf8').split('\n')) {
      const t = l.trim();
      if (!t || t.startsWith('#') || t.startsWith(';')) continue;
      const eq = t.indexOf('=');
      if (eq > 0) env[t.slice(0, eq).trim()] = t.slice(eq + 1).trim();
    }
  }
  const killMode = one('KillMode') ?? 'control-group';
  if (killMode !== 'control-group' && killMode !== 'mixed' && killMode !== 'process')
    throw new Error(`KillMode=${killMode} is not emulated`);
  const restart = one('Restart') ?? 'no';
  if (restart !== 'always' && restart !== 'no' && restart !== 'on-failure')
    throw new Error(`Restart=${restart} is not emulated`);
  const type = one('Type') ?? 'simple';
  if (type !== 'simple' && type !== 'exec') throw new Error(`Type=${type} is not emulated`);
  const sec = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(one('RestartSec') ?? '100ms');
  if (!sec) throw new Error(`RestartSec=${one('RestartSec')} is not emulated`);
  const nofile = one('LimitNOFILE');
  const exec = one('ExecStart');
  if (!exec) throw new Error('no ExecStart=');
  return {
    argv: execWords(exec),
    ...(one('ExecReload') ? { reload: execWords(one('ExecReload')!) } : {}),
    cwd: pathValue(one('WorkingDirectory') ?? '/'),
    env,
    killMode,
    restart,
    restartSecMs: Number(sec[1]) * (sec[2] === 'ms' ? 1 : 1000),
    preventExit: new Set((one('RestartPreventExitStatus') ?? '').split(/\s+/).filter(Boolean).map(Number)),
    ...(nofile === undefined ? {} : { nofile: Number(nofile) }),
  };
}

/**
 * The hard open-file limit here: systemd (PID 1, CAP_SYS_RESOURCE) raises a unit's past it, a
 * process on a test machine cannot, so the unit gets the smaller of the two.
 */
function hardNofile(): number {
  const hard = /^Max open files\s+\d+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
  return hard === undefined ? Number.POSITIVE_INFINITY : Number(hard);
}

function cgroupRoot(): string {
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, where, type] = line.split(' ');
    if (type === 'cgroup2' && where) return where;
  }
  throw new Error('no cgroup v2 hierarchy is mounted');
}

export async function startUnit(file: string, options: { logFile: string }): Promise<RunningUnit> {
  const svc = parseService(readFileSync(file, 'utf8'));
  const cgroup = path.join(
    cgroupRoot(),
    `teal-test-${path.basename(file, '.service')}-${process.pid}-${randomBytes(3).toString('hex')}`,
  );
  mkdirSync(cgroup);
  const procsFile = path.join(cgroup, 'cgroup.procs');
  let main: ChildProcess | undefined;
  let stopping = false;
  let restarts = 0;
  let pendingRestart: NodeJS.Timeout | undefined;

  const procs = () => readFileSync(procsFile, 'utf8').split('\n').filter(Boolean).map(Number);
  const signalAll = (signal: NodeJS.Signals, except?: number) => {
    for (const pid of procs()) {
      if (pid === except) continue;
      try {
        process.kill(pid, signal);
      } catch {
        // Gone between the listing and the signal.
      }
    }
  };
  const alive = (c: ChildProcess | undefined): c is ChildProcess =>
    c !== undefined && c.exitCode === null && c.signalCode === null;

  /** What systemd does with the rest of the cgroup once the main process is gone. */
  const killRest = async () => {
    if (svc.killMode === 'process') return;
    signalAll(svc.killMode === 'mixed' ? 'SIGKILL' : 'SIGTERM');
    const deadline = Date.now() + 10_000;
    while (procs().length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    signalAll('SIGKILL');
  };

  const launch = () => {
    const out = openSync(options.logFile, 'a');
    // The shell joins the cgroup, takes the limit, then becomes the command: whatever the command
    // starts afterwards is born in the cgroup, as under systemd.
    const child = spawn(
      '/bin/sh',
      [
        '-c',
        'echo $$ > "$0" || exit 200; if [ -n "$1" ]; then ulimit -n "$1" || exit 201; fi; shift; exec "$@"',
        procsFile,
        String(svc.nofile === undefined ? '' : Math.min(svc.nofile, hardNofile())),
        ...svc.argv,
      ],
      { cwd: svc.cwd, env: svc.env, stdio: ['ignore', out, out] },
    );
    closeSync(out);
    main = child;
    child.once('exit', (code) => {
      if (stopping || main !== child) return;
      void (async () => {
        await killRest();
        if (svc.restart === 'no' || (code !== null && svc.preventExit.has(code))) return;
        if (svc.restart === 'on-failure' && code === 0) return;
        pendingRestart = setTimeout(() => {
          pendingRestart = undefined;
          restarts++;
          launch();
        }, svc.restartSecMs);
      })();
    });
  };

  const stop = async () => {
    stopping = true;
    clearTimeout(pendingRestart);
    const child = main;
    if (alive(child)) {
      const exited = once(child, 'exit');
      if (svc.killMode === 'control-group') signalAll('SIGTERM');
      else child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    await killRest();
    stopping = false;
  };

  launch();
  return {
    mainPid: () => (alive(main) ? main.pid : undefined),
    procs,
    restarts: () => restarts,
    stop,
    async restart() {
      await stop();
      launch();
    },
    reload() {
      const [cmd, ...args] = svc.reload ?? [];
      if (!cmd) throw new Error('the unit has no ExecReload=');
      return new Promise((resolve) => {
        execFile(cmd, args, { cwd: svc.cwd, env: svc.env, timeout: 60_000 }, (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          resolve({ code, output: `${stdout}${stderr}` });
        });
      });
    },
    crash() {
      main?.kill('SIGKILL');
    },
    async nextMain(than, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const pid = alive(main) ? main.pid : undefined;
        if (pid !== undefined && pid !== than && pidAlive(pid)) return pid;
        if (Date.now() > deadline) throw new Error(`no new main process within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    log: () => (existsSync(options.logFile) ? readFileSync(options.logFile, 'utf8') : ''),
    async cleanup() {
      stopping = true;
      clearTimeout(pendingRestart);
      signalAll('SIGKILL');
      const deadline = Date.now() + 10_000;
      while (procs().length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      rmdirSync(cgroup);
    },
  };
}
