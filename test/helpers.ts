import type { ApiClient } from '../src/cli/client.js';
import type { DeploymentRecord } from '../src/core/records.js';
import { isTerminal } from '../src/core/state.js';
import { type LoadReport, type LoadSample, runLoad } from '../src/verify/load.js';

/** Deploys through the API and waits for the outcome by following the deployment's event stream. */
export async function deployAndWait(
  client: ApiClient,
  service: string,
  version: string,
  body: Record<string, unknown> = {},
): Promise<DeploymentRecord> {
  const record = await client.request<DeploymentRecord>('POST', `/v1/services/${service}/deployments`, {
    version,
    ...body,
  });
  return waitEnded(client, record);
}

export async function waitEnded(client: ApiClient, record: DeploymentRecord): Promise<DeploymentRecord> {
  if (!isTerminal(record.state)) {
    for await (const e of client.events(`/v1/services/${record.service}/deployments/${record.n}/events`)) {
      if (e.event === 'end') break;
    }
  }
  return client.request<DeploymentRecord>('GET', `/v1/services/${record.service}/deployments/${record.n}`);
}

export interface VersionSample {
  start: number;
  end: number;
  status: number | null;
  version: string | null;
  error?: string;
}

/**
 * The zero-downtime witness: a keep-alive load through the proxy for as long as the test runs,
 * keeping every response's version and times. `stop()` returns the report and the samples.
 */
export function backgroundLoad(url: string, connections = 32) {
  const samples: VersionSample[] = [];
  const ac = new AbortController();
  const onSample = (s: LoadSample) => {
    const sample: VersionSample = {
      start: s.start,
      end: s.end,
      status: s.status,
      version: /hello (\S+)/.exec(s.body ?? '')?.[1] ?? null,
    };
    if (s.error !== undefined) sample.error = s.error;
    samples.push(sample);
  };
  const running = runLoad({ url, connections, signal: ac.signal, captureBody: true, onSample });
  return {
    samples,
    async stop(): Promise<{ report: LoadReport; samples: VersionSample[] }> {
      ac.abort();
      return { report: await running, samples };
    },
  };
}

/**
 * Requests routed surely after a switch was applied and surely before the next one began, that were
 * answered by another version than the one switched to. A request is routed some time between its
 * recorded start and its end, so: started after the data plane acknowledged switch i, and ended
 * before switch i+1 began. Requests overlapping a switch may get either version.
 */
export function staleAfterSwitch(samples: VersionSample[], deployments: DeploymentRecord[]): string[] {
  const switches = deployments
    .filter((d) => d.switchedAt !== undefined)
    .map((d) => ({
      at: d.switchedAt!,
      began: Date.parse(d.events.find((e) => e.step === 'switch' && e.status === 'started')!.at),
      version: d.version!,
    }))
    .sort((a, b) => a.at - b.at);
  const problems: string[] = [];
  for (const [i, sw] of switches.entries()) {
    const until = switches[i + 1]?.began ?? Number.POSITIVE_INFINITY;
    for (const s of samples) {
      if (s.start > sw.at && s.end < until && s.version !== sw.version) {
        problems.push(
          `request started ${s.start - sw.at}ms after the switch to ${sw.version} got ${s.version ?? `status ${s.status}`}`,
        );
      }
    }
  }
  return problems;
}
