import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LogEntryJson } from '../src/core/log-follow.js';
import type { DeploymentRecord } from '../src/core/records.js';
import type { ServiceStatus } from '../src/core/status.js';
import { HELLO, helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { cliEntry } from '../src/testing/paths.js';
import { backgroundLoad, deployAndWait, waitEnded } from './helpers.js';

/**
 * `teal logs` against a real `teal up`, under keep-alive load: `-f` follows whatever is live across
 * a deploy and a rollback (a marker at each switch, then the new release's lines), every line with
 * its time and instance; `--slot`, `--instance`, `--since` narrow; a replaced instance (what the
 * supervisor does after a crash: a new instance swapped into the slot record) is followed too.
 */

// examples/hello, plus a line every 100 ms naming its version: something to follow.
const TICKER = `let n = 0;
setInterval(() => console.log(\`tick \${process.env.APP_VERSION} \${n++}\`), 100);
await import(${JSON.stringify(pathToFileURL(HELLO).href)});
`;

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let daemon: TestDaemon;
let load: ReturnType<typeof backgroundLoad>;
const followers: ChildProcess[] = [];

function follow(args: string[]) {
  const child = spawn(process.execPath, [cliEntry(), 'logs', 'hello', ...args, '-c', daemon.configFile], {
    env: { ...process.env, TEAL_TOKEN: daemon.token, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  followers.push(child);
  const out = { text: '', err: '' };
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    out.text += c;
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    out.err += c;
  });
  return {
    out,
    lines: () => out.text.split('\n').filter((l) => l !== ''),
    json: () =>
      out.text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as LogEntryJson & { version?: string; slot?: string; release?: number }),
    stop: () => child.kill('SIGINT'),
  };
}

async function until(
  what: string,
  check: () => boolean,
  timeoutMs = 20_000,
  detail = () => '',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${detail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'teal-logs-'));
  chmodSync(dir, 0o755);
  writeFileSync(path.join(dir, 'ticker.mjs'), TICKER, { mode: 0o644 });
  daemon = await startTestDaemon({
    dir,
    services: `  hello:\n${helloService({
      command: JSON.stringify([process.execPath, path.join(dir, 'ticker.mjs')]),
      instances: '2',
    })}`,
  });
  const first = await deployAndWait(daemon.client, 'hello', 'v1');
  expect(first.state, first.error?.message).toBe('done');
  load = backgroundLoad(`${daemon.info.proxy}/`, 16);
}, 60_000);

afterAll(async () => {
  for (const f of followers) if (f.exitCode === null) f.kill('SIGKILL');
  const stopped = await load?.stop();
  await daemon?.cleanup();
  // One failed request through the public port fails the file.
  expect(stopped?.report.failures ?? [], JSON.stringify(stopped?.report.failures.slice(0, 5))).toEqual([]);
}, 60_000);

describe('teal logs', () => {
  it('-f follows the live release across a deploy and a rollback, a marker at each switch, time and instance on every line', async () => {
    const json = follow(['-f', '--json']);
    const text = follow(['-f']);
    await until(
      'v1 ticks',
      () => json.out.text.includes('"tick v1'),
      20_000,
      () => json.out.err,
    );

    const d2 = await deployAndWait(daemon.client, 'hello', 'v2');
    expect(d2.state, d2.error?.message).toBe('done');
    await until('v2 ticks after the switch', () => /"line":"tick v2 \d+"/.test(json.out.text));

    const asked = await daemon.client.request<DeploymentRecord>('POST', '/v1/services/hello/rollback', {});
    const back = await waitEnded(daemon.client, asked);
    expect(back.state, back.error?.message).toBe('done');
    const instancesAfter = (marker: number) => {
      const entries = json.json();
      const at = entries.flatMap((e, i) => (e.marker === 'switch' ? [i] : []))[marker];
      if (at === undefined) return 0;
      return new Set(entries.slice(at + 1).flatMap((e) => (e.line.startsWith('tick ') ? [e.instance] : [])))
        .size;
    };
    await until('ticks of both v2 instances', () => instancesAfter(0) === 2);
    await until('ticks of both v1 instances after the rollback', () => instancesAfter(1) === 2);
    await until(
      'the text follower to see both switches',
      () => (text.out.text.match(/── switched to /g) ?? []).length === 2,
    );
    json.stop();
    text.stop();

    const entries = json.json();
    const markers = entries.flatMap((e, i) => (e.marker ? [i] : []));
    expect(markers.map((i) => entries[i]!.line)).toEqual([
      `switched to green: r2 v2 (deployment ${d2.n})`,
      `switched to blue: r1 v1 (deployment ${back.n})`,
    ]);
    const [m1, m2] = markers as [number, number];
    const segment = (from: number, to: number) => entries.slice(from, to).filter((e) => !e.marker);
    const v1Before = segment(0, m1);
    const v2 = segment(m1 + 1, m2);
    const v1After = segment(m2 + 1, entries.length);
    for (const [lines, version, slot] of [
      [v1Before, 'v1', 'blue'],
      [v2, 'v2', 'green'],
      [v1After, 'v1', 'blue'],
    ] as const) {
      expect(lines.length).toBeGreaterThan(0);
      for (const e of lines) {
        // The release the slot record names, and the process that really wrote the line, agree.
        expect(e).toMatchObject({ service: 'hello', slot, version });
        if (e.line.startsWith('tick ')) expect(e.line).toMatch(new RegExp(`^tick ${version} \\d+$`));
        expect(e.time).toMatch(ISO);
        expect(e.instance).toMatch(new RegExp(`^hello-${slot}-r\\d+-[01]-[a-z0-9]+$`));
      }
      // Both instances of the slot were followed.
      expect(new Set(lines.map((e) => e.instance)).size).toBe(2);
    }
    // v2's start-up (printed before the switch, after its deployment began) comes right after the marker.
    expect(v2.some((e) => e.line.startsWith('hello v2 listening on'))).toBe(true);
    // Times are sane: within the test's span, and the switch markers between their neighbours' times.
    for (const e of entries) expect(Math.abs(Date.parse(e.time) - Date.now())).toBeLessThan(120_000);

    // The text form: "<time> <instance> <line>", markers between ──.
    for (const line of text.lines()) {
      expect(line).toMatch(
        /^(~?\d{4}-\d\d-\d\dT\S+Z hello-(blue|green)-r\d+-[01]-[a-z0-9]+ .*|\d{4}-\S+Z ── switched to (green: r2 v2|blue: r1 v1) \(deployment \d+\) ──)$/,
      );
    }
  }, 120_000);

  it('--slot, --instance, --since and -n narrow what is shown; bad values are refused with the reason', async () => {
    const status = await daemon.client.request<ServiceStatus>('GET', '/v1/services/hello');
    expect(status.live).toBe('blue');
    const green = status.slots.green.instances;
    expect(green).toHaveLength(2);

    const parse = (stdout: string) =>
      stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as LogEntryJson & { slot: string; version: string; index: number });

    // The warm green slot (v2), 5 lines per instance.
    const slot = await daemon.cli(['logs', 'hello', '--slot', 'green', '-n', '5', '--json']);
    expect(slot.code, slot.stderr).toBe(0);
    const slotLines = parse(slot.stdout);
    expect(slotLines.length).toBe(10);
    for (const e of slotLines) expect(e).toMatchObject({ slot: 'green', version: 'v2' });

    // One instance by id, then by index.
    const byId = await daemon.cli(['logs', 'hello', '--slot', 'green', '--instance', green[1]!.id, '--json']);
    expect(byId.code, byId.stderr).toBe(0);
    expect(new Set(parse(byId.stdout).map((e) => e.instance))).toEqual(new Set([green[1]!.id]));
    const byIndex = await daemon.cli(['logs', 'hello', '--instance', '1', '-n', '3', '--json']);
    expect(byIndex.code, byIndex.stderr).toBe(0);
    const live1 = status.slots.blue.instances.find((i) => i.id.includes('-1-'))!.id;
    expect(parse(byIndex.stdout).map((e) => e.instance)).toEqual([live1, live1, live1]);

    // --since as a time: exactly the lines at or after it (of the full history), in order.
    const all = parse((await daemon.cli(['logs', 'hello', '--instance', '0', '-n', 'all', '--json'])).stdout);
    expect(all.length).toBeGreaterThan(20);
    const cut = all[Math.floor(all.length / 2)]!.time;
    const since = await daemon.cli(['logs', 'hello', '--instance', '0', '--since', cut, '--json']);
    expect(since.code, since.stderr).toBe(0);
    const sinceLines = parse(since.stdout);
    expect(sinceLines.length).toBeGreaterThan(0);
    expect(sinceLines.every((e) => e.time >= cut)).toBe(true);
    // Lines written after `all` was read come on top; the ones it had from the cut on come first, all of them.
    const expected = all.filter((e) => e.time >= cut).map((e) => e.line);
    expect(sinceLines.map((e) => e.line).slice(0, expected.length)).toEqual(expected);
    // --since as a duration: nothing older than that before the command ran.
    const asked = Date.now();
    const recent = await daemon.cli(['logs', 'hello', '--since', '2s', '--json']);
    expect(recent.code, recent.stderr).toBe(0);
    const recentLines = parse(recent.stdout);
    expect(recentLines.length).toBeGreaterThan(0);
    for (const e of recentLines) expect(Date.parse(e.time)).toBeGreaterThanOrEqual(asked - 2_000);

    // Bad values: usage errors (exit 2) naming the option; an instance that is not there: exit 1, saying what is.
    for (const [args, message] of [
      [['--slot', 'purple'], '--slot expects blue or green, got "purple"'],
      [['--since', 'yesterday'], '--since expected a duration like "10m" or a time like'],
      [['-n', '-3'], '--lines expects a number of lines or "all", got "-3"'],
      [['--instance', '../x'], '--instance expects an instance id'],
    ] as const) {
      const r = await daemon.cli(['logs', 'hello', ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
    const missing = await daemon.cli(['logs', 'hello', '--instance', 'hello-blue-r9-0-nope00']);
    expect(missing.code, `${missing.stdout}\n${missing.stderr}`).toBe(1);
    expect(missing.stderr).toContain(
      'hello has no instance "hello-blue-r9-0-nope00" to show logs of; it has hello-',
    );
    const api = await fetch(`${daemon.info.api}/v1/services/hello/logs?since=soon`, {
      headers: { authorization: `Bearer ${daemon.token}` },
    });
    expect(api.status).toBe(400);
    expect(((await api.json()) as { error: { message: string } }).error.message).toContain(
      'since: expected a duration',
    );
    // Lines go to authenticated clients only.
    expect((await fetch(`${daemon.info.api}/v1/services/hello/logs`)).status).toBe(401);
  }, 120_000);

  it('-f notices an instance replaced in the slot record (a crash healed by the supervisor) and follows the new one from its start', async () => {
    const json = follow(['-f', '--json']);
    await until('live ticks', () => json.out.text.includes('"tick v1'));
    const before = await daemon.client.request<ServiceStatus>('GET', '/v1/services/hello');
    const victim = before.slots.blue.instances.find((i) => /^hello-blue-r\d+-0-/.test(i.id))!;
    // The crash; the supervisor starts a replacement and swaps it into the slot record.
    process.kill(victim.pid!, 'SIGKILL');
    let replacement: string | undefined;
    await until(
      'the supervisor to record a replacement',
      () => {
        const marker = json
          .json()
          .find((e) => e.marker === 'instance' && e.line.endsWith(`replaces ${victim.id} in blue`));
        replacement = marker?.line.split(' ')[0];
        return (
          replacement !== undefined &&
          json.json().some((e) => e.instance === replacement && e.line.startsWith('tick v1'))
        );
      },
      30_000,
      () => json.out.text.slice(-2_000),
    );
    json.stop();
    const after = await daemon.client.request<ServiceStatus>('GET', '/v1/services/hello');
    expect(after.slots.blue.instances.map((i) => i.id)).toContain(replacement);
    const entries = json.json();
    const at = entries.findIndex((e) => e.marker === 'instance');
    const lines = entries.slice(at + 1).filter((e) => !e.marker);
    // The new one from its first line (its start-up), and nothing more of the dead one.
    expect(lines.find((e) => e.instance === replacement)?.line).toMatch(/^(tick v1 0|hello v1 listening on)/);
    expect(lines.some((e) => e.instance === victim.id)).toBe(false);
  }, 120_000);
});
