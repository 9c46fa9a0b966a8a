import { describe, expect, it } from 'vitest';
import { RunQueue } from './queue.js';

describe('the run queue', () => {
  it('runs one run per pipeline at a time; pipelines do not wait for each other', () => {
    const q = new RunQueue<string>();
    expect(q.offer('web', 1, 'a')).toEqual({ superseded: [] });
    expect(q.next('web')).toEqual({ n: 1, request: 'a' });
    expect(q.next('web')).toBeUndefined();
    q.offer('api', 2, 'x');
    expect(q.next('api')).toEqual({ n: 2, request: 'x' });
  });

  it('the newest commit supersedes the waiting run and stops the running one still in its stages', () => {
    const q = new RunQueue<string>();
    q.offer('web', 1, 'a');
    q.next('web');
    expect(q.offer('web', 2, 'b')).toEqual({ superseded: [], cancel: 1 });
    expect(q.offer('web', 3, 'c')).toEqual({ superseded: [2], cancel: 1 });
    expect(q.next('web')).toBeUndefined();
    q.finished('web', 1);
    expect(q.next('web')).toEqual({ n: 3, request: 'c' });
  });

  it('a run already deploying is never cut short: the newest waits behind it', () => {
    const q = new RunQueue<string>();
    q.offer('web', 1, 'a');
    q.next('web');
    q.deploying('web', 1);
    expect(q.offer('web', 2, 'b')).toEqual({ superseded: [] });
    expect(q.running('web')).toBe(1);
    expect(q.waiting('web')).toBe(2);
    expect(q.drop('web', 2)).toBe(true);
    q.finished('web', 1);
    expect(q.next('web')).toBeUndefined();
  });

  it('remembers delivery ids, so a redelivery names the run it started', () => {
    const q = new RunQueue<string>();
    q.remember('web/d1', 4);
    expect(q.delivered('web/d1')).toBe(4);
    expect(q.delivered('web/d2')).toBeUndefined();
    for (let i = 0; i < 1000; i++) q.remember(`web/x${i}`, i);
    expect(q.delivered('web/d1')).toBeUndefined();
    expect(q.delivered('web/x999')).toBe(999);
  });
});
