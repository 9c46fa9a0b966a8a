import { afterEach, describe, expect, it } from 'vitest';
import { runChaos } from '../src/testing/chaos.js';
import type { TestDaemon } from '../src/testing/daemon.js';

let daemon: TestDaemon | undefined;

afterEach(async () => {
  await daemon?.cleanup();
  daemon = undefined;
});

describe('chaos: 20 deploys while the control plane and the data plane are each SIGKILLed 10 times', () => {
  it('the data plane respawns the control plane, the control plane restarts the data plane: 0 failed requests from control plane kills, every deploy ends recorded, the last live release serves', async () => {
    const run = await runChaos({ deploys: 20, kills: 10 });
    daemon = run.daemon;
    const { report } = run;
    // The numbers, for the report (bench:dataplane-heal prints them with the CPU model).
    console.log(JSON.stringify({ ...report, otherFailures: report.otherFailures.slice(0, 3) }));

    expect(report.kills.filter((k) => k.what === 'control')).toHaveLength(10);
    expect(report.kills.filter((k) => k.what === 'data')).toHaveLength(10);
    expect(report.otherFailures, `seed ${report.seed}`).toEqual([]);
    expect(report.failedOther).toBe(0);
    expect(report.requests).toBeGreaterThan(2_000);
    // Never stuck: each deploy ended done, or interrupted / failed with its reason.
    expect(report.deploys).toHaveLength(20);
    for (const d of report.deploys) {
      expect(['done', 'failed', 'interrupted'], JSON.stringify(d)).toContain(d.state);
      if (d.state !== 'done') expect(d.error, JSON.stringify(d)).toBeTruthy();
    }
    expect(report.deploys.filter((d) => d.state === 'done').length).toBeGreaterThanOrEqual(5);
    expect(report.finalLive).not.toBeNull();
    expect(report.finalBody).toContain(`hello ${report.finalLive}`);
  }, 600_000);
});
