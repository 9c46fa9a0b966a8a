import { describe, expect, it } from 'vitest';
import { RestartConfig } from './config/schema.js';
import {
  backoff,
  DEFAULT_POLICY,
  freshHistory,
  isSettled,
  onFailure,
  onRunning,
  policyOf,
  type RestartPolicy,
} from './supervisor.js';

const policy: RestartPolicy = {
  initialBackoffMs: 100,
  maxBackoffMs: 30_000,
  resetAfterMs: 60_000,
  crashLoop: { restarts: 5, windowMs: 60_000 },
};

describe('the restart policy', () => {
  it('doubles the wait from the initial backoff up to the maximum', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoff(policy, n))).toEqual([100, 200, 400, 800, 1600, 3200]);
    expect(backoff(policy, 10)).toBe(30_000);
    expect(backoff(policy, 10_000)).toBe(30_000);
  });

  it('waits longer for each failure in a row and marks the slot degraded at the limit in the window', () => {
    let history = freshHistory();
    const decisions = [];
    for (let i = 0; i < 6; i++) {
      const d = onFailure(policy, history, 1_000 + i * 1_000);
      decisions.push([d.delayMs, d.degraded, d.inWindow]);
      history = onRunning(d.history, 1_000 + i * 1_000 + 500);
    }
    expect(decisions).toEqual([
      [100, false, 1],
      [200, false, 2],
      [400, false, 3],
      [800, false, 4],
      // The fifth failure within 60 s: degraded, retried at the longest backoff from now on.
      [30_000, true, 5],
      [30_000, true, 6],
    ]);
  });

  it('forgets failures outside the window: slow crashes are not a crash loop', () => {
    let history = freshHistory();
    for (let i = 0; i < 10; i++) {
      const d = onFailure(policy, history, i * 20_000);
      expect(d.degraded).toBe(false);
      expect(d.inWindow).toBeLessThanOrEqual(3);
      history = d.history;
    }
  });

  it('starts the backoff over once a replacement ran for resetAfter', () => {
    let history = freshHistory();
    for (let i = 0; i < 4; i++) history = onFailure(policy, history, i * 100).history;
    expect(history.consecutive).toBe(4);
    history = onRunning(history, 1_000);
    expect(isSettled(policy, history, 60_999)).toBe(false);
    expect(isSettled(policy, history, 61_000)).toBe(true);
    const d = onFailure(policy, history, 200_000);
    expect(d.delayMs).toBe(100);
    expect(d.history.consecutive).toBe(1);
  });

  it('is not settled while no replacement runs', () => {
    const d = onFailure(policy, freshHistory(), 0);
    expect(isSettled(policy, d.history, 10 ** 9)).toBe(false);
  });

  it("the agent's default policy is the schema's defaults", () => {
    expect(policyOf(RestartConfig.parse({}))).toEqual(DEFAULT_POLICY);
  });
});
