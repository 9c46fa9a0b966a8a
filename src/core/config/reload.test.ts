import { describe, expect, it } from 'vitest';
import { parseConfig } from './load.js';
import { planReload } from './reload.js';
import type { TealConfig } from './schema.js';

const web = '  web:\n    command: [node, server.js]\n    routes: [{ path: / }]\n';
const config = (text: string): TealConfig => parseConfig(text, '/srv/app/teal.yml').config;
const base = config(`services:\n${web}`);

describe('planning a reload of teal.yml', () => {
  it('applies routes and added services now, the rest of a service at its next deploy', () => {
    const next = config(
      `services:\n  web:\n    command: [node, server.js]\n    routes: [{ path: / }, { path: /v2 }]\n    env: { A: "1" }\n    health: { path: /up }\n  api:\n    command: [node, api.js]\n    routes: [{ path: /api }]\n`,
    );
    const plan = planReload(base, next, {}, { proxyLive: true });
    expect(plan).toMatchObject({ routes: true, proxySettings: false, needsRestart: [], refused: [] });
    expect(plan.live.sort()).toEqual(['services.api (added)', 'services.web.routes']);
    expect(plan.nextDeploy.sort()).toEqual(['services.web.env', 'services.web.health']);
    expect(plan.config).toEqual(next);
  });

  it('nothing changed: nothing to do', () => {
    const plan = planReload(base, config(`services:\n${web}`), {}, { proxyLive: true });
    expect(plan).toMatchObject({
      live: [],
      nextDeploy: [],
      needsRestart: [],
      routes: false,
      proxySettings: false,
    });
  });

  it('keeps what is read at start as running and names it', () => {
    const next = config(
      `stateDir: other\nstore: { kind: sqlite, path: other.db }\napi: { listen: 127.0.0.1:7071 }\nproxy: { kind: builtin, listen: 0.0.0.0:9090, timeouts: { idle: 5s } }\nservices:\n${web}`,
    );
    const plan = planReload(base, next, {}, { proxyLive: true });
    expect(plan.needsRestart.sort()).toEqual(['api.listen', 'proxy.listen', 'stateDir', 'store.path']);
    expect(plan.live).toEqual(['proxy.timeouts']);
    expect(plan.proxySettings).toBe(true);
    expect(plan.config.api).toEqual(base.api);
    expect(plan.config.store).toEqual(base.store);
    expect(plan.config.stateDir).toBe(base.stateDir);
    expect(plan.config.proxy).toMatchObject({ listen: base.proxy.listen, timeouts: { idle: 5_000 } });
  });

  it('a switch that cannot take settings live keeps the whole proxy section for a restart', () => {
    const next = config(`proxy: { kind: builtin, trustedProxies: [10.0.0.0/8] }\nservices:\n${web}`);
    const plan = planReload(base, next, {}, { proxyLive: false });
    expect(plan).toMatchObject({ needsRestart: ['proxy.trustedProxies'], live: [], proxySettings: false });
    expect(plan.config.proxy).toEqual(base.proxy);
    const nginx = config(`proxy: { kind: nginx, config: /etc/nginx/conf.d/teal.conf }\nservices:\n${web}`);
    expect(planReload(base, nginx, {}, { proxyLive: true }).needsRestart).toContain('proxy.kind');
  });

  it('refuses removing a service that still runs, and removes one that does not', () => {
    const two = config(
      `services:\n${web}  api:\n    command: [node, api.js]\n    routes: [{ path: /api }]\n`,
    );
    const refused = planReload(two, base, { api: 'release 3 is live in blue' }, { proxyLive: true });
    expect(refused.refused).toEqual([
      { path: 'services.api', message: expect.stringContaining('release 3 is live in blue') },
    ]);
    const removed = planReload(two, base, {}, { proxyLive: true });
    expect(removed).toMatchObject({ refused: [], routes: true, live: ['services.api (removed)'] });
  });

  it('pipelines and webhooks apply to the next run', () => {
    const next = config(`webhooks: { github: { secretEnv: GH_SECRET } }\nservices:\n${web}`);
    expect(planReload(base, next, {}, { proxyLive: true }).live).toEqual(['webhooks.github']);
  });
});
