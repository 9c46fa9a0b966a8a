import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { reachableExample } from '../src/reachable-copy.js';

/**
 * Tests start real teal processes (the daemon, the data plane, helpers) from dist/, so build it
 * once before any test runs: a stale dist/ would test yesterday's code.
 */
export default function setup(): () => void {
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
  useReachableExample(root);
  return teardown;
}

/**
 * Run as root (as CI does), teal runs the apps, stages and hooks the tests deploy as nobody, who
 * cannot enter a clone under /root (0700). The tests then deploy a copy of examples/hello that
 * the user nobody can read (reachable-copy.ts), named in TEAL_TEST_HELLO_DIR for every test worker (they
 * are forked after this and inherit the environment); it is removed when the run ends.
 */
let copied: string | undefined;

function useReachableExample(root: string): void {
  const example = reachableExample(path.join(root, 'examples/hello'), 'teal-test-hello-');
  if (!example.copied) return;
  copied = example.dir;
  process.env.TEAL_TEST_HELLO_DIR = example.dir;
  process.stderr.write(
    `global-setup: nobody cannot reach ${root}; the tests deploy a copy of examples/hello in ${example.dir}\n`,
  );
}

function teardown(): void {
  if (copied) rmSync(copied, { recursive: true, force: true });
}
