import { afterEach, describe, expect, it } from 'vitest';
import type { PipelineRun } from '../src/pipeline/records.js';
import { HELLO, helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { endedRun, makeRepo, type TestRepo, waitRun } from './pipeline-helpers.js';

/**
 * Issue 13, item 10: strings from outside (a pushed commit's message, an app's and a stage's
 * output, names in error messages) reach people's terminals through the CLI. None may arrive as
 * raw control characters: a terminal would set its title, clear the screen, or worse.
 */

// OSC 0 (set the window title) ended by BEL, then "clear the screen", then CSI as one C1 byte and a
// bidi override: each a different way in.
const PAYLOAD = '\x1b]0;pwned\x07\x1b[2J\u009b31m\u202eevil';
const SHOWN = '\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202eevil';
const RAW = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]/;

let daemon: TestDaemon | undefined;
let repo: TestRepo | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
  repo?.remove();
  repo = undefined;
});

function expectHarmless(output: string, what: string): void {
  const at = output.search(RAW);
  expect(
    at,
    `${what} printed a raw control character: ${JSON.stringify(output.slice(Math.max(0, at - 20), at + 20))}`,
  ).toBe(-1);
}

describe('what the CLI prints for people', () => {
  it('shows control characters from commit messages, stage and app output and error messages escaped; --json stays exact', async () => {
    repo = makeRepo();
    // The app writes the payload to its log before it serves.
    const printing = `process.stdout.write(${JSON.stringify(`app says ${PAYLOAD}\n`)}); import(${JSON.stringify(HELLO)});`;
    daemon = await startTestDaemon({
      extraConfig: `pipelines:
  web:
    source: { repo: ${repo.bare}, branches: [main] }
    stages:
      - { name: shout, run: ${JSON.stringify(`printf '%s\\n' "stage says $(printf '\\033]0;pwned\\007\\033[2J')"`)} }
`,
      services: `  hello:\n${helloService({ command: JSON.stringify([process.execPath, '-e', printing]) })}`,
    });
    repo.commit(`fix ${PAYLOAD}`);

    const started = await daemon.cli(['pipeline', 'run', 'web', '--detach', '--json']);
    expect(started.code, started.stderr).toBe(0);
    const run = await waitRun(daemon, (JSON.parse(started.stdout) as PipelineRun).n, endedRun);
    expect(run.state, JSON.stringify(run)).toBe('done');

    const history = await daemon.cli(['pipeline', 'history', 'web']);
    expect(history.code, history.stderr).toBe(0);
    expectHarmless(history.stdout + history.stderr, 'teal pipeline history');
    expect(history.stdout).toContain(`fix ${SHOWN}`.slice(0, 30));

    const status = await daemon.cli(['pipeline', 'status', 'web']);
    expectHarmless(status.stdout + status.stderr, 'teal pipeline status');

    const stageLog = await daemon.cli(['pipeline', 'logs', 'web']);
    expect(stageLog.code, stageLog.stderr).toBe(0);
    expectHarmless(stageLog.stdout + stageLog.stderr, 'teal pipeline logs');
    expect(stageLog.stdout).toContain('stage says \\x1b]0;pwned\\x07\\x1b[2J');

    // --json is the data exactly: the message as committed, and the document parses.
    const json = await daemon.cli(['pipeline', 'history', 'web', '--json']);
    expect((JSON.parse(json.stdout) as PipelineRun[])[0]!.message).toContain(`fix ${PAYLOAD}`);
    expectHarmless(json.stdout, 'teal pipeline history --json');

    const deployed = await daemon.cli(['deploy', 'hello', '--version', 'v1']);
    expect(deployed.code, deployed.stderr).toBe(0);
    const logs = await daemon.cli(['logs', 'hello']);
    expect(logs.code, logs.stderr).toBe(0);
    expectHarmless(logs.stdout + logs.stderr, 'teal logs');
    expect(logs.stdout).toContain(`app says ${SHOWN}`);
    // Lines stay lines: the newline the app wrote is still one.
    // Each line is "<time> <instance> <line>".
    expect(logs.stdout.split('\n').some((line) => /^\S+Z \S+ app says/.test(line))).toBe(true);

    // An error message that quotes what the user (or a script) passed.
    const unknown = await daemon.cli(['deploy', `x${PAYLOAD}`, '--version', 'v2']);
    expect(unknown.code).not.toBe(0);
    expectHarmless(unknown.stdout + unknown.stderr, 'an error message');
    expect(unknown.stderr).toContain('no service named');
  });
});
