import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { poolFor, type Upstream, waitFor, webTable } from '../switch.contract.js';
import {
  RawClient,
  type RawUpstream,
  startRawUpstream,
  startTestDataPlane,
  type TestDataPlane,
} from './harness.js';
import { BuiltinSwitch } from './switch.js';

/**
 * Requests that different HTTP parsers could frame differently: a proxy that forwards one of them
 * lets a client hide a second request inside the first (request smuggling). Each is sent as raw
 * bytes on a fresh connection; the data plane must answer with an error and close, and the
 * upstream, which records every byte it receives, must get nothing of it.
 */
describe('the builtin data plane refusing ambiguous requests', () => {
  let dp: TestDataPlane;
  let up: RawUpstream;
  const clients: RawClient[] = [];

  beforeAll(async () => {
    dp = await startTestDataPlane();
    // It answers every request at once, but for /hold ones, which it leaves waiting.
    up = await startRawUpstream({
      respond: (head) =>
        head.startsWith('POST /hold ') ? undefined : 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok',
    });
    const sw = new BuiltinSwitch({ adminSocket: dp.adminSocket });
    await sw.apply(webTable(1, poolFor('web', 'blue', 1, [{ port: up.port } as Upstream])));
  });
  afterAll(async () => {
    for (const c of clients) c.destroy();
    await up.close();
    await dp.stop();
  });
  beforeEach(() => {
    up.received = '';
    up.heads = [];
  });

  async function send(bytes: string): Promise<RawClient> {
    const c = await RawClient.connect(dp.url);
    clients.push(c);
    c.send(bytes);
    return c;
  }

  /** Sends `bytes`; expects exactly one answer, `status`, a connection closed by the data plane, nothing upstream. */
  async function expectRefused(bytes: string, status: number): Promise<string> {
    const c = await send(bytes);
    await c.waitForClose();
    const answers = c.responses();
    expect(answers.map((r) => r.status)).toEqual([status]);
    expect(c.ended, 'the data plane ended the connection').toBe(true);
    await sleep(30);
    expect(up.received).toBe('');
    return answers[0]!.body.toString();
  }

  const cases: [string, string][] = [
    [
      'Content-Length with Transfer-Encoding',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX',
    ],
    [
      'Transfer-Encoding with Content-Length',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX',
    ],
    [
      'two different Content-Lengths',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
    ],
    ['a Content-Length list', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello'],
    [
      'Transfer-Encoding: chunked, identity',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    ],
    [
      'Transfer-Encoding: xchunked',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    ],
    [
      'a chunk size that is not hex',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
    ],
    [
      'a chunk size that overflows',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff5\r\nhello\r\n0\r\n\r\n',
    ],
    ['a folded header line (obs-fold)', 'GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n'],
    ['bare LF line endings', 'GET / HTTP/1.1\nHost: a\n\n'],
    ['a bare LF ending one header line', 'GET / HTTP/1.1\r\nHost: a\nX-Hidden: b\r\n\r\n'],
    ['NUL in a header value', 'GET / HTTP/1.1\r\nHost: a\r\nX-Value: a\0b\r\n\r\n'],
    ['CR in a header value', 'GET / HTTP/1.1\r\nHost: a\r\nX-Value: a\rb\r\n\r\n'],
    ['LF in a header value', 'GET / HTTP/1.1\r\nHost: a\r\nX-Value: a\nTransfer-Encoding: chunked\r\n\r\n'],
    [
      'a space before the colon',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n',
    ],
    ['an invalid method token', 'G@T / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['a control character in an absolute-form URL', 'GET http://a\x01b/ HTTP/1.1\r\nHost: a\r\n\r\n'],
    [
      'an absolute-form URL with user info',
      'GET http://user@evil.test@good.test/ HTTP/1.1\r\nHost: a\r\n\r\n',
    ],
    ['an absolute-form URL without a host', 'GET http:// HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['an absolute-form URL with a broken IPv6 host', 'GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['a request target that is neither a path nor a URL', 'GET *a HTTP/1.1\r\nHost: a\r\n\r\n'],
    [
      'Transfer-Encoding in an HTTP/1.0 request',
      'POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    ],
    ['two Host headers', 'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n'],
    ['an HTTP/1.1 request without Host', 'GET / HTTP/1.1\r\n\r\n'],
    ['a Host header that is not a host', 'GET / HTTP/1.1\r\nHost: a.test/admin\r\n\r\n'],
  ];

  for (const [what, bytes] of cases) {
    it(`answers ${what} with 400 and closes, forwarding nothing`, async () => {
      await expectRefused(bytes, 400);
    });
  }

  it('answers a head over 16 KB with 431 and closes, forwarding nothing', async () => {
    await expectRefused(`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\n\r\n`, 431);
  });

  it('answers a transfer coding other than chunked with 501 and closes, forwarding nothing', async () => {
    const body = await expectRefused(
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
      501,
    );
    expect(body).toContain('gzip');
  });

  it('answers an HTTP/2.0 request line with 505 and closes, forwarding nothing', async () => {
    await expectRefused('GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505);
  });

  for (const [what, second] of [
    [
      'Content-Length with Transfer-Encoding',
      'POST /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n',
    ],
    [
      'a bad chunk size',
      'POST /smuggled HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n',
    ],
    [
      'Transfer-Encoding: xchunked',
      'POST /smuggled HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n',
    ],
  ]) {
    it(`answers a valid request, then 400 for a second one with ${what} in the same packet, which never reaches the upstream`, async () => {
      const c = await send(`GET /first HTTP/1.1\r\nHost: a\r\n\r\n${second}`);
      await c.waitForClose();
      const answers = c.responses();
      expect(answers.map((r) => r.status)).toEqual([200, 400]);
      expect(answers[0]!.body.toString()).toBe('ok');
      expect(c.ended).toBe(true);
      await sleep(30);
      expect(up.heads.map((h) => h.split('\r\n')[0])).toEqual(['GET /first HTTP/1.1']);
      expect(up.received).not.toContain('smuggled');
      expect(up.received).not.toContain('admin');
    });
  }

  it('abandons the upstream request when its body turns out malformed after the head went upstream', async () => {
    const c = await send(
      'POST /hold HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n',
    );
    await waitFor('the head to reach the upstream', () => up.heads.length === 1);
    const closedBefore = up.closed;
    c.send('zz\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n');
    await c.waitForClose();
    expect(c.responses().map((r) => r.status)).toEqual([400]);
    expect(c.ended).toBe(true);
    await waitFor('the upstream connection to close', () => up.closed > closedBefore);
    expect(up.heads).toHaveLength(1);
    expect(up.received).not.toContain('admin');
  });

  it('forwards a request hidden in a body as that body, framed by its Content-Length', async () => {
    const hidden = 'GET /admin HTTP/1.1\r\nHost: a\r\n\r\n';
    const c = await send(
      `POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: ${hidden.length}\r\n\r\n${hidden}`,
    );
    const [answer] = await c.finalResponses(1);
    expect(answer!.status).toBe(200);
    await sleep(30);
    expect(up.heads).toHaveLength(1);
    expect(up.heads[0]).toMatch(/^POST \/form HTTP\/1\.1\r\n/);
    expect(up.heads[0]).toMatch(new RegExp(`\\r\\ncontent-length: ${hidden.length}(\\r\\n|$)`, 'i'));
    expect(up.received.endsWith(`\r\n\r\n${hidden}`)).toBe(true);
  });

  it('routes an absolute-form request by its host and forwards it in origin form', async () => {
    const c = await send('GET http://Shop.Test:8080/cart?id=7 HTTP/1.1\r\nHost: ignored.test\r\n\r\n');
    const [answer] = await c.finalResponses(1);
    expect(answer!.status).toBe(200);
    expect(up.heads).toHaveLength(1);
    const [line, ...headers] = up.heads[0]!.split('\r\n');
    expect(line).toBe('GET /cart?id=7 HTTP/1.1');
    expect(headers.filter((h) => /^host:/i.test(h))).toEqual(['Host: Shop.Test:8080']);
    expect(headers).toContain('x-forwarded-host: Shop.Test:8080');
  });
});
