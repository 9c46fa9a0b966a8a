/**
 * teal's one catalogue of errors. Core code throws these; the edges map them: the CLI to an exit
 * code (`exitCodeOf`), the API to an HTTP status (`httpStatusOf`). A code is never reused for a
 * different meaning, so scripts and dashboards can rely on it.
 *
 * @example
 *   throw new TealError('TEAL_LOCKED', 'service web is locked by deployment #12', { holder });
 */

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  unreachable: 3,
  locked: 4,
} as const;

interface Kind {
  /** What went wrong, in a few words; the message says the specifics. */
  title: string;
  exit: number;
  http: number;
}

export const CATALOGUE = {
  TEAL_CONFIG_INVALID: { title: 'invalid configuration', exit: EXIT.usage, http: 400 },
  TEAL_CONFIG_NOT_FOUND: { title: 'configuration file not found', exit: EXIT.usage, http: 400 },
  TEAL_CONFIG_REFUSED: { title: 'configuration cannot be applied now', exit: EXIT.usage, http: 409 },
  TEAL_USAGE: { title: 'bad usage', exit: EXIT.usage, http: 400 },
  TEAL_BAD_REQUEST: { title: 'bad request', exit: EXIT.usage, http: 400 },
  TEAL_UNAUTHORIZED: { title: 'unauthorized', exit: EXIT.usage, http: 401 },
  TEAL_NOT_FOUND: { title: 'not found', exit: EXIT.failed, http: 404 },
  TEAL_UNKNOWN_SERVICE: { title: 'unknown service', exit: EXIT.usage, http: 404 },
  TEAL_DAEMON_UNREACHABLE: { title: 'daemon unreachable', exit: EXIT.unreachable, http: 503 },
  TEAL_DAEMON_RUNNING: { title: 'daemon already running', exit: EXIT.failed, http: 409 },
  TEAL_LOCKED: { title: 'service locked', exit: EXIT.locked, http: 409 },
  TEAL_LOCK_TIMEOUT: { title: 'timed out waiting for the lock', exit: EXIT.locked, http: 409 },
  TEAL_STORE_CONFLICT: { title: 'store revision conflict', exit: EXIT.failed, http: 409 },
  TEAL_STORE_FAILED: { title: 'store failed', exit: EXIT.failed, http: 500 },
  TEAL_START_FAILED: { title: 'instance failed to start', exit: EXIT.failed, http: 500 },
  TEAL_PORT_IN_USE: { title: 'port already in use', exit: EXIT.failed, http: 409 },
  TEAL_HEALTH_FAILED: { title: 'instance never became healthy', exit: EXIT.failed, http: 500 },
  TEAL_INSTANCE_EXITED: { title: 'instance exited', exit: EXIT.failed, http: 500 },
  TEAL_VERIFY_FAILED: { title: 'verification failed', exit: EXIT.failed, http: 500 },
  TEAL_HOOK_FAILED: { title: 'hook failed', exit: EXIT.failed, http: 500 },
  TEAL_ANALYSIS_FAILED: { title: 'post-switch analysis failed', exit: EXIT.failed, http: 500 },
  TEAL_NOT_WAITING: { title: 'no deployment is waiting', exit: EXIT.failed, http: 409 },
  TEAL_PROXY_FAILED: { title: 'traffic switch failed', exit: EXIT.failed, http: 502 },
  TEAL_PROXY_UNREACHABLE: { title: 'data plane unreachable', exit: EXIT.failed, http: 503 },
  TEAL_PROXY_UNTRUSTED: { title: 'not a data plane of this teal', exit: EXIT.failed, http: 502 },
  TEAL_UNSAFE_PATH: { title: 'path open to other users', exit: EXIT.failed, http: 500 },
  TEAL_DEPLOY_FAILED: { title: 'deployment failed', exit: EXIT.failed, http: 500 },
  TEAL_ABORTED: { title: 'aborted', exit: EXIT.failed, http: 409 },
  TEAL_NOTHING_TO_ROLL_BACK: { title: 'nothing to roll back to', exit: EXIT.failed, http: 409 },
  TEAL_NEVER_LIVE: { title: 'release never went live', exit: EXIT.failed, http: 409 },
  TEAL_NOTHING_TO_PREVIEW: { title: 'nothing to preview', exit: EXIT.failed, http: 409 },
  TEAL_RUNTIME_FAILED: { title: 'runtime failed', exit: EXIT.failed, http: 500 },
  TEAL_HOST_UNAVAILABLE: { title: 'fleet host unavailable', exit: EXIT.failed, http: 503 },
  TEAL_UNKNOWN_PIPELINE: { title: 'unknown pipeline', exit: EXIT.usage, http: 404 },
  TEAL_BAD_SIGNATURE: { title: 'webhook signature missing or wrong', exit: EXIT.usage, http: 401 },
  TEAL_TOO_LARGE: { title: 'request body too large', exit: EXIT.usage, http: 413 },
  TEAL_RATE_LIMITED: { title: 'too many requests', exit: EXIT.failed, http: 429 },
  TEAL_GIT_FAILED: { title: 'git failed', exit: EXIT.failed, http: 500 },
  TEAL_STAGE_FAILED: { title: 'pipeline stage failed', exit: EXIT.failed, http: 500 },
  TEAL_PIPELINE_FAILED: { title: 'pipeline run failed', exit: EXIT.failed, http: 500 },
  TEAL_SECRET_UNAVAILABLE: { title: 'configured value unavailable', exit: EXIT.failed, http: 500 },
  TEAL_UNIT_CHANGED: { title: 'unit file changed', exit: EXIT.failed, http: 409 },
  TEAL_UNIT_ENABLED: { title: 'unit still enabled', exit: EXIT.failed, http: 409 },
  TEAL_INTERNAL: { title: 'internal error', exit: EXIT.failed, http: 500 },
} as const satisfies Record<string, Kind>;

export type ErrorCode = keyof typeof CATALOGUE;

export class TealError extends Error {
  override readonly name = 'TealError';
  readonly code: ErrorCode;
  /** Structured specifics for --json output and API bodies (problems, holder, log tail...). */
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = code;
    this.details = details;
  }

  get exitCode(): number {
    return CATALOGUE[this.code].exit;
  }

  get httpStatus(): number {
    return CATALOGUE[this.code].http;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isTealError(err: unknown, code?: ErrorCode): err is TealError {
  return err instanceof TealError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a TealError, keeping the original as the cause. */
export function toTealError(err: unknown, fallback: ErrorCode = 'TEAL_INTERNAL'): TealError {
  if (err instanceof TealError) return err;
  if (err instanceof Error && err.name === 'AbortError') {
    return new TealError('TEAL_ABORTED', 'the operation was aborted', undefined, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new TealError(fallback, message, undefined, { cause: err });
}

export function exitCodeOf(err: unknown): number {
  return toTealError(err).exitCode;
}

export function httpStatusOf(err: unknown): number {
  return toTealError(err).httpStatus;
}

/** Rebuilds a TealError from an API error body, so the CLI maps remote errors like local ones. */
export function fromJSON(body: unknown, httpStatus: number): TealError {
  const e = (body as { error?: { code?: string; message?: string; details?: Record<string, unknown> } })
    ?.error;
  if (e?.code && e.code in CATALOGUE) {
    return new TealError(e.code as ErrorCode, e.message ?? CATALOGUE[e.code as ErrorCode].title, e.details);
  }
  return new TealError('TEAL_INTERNAL', e?.message ?? `the daemon answered HTTP ${httpStatus}`);
}
