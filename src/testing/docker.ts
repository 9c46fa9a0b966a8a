/**
 * A private dockerd for tests, and images built for it without a registry.
 *
 * The daemon is our child, with its own data root, exec root (where it starts its own containerd),
 * pid file and API socket in a temp dir, and its own bridge: a Linux bridge this harness creates
 * on a free 10.x.y.0/24 (dockerd only creates the bridge itself under the default name docker0,
 * which a system dockerd or another test run may hold). It leaves the host's firewall and sysctls
 * alone (--iptables=false, --ip-forward=false, --ip-masq=false): containers get no route out, which
 * tests never need, and published ports still work through the engine's userland port proxy
 * (docker-proxy), which connects to the container over the bridge. Needs root, as dockerd does.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { procStat } from '../proc.js';
import { Engine, readProgress } from '../runtimes/docker/engine.js';
import { findBinary, haveBinary } from './binaries.js';
import { packageRoot } from './paths.js';

export interface TestDockerd {
  /** `unix://<dir>/docker.sock`: for DockerRuntime's `host` or DOCKER_HOST. */
  host: string;
  socket: string;
  /** Holds data/, exec/, docker.pid and the daemon's log (dockerd.log). */
  dir: string;
  engine: Engine;
  /** How long the last start took until /_ping answered. */
  startedInMs: number;
  pid(): number | undefined;
  log(): string;
  /** SIGTERM, and waits for it to exit (it stops its containers first). The data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same dirs and socket. */
  restart(): Promise<void>;
  /** Stops it, removes its bridge and its dir. */
  close(): Promise<void>;
}

/**
 * Whether the docker tests can run here: dockerd installed and we are root. Otherwise they skip,
 * saying why; with CI=true they fail.
 */
export function dockerdAvailable(): boolean {
  if (!haveBinary('dockerd', 'docker.io') || !haveBinary('ip', 'iproute2')) return false;
  if (process.getuid?.() === 0) return true;
  const message = 'dockerd needs root; the docker tests run as root (as CI does)';
  if (process.env.CI === 'true') throw new Error(`CI=true and ${message}`);
  process.stderr.write(`skipping tests that need dockerd: ${message}\n`);
  return false;
}

const SBIN_PATH = `${process.env.PATH ?? ''}:/usr/sbin:/sbin:/usr/local/sbin`;

export async function startDockerd(): Promise<TestDockerd> {
  const bin = findBinary('dockerd');
  if (!bin) throw new Error('dockerd is not installed (Debian docker.io); run scripts/install-test-deps.sh');
  const dir = mkdtempSync(path.join(tmpdir(), 'teal-dockerd-'));
  const socket = path.join(dir, 'docker.sock');
  const host = `unix://${socket}`;
  const logFile = path.join(dir, 'dockerd.log');
  const configFile = path.join(dir, 'daemon.json');
  // An empty config: nothing from the machine's /etc/docker/daemon.json applies.
  writeFileSync(configFile, '{}\n');
  const bridge = createBridge();
  const args = [
    `--config-file=${configFile}`,
    `--data-root=${path.join(dir, 'data')}`,
    `--exec-root=${path.join(dir, 'exec')}`,
    `--pidfile=${path.join(dir, 'docker.pid')}`,
    `--host=${host}`,
    `--bridge=${bridge}`,
    '--iptables=false',
    '--ip-forward=false',
    '--ip-masq=false',
    '--shutdown-timeout=5',
  ];
  const engine = new Engine({ host });
  let child: ChildProcess | undefined;
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');

  const dockerd: TestDockerd = {
    host,
    socket,
    dir,
    engine,
    startedInMs: 0,
    pid: () => child?.pid,
    log,
    async stop() {
      const proc = child;
      child = undefined;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, 'exit');
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
    async restart() {
      await dockerd.stop();
      await start();
    },
    async close() {
      await dockerd.stop();
      killLeftovers(dir);
      unmountUnder(dir);
      deleteBridge(bridge);
      rmSync(dir, { recursive: true, force: true });
    },
  };

  const start = async () => {
    const startedAt = Date.now();
    const out = openSync(logFile, 'a');
    const proc = spawn(bin, args, { stdio: ['ignore', out, out], env: { ...process.env, PATH: SBIN_PATH } });
    closeSync(out);
    child = proc;
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
        if (proc.exitCode === null) proc.kill('SIGKILL');
        throw new Error(`dockerd did not start at ${host}:\n${log().split('\n').slice(-20).join('\n')}`);
      }
      const ok = await engine
        .json<string>('GET', '/_ping', { timeoutMs: 1_000 })
        .then(() => true)
        .catch(() => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    dockerd.startedInMs = Date.now() - startedAt;
  };

  try {
    await start();
  } catch (err) {
    await dockerd.close();
    throw err;
  }
  return dockerd;
}

/** A bridge of our own on a /24 nothing on this machine uses yet; its name fits IFNAMSIZ. */
function createBridge(): string {
  const name = `tealbr${Math.random().toString(36).slice(2, 8)}`;
  const used = execFileSync('ip', ['-4', '-o', 'addr', 'show'], {
    encoding: 'utf8',
    env: { PATH: SBIN_PATH },
  });
  const routes = execFileSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8', env: { PATH: SBIN_PATH } });
  for (let attempt = 0; attempt < 50; attempt++) {
    const prefix = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}.`;
    if (used.includes(` ${prefix}`) || routes.includes(prefix)) continue;
    const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe', env: { PATH: SBIN_PATH } });
    ip('link', 'add', 'name', name, 'type', 'bridge');
    try {
      ip('addr', 'add', `${prefix}1/24`, 'dev', name);
      ip('link', 'set', name, 'up');
    } catch (err) {
      deleteBridge(name);
      throw err;
    }
    return name;
  }
  throw new Error('no free 10.x.y.0/24 for the test bridge');
}

function deleteBridge(name: string): void {
  try {
    execFileSync('ip', ['link', 'del', name], { stdio: 'pipe', env: { PATH: SBIN_PATH } });
  } catch (err) {
    if (!String((err as { stderr?: unknown }).stderr).includes('Cannot find device')) throw err;
  }
}

/** Mounts a dockerd that died uncleanly can leave under its data or exec root (overlays, netns). */
function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((target) => target.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const target of mounts) execFileSync('umount', ['-l', target], { stdio: 'pipe' });
}

export interface BuiltImage {
  tag: string;
  /** Image ID: "sha256:…". */
  id: string;
  tookMs: number;
}

/**
 * Builds `tag` FROM scratch through the engine's /build endpoint: the host's node binary and the
 * libraries `ldd` lists for it (at the same paths), plus `files` (path in the image -> file on
 * this machine). No registry, no base image. Commands run `process.execPath` inside it.
 */
export async function buildNodeImage(
  engine: Engine,
  tag: string,
  files: Record<string, string> = { '/app/server.js': path.join(packageRoot(), 'examples/hello/server.js') },
): Promise<BuiltImage> {
  const startedAt = Date.now();
  const hostFiles = [process.execPath, ...sharedLibraries(process.execPath)].map((f) => f.slice(1));
  const stage = mkdtempSync(path.join(tmpdir(), 'teal-image-'));
  try {
    const own: string[] = [];
    for (const [inImage, onHost] of Object.entries(files)) {
      const target = path.join(stage, 'files', inImage);
      mkdirSync(path.dirname(target), { recursive: true });
      writeFileSync(target, readFileSync(onHost));
      own.push(inImage);
    }
    const dockerfile = [
      'FROM scratch',
      // One COPY per top-level directory: each lands where it was on the host.
      ...[...new Set(hostFiles.map((f) => f.split('/')[0]!))].map((top) => `COPY ${top} /${top}`),
      ...(own.length > 0 ? ['COPY files/ /'] : []),
      'WORKDIR /app',
      `CMD ${JSON.stringify([process.execPath, '/app/server.js'])}`,
      '',
    ].join('\n');
    writeFileSync(path.join(stage, 'Dockerfile'), dockerfile);
    mkdirSync(path.join(stage, 'files'), { recursive: true });
    // tar writes the context: -h stores the files symlinks point at (ld.so, libc), and the second
    // -C / takes the host files from their own place, under their own paths.
    const tar = spawn(
      'tar',
      ['-c', '-h', '-f', '-', '-C', stage, 'Dockerfile', 'files', '-C', '/', ...hostFiles],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let tarErr = '';
    tar.stderr.setEncoding('utf8').on('data', (c: string) => {
      tarErr += c;
    });
    const tarExit = once(tar, 'exit');
    const res = await engine.open('POST', '/build', {
      query: { t: tag, rm: true, forcerm: true },
      body: tar.stdout,
      contentType: 'application/x-tar',
      timeoutMs: 0,
    });
    const messages = await readProgress(res, `build of ${tag}`);
    const [code] = (await tarExit) as [number | null];
    if (code !== 0) throw new Error(`tar exited with ${code}: ${tarErr}`);
    const id = messages.find((m) => m.aux?.ID)?.aux?.ID;
    if (!id) throw new Error(`the build of ${tag} reported no image ID`);
    return { tag, id, tookMs: Date.now() - startedAt };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** Absolute paths of the shared libraries `ldd` lists for a binary (the loader included). */
function sharedLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  return [...out.matchAll(/(?:=>\s*|^\s*)(\/\S+)/gm)].map((m) => m[1]!);
}

/**
 * What an engine stopped mid-test can leave behind: containerd shims (their command line names the
 * exec root under `dir`) and, under them, the containers' processes. Killed with their whole tree,
 * so a test run never leaves an app running on the machine.
 */
function killLeftovers(dir: string): void {
  const pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  const parent = new Map<number, number>();
  const roots: number[] = [];
  for (const d of pids) {
    const pid = Number(d);
    try {
      const stat = procStat(pid);
      if (!stat) continue;
      parent.set(pid, stat.ppid);
      if (pid !== process.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) roots.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  const doomed = new Set(roots);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (doomed.has(ppid) && !doomed.has(pid)) {
        doomed.add(pid);
        grew = true;
      }
    }
  }
  for (const pid of doomed) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}
