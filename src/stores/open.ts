import path from 'node:path';
import type { TealConfig } from '../core/config/schema.js';
import { sqliteStore } from './sqlite.js';
import type { Store } from './store.js';

export type StoreConfig = TealConfig['store'];

/** Opens the store a config names; relative paths resolve in the state dir. */
export function openStore(config: StoreConfig, stateDir: string): Store {
  switch (config.kind) {
    case 'sqlite':
      return sqliteStore(path.resolve(stateDir, config.path ?? 'store.db'));
  }
}
