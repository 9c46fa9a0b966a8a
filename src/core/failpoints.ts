/**
 * Failpoints, for tests only (like etcd's gofail): named places in a deployment where the control
 * plane kills itself with SIGKILL when `TEAL_FAILPOINT=<name>` is in its environment, so a test can
 * crash it at an exact step and check what a restarted control plane makes of it
 * (test/crash-matrix.test.ts). The variable is read once, at load: unset, a failpoint is one
 * comparison with undefined. Nobody should set it outside a test.
 */
export const FAILPOINTS = [
  /** Locked and planned, the target slot marked starting, no instance started yet. */
  'before-start',
  /** The first instance was launched (not yet in the slot's record), before health passes. */
  'starting',
  /** Inside the verify step: the new slot is healthy and on the preview route. */
  'verifying',
  /** The switch's store transaction committed; the data plane has not applied the table. */
  'after-store-switch',
  /** Switched and applied; the old slot's drain step began. */
  'draining',
] as const;

export type Failpoint = (typeof FAILPOINTS)[number];

const armed: string | undefined = process.env.TEAL_FAILPOINT || undefined;

/** Dies here, at once and without cleanup, if this failpoint is the one armed. */
export function failpoint(name: Failpoint): void {
  if (armed === undefined || armed !== name) return;
  process.kill(process.pid, 'SIGKILL');
}
