import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { userProblem } from '../../users.js';
import type { TealConfig } from './schema.js';

/**
 * What validation checks against this host, not only the text: files named by env, users named by
 * user:/group:.
 *
 * `env: { KEY: { file: path } }` of services and pipelines, checked readable at validation: the
 * file is read again where the code starts (its content is never stored), but a typo in a path is
 * found by `teal validate`, not by the first deploy. `fromEnv` names are checked where the code
 * starts, since `teal validate` does not run with teal up's environment.
 */
export function envFileProblems(config: TealConfig, dir: string): Array<{ at: string[]; message: string }> {
  const problems: Array<{ at: string[]; message: string }> = [];
  const owners: Array<[string, string, Record<string, unknown>]> = [
    ...Object.entries(config.services).map(
      ([n, s]) => ['services', n, s.env] as [string, string, Record<string, unknown>],
    ),
    ...Object.entries(config.pipelines).map(
      ([n, p]) => ['pipelines', n, p.env] as [string, string, Record<string, unknown>],
    ),
  ];
  for (const [kind, name, env] of owners) {
    for (const [key, value] of Object.entries(env)) {
      if (!value || typeof value !== 'object' || !('file' in value)) continue;
      const file = path.resolve(dir, String(value.file));
      try {
        accessSync(file, constants.R_OK);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        problems.push({ at: [kind, name, 'env', key, 'file'], message: `cannot read ${file} (${code})` });
      }
    }
  }
  return problems;
}

/**
 * `user:`/`group:` of services and pipelines name someone in /etc/passwd and /etc/group. Whether
 * teal may switch to them (it must run as root) is checked by `teal up`, which is the process that
 * would: `teal validate` may well run as someone else.
 */
export function userProblems(config: TealConfig): Array<{ at: string[]; message: string }> {
  const problems: Array<{ at: string[]; message: string }> = [];
  const owners: Array<[string, string, { user?: string; group?: string }]> = [
    ...Object.entries(config.services).map(
      ([n, s]) => ['services', n, s] as [string, string, { user?: string }],
    ),
    ...Object.entries(config.pipelines).map(
      ([n, p]) => ['pipelines', n, p] as [string, string, { user?: string }],
    ),
  ];
  for (const [kind, name, owner] of owners) {
    const problem = userProblem(owner);
    if (problem)
      problems.push({ at: [kind, name, problem.includes('no user') ? 'user' : 'group'], message: problem });
  }
  return problems;
}
