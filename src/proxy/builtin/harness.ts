import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ensureDataPlane, stopDataPlane } from './launcher.js';

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

export async function startTestDataPlane(listen = '127.0.0.1:0'): Promise<TestDataPlane> {
  const paths = await tempDataPlaneDir();
  try {
    const handle = await ensureDataPlane({ listen, ...paths });
    return {
      ...paths,
      pid: handle.pid,
      listen: handle.listen,
      url: `http://${handle.listen}`,
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
