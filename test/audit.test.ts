import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../src/core/audit.js';
import type { DeploymentRecord } from '../src/core/records.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { waitEnded } from './helpers.js';

let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
});

describe('locks and the audit trail', () => {
  it('shows who holds the lock, refuses to free a running holder’s, and records every action with who asked', async () => {
    daemon = await startTestDaemon({
      services: `  hello:\n${helloService({ env: '{ APP_VERSION: "{{version}}", START_DELAY_MS: "4000" }' })}`,
    });
    expect((await daemon.cli(['lock', 'status', 'hello'])).stdout).toBe('hello is not locked\n');

    const running = await daemon.client.request<DeploymentRecord>('POST', '/v1/services/hello/deployments', {
      version: 'v1',
    });
    const status = await daemon.cli(['lock', 'status', 'hello', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({
      held: true,
      holder: { deployment: running.n, pid: daemon.info.pid },
    });
    const refused = await daemon.cli(['deploy', 'hello', '--version', 'v2']);
    expect(refused.code).toBe(4);
    const release = await daemon.cli(['lock', 'release', 'hello']);
    expect(release.code).toBe(4);
    expect(release.stderr).toContain('which is running');
    expect(release.stderr).toContain('teal abort hello');

    expect((await waitEnded(daemon.client, running)).state).toBe('done');
    await sleep(50);
    expect(JSON.parse((await daemon.cli(['lock', 'status', 'hello', '--json'])).stdout)).toEqual({
      service: 'hello',
      held: false,
    });
    const notLocked = await daemon.cli(['lock', 'release', 'hello']);
    expect(notLocked.stderr).toContain('hello is not locked');

    const audit = JSON.parse(
      (await daemon.cli(['history', 'hello', '--audit', '--json'])).stdout,
    ) as AuditEntry[];
    expect(audit.map((e) => [e.action, e.outcome, e.deployment])).toEqual([
      ['lock.release', 'refused', undefined],
      ['lock.release', 'refused', undefined],
      ['deploy', 'refused', undefined],
      ['deploy', 'accepted', running.n],
    ]);
    expect(audit[2]!.detail).toMatch(/hello is locked by deployment #1/);
    expect(audit[0]!.actor).toMatch(/\(cli\) \[claimed; auth: token\]$/);
    expect(audit[3]).toMatchObject({
      actor: 'test [claimed; auth: token]',
      claimed: 'test',
      principal: 'token',
    });
    const text = await daemon.cli(['history', 'hello', '--audit']);
    expect(text.stdout).toMatch(/lock\.release .*refused/);
  }, 60_000);
});

describe('the actor a request names for itself', () => {
  it('is recorded as claimed, beside how the request authenticated, in the API, the audit and history', async () => {
    daemon = await startTestDaemon({ services: `  hello:\n${helloService()}` });
    // Any token holder can send any name: here one that is not theirs.
    const forged = await fetch(`${daemon.info.api}/v1/services/hello/deployments`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${daemon.token}`,
        'content-type': 'application/json',
        'x-teal-actor': 'alice@prod (cli)',
      },
      body: JSON.stringify({ version: 'v1' }),
    });
    expect(forged.status).toBe(202);
    const record = (await forged.json()) as DeploymentRecord;
    expect(record.actor).toBe('alice@prod (cli) [claimed; auth: token]');
    expect((await waitEnded(daemon.client, record)).state).toBe('done');
    // No name given: the audit says only what teal checked.
    const bare = await fetch(`${daemon.info.api}/v1/services/hello/lock`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${daemon.token}` },
    });
    expect(bare.status).toBeLessThan(500);

    const audit = JSON.parse(
      (await daemon.cli(['history', 'hello', '--audit', '--json'])).stdout,
    ) as AuditEntry[];
    expect(audit.at(-1)).toMatchObject({
      action: 'deploy',
      actor: 'alice@prod (cli) [claimed; auth: token]',
      claimed: 'alice@prod (cli)',
      principal: 'token',
    });
    expect(audit[0]).toMatchObject({ action: 'lock.release', actor: 'token', principal: 'token' });
    expect(audit[0]!.claimed).toBeUndefined();
    const text = (await daemon.cli(['history', 'hello', '--audit'])).stdout;
    expect(text).toContain('alice@prod (cli) [claimed; auth: token]');
    expect(text).toContain('[claimed] names come from the X-Teal-Actor header');
    const deployments = (await daemon.cli(['history', 'hello'])).stdout;
    expect(deployments).toContain('alice@prod (cli) [claimed; auth: token]');
  });
});
