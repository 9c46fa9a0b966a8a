import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isTealError } from '../core/errors.js';
import type { ExitInfo, Instance, InstanceLabels, InstanceSpec, LogLine, Runtime } from './runtime.js';

export interface RuntimeUnderTest {
  /** A runtime keeping its state in `stateDir`; called again on the same dir, it plays a restarted daemon. */
  create(stateDir: string): Promise<Runtime>;
  /** A spec running examples/hello: answers / with `hello <APP_VERSION>`, logs a line on SIGTERM. */
  appSpec(overrides?: Partial<InstanceSpec>): InstanceSpec;
  /** A spec running this JavaScript (an ES module) with node; its console output is the instance's output. */
  scriptSpec(source: string, overrides?: Partial<InstanceSpec>): InstanceSpec;
}

/** Labels for a spec: `labels('api', 'green')`. */
export function testLabels(service = 'web', slot: InstanceLabels['slot'] = 'blue'): InstanceLabels {
  return { service, slot, release: 3, deployment: 7, version: '1.2.3' };
}

export async function waitFor<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** GET without a keep-alive agent, so no socket of ours holds the app open during a graceful stop. */
export function get(host: string, port: number, urlPath = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: urlPath, agent: false, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${host}:${port}${urlPath} timed out`)));
    req.on('error', reject);
  });
}

export function answers(instance: Instance, urlPath = '/'): Promise<{ status: number; body: string }> {
  return waitFor(
    () => get(instance.host, instance.port, urlPath).catch(() => undefined),
    `${instance.id} to answer on ${instance.host}:${instance.port}`,
  );
}

async function codeOf(promise: Promise<unknown>): Promise<{ code: unknown; message: string }> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { code: isTealError(err) ? err.code : err, message: (err as Error | undefined)?.message ?? '' };
}

/** Output lines of `follow`ed logs, gathered in the background until `stop()`. */
function gather(runtime: Runtime, instance: Instance, options: { tail?: number } = {}) {
  const controller = new AbortController();
  const lines: string[] = [];
  const done = (async () => {
    for await (const line of runtime.logs(instance, {
      follow: true,
      signal: controller.signal,
      ...options,
    })) {
      lines.push(line.line);
    }
  })();
  return {
    lines,
    stop: async () => {
      controller.abort();
      await done;
    },
  };
}

const PRINT_THEN_IDLE = `console.log('ready'); setInterval(() => {}, 60_000);`;
const IGNORE_SIGTERM = `process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
console.log('ready');
setInterval(() => {}, 60_000);`;

/**
 * What a runtime cannot promise, said explicitly so the cases check the weaker promise instead of
 * skipping. Every field defaults to the strict behaviour.
 */
export interface RuntimeAllowance {
  /**
   * False when the runtime keeps stdout and stderr apart and so loses their order relative to each
   * other (the Docker engine reads them from two pipes; a line on stderr can come out before a
   * stdout line written earlier). The logs case then checks each stream's own order, and that tail
   * and logTail end the same sequence the full listing shows.
   */
  ordersAcrossStreams?: boolean;
}

/** The behaviour every Runtime must have. Run from each implementation's test file. */
export function runtimeContract(
  name: string,
  impl: RuntimeUnderTest,
  allowance: RuntimeAllowance = {},
): void {
  describe(`Runtime contract: ${name}`, () => {
    const dirs: string[] = [];
    const runtimes: Runtime[] = [];

    async function runtimeOn(stateDir?: string): Promise<Runtime> {
      const dir = stateDir ?? mkdtempSync(path.join(os.tmpdir(), 'teal-rt-'));
      if (!dirs.includes(dir)) dirs.push(dir);
      const runtime = await impl.create(dir);
      runtimes.push(runtime);
      return runtime;
    }

    afterEach(async () => {
      for (const runtime of runtimes.splice(0)) await runtime.close();
      // Clean up as a restarted daemon would: whatever is still recorded gets stopped.
      for (const dir of dirs.splice(0)) {
        const janitor = await impl.create(dir);
        for (const instance of await janitor.list()) {
          try {
            await janitor.stop(instance, { timeoutMs: 2_000 });
          } catch (err) {
            if (instance.pid) process.kill(instance.pid, 'SIGKILL');
            throw err;
          }
        }
        await janitor.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('starts an instance reachable over HTTP on its port, with PORT and the service env set', async () => {
      const runtime = await runtimeOn();
      const instance = await runtime.start(impl.appSpec(), { signal: AbortSignal.timeout(30_000) });
      expect(instance.id).toMatch(/^web-blue-r3-0-/);
      expect(instance.labels).toEqual(testLabels());
      expect(instance.port).toBeGreaterThan(0);
      expect(await answers(instance)).toEqual({ status: 200, body: 'hello 1.2.3\n' });
      expect(await runtime.status(instance)).toEqual({ state: 'running' });
    });

    it('uses the fixed port the spec names', async () => {
      const runtime = await runtimeOn();
      const port = await unusedPort();
      const instance = await runtime.start(impl.appSpec({ port }), { signal: AbortSignal.timeout(30_000) });
      expect(instance.port).toBe(port);
      expect((await answers(instance)).body).toBe('hello 1.2.3\n');
    });

    it('gives two instances without a fixed port different free ports', async () => {
      const runtime = await runtimeOn();
      const signal = AbortSignal.timeout(30_000);
      const first = await runtime.start(impl.appSpec({ index: 0 }), { signal });
      const second = await runtime.start(impl.appSpec({ index: 1 }), { signal });
      expect(second.port).not.toBe(first.port);
      expect(second.id).not.toBe(first.id);
      expect((await answers(first)).status).toBe(200);
      expect((await answers(second)).status).toBe(200);
    });

    it('refuses a fixed port already in use with TEAL_PORT_IN_USE naming it, leaving nothing running', async () => {
      const runtime = await runtimeOn();
      const holder = net.createServer();
      await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
      const port = (holder.address() as net.AddressInfo).port;
      try {
        const spec = impl.appSpec({ port, portSource: 'services.web.ports.blue' });
        const { code, message } = await codeOf(runtime.start(spec, { signal: AbortSignal.timeout(30_000) }));
        expect(code).toBe('TEAL_PORT_IN_USE');
        expect(message).toContain(`port ${port} (services.web.ports.blue)`);
        expect(await runtime.list()).toEqual([]);
      } finally {
        await new Promise((resolve) => holder.close(resolve));
      }
    });

    it('fails with TEAL_START_FAILED naming a program that does not exist', async () => {
      const runtime = await runtimeOn();
      const spec = impl.appSpec({ command: ['teal-no-such-program', '--flag'] });
      const { code, message } = await codeOf(runtime.start(spec, { signal: AbortSignal.timeout(30_000) }));
      expect(code).toBe('TEAL_START_FAILED');
      expect(message).toContain('teal-no-such-program');
      expect(message).toContain('services.web');
      expect(await runtime.list()).toEqual([]);
    });

    it('throws the reason of an aborted signal and starts nothing', async () => {
      const runtime = await runtimeOn();
      const controller = new AbortController();
      const reason = new Error('deployment aborted');
      controller.abort(reason);
      await expect(runtime.start(impl.appSpec(), { signal: controller.signal })).rejects.toBe(reason);
      expect(await runtime.list()).toEqual([]);
    });

    it('reports the exit code of an app that exits at once, and keeps what it printed', async () => {
      const runtime = await runtimeOn();
      const spec = impl.scriptSpec(`console.log('bye from the app'); process.exit(3);`);
      const instance = await runtime.start(spec, { signal: AbortSignal.timeout(30_000) });
      const exit = await runtime.exited(instance, { signal: AbortSignal.timeout(10_000) });
      expect(exit).toEqual({ code: 3, signal: null });
      expect(await runtime.logTail(instance, 10)).toEqual(['bye from the app']);
      // Its record stays until stop, so a daemon sees instances that died while it was away.
      const [listed] = await runtime.list();
      expect(listed?.id).toBe(instance.id);
      expect(listed?.status).toEqual({ state: 'exited', code: 3, signal: null });
      await runtime.stop(instance, { timeoutMs: 1_000 });
      expect(await runtime.list()).toEqual([]);
      expect(await runtime.status(instance)).toEqual({ state: 'unknown' });
    });

    it('stop sends SIGTERM and the app exits gracefully', async () => {
      const runtime = await runtimeOn();
      const instance = await runtime.start(impl.appSpec(), { signal: AbortSignal.timeout(30_000) });
      await answers(instance);
      const output = gather(runtime, instance);
      const impatient = new AbortController();
      const gaveUp = runtime.exited(instance, { signal: impatient.signal });
      impatient.abort(new Error('gave up waiting'));
      await expect(gaveUp).rejects.toThrow('gave up waiting');
      const exited = runtime.exited(instance, { signal: AbortSignal.timeout(20_000) });
      await runtime.stop(instance, { timeoutMs: 10_000 });
      expect(await exited).toEqual({ code: 0, signal: null });
      await waitFor(() => output.lines.includes('hello 1.2.3 stopped'), 'the app to log its graceful stop');
      await output.stop();
      expect(output.lines).toContain('hello 1.2.3 got SIGTERM; finishing in-flight requests');
      await expect(get(instance.host, instance.port)).rejects.toThrow();
      expect(await runtime.status(instance)).toEqual({ state: 'unknown' });
    });

    it('stop escalates to SIGKILL for an app that ignores SIGTERM, within about the timeout', async () => {
      const runtime = await runtimeOn();
      const instance = await runtime.start(impl.scriptSpec(IGNORE_SIGTERM), {
        signal: AbortSignal.timeout(30_000),
      });
      await waitFor(async () => (await runtime.logTail(instance, 5)).includes('ready'), 'the app to start');
      const exited = runtime.exited(instance, { signal: AbortSignal.timeout(20_000) });
      const startedAt = Date.now();
      await runtime.stop(instance, { timeoutMs: 1_000 });
      const took = Date.now() - startedAt;
      expect(took).toBeGreaterThanOrEqual(900);
      expect(took).toBeLessThan(4_000);
      const exit: ExitInfo = await exited;
      expect(exit.signal === 'SIGKILL' || exit.code === 137).toBe(true);
      expect(await runtime.status(instance)).toEqual({ state: 'unknown' });
    });

    it('stop is idempotent: twice, after the app exited by itself, and for an unknown instance', async () => {
      const runtime = await runtimeOn();
      const signal = AbortSignal.timeout(30_000);
      const running = await runtime.start(impl.scriptSpec(PRINT_THEN_IDLE), { signal });
      await runtime.stop(running, { timeoutMs: 2_000 });
      await runtime.stop(running, { timeoutMs: 2_000 });
      const quitter = await runtime.start(impl.scriptSpec('process.exit(0);'), { signal });
      await runtime.exited(quitter, { signal });
      await runtime.stop(quitter, { timeoutMs: 2_000 });
      const unknown: Instance = { ...running, id: 'web-blue-r3-0-nobody' };
      await runtime.stop(unknown, { timeoutMs: 2_000 });
      expect(await runtime.list()).toEqual([]);
    });

    it('lists instances with their labels and running status, filtered by service', async () => {
      const runtime = await runtimeOn();
      const signal = AbortSignal.timeout(30_000);
      const web = await runtime.start(impl.appSpec(), { signal });
      const api = await runtime.start(impl.appSpec({ labels: testLabels('api', 'green') }), { signal });
      const all = await runtime.list();
      expect(all.map((i) => i.id)).toEqual([web.id, api.id]);
      expect(all.map((i) => i.status)).toEqual([{ state: 'running' }, { state: 'running' }]);
      const [onlyApi, ...rest] = await runtime.list({ service: 'api' });
      expect(rest).toEqual([]);
      expect(onlyApi).toMatchObject({
        id: api.id,
        labels: testLabels('api', 'green'),
        index: 0,
        host: api.host,
        port: api.port,
        startedAt: api.startedAt,
      });
      expect(await runtime.list({ service: 'nothing' })).toEqual([]);
    });

    it('a fresh runtime on the same state dir (a restarted daemon) lists the running instance and stops it', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'teal-rt-'));
      const before = await runtimeOn(dir);
      const instance = await before.start(impl.appSpec(), { signal: AbortSignal.timeout(30_000) });
      await answers(instance);
      await before.close();

      const after = await runtimeOn(dir);
      const [adopted, ...rest] = await after.list({ service: 'web' });
      expect(rest).toEqual([]);
      expect(adopted).toMatchObject({ id: instance.id, labels: instance.labels, port: instance.port });
      expect(adopted?.status).toEqual({ state: 'running' });
      expect((await get(instance.host, instance.port)).body).toBe('hello 1.2.3\n');
      const impatient = new AbortController();
      const gaveUp = after.exited(adopted!, { signal: impatient.signal });
      setTimeout(() => impatient.abort(new Error('gave up waiting')), 150);
      await expect(gaveUp).rejects.toThrow('gave up waiting');
      const exited = after.exited(adopted!, { signal: AbortSignal.timeout(20_000) });
      await after.stop(adopted!, { timeoutMs: 10_000 });
      await exited;
      await expect(get(instance.host, instance.port)).rejects.toThrow();
      expect(await after.list()).toEqual([]);
    });

    it('logs with follow yields lines written later, until the signal aborts', async () => {
      const runtime = await runtimeOn();
      const script = `let n = 0;
const timer = setInterval(() => { console.log('line ' + n++); if (n === 40) clearInterval(timer); }, 50);
setInterval(() => {}, 60_000);`;
      const instance = await runtime.start(impl.scriptSpec(script), { signal: AbortSignal.timeout(30_000) });
      const output = gather(runtime, instance);
      await waitFor(() => output.lines.includes('line 12'), 'line 12 to be followed');
      await output.stop();
      const seen = output.lines.length;
      expect(output.lines.slice(0, 13)).toEqual(Array.from({ length: 13 }, (_, i) => `line ${i}`));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(output.lines.length).toBe(seen);
    });

    it('logs with follow and tail start from the last lines, then go on', async () => {
      const runtime = await runtimeOn();
      const script = `let n = 0;
const timer = setInterval(() => { console.log('line ' + n++); if (n === 60) clearInterval(timer); }, 50);
setInterval(() => {}, 60_000);`;
      const instance = await runtime.start(impl.scriptSpec(script), { signal: AbortSignal.timeout(30_000) });
      // At least line 5, not exactly: a poll slower than the app's 50 ms can step over one line.
      await waitFor(async () => {
        const [last] = await runtime.logTail(instance, 1);
        return last !== undefined && Number(last.replace('line ', '')) >= 5;
      }, 'line 5');
      const output = gather(runtime, instance, { tail: 2 });
      await waitFor(() => output.lines.includes('line 20'), 'line 20 to be followed');
      await output.stop();
      const numbers = output.lines.map((line) => Number(line.replace('line ', '')));
      expect(numbers[0]).toBeGreaterThanOrEqual(4);
      expect(numbers).toEqual(numbers.map((_, i) => numbers[0]! + i));
    });

    it('logs without follow yields the output so far; tail and logTail keep the last lines', async () => {
      const runtime = await runtimeOn();
      const script = `console.log('one'); console.error('two'); console.log('three'); setInterval(() => {}, 60_000);`;
      const instance = await runtime.start(impl.scriptSpec(script), { signal: AbortSignal.timeout(30_000) });
      await waitFor(async () => (await runtime.logTail(instance, 5)).length === 3, 'three lines of output');
      const all: string[] = [];
      const signal = AbortSignal.timeout(10_000);
      for await (const { line } of runtime.logs(instance, { follow: false, signal })) all.push(line);
      if (allowance.ordersAcrossStreams === false) {
        expect([...all].sort()).toEqual(['one', 'three', 'two']);
        expect(all.filter((line) => line !== 'two')).toEqual(['one', 'three']);
      } else {
        expect(all).toEqual(['one', 'two', 'three']);
      }
      const last: string[] = [];
      for await (const { line } of runtime.logs(instance, { follow: false, signal, tail: 2 }))
        last.push(line);
      expect(last).toEqual(all.slice(-2));
      expect(await runtime.logTail(instance, 2)).toEqual(all.slice(-2));
      expect(await runtime.logTail(instance, 0)).toEqual([]);
    });

    it('logs give each line the time it was written, and since keeps only the later ones', async () => {
      const runtime = await runtimeOn();
      const script = `console.log('early'); setTimeout(() => console.log('late'), 1500); setInterval(() => {}, 60_000);`;
      const before = Date.now();
      const instance = await runtime.start(impl.scriptSpec(script), { signal: AbortSignal.timeout(30_000) });
      await waitFor(async () => (await runtime.logTail(instance, 5)).includes('late'), 'the late line');
      const signal = AbortSignal.timeout(10_000);
      const lines: LogLine[] = [];
      for await (const line of runtime.logs(instance, { follow: false, signal })) lines.push(line);
      const early = lines.find((l) => l.line === 'early')!;
      const late = lines.find((l) => l.line === 'late')!;
      expect(early.time).toBeGreaterThanOrEqual(before - 1000);
      expect(late.time).toBeLessThanOrEqual(Date.now());
      // 1.5 s apart when written; a time may be late by one tick of the runtime's clock (1 s).
      expect(late.time - early.time).toBeGreaterThanOrEqual(400);
      expect(late.time - early.time).toBeLessThan(3_000);
      const since: string[] = [];
      for await (const { line } of runtime.logs(instance, { follow: false, signal, since: early.time + 1 }))
        since.push(line);
      expect(since).toEqual(['late']);
    });

    it('says unknown for the status of an instance it has no record of', async () => {
      const runtime = await runtimeOn();
      const ghost: Instance = {
        id: 'web-blue-r3-0-ghost1',
        labels: testLabels(),
        index: 0,
        host: '127.0.0.1',
        port: 1,
        startedAt: Date.now(),
      };
      expect(await runtime.status(ghost)).toEqual({ state: 'unknown' });
      expect(await runtime.list()).toEqual([]);
    });
  });
}

/** A port nothing listens on right now (the runtime is the next to bind it). */
async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
