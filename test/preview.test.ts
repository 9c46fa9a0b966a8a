import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { headerValues, RawClient } from '../src/proxy/builtin/raw-http.js';
import { request } from '../src/proxy/switch.contract.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { backgroundLoad } from './helpers.js';

let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
});

interface Grant {
  id: string;
  slot: string;
  version: string;
  expiresAt: string;
  link: string;
}

/** One raw GET on a fresh connection: status, headers and body as the data plane sent them. */
async function rawGet(base: string, target: string, extra = '') {
  const c = await RawClient.connect(base);
  try {
    c.send(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}Connection: close\r\n\r\n`);
    const [answer] = await c.finalResponses(1, { timeoutMs: 10_000 });
    return answer!;
  } finally {
    c.destroy();
  }
}

const cookie = (id: string) => `Cookie: theme=dark; teal_preview=${id}\r\n`;

describe('preview links', () => {
  it('a link from `teal preview` opens the slot at the gate through the public port; forged, expired, revoked and other-service grants do not', async () => {
    daemon = await startTestDaemon({
      services:
        `  hello:\n${helloService({ promote: 'manual', promoteTimeout: '5m', routes: '[{ path: / }]' })}\n` +
        `  other:\n${helloService({ promote: 'manual', promoteTimeout: '5m', routes: '[{ path: /other }]' })}`,
    });
    const d = daemon;
    for (const svc of ['hello', 'other']) {
      expect((await d.cli(['deploy', svc, '--version', 'v1'])).code).toBe(0);
      expect((await d.cli(['promote', svc])).code).toBe(0);
    }
    const load = backgroundLoad(`${d.info.proxy}/`, 8);
    const v2 = await d.cli(['deploy', 'hello', '--version', 'v2']);
    expect(v2.code, v2.stderr).toBe(0);
    expect((await d.cli(['deploy', 'other', '--version', 'v2'])).code).toBe(0);

    // The CLI prints a link to the public port; --json gives the grant.
    const printed = await d.cli(['preview', 'hello']);
    expect(printed.code, printed.stderr).toBe(0);
    const link = printed.stdout.trim();
    expect(link).toMatch(new RegExp(`^${d.info.proxy}/\\.teal/preview\\?grant=[0-9a-f]{64}$`));
    const id = new URL(link).searchParams.get('grant')!;

    // Opening it: a redirect that sets the cookie, HttpOnly, SameSite=Lax, Path=/, for the remaining hour.
    const opened = await rawGet(d.info.proxy, `/.teal/preview?grant=${id}`);
    expect(opened.status).toBe(302);
    expect(headerValues(opened, 'location')).toEqual(['/']);
    const [setCookie] = headerValues(opened, 'set-cookie');
    expect(setCookie).toMatch(
      new RegExp(`^teal_preview=${id}; Path=/; Max-Age=(\\d+); HttpOnly; SameSite=Lax$`),
    );
    const maxAge = Number(/Max-Age=(\d+)/.exec(setCookie!)![1]);
    expect(maxAge).toBeGreaterThan(3500);
    expect(maxAge).toBeLessThanOrEqual(3600);

    // With the cookie: the slot at the gate. Without, or with a forged one: the live release.
    expect((await rawGet(d.info.proxy, '/', cookie(id))).body.toString()).toBe('hello v2\n');
    expect((await rawGet(d.info.proxy, '/')).body.toString()).toBe('hello v1\n');
    const forged = randomBytes(32).toString('hex');
    expect((await rawGet(d.info.proxy, '/', cookie(forged))).body.toString()).toBe('hello v1\n');
    expect((await rawGet(d.info.proxy, `/.teal/preview?grant=${forged}`)).status).toBe(403);
    expect((await rawGet(d.info.proxy, '/.teal/preview?grant=')).status).toBe(403);
    // hello's grant opens nothing of other's, on other's routes.
    expect((await rawGet(d.info.proxy, '/other', cookie(id))).body.toString()).toBe('hello v1\n');

    // A short link expires on the data plane's clock: the cookie and the link stop working.
    const short = JSON.parse((await d.cli(['preview', 'other', '--ttl', '2s', '--json'])).stdout) as Grant;
    expect(short).toMatchObject({ slot: 'green', version: 'v2' });
    expect((await rawGet(d.info.proxy, '/other', cookie(short.id))).body.toString()).toBe('hello v2\n');
    await sleep(2_300);
    expect((await rawGet(d.info.proxy, '/other', cookie(short.id))).body.toString()).toBe('hello v1\n');
    expect((await rawGet(d.info.proxy, `/.teal/preview?grant=${short.id}`)).status).toBe(403);

    // Revoked: gone at once.
    const revoked = await d.cli(['preview', 'hello', '--revoke']);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain('revoked 1 preview link(s) of hello');
    expect((await rawGet(d.info.proxy, '/', cookie(id))).body.toString()).toBe('hello v1\n');

    // A grant ends when its slot changes release: v2 aborted at the gate, v3 in its place.
    const again = JSON.parse((await d.cli(['preview', 'hello', '--json'])).stdout) as Grant;
    expect((await rawGet(d.info.proxy, '/', cookie(again.id))).body.toString()).toBe('hello v2\n');
    expect((await d.cli(['abort', 'hello'])).code).toBe(0);
    expect((await d.cli(['deploy', 'hello', '--version', 'v3'])).code).toBe(0);
    expect((await rawGet(d.info.proxy, '/', cookie(again.id))).body.toString()).toBe('hello v1\n');

    // A ttl past the limit is refused with the reason.
    const none = await d.cli(['preview', 'hello', '--slot', 'green', '--ttl', '200h']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('ttl: expected a duration from 1s to');

    const { report, samples } = await load.stop();
    expect(report.failed, JSON.stringify(report.failures.slice(0, 3))).toBe(0);
    expect(new Set(samples.map((s) => s.version))).toEqual(new Set(['v1']));
    // The public listener still ignores a bare header throughout.
    expect((await request(`${d.info.proxy}/`, { headers: { 'x-teal-slot': 'green' } })).body).toBe(
      'hello v1\n',
    );
  }, 120_000);
});
