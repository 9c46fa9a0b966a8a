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
  /** Sends one runtime API command and returns its answer. */
  command(line: string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * A private haproxy for tests and benchmarks: one thread, in the foreground (-db) as our child, with
 * an admin socket in `dir`. `body` holds the frontends and backends.
 */
export async function startHaproxy(dir: string, body: string): Promise<HaproxyInstance> {
  const bin = findBinary('haproxy');
  if (!bin) throw new Error('haproxy is not installed; run scripts/install-test-deps.sh');
  mkdirSync(dir, { recursive: true });
  const socket = path.join(dir, 'admin.sock');
  const configFile = path.join(dir, 'haproxy.cfg');
  writeFileSync(
    configFile,
    `global
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
      await command('show info');
      break;
    } catch {
      if (child.exitCode !== null || i > 200) throw new Error(`haproxy did not start:\n${output.join('')}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return {
    pid: child.pid!,
    dir,
    socket,
    command,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}
