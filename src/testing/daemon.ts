import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApiClient } from '../cli/client.js';
import { type DaemonInfo, readDaemonInfo, type StatePaths, statePaths } from '../daemon/files.js';
import { teardown } from '../daemon/teardown.js';
import { cliEntry } from '../paths.js';
import { pidAlive, procArgv } from '../proc.js';
import { forgetControlPlane } from '../proxy/builtin/launcher.js';
import { HELLO_DIR } from './paths.js';

/**
 * A real `teal up` for integration tests: its own temp dir, config and state, started as a separate
 * process exactly as a user would (so it can be SIGKILLed), on ports chosen at start. `cleanup`
 * stops the daemon, the data plane and every app instance by pid, and removes the temp dir.
 */
export interface TestDaemon {
  dir: string;
  configFile: string;
  paths: StatePaths;
  info: DaemonInfo;
  client: ApiClient;
  token: string;
  child: ChildProcess;
  /** The daemon's own output so far. */
  log(): string;
  /** Runs the CLI against this daemon's config: `teal <args> -c <config>`. */
  cli(args: string[], env?: Record<string, string>): Promise<CliResult>;
  /** SIGTERM and wait: the graceful stop. */
  stop(): Promise<void>;
  /** SIGKILL and wait: the crash. */
  kill(): Promise<void>;
  /** Resolves with the signal (or exit code) once the daemon has exited by itself, e.g. at a failpoint. */
  exited(): Promise<NodeJS.Signals | number>;
  /**
   * Starts the daemon again on the same config and state (after stop or kill), with `env` as its
   * extra environment this time (none when absent, whatever the first launch had).
   */
  restart(options?: { env?: Record<string, string> }): Promise<void>;
  /** Stops everything this test daemon started and removes its dir. */
  cleanup(): Promise<void>;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export const HELLO = path.join(HELLO_DIR, 'server.js');

/** The example app as a service, with fast health checks; fields override the defaults. */
export function helloService(overrides: Record<string, string> = {}): string {
  const fields: Record<string, string> = {
    command: JSON.stringify([process.execPath, HELLO]),
    env: '{ APP_VERSION: "{{version}}" }',
    health: '{ interval: 50ms, healthyThreshold: 2, deadline: 15s }',
    verify: '[{ http: { path: /, body: "hello {{version}}" } }]',
    drain: '5s',
    keepWarm: '1m',
    stopTimeout: '3s',
    ...overrides,
  };
  return Object.entries(fields)
    .map(([k, v]) => `    ${k}: ${v}`)
    .join('\n');
}

export function runCli(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cliEntry(), ...args],
      { cwd: options.cwd, env: { ...process.env, NO_COLOR: '1', ...options.env }, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function waitFor<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
  detail: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${detail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts a daemon for `services` (YAML of the services mapping's entries, indented two spaces):
 * the proxy and API listen on port 0 and the test reads the ports the daemon picked.
 */
export async function startTestDaemon(options: {
  services: string;
  extraConfig?: string;
  /** The `proxy:` mapping (flow YAML); a builtin data plane on a free port when absent. */
  proxy?: string;
  /** The `api:` mapping (flow YAML); loopback on a free port when absent. */
  api?: string;
  /** An existing dir to use (and remove at cleanup) instead of a fresh temp dir. */
  dir?: string;
  /** Extra environment for the daemon's first launch, e.g. `{ TEAL_FAILPOINT: 'verifying' }`. */
  env?: Record<string, string>;
  /**
   * Whether the data plane respawns a control plane that dies. Off by default: the test is the
   * supervisor (it kills and restarts the daemon itself, as systemd would).
   */
  respawn?: boolean;
}): Promise<TestDaemon> {
  const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'teal-it-'));
  // teal runs as root here, so apps, stages, run steps and hooks run as nobody: the folder holding
  // teal.yml (their cwd, and the way to the work dir) must be searchable for them, as /srv is.
  chmodSync(dir, 0o755);
  const configFile = path.join(dir, 'teal.yml');
  writeFileSync(
    configFile,
    `proxy: ${options.proxy ?? '{ kind: builtin, listen: 127.0.0.1:0 }'}\napi: ${options.api ?? '{ listen: 127.0.0.1:0 }'}\n${options.extraConfig ?? ''}services:\n${options.services}\n`,
  );
  const paths = statePaths(path.join(dir, '.teal'));
  const logFile = path.join(dir, 'daemon.out');
  const token = 'test-token-0123456789abcdefghijklmnopqrstuv';

  const daemon: TestDaemon = {
    dir,
    configFile,
    paths,
    info: undefined as unknown as DaemonInfo,
    client: undefined as unknown as ApiClient,
    token,
    child: undefined as unknown as ChildProcess,
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    cli: (args, env) => runCli([...args, '-c', configFile], { cwd: dir, env: { TEAL_TOKEN: token, ...env } }),
    async stop() {
      await signalAndWait(daemon.child, 'SIGTERM');
    },
    async kill() {
      await signalAndWait(daemon.child, 'SIGKILL');
    },
    async exited() {
      const { child } = daemon;
      if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
      return child.signalCode ?? child.exitCode ?? 0;
    },
    async restart(again = {}) {
      await launch(again.env);
    },
    async cleanup() {
      // First the data plane stops respawning, then whatever control plane runs (the test's own, or
      // one the data plane respawned) is killed.
      await forgetControlPlane(paths.proxySocket).catch(() => undefined);
      if (daemon.child && daemon.child.exitCode === null && daemon.child.signalCode === null)
        await signalAndWait(daemon.child, 'SIGKILL');
      const running = readDaemonInfo(paths);
      if (running && pidAlive(running.pid) && procArgv(running.pid)?.includes(configFile)) {
        process.kill(running.pid, 'SIGKILL');
        while (pidAlive(running.pid)) await new Promise((r) => setTimeout(r, 20));
      }
      await teardown(paths, { stopTimeoutMs: 2_000 }).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };

  async function launch(env: Record<string, string> = {}): Promise<void> {
    const out = openSync(logFile, 'a');
    const args = [cliEntry(), 'up', '-c', configFile, '--log-format', 'json'];
    if (!options.respawn) args.push('--no-respawn');
    const child = spawn(process.execPath, args, {
      cwd: dir,
      env: { ...process.env, ...env, TEAL_TOKEN: token },
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    daemon.child = child;
    daemon.info = await waitFor(
      'the daemon to start',
      () => {
        if (child.exitCode !== null)
          throw new Error(`teal up exited with ${child.exitCode}:\n${daemon.log()}`);
        const info = readDaemonInfo(paths);
        return info && info.pid === child.pid && pidAlive(info.pid) ? info : undefined;
      },
      30_000,
      daemon.log,
    );
    daemon.client = new ApiClient({ base: daemon.info.api, token, actor: 'test', startHint: 'test' });
  }

  await launch(options.env);
  return daemon;
}

async function signalAndWait(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await exited;
}
