/**
 * The restart policy of teal's supervision, pure so it is tested alone: how long to wait before
 * restarting an instance that failed (exited, or stopped answering its liveness probe), and when
 * a slot is in a crash loop. The control plane (heal.ts) and `teal agent` (agent.ts) both apply it.
 *
 * The shape is systemd's and Kubernetes': an exponential backoff (Kubernetes' CrashLoopBackOff
 * doubles from 10 s to 5 min; teal starts lower, 100 ms, since a crash of the only live instance is
 * a user-visible outage) reset once the instance has run long enough, and a burst limit in a window
 * (systemd's StartLimitBurst in StartLimitIntervalSec). Unlike systemd, hitting the limit does not
 * give up: the slot is marked degraded and retried at the longest backoff, because a dependency
 * that comes back (a database) should bring the service back without anyone.
 */

export interface RestartPolicy {
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** A run this long since the last restart counts as healthy: the backoff starts over. */
  resetAfterMs: number;
  crashLoop: { restarts: number; windowMs: number };
}

/** What the policy remembers about one instance (one index of one slot's release). */
export interface RestartHistory {
  /** Failures since the last healthy run. */
  consecutive: number;
  /** Epoch ms of the failures still inside the crash-loop window. */
  recent: number[];
  /** Epoch ms the current (replacement) instance started running, if one did. */
  runningSince?: number;
}

export interface RestartDecision {
  /** Wait this long, then start a replacement. */
  delayMs: number;
  /** The failures in the window reached the limit: the slot is in a crash loop. */
  degraded: boolean;
  /** Failures in the window, this one included. */
  inWindow: number;
  history: RestartHistory;
}

export const freshHistory = (): RestartHistory => ({ consecutive: 0, recent: [] });

/** A failure at `now`: when to restart, and whether that makes the slot degraded. */
export function onFailure(policy: RestartPolicy, history: RestartHistory, now: number): RestartDecision {
  const ranLongEnough =
    history.runningSince !== undefined && now - history.runningSince >= policy.resetAfterMs;
  const consecutive = (ranLongEnough ? 0 : history.consecutive) + 1;
  const recent = [...history.recent.filter((t) => now - t < policy.crashLoop.windowMs), now];
  const degraded = recent.length >= policy.crashLoop.restarts;
  const delayMs = degraded ? policy.maxBackoffMs : backoff(policy, consecutive);
  return { delayMs, degraded, inWindow: recent.length, history: { consecutive, recent } };
}

/** The replacement passed its health check and runs from `now`. */
export function onRunning(history: RestartHistory, now: number): RestartHistory {
  return { ...history, runningSince: now };
}

/**
 * Whether the instance has run healthy long enough that its failures are forgotten: a degraded
 * slot whose every instance is settled is not degraded any more.
 */
export function isSettled(policy: RestartPolicy, history: RestartHistory, now: number): boolean {
  return history.runningSince !== undefined && now - history.runningSince >= policy.resetAfterMs;
}

/** The n-th failure in a row (from 1) waits initial * 2^(n-1), at most the maximum. */
export function backoff(policy: RestartPolicy, n: number): number {
  // 2 ** 60 and more is Infinity-adjacent; the cap makes the exponent's size irrelevant.
  const doubled = policy.initialBackoffMs * 2 ** Math.min(Math.max(n - 1, 0), 40);
  return Math.min(doubled, policy.maxBackoffMs);
}

/**
 * The defaults of a service's `restart:` settings (schema.ts RestartConfig; a test keeps them
 * equal): what `teal agent` applies, since an assignment carries the instance, not the service's
 * settings.
 */
export const DEFAULT_POLICY: RestartPolicy = {
  initialBackoffMs: 100,
  maxBackoffMs: 30_000,
  resetAfterMs: 60_000,
  crashLoop: { restarts: 5, windowMs: 60_000 },
};

/** The policy of a service's `restart:` settings (schema.ts RestartConfig). */
export function policyOf(restart: {
  initialBackoff: number;
  maxBackoff: number;
  resetAfter: number;
  crashLoop: { restarts: number; window: number };
}): RestartPolicy {
  return {
    initialBackoffMs: restart.initialBackoff,
    maxBackoffMs: Math.max(restart.maxBackoff, restart.initialBackoff),
    resetAfterMs: restart.resetAfter,
    crashLoop: { restarts: restart.crashLoop.restarts, windowMs: restart.crashLoop.window },
  };
}
