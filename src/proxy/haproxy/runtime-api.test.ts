import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isTealError } from '../../core/errors.js';
import { answerProblem, RuntimeApi } from './runtime-api.js';

describe('answerProblem', () => {
  it("accepts haproxy's answers to a change that worked", () => {
    expect(answerProblem('\n', 'empty')).toBeUndefined();
    expect(
      answerProblem(
        "IP changed from '0.0.0.0' to '127.0.0.1', port changed from '+0' to '9001' by 'stats socket command'\n\n",
        'empty',
      ),
    ).toBeUndefined();
    expect(
      answerProblem(
        "no need to change the addr, no need to change the port by 'stats socket command'\n",
        'empty',
      ),
    ).toBeUndefined();
    expect(answerProblem('New version created: 3\n\n', 'empty')).toBeUndefined();
  });

  it('takes anything else as the error it is', () => {
    expect(answerProblem('No such server.\n\n', 'empty')).toBe('No such server.');
    expect(
      answerProblem("Version number in the future, please use 'prepare map' before.\n", 'empty'),
    ).toContain('Version number');
    expect(answerProblem('Unknown map identifier. Please use #<id> or <file>.\n', 'data')).toContain(
      'Unknown map',
    );
    expect(answerProblem("Unknown command: 'bogus'\n", 'any')).toContain('Unknown command');
    expect(answerProblem('', 'data')).toBe('an empty answer');
    expect(answerProblem('', 'any')).toBeUndefined();
    expect(answerProblem('0x55 Lweb teal_lane_0\n', 'data')).toBeUndefined();
  });
});

describe('RuntimeApi', () => {
  it('is unreachable, naming the socket, when nothing listens there', async () => {
    const api = new RuntimeApi('/tmp/teal-no-such-dir/admin.sock');
    const err = await api.send('show info').catch((e: unknown) => e);
    expect(isTealError(err, 'TEAL_PROXY_UNREACHABLE')).toBe(true);
    expect((err as Error).message).toContain('/tmp/teal-no-such-dir/admin.sock');
    expect((err as Error).message).toContain('ENOENT');
  });

  it('sends one command per connection and returns what came back', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-rt-'));
    const socket = path.join(dir, 'fake.sock');
    const got: string[] = [];
    const server = net.createServer((c) => {
      let text = '';
      c.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.endsWith('\n')) {
          got.push(text);
          c.end(text.startsWith('set') ? 'No such server.\n\n' : 'Pid: 1\n');
        }
      });
    });
    await new Promise<void>((r) => server.listen(socket, r));
    try {
      const api = new RuntimeApi(socket);
      expect(await api.run('show info', 'data')).toBe('Pid: 1\n');
      const err = await api.run('set server a/b state ready', 'empty').catch((e: unknown) => e);
      expect(isTealError(err, 'TEAL_PROXY_FAILED')).toBe(true);
      expect((err as Error).message).toBe('haproxy refused "set server a/b state ready": No such server.');
      expect(got).toEqual(['show info\n', 'set server a/b state ready\n']);
      await expect(api.send('show info; shutdown sessions server a/b')).rejects.toThrow(/malformed/);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
