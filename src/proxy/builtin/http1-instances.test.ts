import type http from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { request } from '../switch.contract.js';
import { planeFixture } from './harness.js';

/* How the data plane picks among a pool's instances, and how it skips one that fails and takes it back. */

describe('the builtin data plane speaking HTTP/1.1', () => {
  const f = planeFixture();

  it('skips an instance whose port is closed after two failures, every request still answered, and takes it back once it listens again', async () => {
    // "alive" counts its connections: a request retried off the dead instance opens a fresh one.
    const alive = await f.raw({
      respond: () => 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=30\r\n\r\nalive',
    });
    let dead = await f.raw({ respond: () => 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndead' });
    const deadPort = dead.port;
    await dead.close();
    await f.route(deadPort, alive.port);

    // A refused connect reached no instance: even a DELETE is safe to send to the other one.
    const bodies: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await request(`${f.dp.url}/`, { method: i % 2 === 0 ? 'DELETE' : 'GET' });
      bodies.push(`${r.status} ${r.body}`);
    }
    expect(bodies).toEqual(Array(6).fill('200 alive'));
    const connectionsAfterEjection = alive.connections;
    expect(connectionsAfterEjection).toBeGreaterThanOrEqual(1);
    for (let i = 0; i < 10; i++)
      expect(await request(`${f.dp.url}/`)).toMatchObject({ status: 200, body: 'alive' });
    // No request tried the dead instance first: none needed a fresh connection to retry on.
    expect(alive.connections).toBe(connectionsAfterEjection);

    dead = await f.raw({ port: deadPort, respond: () => 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nback' });
    const started = performance.now();
    while (!dead.heads.some((h) => h.startsWith('GET '))) {
      expect(performance.now() - started, 'the instance to get requests again').toBeLessThan(3_000);
      expect(await request(`${f.dp.url}/`)).toMatchObject({ status: 200 });
      await sleep(50);
    }
  });

  it('an instance that dies while it holds a GET: the GET is answered by the other instance; a DELETE is not replayed', async () => {
    // "dying" reads each request and drops the connection before any answer: what a SIGKILLed
    // instance does to the requests it holds. Its connections are always fresh ones.
    const dying = { gets: 0, deletes: 0 };
    const killed = await f.serve((req) => {
      if (req.method === 'GET') dying.gets++;
      else dying.deletes++;
      req.socket.destroy();
    });
    const alive = await f.serve((_req, res) => res.end('alive'));
    await f.route(killed.port, alive.port);
    for (let i = 0; i < 10; i++)
      expect(await request(`${f.dp.url}/`)).toMatchObject({ status: 200, body: 'alive' });
    expect(dying.gets).toBeGreaterThan(0);

    // A request that is not safe to send twice may have done its work on the dead instance.
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await request(`${f.dp.url}/`, { method: 'DELETE' })).status);
    expect(dying.deletes).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 502)).toHaveLength(dying.deletes);
    await killed.close();
    await alive.close();
  });

  it('sends new requests to the instance with fewer outstanding ones', async () => {
    const held: http.ServerResponse[] = [];
    const slow = await f.serve((_req, res) => {
      held.push(res);
    });
    let fastCount = 0;
    const fast = await f.serve((_req, res) => {
      fastCount++;
      res.end('fast');
    });
    await f.route(slow.port, fast.port);
    const pending: Promise<unknown>[] = [];
    // Until one request sits at the slow instance.
    while (held.length === 0) {
      pending.push(request(`${f.dp.url}/`));
      await sleep(30);
    }
    const fastBefore = fastCount;
    for (let i = 0; i < 10; i++) expect(await request(`${f.dp.url}/`)).toMatchObject({ body: 'fast' });
    expect(held).toHaveLength(1);
    expect(fastCount - fastBefore).toBe(10);
    for (const res of held) res.end('slow');
    await Promise.all(pending);
  });
});
