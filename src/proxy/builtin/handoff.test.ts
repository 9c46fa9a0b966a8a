import { afterEach, describe, expect, it } from 'vitest';
import { pidAlive } from '../../proc.js';
import { runLoad } from '../../verify/load.js';
import { poolFor, request, startUpstream, type Upstream, waitFor, webTable } from '../switch.contract.js';
import { startTestDataPlane, type TestDataPlane } from './harness.js';
import { dataPlaneInfo, restartDataPlane } from './launcher.js';
import { BuiltinSwitch } from './switch.js';

let plane: TestDataPlane | undefined;
const upstreams: Upstream[] = [];

afterEach(async () => {
  await plane?.stop();
  plane = undefined;
  for (const u of upstreams.splice(0)) await u.close();
});

describe('restarting the data plane without a gap', () => {
  it('a fresh process takes over the sockets under keep-alive load: no request refused or failed, the table kept', async () => {
    plane = await startTestDataPlane();
    const a = await startUpstream('A');
    const b = await startUpstream('B');
    upstreams.push(a, b);
    const sw = new BuiltinSwitch({ adminSocket: plane.adminSocket });
    await sw.apply(webTable(3, poolFor('web', 'blue', 1, [a])));
    const oldPid = plane.pid;

    const stop = new AbortController();
    const load = runLoad({ url: `${plane.url}/`, connections: 32, signal: stop.signal, captureBody: true });
    await new Promise((r) => setTimeout(r, 300));
    const { from, to } = await restartDataPlane(plane.adminSocket);
    expect(from).toBe(oldPid);
    expect(to).not.toBe(oldPid);
    // The successor answers the admin API with the table it took over, and takes a new one.
    const info = await dataPlaneInfo(plane.adminSocket);
    expect(info).toMatchObject({
      pid: to,
      revision: 3,
      listen: plane.listen,
      preview: plane.previewUrl.slice(7),
    });
    await sw.apply(webTable(4, poolFor('web', 'green', 2, [b]), poolFor('web', 'blue', 1, [a])));
    expect(await request(`${plane.url}/`)).toMatchObject({ status: 200, body: 'B' });
    // The preview listener moved with it, still honouring the slot header (the public one does not).
    expect(await request(`${plane.previewUrl}/`, { headers: { 'x-teal-slot': 'blue' } })).toMatchObject({
      body: 'A',
    });
    expect((await request(`${plane.url}/`, { headers: { 'x-teal-slot': 'blue' } })).body).toBe('B');
    // The old process finishes what it had and exits.
    await waitFor('the old data plane to exit', () => !pidAlive(oldPid), 15_000);
    await new Promise((r) => setTimeout(r, 300));
    stop.abort();
    const report = await load;
    expect(report.failures).toEqual([]);
    expect(report.sent).toBeGreaterThan(500);
  }, 60_000);

  it('the successor can hand off in turn', async () => {
    plane = await startTestDataPlane();
    const a = await startUpstream('A');
    upstreams.push(a);
    await new BuiltinSwitch({ adminSocket: plane.adminSocket }).apply(
      webTable(1, poolFor('web', 'blue', 1, [a])),
    );
    const first = await restartDataPlane(plane.adminSocket);
    await waitFor('the first data plane to exit', () => !pidAlive(first.from), 15_000);
    const second = await restartDataPlane(plane.adminSocket);
    expect(second.from).toBe(first.to);
    await waitFor('the second data plane to exit', () => !pidAlive(second.from), 15_000);
    expect(await request(`${plane.url}/`)).toMatchObject({ status: 200, body: 'A' });
  }, 60_000);
});
