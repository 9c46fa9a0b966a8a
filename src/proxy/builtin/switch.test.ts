import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { isTealError } from '../../core/errors.js';
import { poolFor, startUpstream, switchContract, type Upstream, webTable } from '../switch.contract.js';
import { startTestDataPlane, type TestDataPlane } from './harness.js';
import { BuiltinSwitch } from './switch.js';

switchContract('builtin', {
  create: async () => {
    const dp = await startTestDataPlane();
    return {
      sw: new BuiltinSwitch({ adminSocket: dp.adminSocket }),
      url: dp.url,
      previewUrl: dp.previewUrl,
      close: dp.stop,
    };
  },
});

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return isTealError(err) ? err.code : String(err);
}

function adminStatus(
  socketPath: string,
  method: string,
  path: string,
  body: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('BuiltinSwitch', () => {
  let dp: TestDataPlane | undefined;
  const upstreams: Upstream[] = [];

  afterEach(async () => {
    await dp?.stop();
    dp = undefined;
    await Promise.all(upstreams.splice(0).map((u) => u.close()));
  });

  it('is unreachable, naming the socket, when no data plane answers', async () => {
    const sw = new BuiltinSwitch({ adminSocket: '/tmp/teal-no-such-dir/admin.sock' });
    const err = await sw.stats().catch((e: unknown) => e);
    expect(isTealError(err, 'TEAL_PROXY_UNREACHABLE')).toBe(true);
    expect((err as Error).message).toContain('/tmp/teal-no-such-dir/admin.sock');
  });

  it('rejects a malformed table with 400 and keeps serving the table it had', async () => {
    dp = await startTestDataPlane();
    const a = await startUpstream('A');
    upstreams.push(a);
    const sw = new BuiltinSwitch({ adminSocket: dp.adminSocket });
    const good = webTable(1, poolFor('web', 'blue', 1, [a]));
    await sw.apply(good);

    const bad = await adminStatus(
      dp.adminSocket,
      'PUT',
      '/v1/table',
      JSON.stringify({ revision: 'two', services: [] }),
    );
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('revision');
    expect((await adminStatus(dp.adminSocket, 'PUT', '/v1/table', '{not json')).status).toBe(400);
    const noEndpoints = {
      ...good,
      revision: 2,
      services: [{ ...good.services[0]!, live: { ...good.services[0]!.live!, endpoints: [] } }],
    };
    const err = await sw.apply(noEndpoints).catch((e: unknown) => e);
    expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
    expect((err as Error).message).toContain('at least one endpoint');
    const clash = {
      revision: 3,
      services: [good.services[0]!, { ...good.services[0]!, service: 'other' }],
    };
    expect(await codeOf(sw.apply(clash))).toBe('TEAL_PROXY_FAILED');
    expect(await sw.current()).toEqual(good);
  });

  it('refuses to drain a pool that is still in the table, and drains an unknown pool at once', async () => {
    dp = await startTestDataPlane();
    const a = await startUpstream('A');
    upstreams.push(a);
    const sw = new BuiltinSwitch({ adminSocket: dp.adminSocket });
    const live = poolFor('web', 'blue', 1, [a]);
    await sw.apply(webTable(1, live));
    const err = await sw.drain(live.id, { timeoutMs: 100 }).catch((e: unknown) => e);
    expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
    expect((err as Error).message).toContain('still in the routing table');
    expect(await sw.drain('web/green/r9', { timeoutMs: 100 })).toEqual({
      drained: true,
      remaining: 0,
      waitedMs: 0,
    });
  });
});
