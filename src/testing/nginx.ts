import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { childrenOf, pidAlive } from '../proc.js';
import { findBinary } from './binaries.js';

const run = promisify(execFile);

export interface NginxInstance {
  pid: number;
  dir: string;
  configFile: string;
  /** The master's pid file (`pid` directive), as a switch needs it. */
  pidFile: string;
  /** The nginx binary and the arguments that name this instance: `-c <config> -p <dir> -e <error log>`. */
  bin: string;
  args: string[];
  /**
   * Shell commands for this instance, as a user would configure them: `check` is `nginx -t`,
   * `reload` is `nginx -s reload`, both with this instance's config, prefix and error log.
   */
  commands: { check: string; reload: string };
  /** Writes a new config (the `http { }` block's content) and reloads; resolves once nginx accepted the signal. */
  reload(http: string): Promise<void>;
  /** Pids of the master's worker processes now (serving and retiring). */
  workers(): number[];
  /** Stops nginx and every worker it had, retiring ones included (quit, then terminate, then kill). */
  stop(): Promise<void>;
  errorLog(): string;
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

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
  const pidFile = path.join(dir, 'nginx.pid');
  const write = (body: string) =>
    writeFileSync(
      configFile,
      `worker_processes 1;
pid ${pidFile};
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
      if (Number(readFileSync(pidFile, 'utf8')) === child.pid) break;
    } catch {}
    if (child.exitCode !== null || i > 200)
      throw new Error(`nginx did not start:\n${readFileSync(errorLog, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const pid = child.pid!;
  const shellArgs = args.map(quote).join(' ');
  const workers = () => childrenOf(pid);
  return {
    pid,
    dir,
    configFile,
    pidFile,
    bin,
    args,
    commands: {
      check: `${quote(bin)} -t -q ${shellArgs}`,
      reload: `${quote(bin)} -s reload ${shellArgs}`,
    },
    async reload(next: string) {
      write(next);
      await run(bin, ['-t', ...args]);
      process.kill(pid, 'SIGHUP');
    },
    workers,
    async stop() {
      // Workers outlive a master that is killed, so remember them all, and end any left over.
      const seen = new Set(workers());
      const wait = async (ms: number) => {
        const deadline = Date.now() + ms;
        while (child.exitCode === null && child.signalCode === null && Date.now() < deadline) {
          for (const w of workers()) seen.add(w);
          await sleep(20);
        }
        return child.exitCode !== null || child.signalCode !== null;
      };
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGQUIT'); // graceful: waits for open connections (a websocket may hold it)
        if (!(await wait(2_000))) {
          child.kill('SIGTERM'); // fast: workers close their connections and exit at once
          if (!(await wait(3_000))) child.kill('SIGKILL');
        }
        await exited;
      }
      for (const w of seen) {
        if (pidAlive(w)) {
          try {
            process.kill(w, 'SIGKILL');
          } catch {}
        }
      }
    },
    errorLog: () => readFileSync(errorLog, 'utf8'),
  };
}
