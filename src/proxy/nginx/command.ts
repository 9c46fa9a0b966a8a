import { execFile } from 'node:child_process';
import { TealError } from '../../core/errors.js';

/** What a user's check or reload command said. */
export interface CommandResult {
  stdout: string;
  stderr: string;
}

const TAIL = 4_000;

function tail(text: string): string {
  const t = text.trim();
  return t.length > TAIL ? `...${t.slice(-TAIL)}` : t;
}

/**
 * Runs a command the user configured as a string (`nginx -t`, `systemctl reload nginx`) under
 * `sh -c`, as written; teal's values reach it in environment variables, never spliced into it. A
 * failure is TEAL_PROXY_FAILED carrying the command, its exit code and the tail of its stderr.
 */
export function runCommand(
  what: string,
  command: string,
  env: Record<string, string>,
  timeoutMs: number,
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(
      'sh',
      ['-c', command],
      { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ stdout, stderr });
          return;
        }
        const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
        const output = tail(stderr) || tail(stdout);
        const how = e.killed
          ? `was stopped after ${timeoutMs} ms`
          : typeof e.code === 'number'
            ? `exited with ${e.code}`
            : `could not run (${e.message})`;
        reject(
          new TealError(
            'TEAL_PROXY_FAILED',
            `nginx ${what} (${command}) ${how}${output ? `: ${output}` : ''}`,
            { command, exitCode: typeof e.code === 'number' ? e.code : null, stderr: tail(stderr) },
          ),
        );
      },
    );
  });
}
