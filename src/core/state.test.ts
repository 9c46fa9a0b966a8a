import { describe, expect, it } from 'vitest';
import { assertDeploymentMove, assertSlotMove, canMoveDeployment, canMoveSlot, isTerminal } from './state.js';

describe('state machines', () => {
  it('a slot goes empty -> starting -> verifying -> live -> draining -> warm -> stopping -> empty', () => {
    const path = ['empty', 'starting', 'verifying', 'live', 'draining', 'warm', 'stopping', 'empty'] as const;
    for (let i = 1; i < path.length; i++) expect(canMoveSlot(path[i - 1]!, path[i]!)).toBe(true);
  });

  it('a slot never goes live without being verified, nor from empty', () => {
    expect(canMoveSlot('starting', 'live')).toBe(false);
    expect(canMoveSlot('empty', 'live')).toBe(false);
    expect(() => assertSlotMove('web blue', 'starting', 'live')).toThrow(
      'web blue: a slot cannot go from starting to live',
    );
  });

  it('a warm slot can go live again: that is the instant rollback', () => {
    expect(canMoveSlot('warm', 'live')).toBe(true);
  });

  it('a deployment ends done, failed or interrupted, and never moves after', () => {
    expect(isTerminal('done') && isTerminal('failed') && isTerminal('interrupted')).toBe(true);
    for (const end of ['done', 'failed', 'interrupted'] as const) {
      for (const next of ['queued', 'starting', 'switching', 'done'] as const)
        expect(canMoveDeployment(end, next)).toBe(false);
    }
    expect(() => assertDeploymentMove('#3', 'failed', 'switching')).toThrow(
      '#3: a deployment cannot go from failed to switching',
    );
  });

  it('a failure after the switch cannot be recorded as failed: traffic already moved', () => {
    expect(canMoveDeployment('draining', 'failed')).toBe(false);
    expect(canMoveDeployment('switching', 'failed')).toBe(true);
  });
});
