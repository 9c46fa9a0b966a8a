import { GRPCDeadlineExceededError, GRPCUnavailableError, type IOptions, isRecoverableError } from 'etcd3';
import { TealError } from '../core/errors.js';

/**
 * What a call to etcd needs of the etcd store: where etcd is (for messages), how long a call may
 * take, and whether the store has been closed.
 */
export interface CallContext {
  readonly where: string;
  readonly timeoutMs: number;
  isClosed(): boolean;
}

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/**
 * etcd3's default fault handling retries a call three times and then opens a circuit breaker that
 * refuses every call for 5s, even after etcd is back. teal wants one bounded try per member instead
 * (so failover still works) and to work again the moment etcd answers.
 */
export function tryEachMember(members: number): Policy {
  return {
    execute: async (fn: (context: { signal: AbortSignal }) => unknown) => {
      const context = { signal: new AbortController().signal };
      for (let attempt = 1; ; attempt++) {
        try {
          return await fn(context);
        } catch (err) {
          if (attempt >= members || !(err instanceof Error) || !isRecoverableError(err)) throw err;
        }
      }
    },
  } as unknown as Policy;
}

export const passThrough = tryEachMember(1);

export class Timeout extends Error {
  constructor(ms: number, detail?: string) {
    super(`no answer within ${ms}ms${detail ? `; last error: ${detail}` : ''}`);
  }
}

export function failure(context: CallContext, what: string, err: unknown): TealError {
  if (err instanceof TealError) return err;
  const detail = message(err).replace(/\. Resolution note:.*$/s, '');
  if (
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCDeadlineExceededError ||
    err instanceof Timeout
  ) {
    return new TealError('TEAL_STORE_FAILED', `${context.where} is unreachable (${detail})`, undefined, {
      cause: err,
    });
  }
  return new TealError('TEAL_STORE_FAILED', `${context.where} failed to ${what}: ${detail}`, undefined, {
    cause: err,
  });
}

function check(context: CallContext): void {
  if (context.isClosed()) throw new TealError('TEAL_STORE_FAILED', 'the etcd store is closed');
}

/** One call to etcd, answered or failed within the call timeout. */
export async function call<T>(context: CallContext, what: string, fn: () => Promise<T>): Promise<T> {
  check(context);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Timeout(context.timeoutMs)), context.timeoutMs);
  });
  try {
    return await Promise.race([fn(), timeout]);
  } catch (err) {
    throw failure(context, what, err);
  } finally {
    clearTimeout(timer);
  }
}

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The first key after every key that starts with `prefix`: etcd's range_end for a prefix. */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
