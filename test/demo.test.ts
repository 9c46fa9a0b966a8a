import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { distEntry, packageRoot } from '../src/paths.js';
import { ProcessRuntime } from '../src/runtimes/process.js';
import { HELLO_DIR } from '../src/testing/paths.js';

const dir = mkdtempSync(path.join(tmpdir(), 'teal-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the main job (scripts/demo.sh runs dist/demo/main.js)', () => {
  it('deploys hello v1 then v2 under load, reports zero failed requests, and cleans up on exit', async () => {
    // The example's own config, moved to free ports so the test can run beside anything else.
    const example = readFileSync(path.join(packageRoot(), 'examples/hello/teal.yml'), 'utf8');
    const config = example
      .replace('listen: 127.0.0.1:8080', 'listen: 127.0.0.1:0')
      .replace('listen: 127.0.0.1:7070', 'listen: 127.0.0.1:0')
      .replace(/\n\s+ports: \{[^}]*\}/, '')
      .replace('cwd: .', `cwd: ${HELLO_DIR}`);
    const file = path.join(dir, 'teal.yml');
    writeFileSync(file, config);
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>(
      (resolve) => {
        execFile(
          process.execPath,
          [distEntry('demo/main.js'), '--config', file, '--exit', '--connections', '16'],
          { env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000 },
          (err, out, errOut) =>
            resolve({
              code: err ? Number((err as { code?: number }).code ?? 1) : 0,
              stdout: out,
              stderr: errOut,
            }),
        );
      },
    );
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    expect(stdout).toContain('2. deploy hello v1');
    expect(stdout).toContain('3. deploy hello v2');
    expect(stdout).toMatch(/requests sent\s+[\d,]+ /);
    expect(stdout).toMatch(/requests failed\s+0\n/);
    expect(stdout).toContain('every request answered by v2');
    expect(stdout).toMatch(/proxy\s+http:\/\/127\.0\.0\.1:\d+\//);
    // --exit stops everything the demo started: no instance is left running.
    const runtime = new ProcessRuntime({ stateDir: path.join(dir, '.teal') });
    expect((await runtime.list()).filter((i) => i.status.state === 'running')).toEqual([]);
    await runtime.close();
  }, 150_000);
});
