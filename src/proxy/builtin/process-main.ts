/** Placeholder: the builtin data plane's process entry; being written now. */
export interface DataPlaneProcessOptions {
  /** "host:port" users connect to. */
  listen: string;
  /** Unix socket path of the admin API. */
  admin: string;
  /** File where the applied table is saved, and read back on start. */
  state: string;
}

export async function runDataPlaneProcess(_options: DataPlaneProcessOptions): Promise<void> {
  throw new Error('the builtin data plane is not built yet');
}
