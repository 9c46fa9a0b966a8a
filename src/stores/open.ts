import path from 'node:path';
import type { TealConfig } from '../core/config/schema.js';
import { TealError } from '../core/errors.js';
import { etcdStore } from './etcd.js';
import { sqliteStore } from './sqlite.js';
import type { Store } from './store.js';

export type StoreConfig = TealConfig['store'];

/**
 * Opens the store a config names. A SQLite path resolves in the state dir; etcd TLS files resolve
 * in `configDir`, the folder of teal.yml (by default the state dir's parent, which it is unless
 * teal.yml moves its stateDir). An etcd password is read from its environment variable now.
 */
export function openStore(config: StoreConfig, stateDir: string, configDir = path.dirname(stateDir)): Store {
  switch (config.kind) {
    case 'sqlite':
      return sqliteStore(path.resolve(stateDir, config.path ?? 'store.db'));
    case 'etcd': {
      const file = (p: string | undefined) => (p === undefined ? undefined : path.resolve(configDir, p));
      let auth: { username: string; password: string } | undefined;
      if (config.auth) {
        const password = process.env[config.auth.passwordEnv];
        if (password === undefined) {
          throw new TealError(
            'TEAL_STORE_FAILED',
            `store.auth.passwordEnv names ${config.auth.passwordEnv}, which is not set in the environment`,
          );
        }
        auth = { username: config.auth.username, password };
      }
      return etcdStore({
        endpoints: config.endpoints,
        prefix: config.prefix,
        ...(config.tls && {
          tls: { ca: file(config.tls.ca), cert: file(config.tls.cert), key: file(config.tls.key) },
        }),
        ...(auth && { auth }),
      });
    }
  }
}
