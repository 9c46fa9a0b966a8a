// The example app teal deploys: answers / with its version and /health with 200 once ready.
// PORT comes from teal; APP_VERSION from teal.yml's env ("{{version}}"); START_DELAY_MS delays
// readiness, as a real app warming caches would. ERROR_VERSIONS (comma-separated) names versions
// that answer every 4th request to / with 500 while passing health checks: a bad release that
// only shows under traffic, for trying out the post-switch analysis. On SIGTERM it stops accepting, finishes what it
// has in flight and exits, so a drained slot goes away cleanly.
import http from 'node:http';

const version = process.env.APP_VERSION ?? 'dev';
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';
const startDelay = Number(process.env.START_DELAY_MS ?? 0);
const bootedAt = Date.now();
const broken = (process.env.ERROR_VERSIONS ?? '').split(',').includes(version);
let served = 0;
let ready = startDelay <= 0;
if (!ready) setTimeout(() => (ready = true), startDelay);

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://app');
  if (url.pathname === '/health') {
    res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(ready ? 'ok\n' : 'starting\n');
    return;
  }
  if (url.pathname === '/slow') {
    const ms = Math.min(Number(url.searchParams.get('ms') ?? 1000), 60_000);
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`hello ${version} (slow ${ms}ms)\n`);
    }, ms);
    return;
  }
  if (url.pathname === '/info') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        version,
        pid: process.pid,
        port,
        uptimeMs: Date.now() - bootedAt,
        headers: req.headers,
      }),
    );
    return;
  }
  if (broken && ++served % 4 === 0) {
    res.writeHead(500, { 'content-type': 'text/plain', 'x-app-version': version });
    res.end(`hello ${version} failed\n`);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'x-app-version': version });
  res.end(`hello ${version}\n`);
});

server.listen(port, host, () => {
  console.log(`hello ${version} listening on http://${host}:${port} (ready in ${startDelay}ms)`);
});

process.on('SIGTERM', () => {
  console.log(`hello ${version} got SIGTERM; finishing in-flight requests`);
  ready = false;
  server.close(() => {
    console.log(`hello ${version} stopped`);
    process.exit(0);
  });
  server.closeIdleConnections();
});
