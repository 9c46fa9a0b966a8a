import type { ConfigSource } from '../daemon/config-source.js';
import { actorOf } from './actor.js';
import { type Router, sendJson } from './http.js';

/**
 *   GET  /v1/config         -> ConfigState: the file applied, the file on disk, whether they differ
 *   POST /v1/config/reload  -> ReloadReport: re-reads teal.yml and applies it (as SIGHUP does);
 *                              400 TEAL_CONFIG_INVALID / 409 TEAL_CONFIG_REFUSED keep the running config
 */
export function configRoutes(router: Router, ctx: { config: ConfigSource }): Router {
  router.add('GET', '/v1/config', async (_req, res) => sendJson(res, 200, ctx.config.state()));
  router.add('POST', '/v1/config/reload', async (req, res) =>
    sendJson(res, 200, await ctx.config.reload(`teal reload by ${actorOf(req).actor}`)),
  );
  return router;
}
