import { hostname, userInfo } from 'node:os';
import path from 'node:path';
import { type LoadedConfig, loadConfig } from '../core/config/load.js';
import { endpointText } from '../core/model.js';
import { readDaemonInfo, readToken, statePaths } from '../daemon/files.js';
import { pidAlive } from '../proc.js';
import { ApiClient } from './client.js';
import type { ConfigOption } from './options.js';

export function loadFor(opts: ConfigOption): LoadedConfig {
  return loadConfig(path.resolve(opts.config));
}

/** Who is asking, recorded on every deployment: "alice@laptop (cli)". */
export function actor(): string {
  let user = process.env.USER ?? 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (some containers): keep $USER.
  }
  return `${user}@${hostname()} (cli)`;
}

/**
 * A client for the daemon of this config: its address from the running daemon's daemon.json (it
 * may have picked its port at start) or else from api.listen; its token from TEAL_TOKEN or the
 * state dir.
 */
export function clientFor(opts: ConfigOption & { json?: boolean }): {
  client: ApiClient;
  loaded: LoadedConfig;
} {
  const loaded = loadFor(opts);
  const paths = statePaths(loaded.stateDir);
  const info = readDaemonInfo(paths);
  const listen = loaded.config.api.listen;
  const configured = `http://${endpointText({ host: listen.host === '0.0.0.0' ? '127.0.0.1' : listen.host, port: listen.port })}`;
  const base = info && pidAlive(info.pid) ? info.api : configured;
  const hint = `teal up -c ${path.relative(process.cwd(), loaded.file) || loaded.file}`;
  return {
    // Human output shows what came from outside with its control characters escaped; --json is exact.
    client: new ApiClient({
      base,
      token: readToken(paths),
      actor: actor(),
      startHint: hint,
      forTerminal: !opts.json,
    }),
    loaded,
  };
}
