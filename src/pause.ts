/**
 * Waits `ms`, or less if the signal aborts; never rejects (the caller checks `signal.aborted`).
 * node:timers/promises' setTimeout rejects on abort instead, which every loop here would catch.
 */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
