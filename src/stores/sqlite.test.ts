import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { sqliteStore } from './sqlite.js';
import { storeContract } from './store.contract.js';

const dirs: string[] = [];
let file = '';

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

storeContract('sqlite', {
  create: async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'teal-sqlite-'));
    dirs.push(dir);
    file = path.join(dir, 'store.db');
    return sqliteStore(file);
  },
  reopen: async () => sqliteStore(file),
  processConfig: () => ({ kind: 'sqlite', path: file }),
});
