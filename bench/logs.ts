/**
 * How right the times `teal logs` shows are, and what the time index costs.
 *   npm run bench:logs            (SECONDS=10 by default)
 * A process instance (the ProcessRuntime teal up uses, default 1 s clock) prints `at <Date.now()>`
 * every 20 ms for SECONDS; a follower reads it meanwhile (times from the file's mtime at each read),
 * and afterwards the whole log is read again (times from the `.times` index). For each line the
 * error is the time teal gives minus the time the app wrote into it: positive means late (teal's
 * times are upper bounds); slightly negative values come from the kernel's coarse file clock.
 * Then the index's size against the log's. Writes its section of docs/benchmarks.md.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ProcessRuntime } from '../src/runtimes/process.js';
import type { LogLine } from '../src/runtimes/runtime.js';
import { machine, writeSection } from './report.js';

const seconds = Number(process.env.SECONDS_TO_RUN ?? process.env.SECONDS ?? 10);
const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function errors(lines: LogLine[]): number[] {
  return lines.flatMap((l) => {
    const m = /^at (\d+)$/.exec(l.line);
    return m ? [l.time - Number(m[1])] : [];
  });
}

const stateDir = mkdtempSync(path.join(os.tmpdir(), 'teal-bench-logs-'));
const runtime = new ProcessRuntime({ stateDir });
const instance = await runtime.start(
  {
    labels: { service: 'bench', slot: 'blue', release: 1, deployment: 1, version: 'v1' },
    index: 0,
    command: [process.execPath, '-e', 'setInterval(() => console.log("at " + Date.now()), 20)'],
    cwd: os.tmpdir(),
    env: {},
    host: '127.0.0.1',
  },
  { signal: AbortSignal.timeout(30_000) },
);
const followed: LogLine[] = [];
const stop = new AbortController();
const following = (async () => {
  for await (const l of runtime.logs(instance, { follow: true, signal: stop.signal, tail: 0 }))
    followed.push(l);
})();
await new Promise((r) => setTimeout(r, seconds * 1000));
await new Promise((r) => setTimeout(r, 1_200)); // one more tick of the clock covers the last lines
stop.abort();
await following;
const history: LogLine[] = [];
for await (const l of runtime.logs(instance, { follow: false, signal: AbortSignal.timeout(30_000) }))
  history.push(l);
const logFile = path.join(stateDir, 'logs', 'bench', `${instance.id}.log`);
const logBytes = statSync(logFile).size;
const timesBytes = statSync(`${logFile}.times`).size;
await runtime.stop(instance, { timeoutMs: 2_000 });
await runtime.close();
rmSync(stateDir, { recursive: true, force: true });

const rows: string[] = [];
for (const [what, lines] of [
  ['follow (-f: mtime at each 150 ms read)', followed],
  ['history (the .times index, 1 s clock)', history],
] as const) {
  const e = errors(lines);
  rows.push(
    `| ${what} | ${e.length} | ${percentile(e, 50)} | ${percentile(e, 99)} | ${Math.max(...e)} | ${Math.min(...e)} |`,
  );
}
const perHour = Math.round((timesBytes / seconds) * 3600);
const markdown = `## Log times

\`npm run bench:logs\`: an instance printing the time every 20 ms for ${seconds} s; each line's error is
the time \`teal logs\` gives it minus the time the app wrote into it (ms; positive: late). CPU: ${cpu}.
Machine: ${machine()}.

| read as | lines | p50 | p99 | max | min |
| --- | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}

Index: ${timesBytes} bytes beside a ${logBytes}-byte log (${((timesBytes / logBytes) * 100).toFixed(1)} %),
about ${Math.round(perHour / 1024)} KiB per hour for a log that grows every second; a log is rotated
when its index passes a 16th of the log size cap (64 KiB at least), so it stays bounded.
`;
process.stdout.write(`${markdown}\nmodel name: ${cpu}\n`);
writeSection('logs', markdown);
