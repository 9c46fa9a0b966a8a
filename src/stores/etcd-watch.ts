import type { IDuplexStream, IKeyValue, IWatchRequest, IWatchResponse, WatchClient } from 'etcd3';
import { TealError } from '../core/errors.js';
import { type CallContext, failure, message, prefixEnd, Timeout } from './etcd-calls.js';
import type { Change, Json, WatchOptions } from './store.js';

/** What a watch needs of the etcd store, beyond what any call does. */
export interface WatchContext extends CallContext {
  readonly watchClient: WatchClient;
  /** Every running watch's stop; the store's `close()` aborts them. */
  readonly watches: Set<AbortController>;
  /** The key in etcd, the store's prefix prepended. */
  key(key: string): Buffer;
  /** A key in etcd made relative to the store's prefix again. */
  relative(key: Buffer): string;
  parse<T>(kv: IKeyValue): T;
  revision(): Promise<number>;
}

type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

/**
 * One gRPC watch stream per call, resumed by us rather than by etcd3's Watcher: that one resumes
 * from the header revision of the last response it saw, which can be past events it never
 * delivered (a created response during catch-up; a catch-up batch capped at 1000 revisions).
 * We resume after the last revision we delivered (or a progress notification vouched for), and
 * etcd never splits one revision's events across responses, so nothing is missed or repeated.
 */
export async function* watchPrefix<T = Json>(
  store: WatchContext,
  prefix: string,
  options: WatchOptions,
): AsyncGenerator<Change<T>> {
  const { signal } = options;
  // As a local store's: a watch on a closed store, like one the close interrupts, just ends.
  if (signal.aborted || store.isClosed()) return;
  let last = options.afterRevision ?? (await store.revision());
  // An abort or a close while the revision was read came before anything below listens for it.
  if (signal.aborted || store.isClosed()) return;
  const key = store.key(prefix);
  const queue: Change<T>[] = [];
  const stop = new AbortController();
  let failed: TealError | undefined;
  let wake: (() => void) | undefined;
  let stream: WatchStream | undefined;
  let lastError = 'no answer';
  let retryMs = 100;
  let retry: NodeJS.Timeout | undefined;

  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const fail = (err: TealError) => {
    failed ??= err;
    stop.abort();
  };
  // The first answer comes within the call timeout, as for any call; later outages are waited out.
  const firstAnswer = setTimeout(
    () => fail(failure(store, `watch ${prefix}`, new Timeout(store.timeoutMs, lastError))),
    store.timeoutMs,
  );
  const drop = (s: WatchStream) => {
    if (stream === s) stream = undefined;
    s.end();
    s.cancel();
  };
  const reconnect = (s: WatchStream, err: unknown) => {
    if (stream !== s || stop.signal.aborted) return;
    lastError = message(err);
    drop(s);
    retry = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 1_000);
  };
  const onResponse = (s: WatchStream, res: IWatchResponse) => {
    if (stream !== s) return;
    if (res.canceled) {
      const compacted = Number(res.compact_revision);
      const why =
        compacted > 0
          ? `${store.where} has compacted its history up to revision ${compacted}`
          : res.cancel_reason || 'etcd cancelled it';
      fail(
        new TealError('TEAL_STORE_FAILED', `watch of ${prefix} cannot go on after revision ${last}: ${why}`),
      );
    } else if (res.created) {
      clearTimeout(firstAnswer);
      retryMs = 100;
    } else if (res.events.length === 0) {
      // A progress notification: etcd sends one only after every earlier event of this watch.
      last = Math.max(last, Number(res.header.revision));
    } else {
      try {
        queue.push(...changes<T>(store, res, last));
      } catch (err) {
        fail(failure(store, `watch ${prefix}`, err));
      }
      last = Math.max(last, ...res.events.map((e) => Number(e.kv.mod_revision)));
    }
    notify();
  };
  const connect = () => {
    if (stop.signal.aborted) return;
    store.watchClient.watch().then(
      (s) => {
        s.on('data', (res) => onResponse(s, res));
        s.on('error', (err) => reconnect(s, err));
        s.on('end', () => reconnect(s, new Error('the watch stream ended')));
        stream = s;
        if (stop.signal.aborted) return drop(s);
        const create = { key, range_end: prefixEnd(key), start_revision: last + 1, progress_notify: true };
        s.write({ create_request: create });
      },
      (err: unknown) => {
        lastError = message(err);
        retry = setTimeout(connect, retryMs);
      },
    );
  };
  const onAbort = () => stop.abort();
  stop.signal.addEventListener('abort', () => {
    clearTimeout(firstAnswer);
    clearTimeout(retry);
    if (stream) drop(stream);
    notify();
  });
  signal.addEventListener('abort', onAbort, { once: true });
  store.watches.add(stop);

  try {
    connect();
    for (;;) {
      const change = queue.shift();
      if (change) {
        yield change;
        if (signal.aborted) return;
      } else if (failed) {
        throw failed;
      } else if (stop.signal.aborted) {
        return;
      } else {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    store.watches.delete(stop);
    stop.abort();
  }
}

/** The changes of one watch response after revision `last`, keys made relative again. */
function changes<T>(store: WatchContext, res: IWatchResponse, last: number): Change<T>[] {
  return res.events
    .filter((event) => Number(event.kv.mod_revision) > last)
    .map((event) => ({
      type: event.type === 'Delete' ? 'delete' : 'put',
      key: store.relative(event.kv.key),
      value: event.type === 'Delete' ? undefined : store.parse<T>(event.kv),
      revision: Number(event.kv.mod_revision),
    }));
}
