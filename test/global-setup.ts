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
  assertNobodyCanRunTheApp(root);
}

/**
 * Run as root (as CI does), teal runs the apps, stages and hooks the tests deploy as nobody: the
 * example app and node must be reachable for nobody, which a clone under /root (0700) is not.
 * Said once, here, rather than as every deploy's TEAL_START_FAILED.
 */
function assertNobodyCanRunTheApp(root: string): void {
  if (process.getuid?.() !== 0) return;
  try {
    execFileSync(
      process.execPath,
      ['-e', `require('fs').readFileSync(${JSON.stringify(path.join(root, 'examples/hello/server.js'))})`],
      {
        uid: 65534,
        gid: 65534,
        cwd: '/',
        stdio: 'pipe',
      },
    );
  } catch (err) {
    throw new Error(
      `the tests run as root, so teal runs their apps as nobody, who cannot run ${process.execPath} on ${root}/examples/hello/server.js: clone teal where others may read it (not under /root), or make the folders on the way searchable (chmod o+x). ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? ''}`,
    );
  }
}
