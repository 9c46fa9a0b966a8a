import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { isTealError } from '../../core/errors.js';
import { cliEntry, distEntry } from '../../paths.js';
import { pidAlive } from '../../proc.js';
import { poolFor, request, startUpstream, type Upstream, waitFor, webTable } from '../switch.contract.js';
import { startTestDataPlane, type TestDataPlane, tempDataPlaneDir } from './harness.js';
import { dataPlaneInfo, ensureDataPlane, stopDataPlane } from './launcher.js';
import { BuiltinSwitch } from './switch.js';

const run = promisify(execFile);

/** Zombie-aware: the data plane is this test's child, and may exit before Node reaps it. */
const isRunning = pidAlive;

async function errorOf(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof Error)) throw new Error('expected the promise to reject');
  return err;
}

describe('teal proxy as its own process', () => {
  const cleanups: (() => Promise<void>)[] = [];
  const upstreams: Upstream[] = [];
  const app = async (name: string) => {
    const u = await startUpstream(name);
    upstreams.push(u);
    return u;
  };
  const dataPlane = async (listen?: string): Promise<TestDataPlane> => {
    const dp = await startTestDataPlane(listen);
    cleanups.push(dp.stop);
    return dp;
  };

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await Promise.all(upstreams.splice(0).map((u) => u.close()));
  });

  it('keeps serving after the process that started it has exited and the switch is closed', async () => {
    const paths = await tempDataPlaneDir();
    cleanups.push(async () => {
      await stopDataPlane(paths.adminSocket);
      await rm(paths.dir, { recursive: true, force: true });
    });
    // A separate control plane process starts the data plane, then exits.
    const launcher = pathToFileURL(distEntry('proxy/builtin/launcher.js')).href;
    const script = `import { ensureDataPlane } from ${JSON.stringify(launcher)};
      const h = await ensureDataPlane(JSON.parse(process.argv[1]));
      process.stdout.write(JSON.stringify(h));`;
    const { stdout } = await run(process.execPath, [
      '--input-type=module',
      '-e',
      script,
      JSON.stringify({ listen: '127.0.0.1:0', ...paths }),
    ]);
    const handle = JSON.parse(stdout) as { pid: number; listen: string; started: boolean };
    expect(handle.started).toBe(true);

    const a = await app('A');
    const sw = new BuiltinSwitch({ adminSocket: paths.adminSocket });
    await sw.apply(webTable(1, poolFor('web', 'blue', 1, [a])));
    await sw.close();
    expect(isRunning(handle.pid)).toBe(true);
    expect(await request(`http://${handle.listen}/`)).toMatchObject({ status: 200, body: 'A' });
  });

  it('serves the last table from its state file after a SIGKILL and restart, before anything is applied', async () => {
    const dp = await dataPlane();
    const a = await app('A');
    const table = webTable(4, poolFor('web', 'blue', 1, [a]));
    await new BuiltinSwitch({ adminSocket: dp.adminSocket }).apply(table);
    process.kill(dp.pid, 'SIGKILL');
    await waitFor('the data plane to die', () => !isRunning(dp.pid));
    expect(existsSync(dp.adminSocket)).toBe(true); // stale: a new data plane must clear it

    const again = await ensureDataPlane({
      listen: dp.listen,
      adminSocket: dp.adminSocket,
      stateFile: dp.stateFile,
      logFile: dp.logFile,
    });
    expect(again).toMatchObject({ started: true, listen: dp.listen });
    expect(again.pid).not.toBe(dp.pid);
    expect(await request(`${dp.url}/`)).toMatchObject({ status: 200, body: 'A' });
    expect(await new BuiltinSwitch({ adminSocket: dp.adminSocket }).current()).toEqual(table);
  });

  it('re-attaches to a running data plane and refuses one listening elsewhere', async () => {
    const dp = await dataPlane();
    const opts = { adminSocket: dp.adminSocket, stateFile: dp.stateFile, logFile: dp.logFile };
    const preview = dp.previewUrl.slice('http://'.length);
    expect(await ensureDataPlane({ listen: dp.listen, previewListen: preview, ...opts })).toEqual({
      pid: dp.pid,
      listen: dp.listen,
      preview,
      started: false,
    });
    expect(
      await ensureDataPlane({ listen: '127.0.0.1:0', previewListen: '127.0.0.1:0', ...opts }),
    ).toMatchObject({
      pid: dp.pid,
      started: false,
    });
    const err = await errorOf(ensureDataPlane({ listen: '127.0.0.1:1', previewListen: preview, ...opts }));
    expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
    expect(err.message).toContain(`listens on ${dp.listen}, not 127.0.0.1:1`);
    // A data plane whose preview listener is elsewhere (or missing) is not what teal.yml asks for either.
    const other = await errorOf(
      ensureDataPlane({ listen: dp.listen, previewListen: '127.0.0.1:1', ...opts }),
    );
    expect(other.message).toContain(`has its preview listener on ${preview}, not 127.0.0.1:1`);
  });

  it('fails with TEAL_PORT_IN_USE when the listen port is taken', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => taken.close(() => resolve())));
    const listen = `127.0.0.1:${(taken.address() as net.AddressInfo).port}`;
    const paths = await tempDataPlaneDir();
    cleanups.push(() => rm(paths.dir, { recursive: true, force: true }));
    const err = await errorOf(ensureDataPlane({ listen, ...paths }));
    expect(isTealError(err, 'TEAL_PORT_IN_USE')).toBe(true);
    expect(err.message).toContain(listen);
    expect(await dataPlaneInfo(paths.adminSocket)).toBeNull();
  });

  it('refuses to take over the admin socket of a data plane that answers on it', async () => {
    const dp = await dataPlane();
    const other = await tempDataPlaneDir();
    cleanups.push(() => rm(other.dir, { recursive: true, force: true }));
    const args = [
      cliEntry(),
      'proxy',
      '--listen',
      '127.0.0.1:0',
      '--admin',
      dp.adminSocket,
      '--state',
      other.stateFile,
    ];
    const err = (await errorOf(run(process.execPath, args))) as Error & { code: number; stderr: string };
    expect(err.code).toBe(1);
    expect(err.stderr).toContain(`already answers on ${dp.adminSocket}`);
    expect((await dataPlaneInfo(dp.adminSocket))?.pid).toBe(dp.pid);
  });

  it('on SIGTERM lets a request in flight finish, then exits and removes its socket', async () => {
    const dp = await dataPlane();
    const a = await app('A');
    await new BuiltinSwitch({ adminSocket: dp.adminSocket }).apply(
      webTable(1, poolFor('web', 'blue', 1, [a])),
    );
    const slow = request(`${dp.url}/slow?ms=600`);
    await waitFor('the slow request to reach A', () => a.slowPending === 1);
    const stopped = await stopDataPlane(dp.adminSocket);
    expect(stopped).toEqual({ pid: dp.pid, forced: false });
    expect(await slow).toMatchObject({ status: 200, body: 'A' });
    expect(isRunning(dp.pid)).toBe(false);
    expect(existsSync(dp.adminSocket)).toBe(false);
    await expect(request(`${dp.url}/`)).rejects.toThrow(/ECONNREFUSED/);
  });
});
