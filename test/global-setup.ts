import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Tests start real teal processes (the daemon, the data plane, helpers) from dist/, so build it
 * once before any test runs: a stale dist/ would test yesterday's code.
 */
export default function setup(): void {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  try {
    execFileSync(
      process.execPath,
      [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
      {
        cwd: root,
        stdio: 'inherit',
      },
    );
  } catch {
    // tsc still emitted; type errors fail `npm run typecheck`, which the test script runs first.
    process.stderr.write('global-setup: tsc reported type errors (see above); testing what it emitted\n');
  }
}
