/**
 * `teal logs <svc>`: the output of what a selection names (the live slot unless `slot` names one;
 * narrowed to one `instance` by id or index), each line with its time and instance. With follow it
 * keeps following whatever the selection names as the store changes: when the live slot moves (a
 * deploy's switch, a rollback) or the followed slot starts another release, a marker line names
 * what it is now and the lines after it are the new release's; when an instance is replaced within
 * the slot (the supervisor restarting a crashed one writes the new one into the slot record) the
 * replacement is followed from its first line. The slot records are the truth (records.ts), read
 * again at each change of the service's live key or slot records.
 *
 * Limits: lines of one instance come in order; lines of several are interleaved as they are read
 * (with follow) or merged by their times (without). `tail` counts per instance, as
 * `docker compose logs --tail` does. Times come from the runtime (LogLine): a process instance's are
 * upper bounds up to about a second late, and `approx` when written while no control plane watched.
 */
import type { Instance, LogLine, LogOptions, Runtime } from '../runtimes/runtime.js';
import type { Store } from '../stores/store.js';
import { TealError } from './errors.js';
import type { Slot } from './model.js';
import {
  type InstanceRef,
  keys,
  readDeployment,
  readServiceState,
  type ServiceState,
  type SlotRecord,
} from './records.js';
import { instanceOf } from './slots.js';

export interface LogSelection {
  /** Follow this slot whatever is live. */
  slot?: Slot;
  /** One instance: its id, or its index in the slot ("0", "1"). */
  instance?: string;
}

export interface ServiceLogOptions {
  follow: boolean;
  signal: AbortSignal;
  /** Lines of history per instance; all of the current file when absent (up to the runtime's cap with since). */
  tail?: number;
  /** Only lines written at or after this epoch ms. */
  since?: number;
}

interface Origin {
  service: string;
  slot: Slot;
  release: number | null;
  version: string | null;
  deployment: number | null;
}

export type LogEntry =
  | (Origin & {
      kind: 'line';
      time: number;
      approx?: boolean;
      instance: string;
      index: number;
      stream?: 'stdout' | 'stderr';
      line: string;
    })
  | (Partial<Origin> & {
      kind: 'marker';
      /** switch: the followed slot or its release changed; instance: one joined or left; end: nothing more comes. */
      marker: 'switch' | 'instance' | 'end';
      time: number;
      line: string;
    });

/** What a selection names in the store right now. */
interface Selected {
  slot: SlotRecord;
  instances: InstanceRef[];
}

/** A switch's catch-up: at most this many lines per instance written since the deployment began. */
const CATCH_UP_LINES = 200;
/** What a replacement instance shows of its start (its whole log, up to this many lines). */
const JOINED_LINES = 1_000;
/**
 * How long an instance that leaves the selection is still read, so the lines it wrote before the
 * change and the reader had not polled yet are not lost (the process reader polls every 150 ms).
 */
const SETTLE_MS = 400;

function choose(state: ServiceState, selection: LogSelection): Selected | undefined {
  const byId = selection.instance !== undefined && !/^\d+$/.test(selection.instance);
  let slot: Slot | null = selection.slot ?? null;
  if (byId && slot === null) {
    slot =
      (['blue', 'green'] as const).find((s) =>
        state.slots[s].instances.some((i) => i.id === selection.instance),
      ) ?? null;
    if (slot === null) return undefined;
  }
  slot ??=
    state.live ??
    (state.slots.blue.instances.length ? 'blue' : state.slots.green.instances.length ? 'green' : null);
  if (slot === null) return undefined;
  const record = state.slots[slot];
  const instances = record.instances.filter(
    (i) =>
      selection.instance === undefined ||
      i.id === selection.instance ||
      String(i.index) === selection.instance,
  );
  return { slot: record, instances };
}

function originOf(service: string, slot: SlotRecord): Origin {
  return {
    service,
    slot: slot.slot,
    release: slot.release,
    version: slot.version,
    deployment: slot.deployment,
  };
}

/** "r4 v2 (deployment 7)" */
function describe(slot: SlotRecord): string {
  if (slot.release === null) return `${slot.slot} is ${slot.state}`;
  return `r${slot.release} ${slot.version ?? '?'}${slot.deployment === null ? '' : ` (deployment ${slot.deployment})`}`;
}

/** The error for a selection that names nothing, saying what there is. */
function nothingThere(svc: string, state: ServiceState, selection: LogSelection): TealError {
  const present = (['blue', 'green'] as const)
    .flatMap((s) => state.slots[s].instances.map((i) => `${i.id} (${s}, index ${i.index})`))
    .join(', ');
  const where = selection.slot ? ` in ${selection.slot}` : '';
  const what =
    selection.instance === undefined ? 'instances' : `instance ${JSON.stringify(selection.instance)}`;
  return new TealError(
    'TEAL_NOT_FOUND',
    `${svc} has no ${what}${where} to show logs of${present ? `; it has ${present}` : ''}`,
  );
}

/** A queue of entries filled by the instance readers and the store watch, read by one consumer. */
class Channel<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;

  push(item: T): void {
    this.items.push(item);
    this.wake?.();
  }

  async *drain(signal: AbortSignal): AsyncGenerator<T> {
    const onAbort = () => this.wake?.();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        // What was pushed before the abort still goes out (an end marker, a reader's last lines).
        const item = this.items.shift();
        if (item !== undefined) {
          yield item;
          continue;
        }
        if (signal.aborted) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

/**
 * The service's log entries for `selection`. Throws TEAL_NOT_FOUND when it names nothing (before
 * anything is yielded). Without follow it ends after the history; with follow it ends when the
 * signal aborts, or after an `end` marker when the followed instance (by id) is gone.
 */
export async function serviceLogs(
  store: Store,
  runtime: Runtime,
  svc: string,
  selection: LogSelection,
  options: ServiceLogOptions,
): Promise<AsyncIterable<LogEntry>> {
  // The revision before the read: the watch replays anything from there, so no change is missed.
  const revision = await store.revision();
  const state = await readServiceState(store, svc);
  const first = choose(state, selection);
  if (!first || first.instances.length === 0) throw nothingThere(svc, state, selection);
  const history: LogOptions = {
    follow: options.follow,
    signal: options.signal,
    ...(options.tail === undefined ? {} : { tail: options.tail }),
    ...(options.since === undefined ? {} : { since: options.since }),
  };
  if (!options.follow) return pastLines(runtime, svc, first, history);
  return following(store, runtime, svc, selection, first, revision, history, options.signal);
}

function lineEntry(svc: string, slot: SlotRecord, ref: InstanceRef, l: LogLine): LogEntry {
  const entry: LogEntry = {
    kind: 'line',
    time: l.time,
    ...originOf(svc, slot),
    instance: ref.id,
    index: ref.index,
    line: l.line,
  };
  if (l.approx) entry.approx = true;
  if (l.stream) entry.stream = l.stream;
  return entry;
}

/** Without follow: each instance's lines, merged by time (a stable merge: one instance's stay in order). */
async function* pastLines(
  runtime: Runtime,
  svc: string,
  selected: Selected,
  options: LogOptions,
): AsyncGenerator<LogEntry> {
  const per = await Promise.all(
    selected.instances.map(async (ref) => {
      const out: LogEntry[] = [];
      for await (const l of runtime.logs(instanceOf(svc, selected.slot, ref), options))
        out.push(lineEntry(svc, selected.slot, ref, l));
      return out;
    }),
  );
  const merged = per.flat().map((e, order) => ({ e, order }));
  merged.sort((a, b) => a.e.time - b.e.time || a.order - b.order);
  for (const { e } of merged) yield e;
}

interface Reader {
  stop: AbortController;
  done: Promise<void>;
}

async function* following(
  store: Store,
  runtime: Runtime,
  svc: string,
  selection: LogSelection,
  first: Selected,
  revision: number,
  history: LogOptions,
  signal: AbortSignal,
): AsyncGenerator<LogEntry> {
  const out = new Channel<LogEntry>();
  const readers = new Map<string, Reader>();
  const quit = new AbortController();
  const onAbort = () => quit.abort();
  signal.addEventListener('abort', onAbort, { once: true });

  const read = (slot: SlotRecord, ref: InstanceRef, options: Omit<LogOptions, 'follow' | 'signal'>) => {
    const stop = new AbortController();
    const both = AbortSignal.any([stop.signal, quit.signal]);
    const instance: Instance = instanceOf(svc, slot, ref);
    const done = (async () => {
      try {
        for await (const l of runtime.logs(instance, { ...options, follow: true, signal: both }))
          out.push(lineEntry(svc, slot, ref, l));
      } catch (err) {
        if (both.aborted) return;
        out.push({
          kind: 'marker',
          marker: 'instance',
          time: Date.now(),
          ...originOf(svc, slot),
          line: `cannot read ${ref.id}'s output: ${(err as Error).message}`,
        });
      }
    })();
    readers.set(ref.id, { stop, done });
  };
  /** Stops reading an instance once what it wrote before now has been read. */
  const unread = async (ids: string[]) => {
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    await Promise.all(
      ids.map(async (id) => {
        const reader = readers.get(id);
        readers.delete(id);
        reader?.stop.abort();
        await reader?.done;
      }),
    );
  };
  const marker = (slot: SlotRecord | undefined, kind: 'switch' | 'instance' | 'end', line: string) =>
    out.push({ kind: 'marker', marker: kind, time: Date.now(), ...(slot ? originOf(svc, slot) : {}), line });

  const { tail, since } = history;
  for (const ref of first.instances)
    read(first.slot, ref, {
      ...(tail === undefined ? {} : { tail }),
      ...(since === undefined ? {} : { since }),
    });

  let current = first;
  const watching = (async () => {
    const slotsPrefix = `${keys.service(svc)}slots/`;
    try {
      for await (const change of store.watch(keys.service(svc), {
        signal: quit.signal,
        afterRevision: revision,
      })) {
        if (change.key !== keys.live(svc) && !change.key.startsWith(slotsPrefix)) continue;
        const next = choose(await readServiceState(store, svc), selection);
        current = await reselect(current, next);
        if (
          current.instances.length === 0 &&
          selection.instance !== undefined &&
          !/^\d+$/.test(selection.instance)
        ) {
          marker(current.slot, 'end', `${selection.instance} is no longer in a slot: nothing more to follow`);
          quit.abort();
        }
      }
    } catch (err) {
      if (!quit.signal.aborted) {
        marker(undefined, 'end', `stopped following ${svc}'s changes: ${(err as Error).message}`);
        quit.abort();
      }
    }
  })();

  async function reselect(was: Selected, next: Selected | undefined): Promise<Selected> {
    if (!next) {
      if (was.instances.length === 0) return was;
      await unread(was.instances.map((i) => i.id));
      marker(
        undefined,
        'switch',
        selection.slot ? `${selection.slot} has no instances now` : `${svc} has nothing live now`,
      );
      return { slot: was.slot, instances: [] };
    }
    const moved = next.slot.slot !== was.slot.slot || next.slot.release !== was.slot.release;
    if (moved) {
      // Another slot, or another release in it: what was followed is done, the new one starts here.
      await unread(was.instances.map((i) => i.id));
      const verb = selection.slot ? `${next.slot.slot} now runs` : `switched to ${next.slot.slot}:`;
      marker(
        next.slot,
        'switch',
        next.slot.release === null ? describe(next.slot) : `${verb} ${describe(next.slot)}`,
      );
      // Its lines since the deployment that made the change began (the new release's start-up).
      const began =
        next.slot.deployment === null ? undefined : await readDeployment(store, svc, next.slot.deployment);
      const from = began ? Date.parse(began.createdAt) : Date.parse(next.slot.since);
      for (const ref of next.instances) read(next.slot, ref, { tail: CATCH_UP_LINES, since: from });
      return next;
    }
    // Same slot and release: instances replaced (the supervisor), added or taken out.
    const before = new Map(was.instances.map((i) => [i.id, i]));
    const now = new Set(next.instances.map((i) => i.id));
    const gone = was.instances.filter((i) => !now.has(i.id));
    const joined = next.instances.filter((i) => !before.has(i.id));
    if (gone.length > 0) await unread(gone.map((i) => i.id));
    for (const ref of joined) {
      const replaced = gone.find((g) => g.index === ref.index);
      marker(
        next.slot,
        'instance',
        replaced
          ? `${ref.id} replaces ${replaced.id} in ${next.slot.slot}`
          : `${ref.id} joined ${next.slot.slot}`,
      );
      read(next.slot, ref, { tail: JOINED_LINES });
    }
    for (const g of gone) {
      if (!joined.some((j) => j.index === g.index))
        marker(next.slot, 'instance', `${g.id} left ${next.slot.slot}`);
    }
    return next;
  }

  try {
    for await (const entry of out.drain(quit.signal)) yield entry;
  } finally {
    signal.removeEventListener('abort', onAbort);
    quit.abort();
    await watching;
    await Promise.all([...readers.values()].map((r) => r.done));
  }
}

/** An entry as the API's and the CLI's JSON: the time as an ISO string, `kind` left out (markers have `marker`). */
export type LogEntryJson = Omit<LogEntry, 'kind' | 'time'> & {
  time: string;
  marker?: string;
  instance?: string;
};

export function entryJson(entry: LogEntry): LogEntryJson {
  const { kind: _kind, time, ...rest } = entry;
  return { time: new Date(time).toISOString(), ...rest };
}

/**
 * An entry as one line of text: "<time> <instance> <line>", the time prefixed with `~` when only
 * approximate; a marker as "<time> ── <what changed> ──".
 */
export function entryText(entry: LogEntryJson): string {
  if (entry.marker !== undefined) return `${entry.time} ── ${entry.line} ──`;
  return `${'approx' in entry && entry.approx ? '~' : ''}${entry.time} ${entry.instance ?? '?'} ${entry.line}`;
}
