import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { poolFor, type Upstream, webTable } from '../switch.contract.js';
import type { Pool } from '../switch.js';
import { ensureDataPlane, stopDataPlane } from './launcher.js';
import { RawClient, startRawUpstream } from './raw-http.js';
import type { DataPlaneSettings } from './settings.js';
import { BuiltinSwitch } from './switch.js';

export * from './raw-http.js';

/** A `teal proxy` process in its own temp dir, for tests (the contract suite, process tests). */
export interface TestDataPlane {
  dir: string;
  adminSocket: string;
  stateFile: string;
  logFile: string;
  pid: number;
  /** "127.0.0.1:<port>" it listens on. */
  listen: string;
  url: string;
  /** The preview listener (X-Teal-Slot honoured): http://127.0.0.1:<port> */
  previewUrl: string;
  /** Stops the process (if still running) and removes the temp dir. */
  stop(): Promise<void>;
}

/** Paths in a short temp dir: unix socket paths must stay under ~100 bytes. */
export async function tempDataPlaneDir(): Promise<{
  dir: string;
  adminSocket: string;
  stateFile: string;
  logFile: string;
}> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tdp-'));
  return {
    dir,
    adminSocket: path.join(dir, 'admin.sock'),
    stateFile: path.join(dir, 'table.json'),
    logFile: path.join(dir, 'proxy.log'),
  };
}

export async function startTestDataPlane(
  listen = '127.0.0.1:0',
  settings: Partial<DataPlaneSettings> = {},
): Promise<TestDataPlane> {
  const paths = await tempDataPlaneDir();
  try {
    const handle = await ensureDataPlane({ listen, previewListen: '127.0.0.1:0', ...paths, settings });
    return {
      ...paths,
      pid: handle.pid,
      listen: handle.listen,
      url: `http://${handle.listen}`,
      previewUrl: `http://${handle.preview}`,
      stop: async () => {
        await stopDataPlane(paths.adminSocket, { timeoutMs: 15_000 });
        await rm(paths.dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(paths.dir, { recursive: true, force: true });
    throw err;
  }
}

/*
 * Raw HTTP/1.1 on sockets, for tests where the bytes matter: a client that sends exactly what it is
 * given and keeps every byte it receives, an upstream that records every byte it receives, and a
 * listener that never accepts.
 */

/** A response as it came off the wire. */
export const upstreamAt = (port: number) => ({ port }) as Upstream;

/** An HTTP upstream a test serves, closed after the test. */
export interface Served {
  port: number;
  server: http.Server;
  close(): Promise<void>;
}

/**
 * One data plane per describe block, the upstreams and clients of each test closed after it. Each
 * test routes `web` on `/` to a pool of its own (a fresh release number: a fresh pool).
 */
export function planeFixture(settings: Parameters<typeof startTestDataPlane>[1] = {}) {
  const f = {
    dp: undefined as unknown as TestDataPlane,
    sw: undefined as unknown as BuiltinSwitch,
    revision: 0,
    closers: [] as (() => unknown)[],
    async serve(handler: http.RequestListener): Promise<Served> {
      const server = http.createServer(handler);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const served: Served = {
        port: (server.address() as net.AddressInfo).port,
        server,
        close: () => {
          server.closeAllConnections();
          return new Promise((resolve) => server.close(() => resolve()));
        },
      };
      f.closers.push(served.close);
      return served;
    },
    async raw(options: Parameters<typeof startRawUpstream>[0] = {}) {
      const up = await startRawUpstream(options);
      f.closers.push(up.close);
      return up;
    },
    async client(): Promise<RawClient> {
      const c = await RawClient.connect(f.dp.url);
      f.closers.push(() => c.destroy());
      return c;
    },
    /** Routes `web` to a new pool of these ports; returns the pool. */
    async route(...ports: number[]): Promise<Pool> {
      f.revision++;
      const pool = poolFor('web', 'blue', f.revision, ports.map(upstreamAt));
      await f.sw.apply(webTable(f.revision, pool));
      return pool;
    },
  };
  beforeAll(async () => {
    f.dp = await startTestDataPlane('127.0.0.1:0', settings);
    f.sw = new BuiltinSwitch({ adminSocket: f.dp.adminSocket });
  });
  afterAll(async () => {
    await f.dp.stop();
  });
  afterEach(async () => {
    for (const c of f.closers.splice(0).reverse()) await c();
  });
  return f;
}
