/**
 * Ports for instances: a free one picked by the kernel, or a fixed one checked before an app is
 * started on it. Shared by the process and docker runtimes. Both checks bind briefly and let go, so
 * another process can still take the port before the app binds it: the check turns the common
 * mistake (a port held by something else) into a clear error, it cannot make the port ours.
 */
import net from 'node:net';
import { TealError } from '../core/errors.js';

/** A port nothing listens on at `host`, as the kernel picks it for port 0. */
export async function freePort(host: string): Promise<number> {
  let server: net.Server;
  try {
    server = await listen(host, 0);
  } catch (err) {
    throw new TealError(
      'TEAL_START_FAILED',
      `cannot find a free port on ${host}: ${(err as Error).message}`,
      { host },
      { cause: err },
    );
  }
  const address = server.address();
  await close(server);
  if (address === null || typeof address === 'string') {
    throw new TealError('TEAL_RUNTIME_FAILED', `cannot read the free port picked on ${host}`, { host });
  }
  return address.port;
}

/**
 * Throws TEAL_PORT_IN_USE when `port` cannot be bound on `host`.
 * @param source where the port was configured, for the message: "services.web.ports.blue".
 */
export async function assertPortFree(host: string, port: number, source?: string): Promise<void> {
  let server: net.Server;
  try {
    server = await listen(host, port);
  } catch (err) {
    const where = source ? ` (${source})` : '';
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new TealError(
        'TEAL_PORT_IN_USE',
        `port ${port}${where} is already in use by another process`,
        { host, port, source },
        { cause: err },
      );
    }
    throw new TealError(
      'TEAL_START_FAILED',
      `cannot listen on ${host}:${port}${where}: ${(err as Error).message}`,
      { host, port, source },
      { cause: err },
    );
  }
  await close(server);
}

function listen(host: string, port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
}
