import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { findBinary } from './binaries.js';

export interface HaproxyInstance {
  pid: number;
  dir: string;
  /** Admin socket (stats socket, level admin): the runtime API. */
  socket: string;
  /** The config file it runs. */
  configFile: string;
  /** Sends one runtime API command and returns its answer. */
  command(line: string): Promise<string>;
  /** What haproxy printed on stdout and stderr so far. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * A private haproxy for tests and benchmarks: one thread, in the foreground (-db) as our child, with
 * an admin socket in `dir`. `body` holds the frontends and backends.
 */
export function startHaproxy(dir: string, body: string): Promise<HaproxyInstance> {
  return startHaproxyConfig(
    dir,
    (socket) => `global
  nbthread 1
  maxconn 4000
  stats socket ${socket} mode 600 level admin
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
${body}
`,
  );
}

/**
 * A private haproxy running a whole config of the caller's (teal's rendered base config, say), made
 * by `config` from the admin socket path in `dir` it must declare. Resolves once the runtime API
 * answers; stop() ends it by its pid.
 */
export async function startHaproxyConfig(
  dir: string,
  config: (socket: string) => string,
): Promise<HaproxyInstance> {
  const bin = findBinary('haproxy');
  if (!bin) throw new Error('haproxy is not installed; run scripts/install-test-deps.sh');
  mkdirSync(dir, { recursive: true });
  const socket = path.join(dir, 'admin.sock');
  const configFile = path.join(dir, 'haproxy.cfg');
  writeFileSync(configFile, config(socket));
  const output: string[] = [];
  const child: ChildProcess = spawn(bin, ['-db', '-f', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (c: Buffer) => output.push(c.toString()));
  child.stderr!.on('data', (c: Buffer) => output.push(c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const command = (line: string) =>
    new Promise<string>((resolve, reject) => {
      const conn = net.connect(socket);
      let answer = '';
      conn.on('connect', () => conn.end(`${line}\n`));
      conn.on('data', (c: Buffer) => (answer += c.toString()));
      conn.on('end', () => resolve(answer));
      conn.on('error', reject);
    });
  for (let i = 0; ; i++) {
    try {
      // A socket left by an earlier haproxy in the same dir answers nothing: wait for ours.
      if (child.exitCode === null && (await command('show info')).includes(`Pid: ${child.pid}`)) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || i > 200) {
      child.kill('SIGKILL');
      throw new Error(`haproxy did not start:\n${output.join('')}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    pid: child.pid!,
    dir,
    socket,
    configFile,
    command,
    output: () => output.join(''),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid!, 'SIGTERM');
        await exited;
      }
    },
  };
}
