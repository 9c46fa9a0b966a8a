/** "host:port" addresses in teal.yml and on command lines (no zod here: the data plane uses it). */

export interface Address {
  host: string;
  port: number;
}

export const ADDRESS = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** "host:port", with port 0 meaning "any free port" (tests use it). */
export function parseAddress(text: string): Address {
  const m = ADDRESS.exec(text);
  const portNumber = m ? Number(m[2]) : Number.NaN;
  if (!m || portNumber > 65535)
    throw new Error(`expected an address like "127.0.0.1:8080", got ${JSON.stringify(text)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: portNumber };
}
