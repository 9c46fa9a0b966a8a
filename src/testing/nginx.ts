import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { findBinary } from './binaries.js';

const run = promisify(execFile);

export interface NginxInstance {
  pid: number;
  dir: string;
  configFile: string;
  /** Writes a new config (the `http { }` block's content) and reloads; resolves once nginx accepted the signal. */
  reload(http: string): Promise<void>;
  stop(): Promise<void>;
  errorLog(): string;
}

/**
 * A private nginx for tests and benchmarks: its own prefix dir, pid file, temp paths and error log,
 * one worker, in the foreground as our child. `http` is the content of the http block.
 */
export async function startNginx(dir: string, http: string): Promise<NginxInstance> {
  const bin = findBinary('nginx');
  if (!bin) throw new Error('nginx is not installed; run scripts/install-test-deps.sh');
  mkdirSync(dir, { recursive: true });
  const configFile = path.join(dir, 'nginx.conf');
  const errorLog = path.join(dir, 'error.log');
  const write = (body: string) =>
    writeFileSync(
      configFile,
      `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${errorLog} warn;
daemon off;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${body}
}
`,
    );
  write(http);
  const args = ['-c', configFile, '-p', dir, '-e', errorLog];
  await run(bin, ['-t', ...args]);
  const child: ChildProcess = spawn(bin, args, { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // nginx writes its pid file once it listens.
  for (let i = 0; ; i++) {
    try {
      if (Number(readFileSync(path.join(dir, 'nginx.pid'), 'utf8')) === child.pid) break;
    } catch {}
    if (child.exitCode !== null || i > 200)
      throw new Error(`nginx did not start:\n${readFileSync(errorLog, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    pid: child.pid!,
    dir,
    configFile,
    async reload(next: string) {
      write(next);
      await run(bin, ['-t', ...args]);
      process.kill(child.pid!, 'SIGHUP');
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGQUIT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
    },
    errorLog: () => readFileSync(errorLog, 'utf8'),
  };
}
