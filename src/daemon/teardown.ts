import type { TealConfig } from '../core/config/schema.js';
import { stopDataPlane } from '../proxy/builtin/launcher.js';
import { ProcessRuntime } from '../runtimes/process.js';
import type { StatePaths } from './files.js';
import { openRuntime } from './runtime.js';

/**
 * Stops everything a state dir's teal started outside the control plane: every app instance and the
 * data plane. The control plane must already be stopped. Used by the demo on Ctrl-C and by tests.
 */
export async function teardown(
  paths: StatePaths,
  options: { stopTimeoutMs?: number; config?: Pick<TealConfig, 'docker' | 'services'> } = {},
): Promise<void> {
  // Containers too when the config is known (it says which engine); else the processes alone.
  const runtime = options.config
    ? openRuntime(options.config, paths.dir)
    : new ProcessRuntime({ stateDir: paths.dir });
  try {
    await Promise.all(
      (await runtime.list()).map((i) => runtime.stop(i, { timeoutMs: options.stopTimeoutMs ?? 5_000 })),
    );
  } finally {
    await runtime.close();
  }
  await stopDataPlane(paths.proxySocket, { timeoutMs: options.stopTimeoutMs ?? 5_000 });
}
