import { spawn } from 'node:child_process';
import http from 'node:http';
import { interpolate } from '../core/config/interpolate.js';
import type { VerifyStep } from '../core/config/schema.js';
import type { Verifier, VerifyResult, VerifyTarget } from '../core/deps.js';

const OUTPUT_TAIL = 4_000;

/**
 * Runs the configured verification steps against the new slot before it takes traffic:
 * `http` checks a status and a body substring; `run` runs the user's command under `sh -c`, as they
 * wrote it, with the target in TEAL_* variables (never spliced into the command text).
 */
export class StepVerifier implements Verifier {
  run(step: VerifyStep, target: VerifyTarget, options: { signal: AbortSignal }): Promise<VerifyResult> {
    return 'run' in step
      ? runCommand(step, target, options.signal)
      : runHttp(step.http, target, options.signal);
  }
}

type HttpStep = Extract<VerifyStep, { http: unknown }>['http'];

function runHttp(step: HttpStep, target: VerifyTarget, signal: AbortSignal): Promise<VerifyResult> {
  const vars = { version: target.version, service: target.service, slot: target.slot };
  const path = interpolate(step.path, vars);
  const expectedBody = step.body === undefined ? undefined : interpolate(step.body, vars);
  const url = `${target.url}${path}`;
  return new Promise((resolve) => {
    const req = http.request(
      url,
      { method: step.method, headers: step.headers, agent: false, signal, timeout: step.timeout },
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
    const child = spawn('sh', ['-c', step.run], {
      env: {
        ...process.env,
        TEAL_URL: target.url,
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
