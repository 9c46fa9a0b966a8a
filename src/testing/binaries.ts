import { execFileSync } from 'node:child_process';

/** Absolute path of a program on PATH (or in the sbin dirs Debian puts daemons in), or undefined. */
export function findBinary(name: string): string | undefined {
  try {
    const found = execFileSync('sh', ['-c', 'command -v "$1"', 'sh', name], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin:/usr/local/sbin` },
    }).trim();
    return found || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether tests needing `name` can run. Missing: with CI=true that is a failure (CI installs every
 * test dependency), otherwise the tests skip with a message naming the install script.
 */
export function haveBinary(name: string, debianPackage = name): boolean {
  if (findBinary(name)) return true;
  const message = `${name} is not installed (Debian package ${debianPackage}); run scripts/install-test-deps.sh`;
  if (process.env.CI === 'true') throw new Error(`CI=true and ${message}`);
  process.stderr.write(`skipping tests that need ${name}: ${message}\n`);
  return false;
}
