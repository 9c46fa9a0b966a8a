import type { Probe } from '../health/probe.js';
import type { Instance, Runtime } from '../runtimes/runtime.js';
import { formatDuration } from './config/duration.js';
import type { HealthConfig } from './config/schema.js';
import { TealError } from './errors.js';
import { endpointText } from './model.js';

export interface HealthProgress {
  instance: Instance;
  passes: number;
  detail: string;
}

const LOG_LINES = 20;

/**
 * Probes every instance until each passes `healthyThreshold` times in a row. Fails at once, with
 * the exit code and the last lines of the log, when an instance exits; fails at the deadline with
 * the last probe's answer and the log. "Target failed to become healthy" with no detail is what
 * users of other tools complain about, so every failure says why.
 */
export async function waitHealthy(
  instances: Instance[],
  options: {
    runtime: Runtime;
    probe: Probe;
    health: HealthConfig;
    signal: AbortSignal;
    onProgress?: (p: HealthProgress) => void;
  },
): Promise<void> {
  const stop = new AbortController();
  const onAbort = () => stop.abort(options.signal.reason);
  options.signal.addEventListener('abort', onAbort, { once: true });
  try {
    await Promise.all(instances.map((instance) => healthyOne(instance, options, stop.signal)));
  } catch (err) {
    stop.abort();
    throw err;
  } finally {
    stop.abort();
    options.signal.removeEventListener('abort', onAbort);
  }
}

async function healthyOne(
  instance: Instance,
  options: { runtime: Runtime; probe: Probe; health: HealthConfig; onProgress?: (p: HealthProgress) => void },
  signal: AbortSignal,
): Promise<void> {
  const { runtime, probe, health } = options;
  const started = Date.now();
  const name = `${instance.labels.service} ${instance.labels.version} (${instance.labels.slot} #${instance.index}, ${endpointText(instance)})`;
  let exitedError: TealError | undefined;
  const exited = runtime.exited(instance, { signal }).then(
    async (exit) => {
      const tail = await runtime.logTail(instance, LOG_LINES).catch(() => []);
      const how = exit.signal
        ? `was killed by ${exit.signal}`
        : exit.code === null
          ? 'exited'
          : `exited with code ${exit.code}`;
      exitedError = new TealError('TEAL_INSTANCE_EXITED', `${name} ${how} while starting${logText(tail)}`, {
        instance: instance.id,
        code: exit.code,
        signal: exit.signal,
        log: tail,
      });
    },
    () => undefined,
  );

  let passes = 0;
  let last = 'not probed yet';
  while (!signal.aborted) {
    if (exitedError) throw exitedError;
    const result = await probe.check(instance, { signal });
    if (exitedError) throw exitedError;
    last = result.detail;
    passes = result.ok ? passes + 1 : 0;
    options.onProgress?.({ instance, passes, detail: result.detail });
    if (passes >= health.healthyThreshold) return;
    if (Date.now() - started >= health.deadline) {
      const tail = await runtime.logTail(instance, LOG_LINES).catch(() => []);
      throw new TealError(
        'TEAL_HEALTH_FAILED',
        `${name} did not become healthy within ${formatDuration(health.deadline)}; last probe: ${last}${logText(tail)}`,
        { instance: instance.id, lastProbe: last, log: tail },
      );
    }
    await Promise.race([sleep(health.interval, signal), exited]);
  }
  throw signal.reason ?? new TealError('TEAL_ABORTED', 'health check aborted');
}

function logText(lines: string[]): string {
  return lines.length === 0 ? ' (its log is empty)' : `\n  last log lines:\n    ${lines.join('\n    ')}`;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
