import type { Endpoint } from '../core/model.js';

/** One readiness check of one endpoint. `detail` says why it failed (status, error, timeout). */
export interface ProbeResult {
  ok: boolean;
  detail: string;
}

export interface Probe {
  check(endpoint: Endpoint, options: { signal: AbortSignal }): Promise<ProbeResult>;
}
