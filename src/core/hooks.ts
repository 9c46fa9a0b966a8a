import type { VerifyTarget } from './deps.js';
import { TealError, toTealError } from './errors.js';
import type { RunContext } from './run.js';

export type HookName = 'preDeploy' | 'postSwitch' | 'postDeploy' | 'onFailure';

/**
 * Runs one of the service's hooks, if it has it: a shell command with the deployment's TEAL_*
 * variables, run the way a `run` verify step is (same env, timeout, output kept), so a hook and a
 * check behave alike. Only preDeploy can stop a deployment: it runs before anything starts, so a
 * failing migration or a closed release window aborts with nothing to undo. The others run when
 * traffic has already moved or the outcome is decided; their failure is recorded, nothing more.
 *
 * TEAL_URL is the new slot's first instance when one runs, else the data plane (preDeploy).
 */
export async function runHook(ctx: RunContext, name: HookName, target: VerifyTarget): Promise<void> {
  const hook = ctx.plan.hooks[name];
  if (!hook) return;
  const { deps, rec } = ctx;
  const label = `hook ${name}: ${JSON.stringify(hook.run)}`;
  // A hook after the outcome must not be cut short by the control plane's own shutdown signal
  // only because the deployment ended; it keeps its own timeout.
  const signal = name === 'preDeploy' ? ctx.signal : AbortSignal.timeout(hook.timeout + 1_000);
  try {
    const result = await deps.verifier.run({ run: hook.run, timeout: hook.timeout }, target, { signal });
    if (result.ok) {
      await rec.event('hook', 'done', `${label} ${result.detail.replace(/^".*" /, '')}`, {
        ...(result.output ? { data: { output: result.output } } : {}),
      });
      return;
    }
    const error = new TealError('TEAL_HOOK_FAILED', `${name} hook ${result.detail}`, {
      hook: name,
      ...(result.output ? { output: result.output } : {}),
    });
    await rec.event(
      'hook',
      'failed',
      error.message,
      result.output ? { data: { output: result.output } } : {},
    );
    if (name === 'preDeploy') throw error;
  } catch (err) {
    if (name === 'preDeploy') throw err;
    deps.log.warn(`the ${name} hook could not run`, {
      service: ctx.plan.service,
      error: toTealError(err).message,
    });
  }
}
