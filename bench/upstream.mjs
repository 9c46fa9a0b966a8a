// The upstream every proxy in the benchmark forwards to: a minimal keep-alive Node server in its own
// process, answering every request with a fixed body. Usage: node upstream.mjs <port> <body>
import http from 'node:http';

const [port, body = 'A'] = process.argv.slice(2);
const payload = Buffer.from(`${body}\n`);
const server = http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': payload.length });
  res.end(payload);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('listening\n'));
process.on('SIGTERM', () => process.exit(0));
