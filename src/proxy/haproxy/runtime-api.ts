import net from 'node:net';
import { TealError } from '../../core/errors.js';

/**
 * A client of haproxy's runtime API (the admin `stats socket`): one connection per command, in
 * haproxy's non-interactive mode, where haproxy writes the answer and closes. One command per
 * connection costs a fraction of a millisecond on a unix socket and makes every answer exactly
 * attributable to its command, which interactive mode's prompts do not.
 */

/** How long one command may take before the call fails (a stuck haproxy is unreachable, not slow). */
const COMMAND_TIMEOUT_MS = 10_000;

/**
 * haproxy answers a successful change with an empty line, or with one of these; anything else is
 * its error message ("No such server.", "Unknown command...", "Require 'backend/server'.").
 */
const CHANGE_OK = [
  /^IP changed from /,
  /^no need to change the addr/,
  /^port changed from /,
  /^New version created: \d+$/,
];

/** What a command answers when it succeeds: nothing (a change), data (a query), or either. */
export type Expect = 'empty' | 'data' | 'any';

export class RuntimeApi {
  readonly socket: string;

  constructor(socket: string) {
    this.socket = socket;
  }

  /** The raw answer to one command. Throws TEAL_PROXY_UNREACHABLE when nobody answers on the socket. */
  send(command: string, options: { signal?: AbortSignal } = {}): Promise<string> {
    if (/[\r\n;]/.test(command.split('\n')[0]!) || command.startsWith(' '))
      return Promise.reject(
        new TealError('TEAL_INTERNAL', `refusing to send a malformed runtime API command: ${command}`),
      );
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const conn = net.connect(this.socket);
      const fail = (err: TealError) => {
        conn.destroy();
        reject(err);
      };
      const timer = setTimeout(
        () =>
          fail(
            new TealError(
              'TEAL_PROXY_UNREACHABLE',
              `haproxy did not answer "${firstLine(command)}" on ${this.socket} within ${COMMAND_TIMEOUT_MS}ms`,
              { socket: this.socket, command: firstLine(command) },
            ),
          ),
        COMMAND_TIMEOUT_MS,
      );
      const onAbort = () =>
        fail(new TealError('TEAL_ABORTED', `aborted while haproxy ran: ${firstLine(command)}`));
      options.signal?.addEventListener('abort', onAbort, { once: true });
      conn.on('connect', () => conn.end(command.endsWith('\n') ? command : `${command}\n`));
      conn.on('data', (c: Buffer) => chunks.push(c));
      conn.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        reject(
          new TealError(
            'TEAL_PROXY_UNREACHABLE',
            `cannot reach haproxy's runtime API on ${this.socket}: ${err.code ?? err.message} (is haproxy running with "stats socket ${this.socket} level admin"?)`,
            { socket: this.socket, code: err.code },
            { cause: err },
          ),
        );
      });
      conn.on('close', () => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        resolve(Buffer.concat(chunks).toString());
      });
    });
  }

  /**
   * Runs one command and checks its answer: a change must be answered with nothing (or haproxy's
   * known success lines), a query with data. Throws TEAL_PROXY_FAILED carrying haproxy's own answer.
   */
  async run(command: string, expect: Expect, options: { signal?: AbortSignal } = {}): Promise<string> {
    const answer = await this.send(command, options);
    const problem = answerProblem(answer, expect);
    if (problem !== undefined)
      throw new TealError('TEAL_PROXY_FAILED', `haproxy refused "${firstLine(command)}": ${problem}`, {
        socket: this.socket,
        command: firstLine(command),
        answer: answer.trim(),
      });
    return answer;
  }
}

/** Why an answer is an error, or undefined when it is the success `expect` says. */
export function answerProblem(answer: string, expect: Expect): string | undefined {
  const text = answer.trim();
  if (expect === 'empty') {
    if (text === '') return undefined;
    const lines = text.split('\n').map((l) => l.trim());
    return lines.every((l) => l === '' || CHANGE_OK.some((re) => re.test(l))) ? undefined : text;
  }
  if (text === '') return expect === 'data' ? 'an empty answer' : undefined;
  if (/^(Unknown command|Permission denied|No such |Unknown |Missing |Require |Invalid )/.test(text))
    return text.split('\n')[0]!;
  return undefined;
}

function firstLine(command: string): string {
  return command.split('\n')[0]!;
}
