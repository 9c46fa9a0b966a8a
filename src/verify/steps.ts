import { spawn } from 'node:child_process';
import http from 'node:http';
import { childEnv } from '../child-env.js';
import { interpolate } from '../core/config/interpolate.js';
import type { VerifyStep } from '../core/config/schema.js';
import type { Verifier, VerifyResult, VerifyTarget } from '../core/deps.js';
import { assertReachable, homeOf, type RunUser, resolveRunUser } from '../users.js';
import { runLoad } from './load.js';

const OUTPUT_TAIL = 4_000;

/**
 * Runs the configured verification steps against the new slot before it takes traffic:
 * `http` checks a status and a body substring; `run` runs the user's command under `sh -c`, as they
 * wrote it, with the target in TEAL_* variables (never spliced into the command text).
 */
export class StepVerifier implements Verifier {
  run(step: VerifyStep, target: VerifyTarget, options: { signal: AbortSignal }): Promise<VerifyResult> {
    if ('run' in step) return runCommand(step, target, options.signal);
    if ('load' in step) return runLoadStep(step.load, target, options.signal);
    return runHttp(step.http, target, options.signal);
  }
}

/**
 * Where a step's requests go: the new slot's first instance, or the data plane's preview listener
 * with the slot header, so the check passes through the same routes, limits and headers users'
 * requests will (the public listener ignores the header).
 */
function destination(
  through: 'direct' | 'preview',
  target: VerifyTarget,
): { base: string; headers: Record<string, string> } | { error: string } {
  if (through === 'direct') return { base: target.url, headers: {} };
  if (!target.previewUrl) return { error: 'through: preview, but the preview listener URL is not known' };
  return { base: target.previewUrl, headers: { 'x-teal-slot': target.slot } };
}

type LoadStep = Extract<VerifyStep, { load: unknown }>['load'];

/** The built-in stress step: fails on more errors than allowed or a p99 over the limit. */
async function runLoadStep(step: LoadStep, target: VerifyTarget, signal: AbortSignal): Promise<VerifyResult> {
  const vars = { version: target.version, service: target.service, slot: target.slot };
  const to = destination(step.through, target);
  if ('error' in to) return { ok: false, detail: `load: ${to.error}` };
  const url = `${to.base}${interpolate(step.path, vars)}`;
  const report = await runLoad({
    url,
    connections: step.connections,
    signal,
    method: step.method,
    headers: { ...step.headers, ...to.headers },
    timeoutMs: step.timeout,
    ...(step.requests === undefined
      ? { durationMs: step.duration }
      : { requestsPerConnection: Math.ceil(step.requests / step.connections) }),
  });
  const errorRate = report.sent === 0 ? 1 : report.failed / report.sent;
  const what = `load ${step.method} ${url}: ${report.sent} requests on ${step.connections} connection(s), ${report.failed} failed (${(errorRate * 100).toFixed(2)}%), p99 ${report.latency.p99Ms.toFixed(1)} ms, ${Math.round(report.requestsPerSecond)} req/s`;
  const problems: string[] = [];
  if (report.sent === 0) problems.push('no request was sent');
  if (errorRate > step.maxErrorRate) problems.push(`error rate over ${step.maxErrorRate * 100}%`);
  if (step.maxP99 !== undefined && report.latency.p99Ms > step.maxP99)
    problems.push(`p99 over ${step.maxP99} ms`);
  if (problems.length === 0) return { ok: true, detail: what };
  const failures = report.failures
    .slice(0, 5)
    .map((f) => (f.status === null ? (f.error ?? 'no answer') : `status ${f.status}`));
  return {
    ok: false,
    detail: `${what}: ${problems.join(', ')}`,
    ...(failures.length > 0 ? { output: `first failures: ${failures.join('; ')}` } : {}),
  };
}

/** The value at a path like `items[0].id` in parsed JSON, or `missing` when the path is not there. */
export function valueAt(json: unknown, path: string): { found: true; value: unknown } | { found: false } {
  let here: unknown = json;
  for (const part of path.match(/[^.[\]]+|\[\d+\]/g) ?? []) {
    if (part.startsWith('[')) {
      const i = Number(part.slice(1, -1));
      if (!Array.isArray(here) || i >= here.length) return { found: false };
      here = here[i];
    } else {
      if (here === null || typeof here !== 'object' || Array.isArray(here) || !Object.hasOwn(here, part))
        return { found: false };
      here = (here as Record<string, unknown>)[part];
    }
  }
  return { found: true, value: here };
}

/** The first JSON expectation the body does not meet, or undefined when it meets them all. */
function jsonMismatch(body: string, expected: Record<string, unknown>): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return 'the body is not JSON';
  }
  for (const [path, want] of Object.entries(expected)) {
    const got = valueAt(parsed, path);
    if (!got.found) return `the body has no ${path}`;
    if (JSON.stringify(got.value) !== JSON.stringify(want))
      return `${path} is ${JSON.stringify(got.value)}, expected ${JSON.stringify(want)}`;
  }
  return undefined;
}

type HttpStep = Extract<VerifyStep, { http: unknown }>['http'];

function runHttp(step: HttpStep, target: VerifyTarget, signal: AbortSignal): Promise<VerifyResult> {
  const vars = { version: target.version, service: target.service, slot: target.slot };
  const path = interpolate(step.path, vars);
  const expectedBody = step.body === undefined ? undefined : interpolate(step.body, vars);
  const to = destination(step.through, target);
  if ('error' in to) return Promise.resolve({ ok: false, detail: `${step.method} ${path}: ${to.error}` });
  const url = `${to.base}${path}`;
  return new Promise((resolve) => {
    const req = http.request(
      url,
      {
        method: step.method,
        headers: { ...step.headers, ...to.headers },
        agent: false,
        signal,
        timeout: step.timeout,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < 1_000_000) chunks.push(c);
          size += c.length;
        });
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          const status = res.statusCode ?? 0;
          const what = `${step.method} ${url}`;
          if (status !== step.status) {
            resolve({
              ok: false,
              detail: `${what} answered ${status}, expected ${step.status}`,
              output: body.slice(0, 500),
            });
          } else if (expectedBody !== undefined && !body.includes(expectedBody)) {
            resolve({
              ok: false,
              detail: `${what} answered ${status} but the body does not contain ${JSON.stringify(expectedBody)}`,
              output: body.slice(0, 500),
            });
          } else if (step.json !== undefined && jsonMismatch(body, step.json) !== undefined) {
            resolve({
              ok: false,
              detail: `${what} answered ${status} but ${jsonMismatch(body, step.json)}`,
              output: body.slice(0, 500),
            });
          } else {
            resolve({
              ok: true,
              detail: `${what} answered ${status}${expectedBody ? ` with ${JSON.stringify(expectedBody)}` : ''}`,
            });
          }
        });
        res.on('error', (err) => resolve({ ok: false, detail: `${step.method} ${url}: ${err.message}` }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${step.timeout}ms`)));
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ ok: false, detail: `${step.method} ${url}: ${err.code ?? err.message}` }),
    );
    req.end();
  });
}

type RunStep = Extract<VerifyStep, { run: string }>;

function runCommand(step: RunStep, target: VerifyTarget, signal: AbortSignal): Promise<VerifyResult> {
  return new Promise((resolve) => {
    let env: Record<string, string>;
    let user: RunUser;
    const exec = target.exec ?? { where: `services.${target.service}`, env: {}, cwd: process.cwd() };
    try {
      user = resolveRunUser(exec, exec.where);
      assertReachable(exec.cwd, user, exec.where);
      const { user: _user, group: _group, ...declared } = exec;
      env = childEnv({ ...declared, user: { name: user.name, home: homeOf(user, exec.cwd) } });
    } catch (err) {
      resolve({ ok: false, detail: `${JSON.stringify(step.run)} not run: ${(err as Error).message}` });
      return;
    }
    const child = spawn('sh', ['-c', step.run], {
      cwd: exec.cwd,
      // With uid/gid, libuv also drops every supplementary group (setgroups(0)) before exec.
      ...(user.switchTo ?? {}),
      env: {
        ...env,
        TEAL_URL: target.url,
        ...(target.previewUrl ? { TEAL_PREVIEW_URL: target.previewUrl } : {}),
        TEAL_SLOT: target.slot,
        TEAL_VERSION: target.version,
        TEAL_SERVICE: target.service,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    const collect = (c: Buffer) => {
      output = (output + c.toString()).slice(-OUTPUT_TAIL);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let why: string | undefined;
    // The command may start children of its own: end the whole group.
    const kill = (reason: string) => {
      why = reason;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = setTimeout(() => kill(`timed out after ${step.timeout}ms`), step.timeout);
    const onAbort = () => kill('aborted');
    signal.addEventListener('abort', onAbort, { once: true });
    const finish = (result: VerifyResult) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(result);
    };
    child.on('error', (err) =>
      finish({ ok: false, detail: `sh -c ${JSON.stringify(step.run)}: ${err.message}` }),
    );
    child.on('close', (code, sig) => {
      const tail = output.trim();
      const base = { ...(tail ? { output: tail } : {}) };
      if (why) finish({ ok: false, detail: `${JSON.stringify(step.run)} ${why}`, ...base });
      else if (code === 0) finish({ ok: true, detail: `${JSON.stringify(step.run)} exited 0`, ...base });
      else
        finish({
          ok: false,
          detail: `${JSON.stringify(step.run)} exited with ${sig ? `signal ${sig}` : `code ${code}`}`,
          ...base,
        });
    });
  });
}
