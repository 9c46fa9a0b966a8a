/**
 * Config reload: how long teal up takes to apply an edited teal.yml, under keep-alive load.
 *   npm run bench:reload            (ROUNDS=10 by default)
 * A real `teal up` with two services (web on /, api on /api), both deployed. Then ROUNDS times:
 * 1. a route added to api, `POST /v1/config/reload`: the request's time, and the time from the
 *    request to the data plane answering the new path from api (polled every 2 ms, fresh connections);
 * 2. the same by SIGHUP: from the signal to the new path answered by api;
 * 3. proxy.timeouts.idle changed, `POST /v1/config/reload`: the handoff to a data plane with the new
 *    settings, request to answer;
 * 4. what each deploy adds: reading, hashing and validating teal.yml in this process (loadConfigText).
 * Load: 8 keep-alive connections on / throughout; every failed request is counted.
 * Writes its section of docs/benchmarks.md.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { loadConfigText } from '../src/core/config/load.js';
import { helloService, startTestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad, deployAndWait } from '../test/helpers.js';
import { machine, median, writeSection } from './report.js';

const rounds = Number(process.env.ROUNDS ?? 10);

const web = `  web:\n${helloService({ routes: '[{ path: / }]' })}`;
const api = (extra: string[]) =>
  `  api:\n${helloService({ routes: `[{ path: /api }${extra.map((p) => `, { path: ${p} }`).join('')}]` })}`;
const file = (extra: string[], idle: string) =>
  `proxy: { kind: builtin, listen: 127.0.0.1:0, timeouts: { idle: ${idle} } }\napi: { listen: 127.0.0.1:0 }\nservices:\n${web}\n${api(extra)}\n`;

function answer(url: string): Promise<string> {
  return new Promise((resolve) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body.trim()));
      })
      .on('error', () => resolve(''));
  });
}

async function servedBy(url: string, body: string, t0: number): Promise<number> {
  while ((await answer(url)) !== body) await new Promise((r) => setTimeout(r, 2));
  return performance.now() - t0;
}

const daemon = await startTestDaemon({ services: `${web}\n${api([])}` });
try {
  writeFileSync(daemon.configFile, file([], '75s'));
  await daemon.client.request('POST', '/v1/config/reload', {});
  for (const svc of ['web', 'api']) {
    const d = await deployAndWait(daemon.client, svc, `${svc}1`);
    if (d.state !== 'done') throw new Error(`deploy of ${svc}: ${d.error?.message}`);
  }
  const proxy = daemon.info.proxy;
  const load = backgroundLoad(`${proxy}/`, 8);
  const reloadMs: number[] = [];
  const routeMs: number[] = [];
  const hupMs: number[] = [];
  const settingsMs: number[] = [];
  const parseMs: number[] = [];
  const extra: string[] = [];
  for (let i = 0; i < rounds; i++) {
    extra.push(`/r${i}`);
    writeFileSync(daemon.configFile, file(extra, '75s'));
    let t0 = performance.now();
    await daemon.client.request('POST', '/v1/config/reload', {});
    reloadMs.push(performance.now() - t0);
    routeMs.push(await servedBy(`${proxy}/r${i}`, 'hello api1', t0));

    extra.push(`/h${i}`);
    writeFileSync(daemon.configFile, file(extra, '75s'));
    t0 = performance.now();
    process.kill(daemon.child.pid!, 'SIGHUP');
    hupMs.push(await servedBy(`${proxy}/h${i}`, 'hello api1', t0));

    writeFileSync(daemon.configFile, file(extra, i % 2 === 0 ? '70s' : '75s'));
    t0 = performance.now();
    await daemon.client.request('POST', '/v1/config/reload', {});
    settingsMs.push(performance.now() - t0);
    writeFileSync(daemon.configFile, file(extra, '75s'));
    await daemon.client.request('POST', '/v1/config/reload', {});

    t0 = performance.now();
    const { text } = loadConfigText(daemon.configFile);
    createHash('sha256').update(text).digest('hex');
    parseMs.push(performance.now() - t0);
  }
  await new Promise((r) => setTimeout(r, 200));
  const { report } = await load.stop();
  const rows: [string, number][] = [
    ['`teal reload` with a new route: API request to answer', median(reloadMs)],
    ['  request to the data plane serving the new route', median(routeMs)],
    ['SIGHUP with a new route: signal to the data plane serving it', median(hupMs)],
    [
      '`teal reload` with new proxy timeouts (handoff to a new data plane): request to answer',
      median(settingsMs),
    ],
    ['what each deploy adds: read, hash and validate teal.yml (in-process)', median(parseMs)],
  ];
  const md = `## Config reload

\`npm run bench:reload\`, ${rounds} rounds, medians. Machine: ${machine()}. ${new Date().toISOString().slice(0, 10)}.
Two services (web on /, api on /api), both live; each round adds a route by \`teal reload\`, another by
SIGHUP, and changes \`proxy.timeouts.idle\` (and back); 8 keep-alive connections on / throughout
(${report.sent} requests, ${report.failed} failed).

| what | ms |
|---|---|
${rows.map(([k, v]) => `| ${k} | ${v.toFixed(v < 10 ? 2 : 0)} |`).join('\n')}

A route reload is one table apply (the same as a switch); a settings reload is a handoff to a fresh
data plane process (\`teal restart-proxy\`'s path), so it costs a process start.`;
  process.stdout.write(`${md}\n`);
  process.stdout.write(`wrote ${writeSection('reload', md)}\n`);
} finally {
  await daemon.cleanup();
}
