import { readFileSync } from 'node:fs';
import { parseCidr } from '../../core/config/cidr.js';
import { parseDuration } from '../../core/config/duration.js';
import { parseSize } from '../../core/config/size.js';

/** How the builtin data plane treats requests: limits and deadlines, set with `teal proxy` flags. */
export interface DataPlaneSettings {
  /** Request bodies over this get 413. */
  maxBodyBytes: number;
  /** An upstream that does not accept a connection in this long: 504. */
  connectTimeoutMs: number;
  /** An upstream that sends no response head in this long: 504. */
  responseTimeoutMs: number;
  /** An idle client connection is closed after this (nginx's default keepalive_timeout). */
  idleTimeoutMs: number;
  /** A request head must arrive within this (slow-loris defence): 408. */
  headersTimeoutMs: number;
  /**
   * Output to a client (or a request body to an upstream) that makes no progress for this long
   * closes that connection (nginx's send_timeout and proxy_send_timeout): only a stall counts.
   */
  sendTimeoutMs: number;
  /**
   * Client connections open at once (websockets included). At the cap the oldest idle ones are
   * closed to admit a newcomer; with none idle, the newcomer gets 503. Clamped at start to what
   * the process's file-descriptor limit allows (see `connectionCap`).
   */
  maxConnections: number;
  /** Peers (CIDRs) whose X-Forwarded-* / Forwarded / X-Real-IP are kept and appended to; none by default. */
  trustedProxies: string[];
}

export const DEFAULT_SETTINGS: DataPlaneSettings = {
  maxBodyBytes: 100 * 1024 * 1024,
  connectTimeoutMs: 5_000,
  responseTimeoutMs: 60_000,
  idleTimeoutMs: 75_000,
  headersTimeoutMs: 60_000,
  sendTimeoutMs: 60_000,
  maxConnections: 10_000,
  trustedProxies: [],
};

/** The one list-valued setting: `--trusted-proxies 10.0.0.0/8,::1`. */
const TRUSTED_FLAG = 'trusted-proxies';

const FLAGS: Record<Exclude<keyof DataPlaneSettings, 'trustedProxies'>, string> = {
  maxBodyBytes: 'max-body',
  connectTimeoutMs: 'connect-timeout',
  responseTimeoutMs: 'response-timeout',
  idleTimeoutMs: 'idle-timeout',
  headersTimeoutMs: 'headers-timeout',
  sendTimeoutMs: 'send-timeout',
  maxConnections: 'max-connections',
};

/** `teal proxy` flags for settings that differ from the defaults: `--connect-timeout 2000ms`. */
export function settingsArgs(settings: Partial<DataPlaneSettings>): string[] {
  const args: string[] = [];
  if (settings.trustedProxies?.length) args.push(`--${TRUSTED_FLAG}`, settings.trustedProxies.join(','));
  for (const [key, flag] of Object.entries(FLAGS) as [keyof typeof FLAGS, string][]) {
    const value = settings[key];
    if (value === undefined || value === DEFAULT_SETTINGS[key]) continue;
    args.push(
      `--${flag}`,
      key === 'maxBodyBytes' ? `${value}B` : key === 'maxConnections' ? `${value}` : `${value}ms`,
    );
  }
  return args;
}

/** The options parseArgs needs for the settings flags. */
export const SETTINGS_OPTIONS = Object.fromEntries(
  [...Object.values(FLAGS), TRUSTED_FLAG].map((f) => [f, { type: 'string' as const }]),
);

/** Settings from parsed flags; throws with the flag named when a value is not a size or duration. */
export function settingsFromFlags(values: Record<string, string | boolean | undefined>): DataPlaneSettings {
  const out = { ...DEFAULT_SETTINGS };
  const trusted = values[TRUSTED_FLAG];
  if (typeof trusted === 'string') {
    try {
      out.trustedProxies = trusted
        .split(',')
        .filter((t) => t.trim() !== '')
        .map((t) => parseCidr(t.trim()).text);
    } catch (err) {
      throw new Error(`--${TRUSTED_FLAG}: ${(err as Error).message}`);
    }
  }
  for (const [key, flag] of Object.entries(FLAGS) as [keyof typeof FLAGS, string][]) {
    const raw = values[flag];
    if (typeof raw !== 'string') continue;
    try {
      out[key] =
        key === 'maxBodyBytes' ? parseSize(raw) : key === 'maxConnections' ? count(raw) : parseDuration(raw);
    } catch (err) {
      throw new Error(`--${flag}: ${(err as Error).message}`);
    }
  }
  return out;
}

/**
 * Settings sent with `POST /v1/handoff` (a reload of teal.yml): each key optional, numbers positive
 * whole ones, trustedProxies CIDRs. Throws naming the key; the successor gets them as flags.
 */
export function parseSettings(input: unknown): Partial<DataPlaneSettings> {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw new Error('settings: expected an object');
  const out: Partial<DataPlaneSettings> = {};
  for (const [key, value] of Object.entries(input)) {
    if (key === 'trustedProxies') {
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string'))
        throw new Error('settings.trustedProxies: expected a list of CIDRs');
      out.trustedProxies = value.map((v) => {
        try {
          return parseCidr(v).text;
        } catch (err) {
          throw new Error(`settings.trustedProxies: ${(err as Error).message}`);
        }
      });
    } else if (key in FLAGS) {
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)
        throw new Error(`settings.${key}: expected a positive whole number, got ${JSON.stringify(value)}`);
      out[key as keyof typeof FLAGS] = value;
    } else throw new Error(`settings.${key}: unknown setting`);
  }
  return out;
}

function count(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1)
    throw new Error(`expected a positive whole number, got ${JSON.stringify(raw)}`);
  return n;
}

/**
 * The connection cap this process can honour: each client connection may hold an upstream one
 * too, so half the soft RLIMIT_NOFILE, less room for the pools' idle connections, the admin
 * socket and logs. Past that, accept() itself would fail and new clients be reset (EMFILE).
 */
export function connectionCap(wanted: number, limits = readLimits()): number {
  const soft = /^Max open files\s+(\d+)/m.exec(limits)?.[1];
  if (soft === undefined) return wanted;
  return Math.min(wanted, Math.max(64, Math.floor(Number(soft) / 2) - 128));
}

function readLimits(): string {
  try {
    return readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return '';
  }
}

/** Deadlines are checked by one timer; it ticks often enough for the shortest of them. */
export function sweepInterval(s: DataPlaneSettings): number {
  const shortest = Math.min(
    s.connectTimeoutMs,
    s.responseTimeoutMs,
    s.idleTimeoutMs,
    s.headersTimeoutMs,
    s.sendTimeoutMs,
  );
  return Math.max(20, Math.min(1_000, Math.floor(shortest / 4)));
}
