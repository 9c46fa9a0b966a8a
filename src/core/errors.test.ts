import { describe, expect, it } from 'vitest';
import { CATALOGUE, EXIT, exitCodeOf, fromJSON, httpStatusOf, TealError, toTealError } from './errors.js';

describe('the error catalogue', () => {
  it('every code is namespaced, titled and mapped to a known exit code and an HTTP error status', () => {
    const exits = new Set<number>(Object.values(EXIT));
    for (const [code, kind] of Object.entries(CATALOGUE)) {
      expect(code).toMatch(/^TEAL_[A-Z_]+$/);
      expect(kind.title.length).toBeGreaterThan(3);
      expect(exits.has(kind.exit)).toBe(true);
      expect(kind.http).toBeGreaterThanOrEqual(400);
      expect(kind.http).toBeLessThan(600);
    }
  });

  it('maps the DESIGN exit codes: usage 2, unreachable 3, locked 4, failures 1', () => {
    expect(new TealError('TEAL_CONFIG_INVALID', 'x').exitCode).toBe(2);
    expect(new TealError('TEAL_DAEMON_UNREACHABLE', 'x').exitCode).toBe(3);
    expect(new TealError('TEAL_LOCKED', 'x').exitCode).toBe(4);
    expect(new TealError('TEAL_VERIFY_FAILED', 'x').exitCode).toBe(1);
    expect(exitCodeOf(new Error('boom'))).toBe(1);
    expect(httpStatusOf(new TealError('TEAL_UNAUTHORIZED', 'x'))).toBe(401);
    expect(httpStatusOf(new TealError('TEAL_LOCKED', 'x'))).toBe(409);
  });

  it('survives the trip through the API as the same error', () => {
    const original = new TealError('TEAL_LOCKED', 'web is locked by deployment #3', { holder: 'x' });
    const back = fromJSON(JSON.parse(JSON.stringify({ error: original })), 409);
    expect(back).toMatchObject({ code: 'TEAL_LOCKED', message: original.message, details: { holder: 'x' } });
    expect(fromJSON({ nonsense: true }, 502).code).toBe('TEAL_INTERNAL');
  });

  it('wraps foreign errors, keeping them as the cause', () => {
    const cause = new Error('disk full');
    const wrapped = toTealError(cause, 'TEAL_STORE_FAILED');
    expect(wrapped).toMatchObject({ code: 'TEAL_STORE_FAILED', message: 'disk full', cause });
  });
});
