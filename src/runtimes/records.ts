/**
 * The process runtime's memory across control-plane restarts: one JSON file per instance under
 * <stateDir>/instances/. A record is written when an instance starts and removed when it is
 * stopped, so a restarted daemon finds every instance it (or its predecessor) started, running or
 * dead. Files are written to a temporary name and renamed into place, so a crash mid-write never
 * leaves a half record.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { TealError } from '../core/errors.js';
import { writeJsonAtomic } from '../files.js';
import { isErrno } from './liveness.js';
import type { InstanceLabels } from './runtime.js';

export interface InstanceRecord {
  id: string;
  labels: InstanceLabels;
  index: number;
  host: string;
  port: number;
  pid: number;
  /** The instance's process group (and session): equal to pid, it was started detached. */
  pgid: number;
  /** Epoch ms. */
  startedAt: number;
  command: string[];
  cwd: string;
  logFile: string;
  /** Field 22 of /proc/<pid>/stat at start; null where it could not be read. */
  procStartTime: number | null;
}

/** Ids and service names become file names: anything else is refused rather than joined into a path. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function isSafeName(name: string): boolean {
  return SAFE_NAME.test(name) && !name.includes('..');
}

export class RecordStore {
  constructor(readonly dir: string) {}

  write(record: InstanceRecord): Promise<void> {
    return writeJsonAtomic(this.file(record.id), record);
  }

  /** The record of `id`, or undefined when there is none. */
  async read(id: string): Promise<InstanceRecord | undefined> {
    if (!isSafeName(id)) return undefined;
    const file = this.file(id);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    return parse(file, text);
  }

  async list(): Promise<InstanceRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
    const records: InstanceRecord[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const record = await this.read(name.slice(0, -'.json'.length));
      // Removed between readdir and read: stopped meanwhile, so not listed.
      if (record) records.push(record);
    }
    return records;
  }

  async remove(id: string): Promise<void> {
    if (!isSafeName(id)) return;
    await rm(this.file(id), { force: true });
  }

  private file(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }
}

function parse(file: string, text: string): InstanceRecord {
  try {
    const record = JSON.parse(text) as InstanceRecord;
    if (typeof record.id !== 'string' || typeof record.pid !== 'number') throw new Error('missing id or pid');
    return record;
  } catch (err) {
    throw new TealError(
      'TEAL_RUNTIME_FAILED',
      `instance record ${file} is unreadable (${(err as Error).message}); remove it once its process is stopped`,
      { file },
      { cause: err },
    );
  }
}
