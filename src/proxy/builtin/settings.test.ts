import { parseArgs } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SETTINGS,
  parseSettings,
  SETTINGS_OPTIONS,
  settingsArgs,
  settingsFromFlags,
} from './settings.js';

const parsed = (args: string[]) => parseArgs({ args, options: SETTINGS_OPTIONS, strict: true }).values;

describe('data plane settings as `teal proxy` flags', () => {
  it('carries trustedProxies to the data plane and back, in normal form; none by default', () => {
    expect(settingsArgs({})).toEqual([]);
    expect(settingsFromFlags(parsed([])).trustedProxies).toEqual([]);
    const args = settingsArgs({ ...DEFAULT_SETTINGS, trustedProxies: ['10.0.0.0/8', 'fd00::/8'] });
    expect(args).toEqual(['--trusted-proxies', '10.0.0.0/8,fd00::/8']);
    expect(settingsFromFlags(parsed(args)).trustedProxies).toEqual(['10.0.0.0/8', 'fd00::/8']);
    expect(settingsFromFlags(parsed(['--trusted-proxies', '192.168.1.9, ::1'])).trustedProxies).toEqual([
      '192.168.1.9/32',
      '::1/128',
    ]);
  });

  it('names the flag and the value when a range is not one', () => {
    expect(() => settingsFromFlags(parsed(['--trusted-proxies', '10.0.0.0/8,lan']))).toThrow(
      '--trusted-proxies: expected an IP address or a CIDR range like "10.0.0.0/8" or "fd00::/8", got "lan" (not an IP address)',
    );
  });
});

describe('settings sent with a handoff (a reload of teal.yml)', () => {
  it('takes known settings and refuses anything else, naming the key', () => {
    expect(parseSettings({ idleTimeoutMs: 1000, trustedProxies: ['10.0.0.0/8'] })).toEqual({
      idleTimeoutMs: 1000,
      trustedProxies: ['10.0.0.0/8'],
    });
    expect(() => parseSettings({ idleTimeoutMs: -1 })).toThrow(
      'settings.idleTimeoutMs: expected a positive whole number',
    );
    expect(() => parseSettings({ idleTimeoutMs: '1s' })).toThrow('settings.idleTimeoutMs');
    expect(() => parseSettings({ trustedProxies: ['nope'] })).toThrow('settings.trustedProxies');
    expect(() => parseSettings({ listen: '0.0.0.0:80' })).toThrow('settings.listen: unknown setting');
    expect(() => parseSettings([])).toThrow('settings: expected an object');
  });
});
