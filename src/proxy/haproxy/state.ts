import { readFile } from 'node:fs/promises';
import { TealError } from '../../core/errors.js';
import { writeJsonAtomic } from '../../files.js';
import type { RoutingTable } from '../switch.js';
import type { LaneRecord } from './plan.js';

/**
 * What the switch keeps in its state dir (`applied.json`): the table it last applied, which pool
 * each lane holds with its counter baselines, and which haproxy process those baselines belong to.
 * haproxy itself cannot say which release a server slot serves, so this file is what lets a
 * restarted control plane answer current() and stats() for the pools it set up before.
 */
export interface SwitchState {
  version: 1;
  table: RoutingTable | null;
  lanes: LaneRecord[];
  /** The haproxy process the baselines were taken in: `<pid>@<start time>`. */
  process: string | null;
}

export const EMPTY_STATE: SwitchState = { version: 1, table: null, lanes: [], process: null };

export async function loadState(file: string): Promise<SwitchState> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return structuredClone(EMPTY_STATE);
    throw err;
  }
  let state: SwitchState;
  try {
    state = JSON.parse(text) as SwitchState;
  } catch (err) {
    throw new TealError(
      'TEAL_PROXY_FAILED',
      `the haproxy switch's state file ${file} is not JSON`,
      { file },
      {
        cause: err,
      },
    );
  }
  if (state?.version !== 1 || !Array.isArray(state.lanes))
    throw new TealError(
      'TEAL_PROXY_FAILED',
      `the haproxy switch's state file ${file} is not one this teal version wrote (version ${JSON.stringify(state?.version)})`,
      { file },
    );
  return state;
}

export function saveState(file: string, state: SwitchState): Promise<void> {
  return writeJsonAtomic(file, state);
}
