import { appendFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../src/cli/client.js';
import { readDaemonInfo, statePaths } from '../src/daemon/files.js';
import { teardown } from '../src/daemon/teardown.js';
import { pidAlive } from '../src/proc.js';
import { helloService, runCli } from '../src/testing/daemon.js';
import { type RunningUnit, startUnit } from '../src/testing/systemd-unit.js';
import { verifyUnit } from '../src/testing/systemd-verify.js';
import { backgroundLoad, deployAndWait } from './helpers.js';

/**
 * The unit `teal service install` writes, run as systemd's service manager runs it (in a cgroup
 * of its own, only the unit's environment, KillMode= and Restart= as systemd.kill(5) and
 * systemd.service(5) say: src/testing/systemd-unit.ts), under keep-alive load through the data plane.
 */

const TOKEN = 'unit-token-0123456789abcdefghijklmnopqrstuv';

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  cleanups = [];
});

async function installed(
  killMode?: string,
): Promise<{ unit: RunningUnit; dir: string; clientNow: () => Promise<ApiClient> }> {
  // Where systemd's quoting matters: a space, a % (a specifier) and a $ (a variable) in the path.
  const dir = mkdtempSync(path.join(tmpdir(), 'teal unit 100% $HOME-'));
  chmodSync(dir, 0o755);
  const paths = statePaths(path.join(dir, '.teal'));
  cleanups.push(async () => {
    await teardown(paths, { stopTimeoutMs: 2_000 });
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(
    path.join(dir, 'teal.yml'),
    `proxy: { kind: builtin, listen: 127.0.0.1:0 }\napi: { listen: 127.0.0.1:0 }\nservices:\n  hello:\n${helloService()}\n`,
  );
  const units = path.join(dir, 'units');
  const envFile = path.join(dir, 'teal.env');
  const r = await runCli(
    ['service', 'install', '-c', 'teal.yml', '--dir', units, '--environment-file', envFile],
    { cwd: dir },
  );
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  appendFileSync(envFile, `TEAL_TOKEN=${TOKEN}\n`);
  const file = path.join(units, 'teal.service');
  expect(await verifyUnit(file)).toEqual([]);
  if (killMode)
    writeFileSync(file, readFileSync(file, 'utf8').replace('KillMode=process', `KillMode=${killMode}`));
  const unit = await startUnit(file, { logFile: path.join(dir, 'journal.log') });
  cleanups.push(() => unit.cleanup());
  /** A client for the teal up running now (its API port is chosen at each start). */
  const clientNow = async () => {
    const pid = await unit.nextMain(undefined);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const info = readDaemonInfo(paths);
      if (info && info.pid === unit.mainPid() && pidAlive(info.pid))
        return new ApiClient({ base: info.api, token: TOKEN, actor: 'test', startHint: 'test' });
      if (Date.now() > deadline) throw new Error(`teal up (pid ${pid}) did not start:\n${unit.log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { unit, dir, clientNow };
}

const proxyUrl = (dir: string) => readDaemonInfo(statePaths(path.join(dir, '.teal')))!.proxy;

describe('teal up under the systemd unit teal service install writes', () => {
  it('restarted, crashed and stopped under keep-alive load: no request fails, the data plane and the instances keep running, deploys go on', async () => {
    const { unit, dir, clientNow } = await installed();
    let client = await clientNow();
    expect((await deployAndWait(client, 'hello', 'v1')).state).toBe('done');
    const url = proxyUrl(dir);
    const load = backgroundLoad(`${url}/`, 16);
    cleanups.push(async () => void (await load.stop()));
    expect((await deployAndWait(client, 'hello', 'v2')).state).toBe('done');
    const first = unit.mainPid()!;
    const others = unit.procs().filter((p) => p !== first);
    // The data plane and v2's instance (and v1's, warm) run in the unit's cgroup, as under systemd.
    expect(others.length).toBeGreaterThanOrEqual(2);

    // systemctl restart teal: KillMode=process signals teal up alone.
    await unit.restart();
    client = await clientNow();
    const second = unit.mainPid()!;
    expect(second).not.toBe(first);
    for (const pid of others) expect(pidAlive(pid)).toBe(true);
    expect((await deployAndWait(client, 'hello', 'v3')).state).toBe('done');

    // systemctl reload teal: the edited teal.yml is applied; one that does not validate is refused.
    const configFile = path.join(dir, 'teal.yml');
    const good = readFileSync(configFile, 'utf8');
    writeFileSync(configFile, `${good}    routes: [{ path: / }]\n`);
    const reloaded = await unit.reload();
    expect(reloaded.output).toContain('applied');
    expect(reloaded.code).toBe(0);
    writeFileSync(configFile, `${good}    ports: 3\n`);
    const refused = await unit.reload();
    expect(refused.code).toBe(2);
    expect(refused.output).toContain('services.hello.ports');
    expect(unit.mainPid()).toBe(second);

    // A crash while teal.yml is broken: Restart=always keeps trying (each start refuses the file),
    // users are still served, and once the file is fixed teal up is back by itself.
    const before = unit.procs().filter((p) => p !== second);
    unit.crash();
    for (let i = 0; i < 300 && unit.restarts() < 2; i++) await new Promise((r) => setTimeout(r, 50));
    expect(unit.restarts()).toBeGreaterThanOrEqual(2);
    expect(unit.log()).toContain('services.hello.ports');
    writeFileSync(configFile, `${good}    routes: [{ path: / }]\n`);
    client = await clientNow();
    const third = unit.mainPid()!;
    expect(third).not.toBe(second);
    for (const pid of before) expect(pidAlive(pid)).toBe(true);
    expect((await deployAndWait(client, 'hello', 'v4')).state).toBe('done');

    // systemctl stop: the control plane stops, users are still served until `teal down`.
    await unit.stop();
    expect(pidAlive(third)).toBe(false);
    await new Promise((r) => setTimeout(r, 500));
    const { report, samples } = await load.stop();
    cleanups.pop();
    expect(report.sent).toBeGreaterThan(100);
    expect(report.failures, JSON.stringify(report.failures.slice(0, 3))).toEqual([]);
    expect(report.failed).toBe(0);
    expect(samples.at(-1)?.version).toBe('v4');
    const answer = await fetch(`${url}/`);
    expect((await answer.text()).trim()).toBe('hello v4');
  });

  it("with systemd's default KillMode=control-group instead, a restart takes the data plane and the app down (what the unit's KillMode=process prevents)", async () => {
    const { unit, dir, clientNow } = await installed('control-group');
    const client = await clientNow();
    expect((await deployAndWait(client, 'hello', 'v1')).state).toBe('done');
    const load = backgroundLoad(`${proxyUrl(dir)}/`, 16);
    cleanups.push(async () => void (await load.stop()));
    await new Promise((r) => setTimeout(r, 300));
    const main = unit.mainPid()!;
    const others = unit.procs().filter((p) => p !== main);
    await unit.restart();
    await clientNow();
    await new Promise((r) => setTimeout(r, 500));
    const { report } = await load.stop();
    cleanups.pop();
    expect(others.some((pid) => !pidAlive(pid))).toBe(true);
    expect(report.failed).toBeGreaterThan(0);
  });
});
