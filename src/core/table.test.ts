import { describe, expect, it } from 'vitest';
import { parseConfig } from './config/load.js';
import { emptySlot, type ServiceState, type SlotRecord } from './records.js';
import { buildTable } from './table.js';

const config = parseConfig(
  'services:\n  web:\n    command: [x]\n    routes: [{ path: / }, { host: www.example.com, path: /app }]\n  api:\n    command: [x]\n    routes: [{ path: /api }]\n',
  '/t/teal.yml',
).config;

const slot = (s: 'blue' | 'green', patch: Partial<SlotRecord> = {}) => ({
  ...emptySlot(s),
  ...patch,
  revision: 1,
});
const instance = (port: number) => ({ id: `i${port}`, host: '127.0.0.1', port, index: 0 });

describe('buildTable', () => {
  it('routes each service to its live slot and previews the idle slot while it is verified or warm', () => {
    const web: ServiceState = {
      service: 'web',
      live: 'blue',
      liveRevision: 3,
      slots: {
        blue: slot('blue', { state: 'live', release: 4, version: 'v4', instances: [instance(9001)] }),
        green: slot('green', { state: 'verifying', release: 5, version: 'v5', instances: [instance(9002)] }),
      },
    };
    const api: ServiceState = {
      service: 'api',
      live: null,
      liveRevision: 0,
      slots: { blue: slot('blue'), green: slot('green') },
    };
    const table = buildTable(config, [web, api], 42);
    expect(table).toEqual({
      revision: 42,
      services: [
        {
          service: 'web',
          routes: [{ path: '/' }, { host: 'www.example.com', path: '/app' }],
          live: {
            id: 'web/blue/r4',
            service: 'web',
            slot: 'blue',
            release: 4,
            version: 'v4',
            endpoints: [{ host: '127.0.0.1', port: 9001 }],
          },
          preview: {
            id: 'web/green/r5',
            service: 'web',
            slot: 'green',
            release: 5,
            version: 'v5',
            endpoints: [{ host: '127.0.0.1', port: 9002 }],
          },
        },
        { service: 'api', routes: [{ path: '/api' }], live: null, preview: null },
      ],
    });
  });

  it('keeps a starting or draining slot out of the table', () => {
    for (const state of ['starting', 'draining', 'stopping'] as const) {
      const web: ServiceState = {
        service: 'web',
        live: 'blue',
        liveRevision: 1,
        slots: {
          blue: slot('blue', { state: 'live', release: 1, version: 'v1', instances: [instance(1)] }),
          green: slot('green', { state, release: 2, version: 'v2', instances: [instance(2)] }),
        },
      };
      expect(buildTable(config, [web], 1).services[0]!.preview).toBeNull();
    }
  });

  it('previews the slot being verified on a first deploy, with nothing live', () => {
    const web: ServiceState = {
      service: 'web',
      live: null,
      liveRevision: 0,
      slots: {
        blue: slot('blue', { state: 'verifying', release: 1, version: 'v1', instances: [instance(1)] }),
        green: slot('green'),
      },
    };
    const s = buildTable(config, [web], 1).services[0]!;
    expect(s.live).toBeNull();
    expect(s.preview?.id).toBe('web/blue/r1');
  });
});
